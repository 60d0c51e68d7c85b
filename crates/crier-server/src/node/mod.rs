//! The node: the composition root that owns the registry, limits, auth, metrics and the
//! shutdown signal, and the API an embedding application uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use crier_protocol::PayloadEncoding;
use crier_protocol::codes::shutdown;
use crier_protocol::events::TOPIC_PREFIX;
use crier_protocol::presence::PresenceGroups;
use dashmap::DashMap;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{JwksError, JwtVerifier, load_jwks};
use crate::authz::Checks;
use crate::broker::{Broker, SharedHistory};
use crate::changes::PostgresChanges;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::fanout::{Content, Outgoing};
use crate::flow::{Ledger, Overloaded};
use crate::history::HistoryStore;
use crate::hooks::Hooks;
use crate::limits::{ConnectionLimiter, TenantCounters};
use crate::metrics::Metrics;
use crate::outbound::{ConnHandle, ConnId, Outbound};
use crate::registry::{Delivery, Registry, Topic};

mod builder;
mod database_broadcasts;
mod from_bus;

pub use builder::NodeBuilder;

/// A Crier server node.
///
/// Cheap to clone: every clone is a handle to the same node. Build one from a [`Config`],
/// mount [`Node::router`] in an axum app (or run [`crate::serve`]), and publish from Rust
/// code with [`Node::broadcast`].
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use crier_server::{Config, Node};
///
/// let node = Node::new(Config::new("a-long-random-secret")).expect("a usable config");
/// let app = axum::Router::new().merge(node.router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
/// # let _ = app;
/// crier_server::serve(listener, node.clone()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Node {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) verifier: JwtVerifier,
    pub(crate) registry: Registry,
    pub(crate) counters: TenantCounters,
    pub(crate) connections: ConnectionLimiter,
    pub(crate) metrics: Metrics,
    pub(crate) hooks: Hooks,
    pub(crate) shutdown: CancellationToken,
    /// Every open socket, so a shutdown can reach each one through its queue.
    pub(crate) sockets: DashMap<ConnId, Arc<ConnHandle>>,
    /// Bytes held by every outbound queue, and where publishers wait for room.
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) tasks: TaskTracker,
    /// Postgres changes, when a database is configured.
    pub(crate) changes: Option<PostgresChanges>,
    /// Carries broadcasts to the other nodes (and theirs to this one).
    pub(crate) broker: Arc<dyn Broker>,
    /// Each topic's recent broadcasts with their positions; `None` when history is off.
    pub(crate) history: Option<Arc<dyn HistoryStore>>,
    /// The history the bus keeps for every node, when it numbers broadcasts (then
    /// `history` is this node's copy of it).
    pub(crate) shared_history: Option<Arc<dyn SharedHistory>>,
    /// The wall time, for token claims.
    pub(crate) clock: Arc<dyn Clock>,
    /// Private channels' checks; `None` when there is nothing to ask (every private
    /// join is refused).
    pub(crate) checks: Option<Checks>,
    /// The live inspector's feed, when it is on.
    pub(crate) inspector: Option<Arc<crate::inspector::Inspector>>,
    /// When the node was built.
    pub(crate) started: Instant,
    next_conn_id: AtomicU64,
    ref_nonce: u32,
    next_ref: AtomicU64,
}

/// Why a publish from Rust code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The channel name is empty.
    #[error("the channel name is empty")]
    EmptyChannel,
    /// The payload is larger than the configured payload limit.
    #[error("payload of {size} bytes is over the {limit}-byte limit")]
    PayloadTooLarge {
        /// Payload size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A binary broadcast's event name or topic is longer than 255 bytes.
    #[error("binary broadcasts need an event name and topic of at most 255 bytes")]
    NameTooLong,
    /// The node's outbound queues hold more than `max_queued_bytes` (subscribers are not
    /// keeping up); nothing was sent. [`Node::broadcast_async`] waits for room instead.
    #[error("the server's outbound queues are full; try again shortly")]
    Overloaded,
}

impl Node {
    /// A node with no hooks, or which setting is unusable.
    pub fn new(config: Config) -> Result<Node, ConfigError> {
        Node::builder(config).build()
    }

    /// A builder, to register hooks.
    pub fn builder(config: Config) -> NodeBuilder {
        NodeBuilder::new(config)
    }

