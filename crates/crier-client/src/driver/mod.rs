//! The driver: the one task that owns the connection and every channel's state.
//!
//! Handles ([`crate::Client`], [`crate::Channel`]) send it [`Command`]s; it answers through
//! oneshots and publishes through watch and broadcast channels. Because one task owns
//! everything, a reconnect, a token refresh and a user's subscribe can never interleave
//! badly: each is one step of one loop. All timing goes through a `DelayQueue` on tokio's
//! clock, so with paused time and the in-memory transport every path is deterministic.
//!
//! - `mod.rs` (this file): the loop, the connection state machine, heartbeats, auth.
//! - `channel.rs`: the subscription state machine of each channel, pushes, the buffer.
//! - `incoming.rs`: the message router: replies by `ref`, channel events by topic and
//!   `join_ref`, postgres changes by binding id.

mod channel;
mod incoming;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crier_protocol::serializer::{self, Direction};
use crier_protocol::{Message, Payload, UserBroadcast, WireFrame};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue::Key;

use self::channel::ChannelState;
use crate::Error;
use crate::auth::{AuthTokenManager, TokenError, TokenFuture, TokenProvider};
use crate::channel::{ChannelOptions, PresenceState};
use crate::client::Options;
use crate::events::{ChannelEvent, ChannelStatus, ConnectionStatus};
use crate::heartbeat::{HeartbeatEvent, HeartbeatMonitor, Tick};
use crate::postgres::PostgresChangesFilter;
use crate::push_buffer::PushBuffer;
use crate::transport::{ConnectFuture, EventStream, TransportEvent};

/// What a handle asks of the driver.
pub(crate) enum Command {
    Connect(oneshot::Sender<Result<(), Error>>),
    Disconnect(oneshot::Sender<()>),
    SetAuth(Option<String>, oneshot::Sender<()>),
    Probe(oneshot::Sender<Result<Duration, Error>>),
    Subscribe(Box<SubscribeRequest>),
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Push(PushRequest),
    /// The last handle of a channel was dropped.
    Release {
        topic: String,
    },
}

/// A push on a channel: a broadcast or a presence event.
pub(crate) struct PushRequest {
    pub(crate) topic: String,
    pub(crate) event: &'static str,
    pub(crate) payload: Outgoing,
    /// Wait for the server's reply (ack'd broadcasts, presence) or resolve once sent.
    pub(crate) wait_reply: bool,
    /// For presence pushes: the payload to track again after a rejoin (`Some(None)` for
    /// an untrack).
    pub(crate) track: Option<Option<Map<String, Value>>>,
    pub(crate) reply: oneshot::Sender<Result<Value, Error>>,
}

pub(crate) struct SubscribeRequest {
    pub(crate) topic: String,
    pub(crate) options: ChannelOptions,
    pub(crate) presence: bool,
    pub(crate) filters: Vec<PostgresChangesFilter>,
    pub(crate) events: broadcast::Sender<ChannelEvent>,
    pub(crate) status: watch::Sender<ChannelStatus>,
    pub(crate) presence_state: watch::Sender<PresenceState>,
    pub(crate) reply: oneshot::Sender<Result<(), Error>>,
}

/// A push's body.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    Json(Value),
    Binary(UserBroadcast),
}

/// What the builder hands the driver.
pub(crate) struct Parts {
    pub(crate) options: Arc<Options>,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) status: watch::Sender<ConnectionStatus>,
    pub(crate) heartbeats: broadcast::Sender<HeartbeatEvent>,
    pub(crate) token_mirror: Arc<Mutex<Option<String>>>,
    pub(crate) dropped_pushes: Arc<AtomicU64>,
    pub(crate) access_token: Option<String>,
    pub(crate) token_provider: Option<TokenProvider>,
}

pub(crate) fn spawn(parts: Parts) {
    tokio::spawn(Driver::new(parts).run());
}

/// A timer in the driver's queue.
#[derive(Debug, Clone)]
enum Timer {
    Heartbeat,
    Reconnect,
    TokenRefresh,
    Rejoin {
        topic: String,
    },
    /// A reply to the push with this `ref` is overdue.
    ReplyTimeout {
        msg_ref: String,
    },
    /// The server has not confirmed postgres changes for this join.
    PostgresReady {
        topic: String,
        join_ref: String,
    },
}

