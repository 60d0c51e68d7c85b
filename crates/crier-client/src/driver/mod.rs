//! The driver: the one task that owns the connection and every channel's state.
//!
//! Handles ([`crate::Client`], [`crate::Channel`]) send it [`Command`]s through a
//! [`DriverHandle`]; it answers through oneshots and publishes through watch and
//! broadcast channels. Because one task owns everything, a reconnect, a token refresh and
//! a user's subscribe can never interleave badly: each is one step of one loop. All
//! timing goes through a `DelayQueue` on tokio's clock, so with paused time and the
//! in-memory transport every path is deterministic.
//!
//! The driver knows nothing of the handles: they depend on it (through `command` and
//! `handle`), never the reverse.
//!
//! - `mod.rs` (this file): the loop, command and timer dispatch, writing a message.
//! - `command.rs`: what handles ask; `handle.rs`: the handles' end of the driver.
//! - `connection.rs`: the connection state machine and reconnect backoff.
//! - `liveness.rs`: heartbeats and probes. `tokens.rs`: token fetch, refresh, push.
//! - `pending.rs`: replies awaited by `ref`, their timeouts and failures.
//! - `channel_state.rs`: one channel's subscription state. `join.rs` and `leave.rs`:
//!   the driver operations that join (and rejoin) and leave channels.
//! - `push.rs`: pushes and the offline buffer.
//! - `incoming.rs`: the message router: replies by `ref`, channel events by topic and
//!   `join_ref`, postgres changes by binding id.

mod channel_state;
mod command;
mod connection;
mod handle;
mod incoming;
mod join;
mod leave;
mod liveness;
mod pending;
mod push;
mod tokens;

pub(crate) use self::command::{Command, PushPayload, PushRequest, SubscribeRequest};
pub(crate) use self::handle::DriverHandle;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crier_protocol::Message;
use crier_protocol::serializer::{self, Direction};
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue::Key;

use self::channel_state::ChannelState;
use self::connection::{Live, next_event};
use self::pending::Pending;
use self::push::Buffered;
use crate::Error;
use crate::auth::{AuthTokenManager, TokenFuture, TokenProvider};
use crate::events::ConnectionStatus;
use crate::heartbeat::{HeartbeatEvent, HeartbeatMonitor};
use crate::options::ClientOptions;
use crate::push_buffer::PushBuffer;
use crate::transport::ConnectFuture;

/// What [`spawn`] hands a new driver: its ends of the channels shared with the handles,
/// and where the first token comes from.
struct Parts {
    options: Arc<ClientOptions>,
    commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<ConnectionStatus>,
    heartbeats: broadcast::Sender<HeartbeatEvent>,
    token_mirror: Arc<Mutex<Option<String>>>,
    dropped_pushes: Arc<AtomicU64>,
    access_token: Option<String>,
    token_provider: Option<TokenProvider>,
}

/// Starts the driver of a new client (inside a tokio runtime) and returns the handles'
/// end of it. Nothing connects until the first command asks for it.
pub(crate) fn spawn(
    options: Arc<ClientOptions>,
    access_token: Option<String>,
    token_provider: Option<TokenProvider>,
) -> DriverHandle {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (status_tx, status) = watch::channel(ConnectionStatus::Disconnected);
    let (heartbeats, _) = broadcast::channel(64);
    let token = Arc::new(Mutex::new(access_token.clone()));
    let dropped_pushes = Arc::new(AtomicU64::new(0));
    let parts = Parts {
        options: Arc::clone(&options),
        commands: command_rx,
        status: status_tx,
        heartbeats: heartbeats.clone(),
        token_mirror: Arc::clone(&token),
        dropped_pushes: Arc::clone(&dropped_pushes),
        access_token,
        token_provider,
    };
    tokio::spawn(Driver::new(parts).run());
    DriverHandle {
        commands,
        options,
        status,
        heartbeats,
        token,
        dropped_pushes,
    }
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

/// Everything the task owns. Its methods are spread over this module's files, one
/// concern per file (see the module docs).
struct Driver {
    options: Arc<ClientOptions>,
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
}
