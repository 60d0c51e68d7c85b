//! The outbound queue of one socket, and the handle the rest of the node uses to reach
//! that socket.
//!
//! Fan-out never writes to sockets: it pushes already-encoded frames (refcounted bytes)
//! into each subscriber's queue and moves on. The socket's own task takes everything
//! queued in one swap and writes it in one batch.
//!
//! The queue is bounded by bytes, never by a count of frames: a count says nothing about
//! memory and everything about the size of the last burst, so it cut off healthy clients
//! that were merely sent many small messages at once. Each entry costs its frame's length
//! plus its slot, and stays counted until the socket's task reports it *written*, so a
//! client whose socket has stopped taking data keeps a full queue. Two marks apply
//! (see the `flow` module for the policy):
//!
//! - over the **room mark**, a push tells its publisher the queue is lagging, and a
//!   publisher that can wait does until the queue has room again (`room`);
//! - over the **budget**, the client counts as too slow: the push is refused and the
//!   socket's task disconnects it.
//!
//! This is a small hand-written queue rather than `tokio::sync::mpsc` for these reasons:
//! it bounds bytes and keeps them counted until written, it tells a publisher when it
//! should wait and wakes it when it may go on, and the consumer takes the whole backlog
//! in one lock instead of one `try_recv` per frame. An idle socket's queue holds no
//! allocation at all.
//!
//! Frames and the rare instructions for the socket's task (shut a channel down, refuse
//! a join, the node is stopping) are kept apart, each instruction remembering where it
//! fell among the frames: draining then moves the frames in one go straight into the
//! socket's write batch, and the task still applies every instruction in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crier_protocol::Vsn;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::flow::Ledger;
use crate::frame::{Frame, SLOT_BYTES};

/// Identifies one socket for the life of the node.
pub(crate) type ConnId = u64;

/// Bytes written to one socket so far, counted by the connection under its WebSocket
/// (`session::io::Metered`): the slow-consumer timeout runs only while this stands
/// still, so a client that reads slowly is not taken for one that stopped.
#[derive(Debug, Default)]
pub(crate) struct WriteProgress(AtomicU64);

impl WriteProgress {
    /// Counts `bytes` more written.
    pub(crate) fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes written so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Slot memory is reported to the node's [`Ledger`] in steps of this many bytes, so that
/// a queue holding a few frames (nearly all of them, nearly always) never touches the
/// node-wide counter. What goes unreported is under this much per socket.
const SLOT_CHUNK: usize = 4096;

/// What a socket's task receives from the rest of the node.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An encoded frame to write as is.
    Frame(Frame),
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
        reply: Frame,
    },
    /// The node is shutting down: tell every channel, then close the socket.
    Shutdown,
}

impl Outbound {
    fn cost(&self) -> usize {
        match self {
            Outbound::Frame(frame) => frame.cost(),
            Outbound::ShutdownChannel { .. } | Outbound::Shutdown => SLOT_BYTES,
            Outbound::RefuseJoin { reply, .. } => reply.cost(),
        }
    }
}

/// A push that was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The queue is within its room mark.
    Room,
    /// The queue is over its room mark: a publisher that can wait should, with
    /// [`Ledger::wait_for_room`].
    Lagging,
}

/// Why a push was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// This push went over the budget: the client is too slow and will be disconnected.
    /// Returned once per socket, so the caller can log and count it once.
    Overflow,
    /// The queue had already overflowed or the socket is gone.
    Closed,
}

/// Where a queue stands for a publisher deciding whether to wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// Within the room mark.
    Free,
    /// Over it: wait for a wakeup from the ledger, or look again at `recheck_at` (when a
    /// stalled socket will have run out of patience).
    Full {
        /// When to look again without a wakeup.
        recheck_at: Instant,
    },
    /// Over it, but its socket has taken no data for longer than the patience, or it is
    /// closed: waiting would only hold the publisher (and everyone else) back.
    NotWaitedFor,
}

/// What a drain moved into the write batch, to hand back to [`OutboundQueue::written`]
/// once it is written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unwritten {
    bytes: usize,
    slots: usize,
}

impl Unwritten {
    /// Adds another drain's share.
    pub(crate) fn add(&mut self, other: Unwritten) {
        self.bytes += other.bytes;
        self.slots += other.slots;
    }
}

#[derive(Debug, Default)]
struct State {
    frames: Vec<Frame>,
    /// Everything else queued, each with the number of frames queued before it.
    instructions: Vec<(usize, Outbound)>,
    /// Cost of everything queued, or drained and not yet written.
    bytes: usize,
    /// Slot bytes of the entries drained and not yet written.
    in_flight_slots: usize,
    /// How many slot bytes the node's ledger has been told about (whole chunks).
    reported: usize,
    /// Since when the socket's current write has been waiting for the socket.
    stalled_since: Option<Instant>,
    /// A publisher is waiting for this queue to have room.
    waited_on: bool,
    closed: bool,
    /// Set with `closed` when a push went over the budget.
    overflowed: bool,
}

