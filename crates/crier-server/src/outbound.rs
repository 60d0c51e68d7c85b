//! The bounded outbound queue of one socket, and the handle the rest of the node uses to
//! reach that socket.
//!
//! Fan-out never writes to sockets: it pushes already-encoded frames (refcounted bytes)
//! into each subscriber's queue and moves on, so one slow client can never hold up a
//! broadcast. The socket's own task takes everything queued in one swap and writes it in
//! one batch. A queue that fills past its message or byte bound marks the client as too
//! slow; its task then disconnects it.
//!
//! This is a small hand-written queue rather than `tokio::sync::mpsc` for two reasons: it
//! bounds *bytes* as well as messages (a few large frames must count as much as many
//! small ones), and the consumer takes the whole backlog in one lock instead of one
//! `try_recv` per frame. An idle socket's queue holds no allocation at all.
//!
//! Frames and the rare instructions for the socket's task (shut a channel down, refuse
//! a join, the node is stopping) are kept apart, each instruction remembering where it
//! fell among the frames: draining then moves the frames in one go straight into the
//! socket's write batch, and the task still applies every instruction in order.

use std::sync::Arc;

use axum::extract::ws::Message as WsMessage;
use crier_protocol::Vsn;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Identifies one socket for the life of the node.
pub(crate) type ConnId = u64;

/// What a socket's task receives from the rest of the node.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An encoded frame to write as is.
    Frame(WsMessage),
    /// Shut the channel on `topic` down: a `system` error with `message`, then `phx_close`.
    ShutdownChannel {
        /// The full topic (`realtime:room`).
        topic: Arc<str>,
        /// The `system` message text.
        message: &'static str,
    },
    /// A join whose answer was deferred is refused after all: forget the channel (if it is
    /// still that join's) and write `reply`, the join's error reply.
    RefuseJoin {
        /// The full topic.
        topic: Arc<str>,
        /// The refused join's `join_ref`.
        join_ref: Option<String>,
        /// The encoded error reply.
        reply: WsMessage,
    },
    /// The node is shutting down: tell every channel, then close the socket.
    Shutdown,
}

impl Outbound {
    fn size(&self) -> usize {
        match self {
            Outbound::Frame(frame) => frame_len(frame),
            Outbound::ShutdownChannel { .. } | Outbound::Shutdown => 0,
            Outbound::RefuseJoin { reply, .. } => frame_len(reply),
        }
    }
}

pub(crate) fn frame_len(frame: &WsMessage) -> usize {
    match frame {
        WsMessage::Text(text) => text.len(),
        WsMessage::Binary(bytes) => bytes.len(),
        _ => 0,
    }
}

/// Why a push was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// This push overflowed the queue: the client is too slow and will be disconnected.
    /// Returned once per socket, so the caller can log and count it once.
    Overflow,
    /// The queue had already overflowed or the socket is gone.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    frames: Vec<WsMessage>,
    /// Everything else queued, each with the number of frames queued before it.
    instructions: Vec<(usize, Outbound)>,
    bytes: usize,
    closed: bool,
    /// Set with `closed` when a push overflowed the bounds.
    overflowed: bool,
}

impl State {
    fn len(&self) -> usize {
        self.frames.len() + self.instructions.len()
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.instructions.clear();
        self.bytes = 0;
    }
}

/// What one drain found besides the frames it moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// Everything queued was taken.
    Open,
    /// A push overflowed the queue: the client is too slow and must be disconnected.
    Overflowed,
}

/// A socket's bounded queue of outbound frames.
#[derive(Debug)]
pub(crate) struct OutboundQueue {
    state: Mutex<State>,
    ready: Notify,
    slow: CancellationToken,
    max_messages: usize,
    max_bytes: usize,
}