/// What a `ref` awaits.
enum Pending {
    Join {
        topic: String,
        join_ref: String,
    },
    Leave {
        topic: String,
    },
    Push {
        reply: oneshot::Sender<Result<Value, Error>>,
    },
    Probe {
        sent: Instant,
        reply: oneshot::Sender<Result<Duration, Error>>,
    },
    /// A push whose reply nobody waits for (an automatic re-track).
    Ignored,
}

/// A live connection: frames go to a writer task, so a slow socket never stalls the loop
/// (and with it, heartbeat detection).
struct Live {
    out: mpsc::UnboundedSender<WireFrame>,
    events: EventStream,
}

/// A push waiting in the offline buffer.
pub(super) struct Buffered {
    topic: String,
    event: &'static str,
    payload: Outgoing,
    wait_reply: bool,
    reply: oneshot::Sender<Result<Value, Error>>,
}

pub(crate) struct Driver {
    options: Arc<Options>,
    commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<ConnectionStatus>,
    heartbeats: broadcast::Sender<HeartbeatEvent>,
    token_mirror: Arc<Mutex<Option<String>>>,
    dropped_pushes: Arc<AtomicU64>,

    live: Option<Live>,
    connecting: Option<ConnectFuture>,
    connect_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    /// `disconnect()` was called: stay down until `connect()`.
    manual: bool,
    /// The server refused our credentials: stay down until the token changes.
    refused: bool,
    /// Connect as soon as the token fetch in flight completes.
    connect_after_token: bool,
    attempt: u32,
    reconnect_key: Option<Key>,
    heartbeat_key: Option<Key>,
    refresh_key: Option<Key>,
    ever_connected: bool,

    monitor: HeartbeatMonitor,
    auth: AuthTokenManager,
    token_fetch: Option<TokenFuture>,

    channels: HashMap<String, ChannelState>,
    pending: HashMap<String, (Pending, Option<Key>)>,
    buffer: PushBuffer<Buffered>,
    timers: DelayQueue<Timer>,
    next_ref: u64,
}

/// Awaits the future in `slot` (pending forever when empty), then empties the slot.
async fn poll_slot<T>(slot: &mut Option<Pin<Box<dyn Future<Output = T> + Send>>>) -> T {
    match slot {
        Some(future) => {
            let output = future.await;
            *slot = None;
            output
        }
        None => std::future::pending().await,
    }
}

async fn next_event(live: &mut Option<Live>) -> TransportEvent {
    match live {
        Some(live) => live.events.next().await.unwrap_or(TransportEvent::Closed {
            code: None,
            reason: "connection ended".into(),
        }),
        None => std::future::pending().await,
    }
}

impl Driver {
    fn new(parts: Parts) -> Self {
        let auth = AuthTokenManager::new(
            parts.token_provider,
            parts.access_token,
            parts.options.token_refresh_skew,
        );
        Driver {
            buffer: PushBuffer::new(parts.options.push_buffer),
            options: parts.options,
            commands: parts.commands,
            status: parts.status,
            heartbeats: parts.heartbeats,
            token_mirror: parts.token_mirror,
            dropped_pushes: parts.dropped_pushes,
            live: None,
            connecting: None,
            connect_waiters: Vec::new(),
            manual: false,
            refused: false,
            connect_after_token: false,
            attempt: 0,
            reconnect_key: None,
            heartbeat_key: None,
            refresh_key: None,
            ever_connected: false,
            monitor: HeartbeatMonitor::default(),
            auth,
            token_fetch: None,
            channels: HashMap::new(),
            pending: HashMap::new(),
            timers: DelayQueue::new(),
            next_ref: 0,
        }
    }

