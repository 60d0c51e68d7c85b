//! One task per WebSocket: the session.
//!
//! The task owns the socket and every channel joined on it, so channel state needs no
//! locks. Its loop waits on four things at once: a frame from the client, its outbound
//! queue, the idle timer, and the earliest token expiry. Everything else reaches it
//! through the queue, in order with the frames: channel shutdowns, refused joins, the
//! node's shutdown, and the queue's own overflow. Keeping the loop to these branches
//! matters because every branch is polled on every wakeup, once per fan-out batch.
//! Whatever an iteration produces (replies, queued frames) is written in one batch and
//! flushed once, so a burst of fan-out costs one `write` per socket, not one per frame.
//!
//! A broadcast that leaves a subscriber's queue over its room mark pauses the loop's
//! reads until that subscriber has room (the `flow` module): the client's next frames
//! wait in the kernel, and TCP slows the client down. The loop goes on draining and
//! writing its own queue meanwhile, so two sockets that publish to each other never
//! wait on each other.

mod channel;
mod handlers;
mod inspector;
mod io;
mod join;
mod private;
mod reply;
mod resume;

pub(crate) use resume::shared_entries;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crier_protocol::codes::{CloseCode, SERVER_REQUESTED_DISCONNECT};
use crier_protocol::events::{BROADCAST, EXTENSION_SYSTEM, SYSTEM};
use crier_protocol::serializer::FrameRef;
use crier_protocol::{Vsn, serializer};
use futures_util::{FutureExt, StreamExt};
use serde_json::json;
use tokio::time::{Instant, sleep_until};
use tungstenite::Message as WsMessage;

pub(crate) use channel::Channel;
pub(crate) use io::{Metered, Socket};
pub(crate) use reply::ReplyAddress;

use crate::auth::Claims;
use crate::frame::Frame;
use crate::hooks::ConnectionInfo;
use crate::limits::ConnectionPermit;
use crate::node::Node;
use crate::outbound::{ConnHandle, Drained, Outbound, OutboundQueue, Unwritten, WriteProgress};
use io::{WriteError, Written};
use private::{Checks, PendingJoin, has_checks, next_check};

/// Frames' room kept in a session's write buffer between batches.
const KEPT_FRAMES: usize = 4;
/// The most frames' room a burst's write buffer keeps while bursts go on.
const MAX_KEPT_FRAMES: usize = 256;

/// Reads stay paused until this resolves (see the module doc).
type Paused = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the HTTP handler established before upgrading.
#[derive(Debug)]
pub(crate) struct ConnectParams {
    pub(crate) vsn: Vsn,
    pub(crate) token: String,
    pub(crate) claims: Claims,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) permit: ConnectionPermit,
    /// Counted by the socket's connection (`Metered`) as it writes.
    pub(crate) progress: Arc<WriteProgress>,
    /// The connect request's `x-*` headers as a JSON object, for private channels'
    /// policies (`request.headers`).
    pub(crate) headers: Arc<str>,
}