    /// Reads the JWK set again from its file or URL (`crier serve` calls this on
    /// SIGHUP) and returns how many keys it has now. When that fails, the keys in use
    /// stay. Without a JWK set it does nothing (`Ok(0)`).
    pub async fn reload_keys(&self) -> Result<usize, JwksError> {
        let Some(source) = &self.shared.config.jwks else {
            return Ok(0);
        };
        let keys = load_jwks(source, &reqwest::Client::new()).await?;
        let count = keys.len();
        self.shared.verifier.set_jwks(keys);
        Ok(count)
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Broadcasts `payload` as `event` to every subscriber of `channel` (the channel name
    /// as clients give it to `client.channel(name)`, without `realtime:`). Subscribers
    /// receive exactly what a broadcast from a client would give them. Returns how many
    /// sockets of this node it was queued to (0 in a cluster that shares its history:
    /// this node's subscribers get it when it comes back from the bus with its position).
    ///
    /// It never waits: when the node's queues are over their budget it refuses with
    /// [`PublishError::Overloaded`], and otherwise queues past any subscriber's room mark.
    /// To publish many messages in a row, use [`Node::broadcast_async`], which lets
    /// subscribers keep up.
    pub fn broadcast(
        &self,
        channel: &str,
        event: &str,
        payload: &Value,
    ) -> Result<u64, PublishError> {
        let (topic, message) = self.json_broadcast(channel, event, payload)?;
        self.publish_now(&topic, &message)
    }

    /// Broadcasts like [`Node::broadcast`], but waits for room as a client's publishes
    /// do: first while the node's queues are over their budget (up to the slow-consumer
    /// timeout, then [`PublishError::Overloaded`]), then, once queued, until every
    /// subscriber it reached is back under its room mark (a subscriber whose socket takes
    /// no data is not waited for). A loop of these moves at the pace of the subscribers
    /// and never gets one disconnected as slow.
    pub async fn broadcast_async(
        &self,
        channel: &str,
        event: &str,
        payload: &Value,
    ) -> Result<u64, PublishError> {
        let (topic, message) = self.json_broadcast(channel, event, payload)?;
        self.publish_when_ready(topic, message).await
    }

    /// Broadcasts binary `payload` as `event` to `channel`. It reaches 2.0.0 sockets (as a
    /// realtime-js binary broadcast); 1.0.0 sockets cannot carry binary payloads. Never
    /// waits, as [`Node::broadcast`].
    pub fn broadcast_binary(
        &self,
        channel: &str,
        event: &str,
        payload: Bytes,
    ) -> Result<u64, PublishError> {
        let (topic, message) = self.binary_broadcast(channel, event, payload)?;
        self.publish_now(&topic, &message)
    }

    /// Broadcasts binary `payload` like [`Node::broadcast_binary`], waiting for room as
    /// [`Node::broadcast_async`] does.
    pub async fn broadcast_binary_async(
        &self,
        channel: &str,
        event: &str,
        payload: Bytes,
    ) -> Result<u64, PublishError> {
        let (topic, message) = self.binary_broadcast(channel, event, payload)?;
        self.publish_when_ready(topic, message).await
    }

    fn json_broadcast(
        &self,
        channel: &str,
        event: &str,
        payload: &Value,
    ) -> Result<(String, Outgoing), PublishError> {
        if channel.is_empty() {
            return Err(PublishError::EmptyChannel);
        }
        let content = Content::json(event, &crate::fanout::to_raw(payload), None);
        self.check_size(content.len())?;
        let topic = format!("{TOPIC_PREFIX}{channel}");
        let message = Outgoing::broadcast(&topic, Arc::new(content));
        Ok((topic, message))
    }

    fn binary_broadcast(
        &self,
        channel: &str,
        event: &str,
        payload: Bytes,
    ) -> Result<(String, Outgoing), PublishError> {
        if channel.is_empty() {
            return Err(PublishError::EmptyChannel);
        }
        self.check_size(payload.len())?;
        let topic = format!("{TOPIC_PREFIX}{channel}");
        if event.len() > 255 || topic.len() > 255 {
            return Err(PublishError::NameTooLong);
        }
        let content = Content::binary(event.to_owned(), PayloadEncoding::Binary, payload);
        let message = Outgoing::broadcast(&topic, Arc::new(content));
        Ok((topic, message))
    }

    /// Publishes (counting the event) without waiting, or refuses when the node's queues
    /// are over their budget.
    fn publish_now(&self, topic: &str, message: &Outgoing) -> Result<u64, PublishError> {
        if self.shared.ledger.is_over_budget() {
            self.shared.metrics.overloaded.inc();
            return Err(PublishError::Overloaded);
        }
        Ok(self.publish(topic, message, None).recipients)
    }

    /// Waits for the node to have room, publishes (counting the event), then waits for
    /// the subscribers it reached. The message is owned and never borrowed across an
    /// await, which keeps the future `Send` (its frames are built in `OnceCell`s).
    async fn publish_when_ready(
        &self,
        topic: String,
        message: Outgoing,
    ) -> Result<u64, PublishError> {
        if self.wait_for_room(&[]).await.is_err() {
            self.shared.metrics.overloaded.inc();
            return Err(PublishError::Overloaded);
        }
        let delivery = self.publish(&topic, &message, None);
        drop(message);
        // Queued already: a node still over budget afterwards is the next call's answer.
        self.wait_for_subscribers(&delivery.lagging).await;
        Ok(delivery.recipients)
    }

    /// Waits until the `lagging` queues have room (or are no longer waited for), up to
    /// the slow-consumer timeout; not for the node's budget.
    pub(crate) async fn wait_for_subscribers(&self, lagging: &[Arc<ConnHandle>]) {
        if lagging.is_empty() {
            return;
        }
        let shared = &self.shared;
        shared.metrics.publisher_waits.inc();
        let flow = &shared.config.flow;
        let deadline = tokio::time::Instant::now() + flow.slow_consumer_timeout;
        shared
            .ledger
            .wait_for_queues(lagging, flow.stall_patience, deadline)
            .await;
    }

    /// Waits until the `lagging` queues have room (or are no longer waited for) and the
    /// node's queues are under their budget, up to the slow-consumer timeout.
    pub(crate) async fn wait_for_room(
        &self,
        lagging: &[Arc<ConnHandle>],
    ) -> Result<(), Overloaded> {
        let shared = &self.shared;
        if lagging.is_empty() && !shared.ledger.is_over_budget() {
            return Ok(());
        }
        shared.metrics.publisher_waits.inc();
        let flow = &shared.config.flow;
        shared
            .ledger
            .wait_for_room(lagging, flow.stall_patience, flow.slow_consumer_timeout)
            .await
    }

    /// The presence state of `channel`: who is tracked, with their metas.
    pub fn presence(&self, channel: &str) -> PresenceGroups {
        let topic = format!("{TOPIC_PREFIX}{channel}");
        self.shared
            .registry
            .get(&topic)
            .map(|topic| topic.presence_state())
            .unwrap_or_default()
    }

    /// Number of open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.current()
    }

    /// Number of sockets subscribed to `channel` on this node.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        let topic = format!("{TOPIC_PREFIX}{channel}");
        self.shared
            .registry
            .get(&topic)
            .map(|topic| topic.subscriber_count())
            .unwrap_or(0)
    }

