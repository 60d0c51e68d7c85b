//! [`Outbox`]: what this node has to send to Redis, waiting for the publisher task.
//!
//! Bounded: while Redis is away the publisher cannot drain it, and a node that goes on
//! publishing must not grow its memory without end. When it is full a broadcast is
//! dropped and its topic remembered (the other nodes are told of the gap once Redis is
//! back), and a presence change is dropped and remembered (the node pushes all its
//! presences again then). `mpsc`'s own bounded channel would make a full queue wait or
//! fail without saying which topic lost what; this one counts and remembers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;

/// A command for the publisher, with the topic when it carries a broadcast.
pub(crate) type Queued = (Option<String>, redis::Cmd);

/// Commands waiting for the publisher; see the module doc.
#[derive(Debug)]
pub(crate) struct Outbox {
    sender: mpsc::UnboundedSender<Queued>,
    queued: AtomicUsize,
    limit: usize,
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
    /// An outbox that holds at most `limit` commands, and the publisher's end of it.
    pub(crate) fn new(limit: usize) -> (Outbox, mpsc::UnboundedReceiver<Queued>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let outbox = Outbox {
            sender,
            queued: AtomicUsize::new(0),
            limit,
            lost: Mutex::default(),
            presence_lost: AtomicBool::new(false),
            full: AtomicBool::new(false),
        };
        (outbox, receiver)
    }

    /// Queues a broadcast of `topic`; when full, drops it and remembers the topic.
    /// Fails only when the publisher has stopped.
    pub(crate) fn broadcast(&self, topic: &str, command: redis::Cmd) -> Result<(), ()> {
        if !self.room() {
            self.lost.lock().insert(topic.to_owned());
            return Ok(());
        }
        self.send((Some(topic.to_owned()), command))
    }

    /// Queues a presence change; when full, drops it and remembers that one was dropped.
    pub(crate) fn presence(&self, command: redis::Cmd) {
        if !self.room() {
            self.presence_lost.store(true, Ordering::Relaxed);
            return;
        }
        let _ = self.send((None, command));
    }

    fn send(&self, queued: Queued) -> Result<(), ()> {
        self.sender.send(queued).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        })
    }

    /// Takes a place, or says there is none.
    fn room(&self) -> bool {
        let taken = self.queued.fetch_add(1, Ordering::Relaxed);
        if taken < self.limit {
            return true;
        }
        self.queued.fetch_sub(1, Ordering::Relaxed);
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = self.limit,
                "too much is waiting for Redis: dropping what other nodes would get until it drains"
            );
        }
        false
    }

    /// The publisher took `count` commands.
    pub(crate) fn drained(&self, count: usize) {
        self.queued.fetch_sub(count, Ordering::Relaxed);
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
        let (outbox, mut receiver) = Outbox::new(2);
        for topic in ["a", "b", "c", "c"] {
            outbox.broadcast(topic, redis::cmd("PING")).unwrap();
        }
        outbox.presence(redis::cmd("PING"));
        assert_eq!(outbox.len(), 2, "bounded");
        let dropped = outbox.take_dropped();
        assert_eq!(dropped.topics, HashSet::from(["c".to_owned()]));
        assert!(dropped.presence);
        assert_eq!(outbox.take_dropped(), Dropped::default(), "said once");

        let mut batch = Vec::new();
        assert_eq!(receiver.try_recv().map(|q| q.0), Ok(Some("a".to_owned())));
        batch.extend(receiver.try_recv());
        outbox.drained(2);
        outbox.broadcast("d", redis::cmd("PING")).unwrap();
        assert_eq!(outbox.len(), 1, "room again once drained");
        assert!(outbox.take_dropped().topics.is_empty());
    }
}
