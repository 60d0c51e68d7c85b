//! One task per WebSocket: the session.
//!
//! The task owns the socket and every channel joined on it, so channel state needs no
//! locks. Its loop waits on five things at once: a frame from the client, frames queued
//! by fan-out, the idle timer, the earliest token expiry, and the node's shutdown signal.
//! Whatever an iteration produces (replies, queued frames) is written in one batch and
//! flushed once, so a burst of fan-out costs one `write` per socket, not one per frame.

mod channel;
mod handlers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use crier_protocol::codes::{CloseCode, SERVER_REQUESTED_DISCONNECT};
use crier_protocol::events::{EXTENSION_SYSTEM, PHX_CLOSE, PHX_REPLY, SYSTEM};
use crier_protocol::serializer::{Envelope, FrameRef};
use crier_protocol::{Message, Vsn, serializer};
use futures_util::SinkExt;
use serde::Serialize;
use serde_json::json;
use tokio::time::{Instant, sleep, sleep_until};

pub(crate) use channel::Channel;
pub(crate) use handlers::json_broadcast_body;

use crate::auth::{Claims, unix_now};
use crate::fanout::encode_one;
use crate::hooks::ConnectionInfo;
use crate::limits::ConnectionPermit;
use crate::node::Node;
use crate::outbound::{ConnHandle, Outbound, frame_len};

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
    let metrics = &session.node.shared.metrics;
    metrics.connections.inc();
    session.node.shared.hooks.connected(&session.info);
    tracing::debug!(conn = session.conn.id, role = %session.info.role, vsn = %session.vsn, "connected");

    let end = session.serve(ws).await;

    tracing::debug!(conn = session.conn.id, ?end, "disconnected");
    session.leave_all();
    let node = session.node.clone();
    node.shared.metrics.connections.dec();
    node.shared.hooks.disconnected(&session.info);
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client closed or the connection dropped.
    ClientGone,
    /// The server closed it (idle, shutdown, limit, bad frame) with this close code.
    Closed(#[expect(dead_code, reason = "read through Debug in the disconnect log")] u16),
    /// The client was too slow to read what it was sent.
    Slow,
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
    /// Scratch space for draining the outbound queue (kept to reuse its allocation).
    inbox: Vec<Outbound>,
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
        Session {
            node,
            conn,
            vsn: params.vsn,
            connect_token: params.token,
            channels: HashMap::new(),
            out: Vec::new(),
            inbox: Vec::new(),
            closing: None,
            needs_flush: false,
            info,
            _permit: params.permit,
        }
    }

    async fn serve(&mut self, mut ws: WebSocket) -> End {
        let idle_timeout = self.node.shared.config.socket.idle_timeout;
        let idle = sleep(idle_timeout);
        tokio::pin!(idle);
        let shutdown = self.node.shared.shutdown.clone();
        let conn = Arc::clone(&self.conn);
        loop {
            let expiry = self.channels.values().map(|c| c.expires_at).min();
            tokio::select! {
                () = shutdown.cancelled() => self.announce_shutdown(),
                () = conn.queue.slow().cancelled() => return self.end_slow("outbound queue overflowed"),
                frame = ws.recv() => match frame {
                    Some(Ok(frame)) => {
                        idle.as_mut().reset(Instant::now() + idle_timeout);
                        self.on_frame(frame);
                    }
                    Some(Err(err)) => match read_error_close(&err) {
                        Some(close) => self.closing = Some(close),
                        None => return End::ClientGone,
                    },
                    None => return End::ClientGone,
                },
                () = conn.queue.ready() => self.drain_queue(),
                () = &mut idle => self.closing = Some((CloseCode::GoingAway, "idle timeout")),
                () = wait_until(expiry) => self.expire_tokens(),
            }
            if let Err(end) = self.write(&mut ws).await {
                return end;
            }
            if let Some((code, reason)) = self.closing.take() {
                let frame = CloseFrame {
                    code: code.as_u16(),
                    reason: reason.into(),
                };
                let write_timeout = self.node.shared.config.socket.write_timeout;
                let _ = tokio::time::timeout(write_timeout, ws.send(WsMessage::Close(Some(frame))))
                    .await;
                return End::Closed(code.as_u16());
            }
        }
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
        let write_timeout = self.node.shared.config.socket.write_timeout;
        let slow = self.conn.queue.slow().clone();
        let written = async {
            for frame in frames.drain(..) {
                ws.feed(frame).await?;
            }
            ws.flush().await
        };
        let result = tokio::select! {
            result = written => result.map_err(|_| End::ClientGone),
            () = sleep(write_timeout) => {
                self.node.shared.metrics.slow_consumer_disconnects.inc();
                Err(self.end_slow("write stalled"))
            }
            () = slow.cancelled() => Err(self.end_slow("outbound queue overflowed")),
        };
        if frames.capacity() <= 256 {
            self.out = frames;
        }
        let metrics = &self.node.shared.metrics;
        metrics.messages_out.inc_by(count);
        metrics.bytes_out.inc_by(bytes as u64);
        result
    }

    fn end_slow(&self, why: &str) -> End {
        tracing::warn!(conn = self.conn.id, why, "disconnecting slow consumer");
        End::Slow
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

    fn drain_queue(&mut self) {
        let mut items = std::mem::take(&mut self.inbox);
        self.conn.queue.drain_into(&mut items);
        for item in items.drain(..) {
            match item {
                Outbound::Frame(frame) => self.out.push(frame),
                Outbound::ShutdownChannel { topic, message } => {
                    self.shut_down_channel(&topic, message)
                }
            }
        }
        self.inbox = items;
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
        let leave_recipients = channel.topic.remove(self.conn.id);
        shared.counters.presence_events.add(leave_recipients);
        shared.registry.remove_if_empty(&channel.topic);
        shared.metrics.channels.dec();
    }

    fn leave_all(&mut self) {
        self.conn.queue.close();
        let channels: Vec<Channel> = self.channels.drain().map(|(_, c)| c).collect();
        for channel in channels {
            self.release(channel);
        }
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

/// Sleeps until `deadline`, or forever when there is none.
async fn wait_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
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
