//! A socket's bounded outbound queue, shaped like Crier's (`crier-server/src/outbound.rs`).
//!
//! Publishers push already-encoded frames (refcounted) and move on; the socket's task
//! takes the whole backlog in one lock and writes it in one batch. Past the byte bound
//! (each frame counted with its slot, no bound on their number) the client counts as too
//! slow and its task disconnects it. Kept the same as Crier's on purpose: a cheaper queue
//! here would make the ceiling unfair. (Crier's publishers also wait for a lagging
//! queue; this server's workloads never fill one, so it leaves that out.)

use axum::extract::ws::Message;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
struct State {
    frames: Vec<Message>,
    bytes: usize,
    closed: bool,
    /// Set with `closed` when a push overflowed the bounds.
    overflowed: bool,
}

/// Frames waiting to be written to one socket.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    ready: Notify,
    slow: CancellationToken,
    max_bytes: usize,
}

/// What a queued frame costs besides its bytes: its slot.
const SLOT_BYTES: usize = std::mem::size_of::<Message>();

impl Queue {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Queue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            slow: CancellationToken::new(),
            max_bytes,
        }
    }

    /// Queues `frame`; on overflow, closes the queue and cancels [`Self::slow`]. Returns
    /// whether the frame was queued.
    pub(crate) fn push(&self, frame: Message) -> bool {
        let size = frame_len(&frame) + SLOT_BYTES;
        {
            let mut state = self.state.lock();
            if state.closed {
                return false;
            }
            if state.bytes + size > self.max_bytes {
                state.closed = true;
                state.overflowed = true;
                state.frames.clear();
                state.bytes = 0;
                drop(state);
                // As in Crier: the task learns of it from its next drain.
                self.slow.cancel();
                self.ready.notify_one();
                return false;
            }
            state.frames.push(frame);
            state.bytes += size;
        }
        // Outside the lock: the woken task's first move is to take it.
        self.ready.notify_one();
        true
    }

    /// Moves everything queued into `into`, in order; false when the queue overflowed
    /// (the client is too slow).
    pub(crate) fn drain_into(&self, into: &mut Vec<Message>) -> bool {
        let mut state = self.state.lock();
        if state.overflowed {
            return false;
        }
        state.bytes = 0;
        let drained = state.frames.len();
        into.append(&mut state.frames);
        // Crier's policy: keep a burst's capacity while batches still need it, give it
        // back once the burst is over.
        let capacity = state.frames.capacity();
        if capacity > 64 && capacity > 4 * drained {
            state.frames = Vec::new();
        }
        true
    }

    /// Resolves when something was queued, or the queue overflowed, since the last call
    /// (a push before the wait leaves a permit, so no wakeup is lost).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Cancelled when the queue overflowed.
    pub(crate) fn slow(&self) -> &CancellationToken {
        &self.slow
    }

    /// Stops accepting frames (the socket is closing).
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.frames.clear();
        state.bytes = 0;
    }
}

/// Payload bytes of a data frame (control frames count as nothing).
pub(crate) fn frame_len(frame: &Message) -> usize {
    match frame {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> Message {
        Message::Text("x".repeat(len).into())
    }

    #[test]
    fn overflow_closes_and_signals_slow() {
        let queue = Queue::new(2 * (1 + SLOT_BYTES));
        assert!(queue.push(text(1)));
        assert!(queue.push(text(1)));
        assert!(!queue.push(text(1)));
        assert!(queue.slow().is_cancelled());
        assert!(!queue.push(text(1)), "stays closed");
    }

    #[test]
    fn byte_bound_counts_frames_with_their_slots() {
        let queue = Queue::new(10 + 2 * SLOT_BYTES);
        assert!(queue.push(text(6)));
        assert!(!queue.push(text(6)));
        let many = Queue::new(1 << 20);
        for _ in 0..10_000 {
            assert!(many.push(text(1)), "no bound on the number of frames");
        }
    }

    #[test]
    fn drain_is_in_order_and_frees_room() {
        let queue = Queue::new(2 * (2 + SLOT_BYTES));
        queue.push(text(1));
        queue.push(text(2));
        let mut out = Vec::new();
        queue.drain_into(&mut out);
        assert_eq!(out.iter().map(frame_len).collect::<Vec<_>>(), [1, 2]);
        assert!(queue.push(text(1)));
    }

    #[test]
    fn an_overflow_is_reported_by_the_next_drain() {
        let queue = Queue::new(1 + SLOT_BYTES);
        assert!(queue.push(text(1)));
        assert!(!queue.push(text(1)));
        let mut out = Vec::new();
        assert!(!queue.drain_into(&mut out));
        assert!(out.is_empty());
    }
}