impl OutboundQueue {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        OutboundQueue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            slow: CancellationToken::new(),
            max_messages,
            max_bytes,
        }
    }

    /// Queues `item` within the bounds.
    pub(crate) fn push(&self, item: Outbound) -> Result<(), PushError> {
        self.push_inner(item, true)
    }

    /// Queues `item` regardless of the bounds: for the few frames a socket's own task
    /// sends itself (a `presence_state` for its own channel), which must not be the
    /// reason it counts as slow.
    pub(crate) fn push_own(&self, item: Outbound) {
        let _ = self.push_inner(item, false);
    }

    fn push_inner(&self, item: Outbound, bounded: bool) -> Result<(), PushError> {
        let size = item.size();
        {
            let mut state = self.state.lock();
            if state.closed {
                return Err(PushError::Closed);
            }
            if bounded && (state.len() >= self.max_messages || state.bytes + size > self.max_bytes)
            {
                state.closed = true;
                state.overflowed = true;
                state.clear();
                drop(state);
                // The socket's task learns of the overflow from its next drain (it
                // waits on `ready`, not on this token, to keep its loop cheap); the
                // token is for a task stuck in a write.
                self.slow.cancel();
                self.ready.notify_one();
                return Err(PushError::Overflow);
            }
            state.bytes += size;
            match item {
                Outbound::Frame(frame) => state.frames.push(frame),
                instruction => {
                    let position = state.frames.len();
                    state.instructions.push((position, instruction));
                }
            }
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Whether fewer than half of the queue's message and byte bounds are in use (a
    /// closed queue counts as drained): producers that can wait use it to slow down
    /// before a client would count as slow.
    pub(crate) fn is_below_half(&self) -> bool {
        let state = self.state.lock();
        state.closed || (state.len() < self.max_messages / 2 && state.bytes < self.max_bytes / 2)
    }

    /// Moves every queued frame to the end of `frames`, and every other item to
    /// `instructions` with the index in `frames` it must be applied before (so
    /// `frames.len()` when it came after the last frame).
    pub(crate) fn drain_into(
        &self,
        frames: &mut Vec<WsMessage>,
        instructions: &mut Vec<(usize, Outbound)>,
    ) -> Drained {
        let mut state = self.state.lock();
        if state.overflowed {
            return Drained::Overflowed;
        }
        state.bytes = 0;
        let base = frames.len();
        let drained = state.frames.len();
        frames.append(&mut state.frames);
        if !state.instructions.is_empty() {
            instructions.extend(
                state
                    .instructions
                    .drain(..)
                    .map(|(position, item)| (base + position, item)),
            );
        }
        // Give a burst's memory back once the burst is over (most sockets are idle most
        // of the time), but keep it while batches still need it: freeing it after every
        // drain made a busy socket reallocate its queue on every burst.
        let capacity = state.frames.capacity();
        if capacity > 64 && capacity > 4 * drained {
            state.frames = Vec::new();
        }
        Drained::Open
    }

    /// Resolves when something was queued, or the queue overflowed, since the last call
    /// (no wakeup is lost: a push before the wait leaves a permit behind).
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
        state.clear();
    }
}

/// What the registry and fan-out hold of a socket.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub(crate) id: ConnId,
    pub(crate) vsn: Vsn,
    pub(crate) queue: OutboundQueue,
}

