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

mod channel;
mod handlers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use crier_protocol::codes::{CloseCode, SERVER_REQUESTED_DISCONNECT};
use crier_protocol::events::{EXTENSION_SYSTEM, PHX_CLOSE, PHX_REPLY, SYSTEM};
use crier_protocol::serializer::{Envelope, FrameRef};
use crier_protocol::{Message, Vsn, serializer};
use futures_util::SinkExt;
use serde::Serialize;
use serde_json::json;
use tokio::time::{Instant, sleep};

pub(crate) use channel::Channel;
pub(crate) use handlers::json_broadcast_body;

use crate::auth::{Claims, unix_now};
use crate::fanout::encode_one;
use crate::hooks::ConnectionInfo;
use crate::limits::ConnectionPermit;
use crate::node::Node;
use crate::outbound::{ConnHandle, Drained, Outbound, frame_len};

/// What the HTTP handler established before upgrading.
#[derive(Debug)]
pub(crate) struct ConnectParams {
    pub(crate) vsn: Vsn,
    pub(crate) token: String,
    pub(crate) claims: Claims,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) permit: ConnectionPermit,
}

/// Runs a socket until it closes, then leaves all its channels.
pub(crate) async fn run(node: Node, ws: WebSocket, params: ConnectParams) {
    // Counted by the node's tracker, so a graceful shutdown waits for this socket.
    let _task = node.shared.tasks.token();
    let mut session = Session::new(node, params);
    session.node.shared.hooks.connected(&session.info);
    tracing::debug!(conn = session.conn.id, role = %session.info.role, vsn = %session.vsn, "connected");

    let end = session.serve(ws).await;

    tracing::debug!(conn = session.conn.id, ?end, "disconnected");
    let (node, info) = (session.node.clone(), session.info.clone());
    // Dropping the session leaves its channels and releases its connection slot, so
    // both have happened before anyone hears the socket is gone.
    drop(session);
    node.shared.hooks.disconnected(&info);
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
    connect_token: String,
    channels: HashMap<String, Channel>,
    /// Frames to write at the end of this iteration.
    out: Vec<WsMessage>,
    /// Scratch space for the instructions a drain of the outbound queue finds, with
    /// their positions in `out` (kept to reuse its allocation).
    instructions: Vec<(usize, Outbound)>,
    /// Set when the socket must be closed after this iteration's writes.
    closing: Option<(CloseCode, &'static str)>,
    /// A ping arrived; its automatic pong needs a flush.
    needs_flush: bool,
    info: ConnectionInfo,
    _permit: ConnectionPermit,
}

impl Session {
    fn new(node: Node, params: ConnectParams) -> Self {
        let socket = &node.shared.config.socket;
        let limits = &node.shared.config.limits;
        // The queue must hold at least a couple of the largest frames a client may be sent.
        let queue_bytes = socket.outbound_queue_bytes.max(2 * limits.max_frame_bytes);
        let conn = ConnHandle::new(
            node.next_conn_id(),
            params.vsn,
            socket.outbound_queue_messages,
            queue_bytes,
        );
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
            connect_token: params.token,
            channels: HashMap::new(),
            out: Vec::new(),
            instructions: Vec::new(),
            closing: None,
            needs_flush: false,
            info,
            _permit: params.permit,
        }
    }

    async fn serve(&mut self, mut ws: WebSocket) -> End {
        let idle_timeout = self.node.shared.config.socket.idle_timeout;
        // Timers are made once and re-armed only when their deadline moves: creating
        // them per iteration would register a timer (and wake the runtime's driver) per
        // frame.
        let mut last_inbound = Instant::now();
        let idle = sleep(idle_timeout);
        let expiry = sleep(idle_timeout);
        tokio::pin!(idle, expiry);
        let mut armed_expiry: Option<Instant> = None;
        let conn = Arc::clone(&self.conn);
        // `Node::shutdown` marks the node before it queues `Shutdown` to the sockets it
        // knows; this one registered itself in `Session::new`, so it is told one way or
        // the other. Queued rather than acted on here, so the first iteration of the
        // loop writes the close at once.
        if self.node.is_shutting_down() {
            self.conn.queue.push_own(Outbound::Shutdown);
        }
        loop {
            let next_expiry = self.channels.values().map(|c| c.expires_at).min();
            if next_expiry != armed_expiry {
                if let Some(at) = next_expiry {
                    expiry.as_mut().reset(at);
                }
                armed_expiry = next_expiry;
            }
            tokio::select! {
                frame = ws.recv() => match frame {
                    Some(Ok(frame)) => {
                        last_inbound = Instant::now();
                        self.on_frame(frame);
                    }
                    Some(Err(err)) => match read_error_close(&err) {
                        Some(close) => self.closing = Some(close),
                        None => return End::ClientGone,
                    },
                    None => return End::ClientGone,
                },
                () = conn.queue.ready() => {
                    if self.drain_queue() == Drained::Overflowed {
                        return self.end_slow(&mut ws, "outbound queue overflowed").await;
                    }
                }
                () = &mut idle => {
                    let deadline = last_inbound + idle_timeout;
                    if Instant::now() >= deadline {
                        self.closing = Some((CloseCode::GoingAway, "idle timeout"));
                    } else {
                        idle.as_mut().reset(deadline);
                    }
                }
                () = &mut expiry, if armed_expiry.is_some() => {
                    armed_expiry = None;
                    self.expire_tokens();
                }
            }
            if let Err(end) = self.write(&mut ws).await {
                return match end {
                    End::Slow(why) => self.end_slow(&mut ws, why).await,
                    other => other,
                };
            }
            if let Some((code, reason)) = self.closing.take() {
                self.send_close(&mut ws, code, reason).await;
                return End::Closed(code.as_u16());
            }
        }
    }

    /// Sends a close frame, giving up after the write timeout (a client that does not
    /// read will not read this either).
    async fn send_close(&self, ws: &mut WebSocket, code: CloseCode, reason: &'static str) {
        let frame = CloseFrame {
            code: code.as_u16(),
            reason: reason.into(),
        };
        let write_timeout = self.node.shared.config.socket.write_timeout;
        let _ = tokio::time::timeout(write_timeout, ws.send(WsMessage::Close(Some(frame)))).await;
    }

    /// Writes everything this iteration produced, then flushes once. A write that makes
    /// no progress within the write timeout, or a queue overflow meanwhile, ends the
    /// session: the client is not reading.
    async fn write(&mut self, ws: &mut WebSocket) -> Result<(), End> {
        if self.out.is_empty() && !self.needs_flush {
            return Ok(());
        }
        self.needs_flush = false;
        let mut frames = std::mem::take(&mut self.out);
        let count = frames.len() as u64;
        let bytes: usize = frames.iter().map(frame_len).sum();
        let result = {
            let written = async {
                for frame in frames.drain(..) {
                    ws.feed(frame).await?;
                }
                ws.flush().await
            };
            tokio::pin!(written);
            // Nearly every write completes at once (the socket buffer has room); the stall
            // timer is armed only for one that does not, which saves a timer registration
            // and a runtime wakeup per flush.
            let first_poll =
                std::future::poll_fn(|cx| Poll::Ready(written.as_mut().poll(cx))).await;
            match first_poll {
                Poll::Ready(result) => result.map_err(|_| End::ClientGone),
                Poll::Pending => {
                    let write_timeout = self.node.shared.config.socket.write_timeout;
                    tokio::select! {
                        result = &mut written => result.map_err(|_| End::ClientGone),
                        () = sleep(write_timeout) => {
                            self.node.shared.metrics.slow_consumer_disconnects.inc();
                            Err(End::Slow("write stalled"))
                        }
                        () = self.conn.queue.slow().cancelled() => Err(End::Slow("outbound queue overflowed")),
                    }
                }
            }
        };
        if frames.capacity() <= 256 {
            self.out = frames;
        }
        let metrics = &self.node.shared.metrics;
        metrics.messages_out.inc_by(count);
        metrics.bytes_out.inc_by(bytes as u64);
        result
    }

    /// Drops a client that reads too slowly: one log line, a 1013 close if it still fits.
    async fn end_slow(&self, ws: &mut WebSocket, why: &'static str) -> End {
        tracing::warn!(conn = self.conn.id, role = %self.info.role, why, "disconnecting slow consumer");
        self.conn.queue.close();
        self.send_close(ws, CloseCode::TryAgainLater, "slow consumer")
            .await;
        End::Slow(why)
    }

    fn on_frame(&mut self, frame: WsMessage) {
        let decoded = match &frame {
            WsMessage::Text(text) => serializer::decode_from_client(self.vsn, FrameRef::Text(text)),
            WsMessage::Binary(bytes) => {
                serializer::decode_from_client(self.vsn, FrameRef::Binary(bytes))
            }
            WsMessage::Ping(_) => {
                self.needs_flush = true;
                return;
            }
            WsMessage::Pong(_) | WsMessage::Close(_) => return,
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
        let drained = self.conn.queue.drain_into(&mut self.out, &mut instructions);
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
        let now_unix = unix_now();
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
    fn release(&mut self, channel: Channel) {
        let shared = &self.node.shared;
        if let (Some(changes), Some(id)) = (&shared.changes, channel.postgres_changes) {
            changes.unsubscribe(id);
        }
        let leave_recipients = channel.topic.remove(self.conn.id);
        shared.counters.presence_events.add(leave_recipients);
        shared.registry.remove_if_empty(&channel.topic);
        shared.metrics.channels.dec();
    }

    /// Queues a reply to a push: `[join_ref, ref, topic, "phx_reply", {status, response}]`.
    fn reply(&mut self, to: &ReplyTo, status: &str, response: &impl Serialize) {
        #[derive(Serialize)]
        struct Reply<'a, R: Serialize> {
            status: &'a str,
            response: &'a R,
        }
        let envelope = Envelope {
            join_ref: to.join_ref.as_deref(),
            msg_ref: to.msg_ref.as_deref(),
            topic: &to.topic,
            event: PHX_REPLY,
        };
        self.out
            .push(encode_one(self.vsn, &envelope, &Reply { status, response }));
    }

    /// Queues a channel push: `[join_ref, null, topic, event, payload]`.
    fn push(&mut self, join_ref: Option<&str>, topic: &str, event: &str, payload: &impl Serialize) {
        let envelope = Envelope {
            join_ref,
            msg_ref: None,
            topic,
            event,
        };
        self.out.push(encode_one(self.vsn, &envelope, payload));
    }

    /// Queues `[join_ref, join_ref, topic, "phx_close", {}]`, as Phoenix sends it.
    fn push_close(&mut self, join_ref: Option<&str>, topic: &str) {
        let envelope = Envelope {
            join_ref,
            msg_ref: join_ref,
            topic,
            event: PHX_CLOSE,
        };
        self.out.push(encode_one(self.vsn, &envelope, &json!({})));
    }
}

/// Cleanup lives in `Drop` so it runs however the task ends, a panic included: a
/// session that left no trace in the registry cannot leak subscribers or presences.
impl Drop for Session {
    fn drop(&mut self) {
        self.conn.queue.close();
        self.node.shared.sockets.remove(&self.conn.id);
        let channels: Vec<Channel> = self.channels.drain().map(|(_, c)| c).collect();
        for channel in channels {
            self.release(channel);
        }
        self.node.shared.metrics.connections.dec();
    }
}

/// Where a reply goes: the `join_ref`, `ref` and topic of the push it answers.
#[derive(Debug, Clone)]
pub(crate) struct ReplyTo {
    join_ref: Option<String>,
    msg_ref: Option<String>,
    topic: String,
}

impl ReplyTo {
    fn of(message: &Message) -> Self {
        ReplyTo {
            join_ref: message.join_ref.clone(),
            msg_ref: message.msg_ref.clone(),
            topic: message.topic.clone(),
        }
    }
}

/// The close frame to answer a read error with, when the socket can still take one.
fn read_error_close(err: &axum::Error) -> Option<(CloseCode, &'static str)> {
    use tungstenite::error::{CapacityError, Error as WsError};
    let inner = std::error::Error::source(err)?;
    match inner.downcast_ref::<WsError>()? {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Some((CloseCode::TooBig, "frame too large"))
        }
        WsError::Utf8(_) => Some((CloseCode::InvalidPayload, "invalid UTF-8 in a text frame")),
        WsError::Protocol(_) => Some((CloseCode::ProtocolError, "WebSocket protocol error")),
        _ => None,
    }
}