impl State {
    /// The memory the queue's bookkeeping takes: the frame buffer's whole capacity (a
    /// burst's buffer is kept while bursts go on), the instructions, and the entries
    /// drained and not yet written.
    fn slot_bytes(&self) -> usize {
        (self.frames.capacity() + self.instructions.len()) * SLOT_BYTES + self.in_flight_slots
    }

    /// Tells the ledger about the slot memory held, in whole chunks.
    fn settle_slots(&mut self, ledger: &Ledger) {
        let due = self.slot_bytes() / SLOT_CHUNK * SLOT_CHUNK;
        if due > self.reported {
            ledger.add(due - self.reported);
        } else if due < self.reported {
            ledger.release(self.reported - due);
        }
        self.reported = due;
    }

    fn clear(&mut self, ledger: &Ledger) {
        self.frames = Vec::new();
        self.instructions = Vec::new();
        self.bytes = 0;
        self.in_flight_slots = 0;
        self.settle_slots(ledger);
    }
}

/// What one drain found besides the frames it moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// Everything queued was taken.
    Open,
    /// A push went over the budget: the client is too slow and must be disconnected.
    Overflowed,
}

/// A socket's byte-bounded queue of outbound frames.
#[derive(Debug)]
pub(crate) struct OutboundQueue {
    state: Mutex<State>,
    ready: Notify,
    /// Wakes every task waiting for an overflow (`overflowed`). A `Notify` and the
    /// state's flag rather than a cancellation token, which would allocate for every
    /// socket what only a stalled write ever waits on.
    slow: Notify,
    room_mark: usize,
    budget: usize,
    ledger: Arc<Ledger>,
    progress: Arc<WriteProgress>,
}