    /// The metrics in Prometheus text format (what `GET /metrics` serves).
    pub fn metrics_text(&self) -> String {
        let metrics = &self.shared.metrics;
        let queued = i64::try_from(self.shared.ledger.queued()).unwrap_or(i64::MAX);
        metrics.queued_bytes.set(queued);
        if let Some(history) = &self.shared.history {
            metrics.history.report(history.stats());
        }
        if let Some(status) = self.shared.broker.status() {
            metrics.cluster.report(&status);
        }
        metrics.render()
    }

    /// What `GET /healthcheck` says: `ok`, or why the node is degraded (it serves its
    /// own clients, but the cluster bus is unreachable).
    pub fn health(&self) -> Result<(), String> {
        match self.shared.broker.status() {
            Some(status) if !status.connected => {
                Err("the cluster bus (Redis) is unreachable: delivery is local to this node".into())
            }
            _ => Ok(()),
        }
    }

    /// Bytes the node's outbound queues hold now: each shared frame once, plus the
    /// queues' slots (what `--max-queued-bytes` bounds).
    pub fn queued_bytes(&self) -> usize {
        self.shared.ledger.queued()
    }

    /// True once [`Node::shutdown`] has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Shuts down gracefully: every channel gets `system` "Server requested disconnect",
    /// every socket is closed with 1012, and [`crate::serve`] stops accepting. Waits up to
    /// the configured shutdown timeout for the sockets to drain; returns whether they did.
    pub async fn shutdown(&self) -> bool {
        // Marked first: a socket that registers after the loop below sees the mark
        // when it starts (see `session::Session::serve`).
        self.shared.shutdown.cancel();
        for socket in self.shared.sockets.iter() {
            socket.queue.push_own(Outbound::Shutdown);
        }
        self.shared.tasks.close();
        tokio::time::timeout(
            self.shared.config.shutdown_timeout,
            self.shared.tasks.wait(),
        )
        .await
        .is_ok()
    }

    pub(crate) fn check_size(&self, size: usize) -> Result<(), PublishError> {
        let limit = self.shared.config.limits.max_payload_bytes();
        if size > limit {
            return Err(PublishError::PayloadTooLarge { size, limit });
        }
        Ok(())
    }

    /// The funnel every broadcast goes through (see [`Shared::publish`]).
    pub(crate) fn publish(
        &self,
        key: &str,
        message: &Outgoing,
        exclude: Option<ConnId>,
    ) -> Delivery {
        self.shared.publish(key, message, exclude)
    }