    async fn run(mut self) {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                result = poll_slot(&mut self.connecting) => self.on_connect_result(result),
                event = next_event(&mut self.live) => self.on_transport_event(event),
                Some(expired) = self.timers.next() => self.on_timer(expired.into_inner()),
                token = poll_slot(&mut self.token_fetch) => self.on_token(token),
            }
        }
        // Every handle is gone: close the connection cleanly.
        self.live = None;
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Connect(reply) => {
                self.manual = false;
                if self.live.is_some() {
                    let _ = reply.send(Ok(()));
                    return;
                }
                self.connect_waiters.push(reply);
                self.start_connect();
            }
            Command::Disconnect(reply) => {
                self.disconnect();
                let _ = reply.send(());
            }
            Command::SetAuth(token, reply) => {
                self.set_auth(token);
                let _ = reply.send(());
            }
            Command::Probe(reply) => self.probe(reply),
            Command::Subscribe(request) => self.subscribe(*request),
            Command::Unsubscribe { topic, reply } => self.unsubscribe(&topic, reply),
            Command::Push(request) => self.push(request),
            Command::Release { topic } => self.release(&topic),
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Heartbeat => {
                self.heartbeat_key = None;
                self.heartbeat_tick();
            }
            Timer::Reconnect => {
                self.reconnect_key = None;
                self.start_connect();
            }
            Timer::TokenRefresh => {
                self.refresh_key = None;
                self.fetch_token();
            }
            Timer::Rejoin { topic } => {
                if let Some(channel) = self.channels.get_mut(&topic) {
                    channel.rejoin_key = None;
                }
                self.join(&topic);
            }
            Timer::ReplyTimeout { msg_ref } => {
                if let Some((pending, _)) = self.pending.remove(&msg_ref) {
                    self.on_reply_timeout(pending);
                }
            }
            Timer::PostgresReady { topic, join_ref } => {
                self.postgres_ready_timeout(&topic, &join_ref);
            }
        }
    }

    fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    fn cancel(&mut self, key: Option<Key>) {
        if let Some(key) = key {
            self.timers.try_remove(&key);
        }
    }

    /// Writes a message; false when there is no connection.
    fn send(&mut self, message: &Message) -> bool {
        let Some(live) = &self.live else {
            return false;
        };
        match serializer::encode(self.options.vsn, Direction::ToServer, message) {
            Ok(frame) => live.out.send(frame).is_ok(),
            Err(err) => {
                tracing::warn!(error = %err, topic = %message.topic, "cannot encode a message");
                false
            }
        }
    }

    fn set_status(&self, status: ConnectionStatus) {
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    // ---- connection state machine -------------------------------------------------

    fn start_connect(&mut self) {
        if self.live.is_some() || self.connecting.is_some() || self.manual {
            return;
        }
        let key = self.reconnect_key.take();
        self.cancel(key);
        // Without an API key the token is the credential: get one first.
        if self.options.api_key.is_none() && self.auth.needs_fetch(unix_now()) {
            self.connect_after_token = true;
            self.fetch_token();
            return;
        }
        let mut url = self.options.socket_url.clone();
        if let Some(key) = self
            .options
            .api_key
            .clone()
            .or_else(|| self.auth.current().map(str::to_owned))
        {
            url.query_pairs_mut().append_pair("apikey", &key);
        }
        if !self.ever_connected && self.attempt == 0 {
            self.set_status(ConnectionStatus::Connecting);
        }
        // A server that accepts TCP but never finishes the handshake must not hold the
        // client forever: the attempt fails like any other and is retried with backoff.
        let attempt = self.options.transport.connect(&url);
        let limit = self.options.timeout;
        self.connecting = Some(Box::pin(async move {
            tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or(Err(Error::Timeout))
        }));
    }

    fn on_connect_result(&mut self, result: Result<crate::transport::Connection, Error>) {
        match result {
            Ok(connection) => {
                let (out, mut frames) = mpsc::unbounded_channel::<WireFrame>();
                let mut sink = connection.sink;
                // The writer ends when the driver drops `out` (closing the socket
                // cleanly) or when a write fails.
                tokio::spawn(async move {
                    while let Some(frame) = frames.recv().await {
                        if sink.send(frame).await.is_err() {
                            return;
                        }
                    }
                    let _ = sink.close().await;
                });
                self.live = Some(Live {
                    out,
                    events: connection.events,
                });
                self.attempt = 0;
                self.refused = false;
                // After a loss (sleep, network change), ask the provider again before
                // rejoining: the joins below wait for the fetch.
                if self.ever_connected {
                    self.fetch_token();
                }
                self.ever_connected = true;
                self.set_status(ConnectionStatus::Connected);
                for waiter in self.connect_waiters.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
                self.monitor.reset();
                self.heartbeat_key = Some(
                    self.timers
                        .insert(Timer::Heartbeat, self.options.heartbeat_interval),
                );
                let topics: Vec<String> = self.channels.keys().cloned().collect();
                for topic in topics {
                    self.join(&topic);
                }
            }
            Err(error) => {
                tracing::debug!(%error, "connect failed");
                for waiter in self.connect_waiters.drain(..) {
                    let _ = waiter.send(Err(error.clone()));
                }
                let credentials =
                    error.retry_advice() == crier_protocol::codes::RetryAdvice::AfterTokenChange;
                if credentials && self.auth.provider().is_none() {
                    // Retrying with the same credentials fails the same way.
                    self.refused = true;
                    self.set_status(ConnectionStatus::Disconnected);
                    self.fail_all_channels(&error);
                    return;
                }
                if credentials {
                    self.fetch_token();
                }
                self.schedule_reconnect();
            }
        }
    }

    fn schedule_reconnect(&mut self) {
        if self.manual || self.refused || self.reconnect_key.is_some() {
            return;
        }
        let retry_in = self.options.reconnect.delay(self.attempt);
        self.attempt += 1;
        self.set_status(ConnectionStatus::Reconnecting {
            attempt: self.attempt,
            retry_in,
        });
        self.reconnect_key = Some(self.timers.insert(Timer::Reconnect, retry_in));
    }

    fn on_transport_event(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Frame(frame) => {
                let decoded = match &frame {
                    WireFrame::Text(text) => serializer::decode_from_server(
                        self.options.vsn,
                        serializer::FrameRef::Text(text),
                    ),
                    WireFrame::Binary(bytes) => serializer::decode_from_server(
                        self.options.vsn,
                        serializer::FrameRef::Binary(bytes),
                    ),
                };
                match decoded {
                    Ok(message) => self.on_message(message),
                    Err(err) => tracing::warn!(error = %err, "undecodable frame from the server"),
                }
            }
            TransportEvent::Closed { code, reason } => {
                tracing::debug!(?code, reason, "connection closed");
                self.connection_lost(&reason);
            }
        }
    }

    /// The connection is gone (closed by the server, broken, or declared dead).
    fn connection_lost(&mut self, reason: &str) {
        if self.live.take().is_none() {
            return;
        }
        let key = self.heartbeat_key.take();
        self.cancel(key);
        self.monitor.reset();
        self.fail_pending(|| Error::Transport(format!("connection lost: {reason}")));
        let now = Instant::now();
        for channel in self.channels.values_mut() {
            channel.connection_lost(now);
        }
        self.schedule_reconnect();
    }

    fn disconnect(&mut self) {
        self.manual = true;
        let key = self.reconnect_key.take();
        self.cancel(key);
        self.connecting = None;
        self.connect_after_token = false;
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Err(Error::Disconnected));
        }
        // Dropping the sender makes the writer close the socket cleanly.
        self.live = None;
        let key = self.heartbeat_key.take();
        self.cancel(key);
        self.monitor.reset();
        self.fail_pending(|| Error::Disconnected);
        let now = Instant::now();
        for channel in self.channels.values_mut() {
            channel.disconnected(now);
        }
        self.set_status(ConnectionStatus::Disconnected);
    }

    /// Fails every reply still awaited; joins and leaves resolve through their channels.
    fn fail_pending(&mut self, error: impl Fn() -> Error) {
        for (_, (pending, key)) in std::mem::take(&mut self.pending) {
            if let Some(key) = key {
                self.timers.try_remove(&key);
            }
            match pending {
                Pending::Push { reply } => {
                    let _ = reply.send(Err(error()));
                }
                Pending::Probe { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Pending::Leave { topic } => self.leave_done(&topic),
                Pending::Join { .. } | Pending::Ignored => {}
            }
        }
    }

    // ---- heartbeats ---------------------------------------------------------------

    fn heartbeat_tick(&mut self) {
        if self.live.is_none() {
            return;
        }
        match self.monitor.on_tick() {
            Tick::Send => {
                let msg_ref = self.make_ref();
                let message = heartbeat(&msg_ref);
                if self.send(&message) {
                    self.monitor.sent(msg_ref, Instant::now());
                    let _ = self.heartbeats.send(HeartbeatEvent::Sent);
                }
                self.heartbeat_key = Some(
                    self.timers
                        .insert(Timer::Heartbeat, self.options.heartbeat_interval),
                );
            }
            Tick::TimedOut => {
                tracing::info!("heartbeat timeout: reconnecting");
                let _ = self.heartbeats.send(HeartbeatEvent::Timeout);
                self.connection_lost("heartbeat timeout");
            }
        }
    }

    fn probe(&mut self, reply: oneshot::Sender<Result<Duration, Error>>) {
        if self.live.is_none() {
            let _ = reply.send(Err(Error::Transport("not connected".into())));
            return;
        }
        let msg_ref = self.make_ref();
        self.send(&heartbeat(&msg_ref));
        let key = self.timers.insert(
            Timer::ReplyTimeout {
                msg_ref: msg_ref.clone(),
            },
            self.options.probe_timeout,
        );
        self.pending.insert(
            msg_ref,
            (
                Pending::Probe {
                    sent: Instant::now(),
                    reply,
                },
                Some(key),
            ),
        );
    }

    fn on_reply_timeout(&mut self, pending: Pending) {
        match pending {
            Pending::Join { topic, join_ref } => self.join_timed_out(&topic, &join_ref),
            Pending::Leave { topic } => self.leave_done(&topic),
            Pending::Push { reply } => {
                let _ = reply.send(Err(Error::Timeout));
            }
            Pending::Probe { reply, .. } => {
                let _ = reply.send(Err(Error::Timeout));
                let _ = self.heartbeats.send(HeartbeatEvent::Timeout);
                self.connection_lost("probe timeout");
            }
            Pending::Ignored => {}
        }
    }

    // ---- auth ---------------------------------------------------------------------

    fn fetch_token(&mut self) {
        if self.token_fetch.is_some() {
            return;
        }
        if let Some(provider) = self.auth.provider() {
            self.token_fetch = Some(provider.fetch());
        }
    }

    fn on_token(&mut self, result: Result<String, TokenError>) {
        match result {
            Ok(token) => {
                let changed = self.auth.accept_fetched(token);
                self.token_changed(changed);
                let key = self.refresh_key.take();
                self.cancel(key);
                if let Some(refresh_in) = self.auth.refresh_in(unix_now()) {
                    // Never refresh more often than once a second.
                    let refresh_in = refresh_in.max(Duration::from_secs(1));
                    self.refresh_key = Some(self.timers.insert(Timer::TokenRefresh, refresh_in));
                }
                if std::mem::take(&mut self.connect_after_token) {
                    self.start_connect();
                }
            }
            Err(err) => {
                let error = Error::TokenProvider(err.to_string());
                tracing::warn!(%error, "token provider failed; retrying in 5 s");
                if std::mem::take(&mut self.connect_after_token) {
                    for waiter in self.connect_waiters.drain(..) {
                        let _ = waiter.send(Err(error.clone()));
                    }
                    self.connect_after_token = true;
                }
                for channel in self.channels.values_mut() {
                    channel.token_failed(&error);
                }
                let key = self.refresh_key.take();
                self.cancel(key);
                self.refresh_key = Some(
                    self.timers
                        .insert(Timer::TokenRefresh, Duration::from_secs(5)),
                );
            }
        }
    }

    fn set_auth(&mut self, token: Option<String>) {
        let clearing = token.is_none();
        let changed = self.auth.set_manual(token);
        if clearing {
            self.fetch_token();
        }
        self.token_changed(changed);
        if self.refused && changed {
            self.refused = false;
            self.start_connect();
        }
    }

    /// After any token source update: mirror it for HTTP calls, push it to joined channels
    /// when it changed, and (re)join channels that were waiting for a token.
    fn token_changed(&mut self, changed: bool) {
        let current = self.auth.current().map(str::to_owned);
        *self.token_mirror.lock().expect("not poisoned") = current.clone();
        if changed && let Some(token) = current {
            let joined: Vec<(String, Option<String>)> = self
                .channels
                .iter()
                .filter(|(_, c)| c.is_joined())
                .map(|(topic, c)| (topic.clone(), c.join_ref.clone()))
                .collect();
            for (topic, join_ref) in joined {
                let msg_ref = self.make_ref();
                self.send(&Message {
                    join_ref,
                    msg_ref: Some(msg_ref),
                    topic,
                    event: "access_token".into(),
                    payload: Payload::Json(json!({"access_token": token})),
                });
            }
        }
        let waiting: Vec<String> = self
            .channels
            .iter_mut()
            .filter_map(|(topic, c)| c.take_token_wait(changed).then(|| topic.clone()))
            .collect();
        for topic in waiting {
            self.join(&topic);
        }
    }

    fn fail_all_channels(&mut self, error: &Error) {
        for channel in self.channels.values_mut() {
            channel.fail_waiters(error);
        }
    }
}

fn heartbeat(msg_ref: &str) -> Message {
    Message {
        join_ref: None,
        msg_ref: Some(msg_ref.to_owned()),
        topic: "phoenix".into(),
        event: "heartbeat".into(),
        payload: Payload::Json(json!({})),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