impl ConnHandle {
    pub(crate) fn new(id: ConnId, vsn: Vsn, max_messages: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(ConnHandle {
            id,
            vsn,
            queue: OutboundQueue::new(max_messages, max_bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Outbound {
        Outbound::Frame(WsMessage::Text("x".repeat(len).into()))
    }

    fn text_len(frame: &WsMessage) -> usize {
        match frame {
            WsMessage::Text(text) => text.len(),
            other => panic!("not a text frame: {other:?}"),
        }
    }

    /// Drains into fresh vectors.
    fn drain(queue: &OutboundQueue) -> (Drained, Vec<WsMessage>, Vec<(usize, Outbound)>) {
        let (mut frames, mut instructions) = (Vec::new(), Vec::new());
        let drained = queue.drain_into(&mut frames, &mut instructions);
        (drained, frames, instructions)
    }

    #[test]
    fn overflow_by_count_is_reported_once_then_closed() {
        let queue = OutboundQueue::new(2, 1 << 20);
        assert_eq!(queue.push(frame(1)), Ok(()));
        assert_eq!(queue.push(frame(1)), Ok(()));
        assert_eq!(queue.push(frame(1)), Err(PushError::Overflow));
        assert!(queue.slow().is_cancelled());
        assert_eq!(queue.push(frame(1)), Err(PushError::Closed));
    }

    #[test]
    fn overflow_by_bytes() {
        let queue = OutboundQueue::new(100, 10);
        assert_eq!(queue.push(frame(6)), Ok(()));
        assert_eq!(queue.push(frame(6)), Err(PushError::Overflow));
    }

    #[test]
    fn instructions_count_towards_the_message_bound() {
        let queue = OutboundQueue::new(2, 1 << 20);
        queue.push(frame(1)).unwrap();
        queue.push(Outbound::Shutdown).unwrap();
        assert_eq!(queue.push(frame(1)), Err(PushError::Overflow));
    }

    #[tokio::test(start_paused = true)]
    async fn an_overflow_wakes_the_socket_task_and_its_drain_reports_it() {
        let queue = OutboundQueue::new(1, 1 << 20);
        queue.push(frame(1)).unwrap();
        let (drained, frames, _) = drain(&queue);
        assert_eq!((drained, frames.len()), (Drained::Open, 1));
        queue.push(frame(1)).unwrap();
        // Take the wakeups the pushes left behind, so the next one must come from the
        // overflow.
        queue.ready().await;
        assert_eq!(queue.push(frame(1)), Err(PushError::Overflow));
        let woken = tokio::time::timeout(std::time::Duration::from_secs(1), queue.ready()).await;
        assert!(woken.is_ok(), "the overflow did not wake the socket's task");
        let (drained, frames, _) = drain(&queue);
        assert_eq!(drained, Drained::Overflowed);
        assert!(frames.is_empty(), "an overflowed queue hands nothing out");
    }

    #[test]
    fn drain_takes_everything_in_order_and_frees_the_budget() {
        let queue = OutboundQueue::new(2, 100);
        queue.push(frame(1)).unwrap();
        queue.push(frame(2)).unwrap();
        let (drained, frames, instructions) = drain(&queue);
        assert_eq!(drained, Drained::Open);
        assert_eq!(frames.iter().map(text_len).collect::<Vec<_>>(), [1, 2]);
        assert!(instructions.is_empty());
        assert_eq!(queue.push(frame(1)), Ok(()), "draining frees room");
    }

    #[test]
    fn instructions_keep_their_place_among_the_frames() {
        let queue = OutboundQueue::new(100, 1000);
        let mut frames = vec![WsMessage::Text("already in the batch".into())];
        let mut instructions = Vec::new();
        queue.push(Outbound::Shutdown).unwrap();
        queue.push(frame(1)).unwrap();
        queue.push(frame(2)).unwrap();
        queue.push(Outbound::Shutdown).unwrap();
        queue.push(frame(3)).unwrap();
        queue.push(Outbound::Shutdown).unwrap();
        queue.drain_into(&mut frames, &mut instructions);
        assert_eq!(
            frames.iter().skip(1).map(text_len).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let positions: Vec<usize> = instructions.iter().map(|(at, _)| *at).collect();
        assert_eq!(
            positions,
            [1, 3, 4],
            "before frame 1, before frame 3, after it"
        );
    }

    #[test]
    fn a_burst_keeps_its_memory_while_it_lasts_and_gives_it_back_after() {
        let queue = OutboundQueue::new(1024, 1 << 20);
        let (mut frames, mut instructions) = (Vec::new(), Vec::new());
        let burst = |n: usize| {
            for _ in 0..n {
                queue.push(frame(1)).unwrap();
            }
        };
        burst(200);
        queue.drain_into(&mut frames, &mut instructions);
        burst(200);
        let capacity = queue.state.lock().frames.capacity();
        assert!(capacity >= 200, "no regrowth inside a burst");
        queue.drain_into(&mut frames, &mut instructions);
        burst(1);
        queue.drain_into(&mut frames, &mut instructions);
        assert_eq!(
            queue.state.lock().frames.capacity(),
            0,
            "freed once it is over"
        );
        assert_eq!(frames.len(), 401);
    }

    #[test]
    fn own_frames_bypass_the_bound() {
        let queue = OutboundQueue::new(1, 100);
        queue.push(frame(1)).unwrap();
        queue.push_own(frame(1));
        let (_, frames, _) = drain(&queue);
        assert_eq!(frames.len(), 2);
    }
}