    /// [`Node::publish`] to a topic the caller holds (a session's channel holds its
    /// registry entry), saving the registry lookup.
    pub(crate) fn publish_to(
        &self,
        topic: &Topic,
        message: &Outgoing,
        exclude: Option<ConnId>,
    ) -> Delivery {
        self.shared
            .publish_in(topic.key(), Some(topic), message, exclude)
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.shared.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new unique `phx_ref` for a presence meta.
    pub(crate) fn next_presence_ref(&self) -> String {
        let n = self.shared.next_ref.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&self.shared.ref_nonce.to_be_bytes());
        bytes[4..].copy_from_slice(&n.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

impl Shared {
    /// The funnel every broadcast goes through, whoever publishes it: counts the event,
    /// queues `message` to this node's subscribers of the topic with key `key` (the
    /// wire topic for a public channel: `registry::topic_key`) except `exclude`, then
    /// hands it to the broker for the other nodes. Returns the local delivery.
    ///
    /// With history on, a broadcast first gets its place in the topic's stream, and is
    /// delivered while that stream is locked (see `history`): a join that resumes sees
    /// it either in what it missed or live.
    pub(crate) fn publish(
        &self,
        key: &str,
        message: &Outgoing,
        exclude: Option<ConnId>,
    ) -> Delivery {
        self.publish_in(key, None, message, exclude)
    }

    /// [`Shared::publish`], with the registry's topic for `key` when the caller holds it.
    fn publish_in(
        &self,
        key: &str,
        held: Option<&Topic>,
        message: &Outgoing,
        exclude: Option<ConnId>,
    ) -> Delivery {
        if let Some(shared_history) = &self.shared_history
            && let Some(publication) = message.publication()
        {
            // The bus numbers it and brings it back to this node's subscribers too.
            self.counters.events.add(1);
            match shared_history.append(key, publication, exclude) {
                Ok(()) => return Delivery::default(),
                Err(err) => {
                    tracing::warn!(topic = %key, error = %err, "broadcast reached this node's subscribers only");
                    return self.deliver_local(key, held, message, exclude);
                }
            }
        }
        let delivery = self.publish_here(key, held, message, exclude);
        if self.broker.has_peers()
            && let Some(publication) = message.publication()
            && let Err(err) = self.broker.publish(key, publication)
        {
            tracing::warn!(topic = %key, error = %err, "broadcast reached this node's subscribers only");
        }
        delivery
    }

    /// [`Shared::publish`] without the broker: for what every node gets by itself (a
    /// database broadcast, which each node reads from its own slot). `held`: the
    /// registry's topic for `key`, when the caller holds it.
    pub(crate) fn publish_here(
        &self,
        key: &str,
        held: Option<&Topic>,
        message: &Outgoing,
        exclude: Option<ConnId>,
    ) -> Delivery {
        self.counters.events.add(1);
        match (&self.history, message.content()) {
            // Positions in a copy of the shared history are the bus's to give: what
            // every node gets by itself goes without one.
            (Some(_), Some(_)) if self.shared_history.is_some() => {
                self.deliver_local(key, held, message, exclude)
            }
            (Some(history), Some(content)) => {
                let mut delivery = Delivery::default();
                history.append(key, content, &mut |position| {
                    message.set_position(position.clone());
                    delivery = self.deliver_local(key, held, message, exclude);
                });
                delivery
            }
            _ => self.deliver_local(key, held, message, exclude),
        }
    }

    /// Queues `message` to this node's subscribers of `topic` except `exclude`, counting
    /// each delivery towards the events-per-second limit. When that limit has tripped,
    /// receiving channels are shut down after the message (Supabase's rule).
    /// `held`: the registry's topic for `key`, when the caller holds it (saves a lookup).
    fn deliver_local(
        &self,
        key: &str,
        held: Option<&Topic>,
        message: &Outgoing,
        exclude: Option<ConnId>,
    ) -> Delivery {
        let looked_up;
        let topic = match held {
            Some(topic) => topic,
            None => match self.registry.get(key) {
                Some(topic) => {
                    looked_up = topic;
                    &*looked_up
                }
                None => return Delivery::default(),
            },
        };
        let started = Instant::now();
        let over_limit = self.counters.events.is_over_limit();
        let delivery = topic.deliver(
            message,
            exclude,
            over_limit.then_some(shutdown::TOO_MANY_MESSAGES),
        );
        self.metrics
            .fanout_seconds
            .observe(started.elapsed().as_secs_f64());
        self.counters.events.add(delivery.recipients);
        delivery
    }
}
