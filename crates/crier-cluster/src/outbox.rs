//! [`Outbox`]: what this node has to send to Redis, waiting for the publisher task.
//!
//! Bounded, in commands and in bytes: while Redis is away the publisher cannot drain it, and a node that goes on
//! publishing must not grow its memory without end. When it is full a broadcast is
//! dropped and its topic remembered (the other nodes are told of the gap once Redis is
//! back), and a presence change is dropped and remembered (the node pushes all its
//! presences again then). `mpsc`'s own bounded channel would make a full queue wait or
//! fail without saying which topic lost what; this one counts and remembers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;

/// A command for the publisher, with the topic when it carries a broadcast, its size as
/// the outbox counts it, and whether it numbers a broadcast in the shared history: the
/// publisher then gives it a sequence number, so that a pipeline tried again after a
/// cut connection does not number it twice (`crate::history`).
pub(crate) type Queued = (Option<String>, redis::Cmd, usize, bool);

/// Commands waiting for the publisher; see the module doc.
#[derive(Debug)]
pub(crate) struct Outbox {
    sender: mpsc::UnboundedSender<Queued>,
    queued: AtomicUsize,
    limit: usize,
    /// Bytes of the commands waiting, and their bound.
    bytes: AtomicUsize,
    max_bytes: usize,
    /// Topics whose broadcasts were dropped here.
    lost: Mutex<HashSet<String>>,
    /// A presence change was dropped here.
    presence_lost: AtomicBool,
    /// The outbox is (or was, since the last drain) full: said once per episode.
    full: AtomicBool,
}

/// What was dropped since the last look.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub(crate) topics: HashSet<String>,
    pub(crate) presence: bool,
}

impl Outbox {
    /// An outbox that holds at most `limit` commands and `max_bytes` bytes of them, and
    /// the publisher's end of it.
    pub(crate) fn new(limit: usize, max_bytes: usize) -> (Outbox, mpsc::UnboundedReceiver<Queued>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let outbox = Outbox {
            sender,
            queued: AtomicUsize::new(0),
            limit,
            bytes: AtomicUsize::new(0),
            max_bytes,
            lost: Mutex::default(),
            presence_lost: AtomicBool::new(false),
            full: AtomicBool::new(false),
        };
        (outbox, receiver)
    }

    /// Queues a broadcast of `topic`; when full, drops it and remembers the topic.
    /// Fails only when the publisher has stopped.
    pub(crate) fn broadcast(
        &self,
        topic: &str,
        command: redis::Cmd,
        bytes: usize,
    ) -> Result<(), ()> {
        self.queue_broadcast(topic, command, bytes, false)
    }

    /// Remembers that a broadcast of `topic` never reached the bus (the other nodes are
    /// told of the gap once it is back).
    pub(crate) fn lose(&self, topic: &str) {
        self.lost.lock().insert(topic.to_owned());
    }

    /// Queues a broadcast of `topic` to be numbered in the shared history, like
    /// [`Outbox::broadcast`] (see [`Queued`]).
    pub(crate) fn numbered(
        &self,
        topic: &str,
        command: redis::Cmd,
        bytes: usize,
    ) -> Result<(), ()> {
        self.queue_broadcast(topic, command, bytes, true)
    }

    fn queue_broadcast(
        &self,
        topic: &str,
        command: redis::Cmd,
        bytes: usize,
        numbered: bool,
    ) -> Result<(), ()> {
        if !self.room(bytes) {
            self.lose(topic);
            return Ok(());
        }
        self.send((Some(topic.to_owned()), command, bytes, numbered))
    }

    /// Queues a presence change; when full, drops it and remembers that one was dropped.
    pub(crate) fn presence(&self, command: redis::Cmd, bytes: usize) {
        if !self.room(bytes) {
            self.presence_lost.store(true, Ordering::Relaxed);
            return;
        }
        let _ = self.send((None, command, bytes, false));
    }

    fn send(&self, queued: Queued) -> Result<(), ()> {
        let bytes = queued.2;
        self.sender.send(queued).map_err(|_| self.release(1, bytes))
    }

    fn release(&self, count: usize, bytes: usize) {
        self.queued.fetch_sub(count, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Takes a place for `bytes`, or says there is none.
    fn room(&self, bytes: usize) -> bool {
        let taken = self.queued.fetch_add(1, Ordering::Relaxed);
        let held = self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if taken < self.limit && held + bytes <= self.max_bytes {
            return true;
        }
        self.release(1, bytes);
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = self.limit,
                "too much is waiting for Redis: dropping what other nodes would get until it drains"
            );
        }
        false
    }

    /// The publisher took `count` commands of `bytes` in all.
    pub(crate) fn drained(&self, count: usize, bytes: usize) {
        self.release(count, bytes);
        self.full.store(false, Ordering::Relaxed);
    }

    /// What was dropped since the last call.
    pub(crate) fn take_dropped(&self) -> Dropped {
        Dropped {
            topics: std::mem::take(&mut *self.lost.lock()),
            presence: self.presence_lost.swap(false, Ordering::Relaxed),
        }
    }

    /// Commands waiting now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_outbox_drops_and_remembers_what() {
        let (outbox, mut receiver) = Outbox::new(2, 1_000);
        for topic in ["a", "b", "c", "c"] {
            outbox.broadcast(topic, redis::cmd("PING"), 10).unwrap();
        }
        outbox.presence(redis::cmd("PING"), 10);
        assert_eq!(outbox.len(), 2, "bounded");
        let dropped = outbox.take_dropped();
        assert_eq!(dropped.topics, HashSet::from(["c".to_owned()]));
        assert!(dropped.presence);
        assert_eq!(outbox.take_dropped(), Dropped::default(), "said once");

        let mut batch = Vec::new();
        assert_eq!(receiver.try_recv().map(|q| q.0), Ok(Some("a".to_owned())));
        batch.extend(receiver.try_recv());
        outbox.drained(2, 20);
        outbox.broadcast("d", redis::cmd("PING"), 10).unwrap();
        assert_eq!(outbox.len(), 1, "room again once drained");
        assert!(outbox.take_dropped().topics.is_empty());
    }

    #[test]
    fn the_bytes_are_bounded_too() {
        let (outbox, _receiver) = Outbox::new(100, 25);
        outbox.broadcast("a", redis::cmd("PING"), 20).unwrap();
        outbox.broadcast("big", redis::cmd("PING"), 20).unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(
            outbox.take_dropped().topics,
            HashSet::from(["big".to_owned()])
        );
        outbox.broadcast("small", redis::cmd("PING"), 5).unwrap();
        assert_eq!(outbox.len(), 2, "what fits still goes");
    }
}