/// Runs a socket until it closes, then leaves all its channels.
///
/// The session is made before the future is: an `async fn` would keep its arguments
/// (the socket, the connect parameters) in the future beside the session and the socket
/// it moved them into, and this future is what every idle connection costs.
pub(crate) fn run(
    node: Node,
    mut ws: Socket,
    params: ConnectParams,
) -> impl Future<Output = ()> + Send + 'static {
    // Counted by the node's tracker, so a graceful shutdown waits for this socket.
    let task = node.shared.tasks.token();
    let mut session = Session::new(node, params);
    session.node.shared.hooks.connected(&session.info);
    tracing::debug!(conn = session.conn.id, role = %session.info.role, vsn = %session.vsn, "connected");
    async move {
        let _task = task;
        let end = session.serve(&mut ws).await;
        tracing::debug!(conn = session.conn.id, ?end, "disconnected");
        let discard = session.discard;
        let (node, info) = (session.node.clone(), session.info.clone());
        // Dropping the session leaves its channels and releases its connection slot, so
        // both have happened before anyone hears the socket is gone.
        drop(session);
        node.shared.hooks.disconnected(&info);
        if discard > 0 {
            // Boxed: rare, and its buffers and timers would otherwise widen every
            // session's future.
            Box::pin(io::discard_incoming(&mut ws, discard)).await;
        }
    }
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client closed or the connection dropped.
    ClientGone,
    /// The server closed it (idle, shutdown, limit, bad frame) with this close code.
    Closed(#[expect(dead_code, reason = "read through Debug in the disconnect log")] u16),
    /// The client was too slow to read what it was sent.
    Slow(&'static str),
}

struct Session {
    node: Node,
    conn: Arc<ConnHandle>,
    vsn: Vsn,
    /// The connect token; channels joined without their own token use it.
    connect_token: Arc<str>,
    /// Boxed: a map sizes its table for several entries, and most sockets join one or
    /// two channels.
    channels: HashMap<String, Box<Channel>>,
    /// Frames to write at the end of this iteration.
    out: Vec<Frame>,
    /// Scratch space for the instructions a drain of the outbound queue finds, with
    /// their positions in `out` (kept to reuse its allocation).
    instructions: Vec<(usize, Outbound)>,
    /// What drains moved into `out`, to report to the queue once written.
    unwritten: Unwritten,
    /// Set by a broadcast that left subscribers' queues over their room mark (or the
    /// node's queues over their budget): the queues to wait for before reading on.
    backpressure: Option<Vec<Arc<ConnHandle>>>,
    /// Set when the socket must be closed after this iteration's writes.
    closing: Option<(CloseCode, &'static str)>,
    /// With `closing`, after an oversized frame: the bytes it claimed, to read and drop
    /// once the session is over and before the socket closes.
    discard: u64,
    /// A ping arrived; its automatic pong needs a flush.
    needs_flush: bool,
    info: ConnectionInfo,
    /// See [`ConnectParams::headers`].
    headers: Arc<str>,
    /// Authorization checks in flight (the `private` module). In a mutex only because
    /// the session must be `Sync` and a set of futures is not; it is only ever reached
    /// through `get_mut`, which takes no lock. Made at the first check: most sockets
    /// never have one, and an empty set still allocates.
    checks: std::sync::Mutex<Option<Checks>>,
    /// Private joins waiting for their read check, by topic. Boxed, like the inspector's
    /// state: only some sockets ever have one, and every session carries the field.
    #[expect(
        clippy::box_collection,
        reason = "the box keeps the empty case to one pointer in every session"
    )]
    pending_joins: Option<Box<HashMap<String, PendingJoin>>>,
    /// A write check is in flight: reads wait for it (the `private` module).
    awaiting_write: bool,
    /// Joined to the inspector's channel (the `inspector` module).
    inspecting: Option<Box<inspector::Inspecting>>,
    _permit: ConnectionPermit,
}

impl Session {
    fn new(node: Node, params: ConnectParams) -> Self {
        let flow = &node.shared.config.flow;
        let limits = &node.shared.config.limits;
        // The queue must hold at least a couple of the largest frames a client may be sent.
        let budget = flow.slow_consumer_bytes.max(2 * limits.max_frame_bytes);
        let queue = OutboundQueue::new(
            flow.room_bytes,
            budget,
            Arc::clone(&node.shared.ledger),
            Arc::clone(&params.progress),
        );
        let conn = ConnHandle::new(node.next_conn_id(), params.vsn, queue);
        let info = ConnectionInfo {
            id: conn.id,
            remote_addr: params.remote_addr,
            role: params.claims.role.clone(),
            sub: params.claims.sub.clone(),
            vsn: params.vsn,
        };
        // Paired with the decrement and the removal in `Drop`.
        node.shared.metrics.connections.inc();
        node.shared.sockets.insert(conn.id, Arc::clone(&conn));
        Session {
            node,
            conn,
            vsn: params.vsn,
            connect_token: params.token.into(),
            channels: HashMap::new(),
            out: Vec::new(),
            instructions: Vec::new(),
            unwritten: Unwritten::default(),
            backpressure: None,
            closing: None,
            discard: 0,
            needs_flush: false,
            info,
            headers: params.headers,
            checks: std::sync::Mutex::new(None),
            pending_joins: None,
            awaiting_write: false,
            inspecting: None,
            _permit: params.permit,
        }
    }