impl OutboundQueue {
    /// A queue whose publishers wait over `room_mark` bytes and whose client is too slow
    /// over `budget` bytes; `progress` counts what its socket has written.
    pub(crate) fn new(
        room_mark: usize,
        budget: usize,
        ledger: Arc<Ledger>,
        progress: Arc<WriteProgress>,
    ) -> Self {
        OutboundQueue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            slow: Notify::new(),
            room_mark,
            budget,
            ledger,
            progress,
        }
    }

    /// Bytes its socket has written so far.
    pub(crate) fn bytes_written(&self) -> u64 {
        self.progress.get()
    }

    /// Queues `item` within the budget.
    pub(crate) fn push(&self, item: Outbound) -> Result<Pushed, PushError> {
        self.push_inner(item, true)
    }

    /// Queues `item` regardless of the budget: for the few frames a socket's own task
    /// sends itself (a `presence_state` for its own channel), which must not be the
    /// reason it counts as slow.
    pub(crate) fn push_own(&self, item: Outbound) {
        let _ = self.push_inner(item, false);
    }

    fn push_inner(&self, item: Outbound, bounded: bool) -> Result<Pushed, PushError> {
        let cost = item.cost();
        let lagging = {
            let mut state = self.state.lock();
            if state.closed {
                return Err(PushError::Closed);
            }
            if bounded && state.bytes + cost > self.budget {
                state.closed = true;
                state.overflowed = true;
                state.clear(&self.ledger);
                drop(state);
                // The socket's task learns of the overflow from its next drain (it
                // waits on `ready`, not on `slow`, to keep its loop cheap); `slow` is
                // for a task stuck in a write.
                self.slow.notify_waiters();
                self.ready.notify_one();
                return Err(PushError::Overflow);
            }
            state.bytes += cost;
            match item {
                Outbound::Frame(frame) => state.frames.push(frame),
                instruction => {
                    let position = state.frames.len();
                    state.instructions.push((position, instruction));
                }
            }
            if state.slot_bytes() >= state.reported + SLOT_CHUNK {
                state.settle_slots(&self.ledger);
            }
            state.bytes > self.room_mark
        };
        self.ready.notify_one();
        Ok(if lagging {
            Pushed::Lagging
        } else {
            Pushed::Room
        })
    }

    /// Whether a publisher should wait for this queue, given how long it waits for a
    /// socket whose write is waiting. Marks the queue as waited on, so that the write that
    /// brings it under the room mark wakes the publisher.
    ///
    /// A socket whose current write has waited for longer than the patience is not
    /// waited for until that write completes. From the outside, a client that stopped
    /// reading and one that reads more slowly than the burst look the same for a while
    /// (the kernel wakes a writer only once much of its buffer has drained), and waiting
    /// longer would hold every other subscriber of the topic back. Such a client takes
    /// the burst at its own pace from its queue, and is cut off only if the burst does
    /// not fit in its budget.
    pub(crate) fn room(&self, patience: Duration) -> Room {
        let mut state = self.state.lock();
        if state.closed {
            return Room::NotWaitedFor;
        }
        if state.bytes <= self.room_mark {
            return Room::Free;
        }
        let now = Instant::now();
        let recheck_at = match state.stalled_since {
            Some(since) if now.duration_since(since) >= patience => return Room::NotWaitedFor,
            Some(since) => since + patience,
            None => now + patience,
        };
        state.waited_on = true;
        Room::Full { recheck_at }
    }

    /// Moves every queued frame to the end of `frames`, and every other item to
    /// `instructions` with the index in `frames` it must be applied before (so
    /// `frames.len()` when it came after the last frame). What was moved stays counted
    /// until it is reported [`written`](Self::written); `unwritten` accumulates it.
    pub(crate) fn drain_into(
        &self,
        frames: &mut Vec<Frame>,
        instructions: &mut Vec<(usize, Outbound)>,
        unwritten: &mut Unwritten,
    ) -> Drained {
        let mut state = self.state.lock();
        if state.overflowed {
            return Drained::Overflowed;
        }
        let base = frames.len();
        let drained = state.frames.len();
        let entries = drained + state.instructions.len();
        frames.append(&mut state.frames);
        if !state.instructions.is_empty() {
            instructions.extend(
                state
                    .instructions
                    .drain(..)
                    .map(|(position, item)| (base + position, item)),
            );
        }
        // Every queued entry left, so everything counted beyond what earlier drains
        // left unwritten is this drain's.
        let slots = entries * SLOT_BYTES;
        let bytes = state.bytes - unwritten.bytes.min(state.bytes);
        unwritten.add(Unwritten { bytes, slots });
        // Give a burst's memory back once the burst is over (most sockets are idle most
        // of the time), but keep it while batches still need it: freeing it after every
        // drain made a busy socket reallocate its queue on every burst.
        let capacity = state.frames.capacity();
        if capacity > 64 && capacity > 4 * drained {
            state.frames = Vec::new();
        }
        state.in_flight_slots += slots;
        state.settle_slots(&self.ledger);
        Drained::Open
    }

    /// The socket's current write is waiting for the socket to take data.
    pub(crate) fn write_stalled(&self) {
        let mut state = self.state.lock();
        state.stalled_since.get_or_insert_with(Instant::now);
    }

    /// A write finished, and with it what earlier drains moved out (possibly nothing):
    /// that no longer counts, the socket is no longer stalled, and a publisher waiting
    /// for room is woken once there is some.
    pub(crate) fn written(&self, unwritten: Unwritten) {
        let wake = {
            let mut state = self.state.lock();
            state.stalled_since = None;
            if state.closed {
                return;
            }
            state.bytes = state.bytes.saturating_sub(unwritten.bytes);
            state.in_flight_slots = state.in_flight_slots.saturating_sub(unwritten.slots);
            state.settle_slots(&self.ledger);
            let wake = state.waited_on && state.bytes <= self.room_mark;
            if wake {
                state.waited_on = false;
            }
            wake
        };
        if wake {
            self.ledger.room_freed();
        }
    }

    /// Resolves when something was queued, or the queue overflowed, since the last call
    /// (no wakeup is lost: a push before the wait leaves a permit behind).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Resolves once the queue has overflowed (at once if it already has).
    pub(crate) async fn overflowed(&self) {
        let notified = self.slow.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: an overflow after the read still wakes it.
        notified.as_mut().enable();
        if self.has_overflowed() {
            return;
        }
        notified.await;
    }

    /// Whether the queue has overflowed.
    pub(crate) fn has_overflowed(&self) -> bool {
        self.state.lock().overflowed
    }

    /// Stops accepting frames (the socket is closing) and gives their memory back.
    pub(crate) fn close(&self) {
        let wake = {
            let mut state = self.state.lock();
            state.closed = true;
            state.clear(&self.ledger);
            std::mem::take(&mut state.waited_on)
        };
        if wake {
            self.ledger.room_freed();
        }
    }
}

impl Drop for OutboundQueue {
    fn drop(&mut self) {
        self.state.get_mut().clear(&self.ledger);
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
    pub(crate) fn new(id: ConnId, vsn: Vsn, queue: OutboundQueue) -> Arc<Self> {
        Arc::new(ConnHandle { id, vsn, queue })
    }

    /// A handle with a roomy queue and a ledger of its own, for unit tests.
    #[cfg(test)]
    pub(crate) fn detached(id: ConnId, vsn: Vsn) -> Arc<Self> {
        let queue = OutboundQueue::new(1 << 20, 1 << 30, Ledger::new(usize::MAX), Arc::default());
        ConnHandle::new(id, vsn, queue)
    }

    /// The node's ledger, which shared frames for this socket are counted in.
    pub(crate) fn ledger(&self) -> &Arc<Ledger> {
        &self.queue.ledger
    }
}

#[cfg(test)]
mod tests;
