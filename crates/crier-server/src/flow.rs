//! Flow control between publishers and subscribers.
//!
//! Two questions, answered apart (docs/PROTOCOL.md, "Slow consumers and flow control"):
//!
//! - **Is this subscriber too slow?** It is disconnected (close 1013) only when its socket
//!   takes no data for the slow-consumer timeout, or when its queue holds more than its
//!   byte budget. Both measure the client, not the size of a burst: a client that reads
//!   as fast as it is sent to never meets either.
//! - **How does a burst get through?** A publisher that can wait (a socket's broadcasts,
//!   the REST API, [`crate::Node::broadcast_async`], postgres changes) waits after a
//!   message while a subscriber it reached holds more than the room mark, until that
//!   subscriber's socket has written its backlog. A burst therefore moves at the pace of
//!   its subscribers instead of piling up in their queues. A subscriber whose write has
//!   waited on its socket for longer than the patience is not waited for until that write
//!   completes: it cannot hold a topic back, and is left to its budget and the timeout.
//!
//! The node also counts every byte its queues hold ([`Ledger`]): each shared frame once,
//! however many queues hold it (the frame's buffer reports its own release when the last
//! queue lets go of it), plus every queue's slots. Over the node's budget every publisher
//! that can wait does, and the REST API answers 503, so memory stays bounded even when
//! many subscribers lag at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::frame::Frame;
use crate::outbound::{ConnHandle, Room};

/// The node's count of the bytes its outbound queues hold, and where publishers wait for
/// room.
#[derive(Debug)]
pub(crate) struct Ledger {
    queued: AtomicUsize,
    budget: usize,
    /// Publishers waiting for the total to fall under the budget.
    waiters: AtomicUsize,
    /// Woken when room appears: a queue someone waits on has written its backlog, or the
    /// total fell under the budget while someone waited for that.
    room: Notify,
}

/// The node's queues stayed over their budget for the whole wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overloaded;

impl Ledger {
    /// A ledger that counts publishers as waiting once the total passes `budget` bytes.
    pub(crate) fn new(budget: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            queued: AtomicUsize::new(0),
            budget,
            waiters: AtomicUsize::new(0),
            room: Notify::new(),
        })
    }

    /// Bytes held by the node's queues now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether the node's queues hold more than the budget.
    pub(crate) fn is_over_budget(&self) -> bool {
        self.queued.load(Ordering::SeqCst) > self.budget
    }

    pub(crate) fn add(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn release(&self, bytes: usize) {
        // SeqCst here and around `waiters` in `wait_for_room`: a waiter registers then
        // re-reads the total, a release lowers the total then reads the waiters, and at
        // least one of the two must see the other.
        let before = self.queued.fetch_sub(bytes, Ordering::SeqCst);
        debug_assert!(before >= bytes, "the ledger released more than it holds");
        if before.saturating_sub(bytes) <= self.budget && self.waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

    /// Wakes publishers waiting on a queue that now has room.
    pub(crate) fn room_freed(&self) {
        self.room.notify_waiters();
    }

    /// A text frame for many queues, counted once for as long as any of them holds it.
    pub(crate) fn shared_text(self: &Arc<Self>, text: String) -> Frame {
        Frame::Text(self.counted(text))
    }

    /// A binary frame for many queues, counted once for as long as any of them holds it.
    pub(crate) fn shared_binary(self: &Arc<Self>, data: Vec<u8>) -> Frame {
        Frame::Binary(self.counted(data))
    }

    fn counted<T: AsRef<[u8]> + Send + 'static>(self: &Arc<Self>, data: T) -> Bytes {
        self.add(data.as_ref().len());
        Bytes::from_owner(Counted {
            data,
            ledger: Arc::clone(self),
        })
    }

    /// Waits, up to `limit` in all, until every queue in `lagging` has room again or is no
    /// longer waited for (closed, or its socket stalled for longer than `patience`), and
    /// then until the node's total is under its budget. Only the last can fail: a lagging
    /// queue that does not recover in time is simply no longer waited for.
    pub(crate) async fn wait_for_room(
        &self,
        lagging: &[Arc<ConnHandle>],
        patience: Duration,
        limit: Duration,
    ) -> Result<(), Overloaded> {
        let deadline = Instant::now() + limit;
        self.wait_for_queues(lagging, patience, deadline).await;
        self.wait_for_budget(deadline).await
    }

    /// Waits, up to `deadline`, until every queue in `lagging` has room again or is no
    /// longer waited for.
    pub(crate) async fn wait_for_queues(
        &self,
        lagging: &[Arc<ConnHandle>],
        patience: Duration,
        deadline: Instant,
    ) {
        for conn in lagging {
            loop {
                // Registered before the check, so a room made between the check and the
                // wait still wakes it.
                let notified = self.room.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let recheck_at = match conn.queue.room(patience) {
                    Room::Free | Room::NotWaitedFor => break,
                    Room::Full { recheck_at } => recheck_at.min(deadline),
                };
                if Instant::now() >= deadline {
                    return;
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(recheck_at) => {}
                }
            }
        }
    }

    /// Waits, up to `deadline`, until the node's total is under its budget.
    pub(crate) async fn wait_for_budget(&self, deadline: Instant) -> Result<(), Overloaded> {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_over_budget() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Overloaded);
            }
            // Counted as waiting for as long as this future waits, even when it is
            // dropped mid-wait (a session closing, a client hanging up on a REST call).
            let _waiting = Waiting::register(&self.waiters);
            // A release between the check above and the registration did not notify.
            if self.is_over_budget() {
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
    }
}

/// One publisher counted in [`Ledger`]'s `waiters` while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn register(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A frame's buffer that takes itself off the ledger when its last holder drops it.
struct Counted<T: AsRef<[u8]>> {
    data: T,
    ledger: Arc<Ledger>,
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Counted<T> {
    fn as_ref(&self) -> &[u8] {
        self.data.as_ref()
    }
}

impl<T: AsRef<[u8]>> Drop for Counted<T> {
    fn drop(&mut self) {
        self.ledger.release(self.data.as_ref().len());
    }
}

#[cfg(test)]
mod tests;