    async fn serve(&mut self, ws: &mut Socket) -> End {
        let idle_timeout = self.node.shared.config.socket.idle_timeout;
        // One timer serves both deadlines, the next look at idleness and the earliest
        // token expiry: it is made once and re-armed only when the earlier of the two
        // moves (creating it per iteration would register a timer, and wake the
        // runtime's driver, per frame; a second one would widen every idle socket).
        let mut last_inbound = Instant::now();
        let mut idle_check = last_inbound + idle_timeout;
        let timer = sleep_until(idle_check);
        tokio::pin!(timer);
        let mut armed_at = Some(idle_check);
        let mut paused: Option<Paused> = None;
        let conn = Arc::clone(&self.conn);
        // `Node::shutdown` marks the node before it queues `Shutdown` to the sockets it
        // knows; this one registered itself in `Session::new`, so it is told one way or
        // the other. Queued rather than acted on here, so the first iteration of the
        // loop writes the close at once.
        if self.node.is_shutting_down() {
            self.conn.queue.push_own(Outbound::Shutdown);
        }
        loop {
            let next_expiry = self
                .channels
                .values()
                .map(|c| c.expires_at)
                .chain(self.inspector_expiry())
                .min();
            let wake_at = next_expiry.map_or(idle_check, |at| at.min(idle_check));
            if armed_at != Some(wake_at) {
                timer.as_mut().reset(wake_at);
                armed_at = Some(wake_at);
            }
            // Nothing is awaited inside the branches: what a branch returns would stay
            // in this future, across the await, beside every later one.
            let mut overflowed = false;
            tokio::select! {
                read = ws.next(), if paused.is_none() && !self.awaiting_write => {
                    last_inbound = Instant::now();
                    if let Some(end) = self.on_read(read) {
                        return end;
                    }
                }
                () = until_resumed(&mut paused) => {
                    paused = None;
                    // Not idle: its frames waited in the kernel for us.
                    last_inbound = Instant::now();
                }
                () = conn.queue.ready() => {
                    overflowed = self.drain_queue() == Drained::Overflowed;
                }
                () = &mut timer => {
                    // Elapsed: armed again at the top of the next iteration.
                    armed_at = None;
                    let now = Instant::now();
                    if next_expiry.is_some_and(|at| at <= now) {
                        self.expire_tokens();
                    }
                    if idle_check <= now {
                        let deadline = last_inbound + idle_timeout;
                        if paused.is_some() {
                            // Not reading is our doing, not the client's silence.
                            idle_check = now + idle_timeout;
                        } else if now >= deadline {
                            idle_check = now + idle_timeout;
                            // A long write may have kept the loop from reading: look at
                            // the socket before calling the client idle.
                            match ws.next().now_or_never() {
                                Some(read) => {
                                    last_inbound = now;
                                    if let Some(end) = self.on_read(read) {
                                        return end;
                                    }
                                }
                                None => self.closing = Some((CloseCode::GoingAway, "idle timeout")),
                            }
                        } else {
                            idle_check = deadline;
                        }
                    }
                }
                Some(done) = next_check(&mut self.checks), if has_checks(&mut self.checks) => {
                    self.on_check(done);
                }
            }
            // The ends are boxed: each happens once, and inline their futures would
            // widen every session's.
            if overflowed {
                return Box::pin(self.end_slow(ws, "outbound queue overflowed")).await;
            }
            if let Err(end) = self.write(ws).await {
                return match end {
                    End::Slow(why) => Box::pin(self.end_slow(ws, why)).await,
                    other => other,
                };
            }
            if let Some((code, reason)) = self.closing.take() {
                // Nothing more will be sent: publishers stop waiting for this socket.
                self.conn.queue.close();
                let limit = self.node.shared.config.flow.slow_consumer_timeout;
                Box::pin(io::send_close(ws, code, reason, limit)).await;
                // An oversized frame's rest is read and dropped after the session is
                // gone (see `run`).
                return End::Closed(code.as_u16());
            }
            if let Some(lagging) = self.backpressure.take() {
                let node = self.node.clone();
                paused = Some(Box::pin(async move {
                    let _ = node.wait_for_room(&lagging).await;
                }));
            }
        }
    }

    /// Writes everything this iteration produced, then flushes once, and tells the queue
    /// what of it is written. A socket that takes no data for the slow-consumer timeout,
    /// or a queue that overflows meanwhile, ends the session: the client is not reading.
    async fn write(&mut self, ws: &mut Socket) -> Result<(), End> {
        if self.out.is_empty() && !self.needs_flush {
            self.report_written();
            return Ok(());
        }
        self.needs_flush = false;
        let mut frames = std::mem::take(&mut self.out);
        let count = frames.len() as u64;
        let bytes: usize = frames.iter().map(Frame::len).sum();
        let stall_limit = self.node.shared.config.flow.slow_consumer_timeout;
        let result = io::write_batch(ws, &mut frames, &self.conn.queue, stall_limit).await;
        // Kept for the next batch. A small batch gives back a burst's room beyond a
        // few frames, which would otherwise stay with every socket that ever had a
        // burst, idle or not; while bursts go on, their buffer is kept (growing it back
        // for every batch cost a reallocation per wakeup).
        if count <= KEPT_FRAMES as u64 || frames.capacity() > MAX_KEPT_FRAMES {
            frames.shrink_to(KEPT_FRAMES);
        }
        self.out = frames;
        let metrics = &self.node.shared.metrics;
        metrics.messages_out.inc_by(count);
        metrics.bytes_out.inc_by(bytes as u64);
        match result {
            Ok(Written::AtOnce) => {
                self.report_written();
                Ok(())
            }
            Ok(Written::AfterWaiting) => {
                // Also clears the stall mark when nothing drained was in it.
                self.conn.queue.written(std::mem::take(&mut self.unwritten));
                Ok(())
            }
            Err(WriteError::Gone) => Err(End::ClientGone),
            Err(WriteError::Stalled) => Err(End::Slow("write stalled")),
            Err(WriteError::Overflowed) => Err(End::Slow("outbound queue overflowed")),
        }
    }

    fn report_written(&mut self) {
        if self.unwritten != Unwritten::default() {
            self.conn.queue.written(std::mem::take(&mut self.unwritten));
        }
    }

    /// Drops a client that reads too slowly: counted here, whichever way it was found
    /// out (its own stalled write, or a publisher's push that overflowed its queue), so
    /// the count is up before anyone hears the socket is gone; one log line; a 1013
    /// close if it still fits.
    async fn end_slow(&self, ws: &mut Socket, why: &'static str) -> End {
        self.node.shared.metrics.slow_consumer_disconnects.inc();
        tracing::warn!(conn = self.conn.id, role = %self.info.role, why, "disconnecting slow consumer");
        self.conn.queue.close();
        let limit = self.node.shared.config.flow.slow_consumer_timeout;
        io::send_close(ws, CloseCode::TryAgainLater, "slow consumer", limit).await;
        End::Slow(why)
    }

    /// What a read of the socket gave; `Some` when the session is over.
    fn on_read(&mut self, read: Option<Result<WsMessage, tungstenite::Error>>) -> Option<End> {
        match read {
            Some(Ok(frame)) => {
                self.on_frame(frame);
                None
            }
            Some(Err(err)) => match io::read_error_close(&err) {
                Some((code, reason, discard)) => {
                    self.closing = Some((code, reason));
                    self.discard = discard;
                    None
                }
                None => Some(End::ClientGone),
            },
            None => Some(End::ClientGone),
        }
    }

    fn on_frame(&mut self, frame: WsMessage) {
        let decoded = match &frame {
            WsMessage::Text(text) => {
                // The hot path: a broadcast, published from the frame's own text.
                if let Some(push) = serializer::peek_text(self.vsn, text)
                    && push.event == BROADCAST
                    && self.broadcast_in_place(&push)
                {
                    self.node.shared.metrics.messages_in.inc();
                    return;
                }
                serializer::decode_from_client(self.vsn, FrameRef::Text(text))
            }
            WsMessage::Binary(bytes) => {
                serializer::decode_from_client(self.vsn, FrameRef::Binary(bytes))
            }
            WsMessage::Ping(_) => {
                // tungstenite queued the pong; it goes out with the next flush.
                self.needs_flush = true;
                return;
            }
            WsMessage::Pong(_) | WsMessage::Close(_) | WsMessage::Frame(_) => return,
        };
        self.node.shared.metrics.messages_in.inc();
        match decoded {
            Ok(message) => self.on_message(message),
            Err(err) => self.on_malformed(err),
        }
    }

    /// Moves what the rest of the node queued into this iteration's writes, applying
    /// each instruction at its place among the frames.
    fn drain_queue(&mut self) -> Drained {
        let start = self.out.len();
        let mut instructions = std::mem::take(&mut self.instructions);
        let drained =
            self.conn
                .queue
                .drain_into(&mut self.out, &mut instructions, &mut self.unwritten);
        if !instructions.is_empty() {
            // Rare: take the drained frames out again and interleave, because what an
            // instruction writes (a channel's `phx_close`) must follow the frames queued
            // before it and precede those queued after.
            let mut frames = self.out.split_off(start).into_iter();
            let mut at = start;
            for (position, item) in instructions.drain(..) {
                self.out
                    .extend(frames.by_ref().take(position.saturating_sub(at)));
                at = at.max(position);
                self.apply(item);
            }
            self.out.extend(frames);
        }
        self.instructions = instructions;
        drained
    }

    /// Carries out one instruction from the outbound queue.
    fn apply(&mut self, item: Outbound) {
        match item {
            Outbound::Frame(frame) => self.out.push(frame),
            Outbound::Shutdown => self.announce_shutdown(),
            Outbound::ShutdownChannel { topic, message } => {
                self.shut_down_channel(&topic, message);
            }
            Outbound::RefuseJoin {
                topic,
                join_ref,
                reply,
            } => {
                let current = self.channels.get(&*topic).map(|c| &c.join_ref);
                if current == Some(&join_ref) {
                    let channel = self.channels.remove(&*topic).expect("just found");
                    self.release(channel);
                    self.node.shared.metrics.join_errors.inc();
                    self.out.push(reply);
                }
            }
        }
    }

    fn expire_tokens(&mut self) {
        let now = Instant::now();
        let expired: Vec<(String, i64)> = self
            .channels
            .iter()
            .filter(|(_, channel)| channel.expires_at <= now)
            .map(|(topic, channel)| (topic.clone(), channel.claims.exp))
            .collect();
        self.expire_inspector(now);
        let now_unix = self.node.shared.clock.unix_now();
        for (topic, exp) in expired {
            let message = crier_protocol::codes::shutdown::token_expired((now_unix - exp).max(0));
            self.shut_down_channel(&topic, &message);
        }
    }

    /// Graceful shutdown: tell every channel, then close with 1012 (clients reconnect).
    fn announce_shutdown(&mut self) {
        if matches!(self.closing, Some((CloseCode::ServiceRestart, _))) {
            return; // already announced
        }
        let notices: Vec<(String, Option<String>, String)> = self
            .channels
            .iter()
            .map(|(topic, ch)| (topic.clone(), ch.join_ref.clone(), ch.name().to_owned()))
            .collect();
        for (topic, join_ref, name) in notices {
            let body = json!({"extension": EXTENSION_SYSTEM, "status": "ok",
                              "message": SERVER_REQUESTED_DISCONNECT, "channel": name});
            self.push(join_ref.as_deref(), &topic, SYSTEM, &body);
        }
        self.closing = Some((CloseCode::ServiceRestart, "server shutting down"));
    }

    /// A channel must stop: a `system` error with `message`, then `phx_close`.
    fn shut_down_channel(&mut self, topic: &str, message: &str) {
        let Some(channel) = self.channels.remove(topic) else {
            return;
        };
        tracing::debug!(conn = self.conn.id, topic, message, "channel shut down");
        let body = json!({"extension": EXTENSION_SYSTEM, "status": "error",
                          "message": message, "channel": channel.name()});
        let join_ref = channel.join_ref.clone();
        self.push(join_ref.as_deref(), topic, SYSTEM, &body);
        self.push_close(join_ref.as_deref(), topic);
        self.release(channel);
    }

    /// Unsubscribes a channel that has already been removed from `self.channels`.
    fn release(&mut self, channel: Box<Channel>) {
        let shared = &self.node.shared;
        if let (Some(changes), Some(id)) = (&shared.changes, channel.postgres_changes) {
            changes.unsubscribe(id);
        }
        let leave_recipients = channel.topic.remove(self.conn.id);
        shared.counters.presence_events.add(leave_recipients);
        shared.registry.remove_if_empty(&channel.topic);
        shared.metrics.channels.dec();
    }
}

/// Cleanup lives in `Drop` so it runs however the task ends, a panic included: a
/// session that left no trace in the registry cannot leak subscribers or presences.
impl Drop for Session {
    fn drop(&mut self) {
        self.conn.queue.close();
        self.node.shared.sockets.remove(&self.conn.id);
        let channels: Vec<Box<Channel>> = self.channels.drain().map(|(_, c)| c).collect();
        for channel in channels {
            self.release(channel);
        }
        if self.inspecting.take().is_some() {
            self.stop_inspecting();
        }
        self.node.shared.metrics.connections.dec();
    }
}

/// Resolves when the pause in `paused` is over; never while there is none.
async fn until_resumed(paused: &mut Option<Paused>) {
    match paused {
        Some(wait) => wait.as_mut().await,
        None => std::future::pending().await,
    }
}
