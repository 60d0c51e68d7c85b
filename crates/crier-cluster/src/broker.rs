//! [`RedisBroker`]: broadcasts and presence between nodes over Redis.
//!
//! Each topic is one plain Redis channel, `crier:topic:<topic key>`, subscribed by a
//! node only while it has local subscribers of the topic (no pattern subscriptions: each
//! `PUBLISH` would cost Redis a match against every pattern, and a topic named `a*`
//! would be a pattern). A publication is encoded once ([`crate::envelope`]) with the
//! publishing node's name, so that node drops its own echo; it has delivered locally
//! already.
//!
//! The channel also carries the topic's presence changes (`crate::presence`).
//!
//! [`Broker`]'s calls never wait. They queue commands to three tasks: the publisher
//! (`crate::publisher`), which sends every publication and presence change queued since
//! its last round trip in one pipeline over a reconnecting connection; the subscriber
//! (`crate::subscriber`), which owns the pub/sub connection, keeps the set of subscribed
//! topics with where each one's presence stands, reads a topic's presence snapshot when
//! it subscribes, and after a lost connection reconnects (with a capped backoff), pushes
//! this node's presences again and subscribes to every topic again; and the liveness
//! watcher (`crate::liveness`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crier_server::HistoryConfig;
use crier_server::broker::{
    Broker, BrokerError, BusStatus, LocalDelivery, NodeStatus, Publication, SharedHistory,
};
use crier_server::presence::{PresenceSink, PresenceStore, TopicPresence};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::ClusterError;
use crate::envelope;
use crate::history::RedisHistory;
use crate::liveness::{self, NodeSeen};
use crate::outbox::Outbox;
use crate::presence::Presence;
use crate::subscriber::SubscriberCommand;
use crate::{publisher, subscriber};

/// The prefix of every topic's channel.
pub(crate) const CHANNEL_PREFIX: &str = "crier:topic:";
/// Most commands waiting for Redis (`crate::outbox`): past it, what other nodes would get
/// is dropped, and they are told.
const MAX_WAITING: usize = 100_000;
/// And at most this many bytes of them.
const MAX_WAITING_BYTES: usize = 64 << 20;
/// Reconnection waits, doubling from the first to the last.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long a pipeline or a snapshot read may take before it counts as failed. Well
/// above redis-rs's default (0.5 s): on a node whose CPU is saturated Redis answers late,
/// and a publication retried after a late answer would reach the other nodes twice.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The bus between nodes, over one Redis: broadcasts ([`Broker`]) and presence
/// ([`PresenceStore`]). Give a node both.
#[derive(Debug)]
pub struct RedisBroker {
    node: Arc<str>,
    outbox: Arc<Outbox>,
    subscriptions: mpsc::UnboundedSender<SubscriberCommand>,
    delivery: Arc<OnceLock<Weak<dyn LocalDelivery>>>,
    presence: Arc<Presence>,
    /// The pub/sub connection is up.
    subscribed: Arc<AtomicBool>,
    /// The last lease renewal went through.
    renewed: Arc<AtomicBool>,
    nodes: Arc<Mutex<Vec<NodeSeen>>>,
    watcher: tokio::task::JoinHandle<()>,
    client: redis::Client,
    /// Set when the node keeps history: broadcasts are then numbered in Redis
    /// (`crate::history`).
    history: Arc<OnceLock<HistoryConfig>>,
}

impl RedisBroker {
    /// Connects to the Redis at `url`, takes the name `node` (refused while another live
    /// node holds it), and starts the bus's tasks on the current tokio runtime. Fails
    /// when the URL is unusable, Redis cannot be reached or refuses the credentials, or
    /// the name is taken or unusable (empty, over 200 bytes, or with a `|`); later
    /// outages are ridden out.
    pub async fn connect(url: &str, node: &str) -> Result<Arc<RedisBroker>, ClusterError> {
        crate::check_name(node)?;
        let client = crate::reach(url).await?;
        let token = liveness::token();
        liveness::take(&client, node, &token).await?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(ClusterError::from_redis)?;
        let broker = RedisBroker::start(client, node, token);
        // A previous run under this name may have left presences behind.
        broker
            .presence
            .resync(&mut connection)
            .await
            .map_err(ClusterError::from_redis)?;
        Ok(broker)
    }

    /// Starts the bus's tasks on the current tokio runtime without waiting for Redis:
    /// they connect (and reconnect) by themselves, and what is published meanwhile
    /// waits for them; the name is taken once Redis answers. Fails only on an unusable
    /// URL.
    pub fn connect_later(url: &str, node: &str) -> Result<Arc<RedisBroker>, ClusterError> {
        crate::check_name(node)?;
        let client = redis::Client::open(url).map_err(|err| ClusterError::Url(err.to_string()))?;
        Ok(RedisBroker::start(client, node, liveness::token()))
    }

    fn start(client: redis::Client, node: &str, token: String) -> Arc<RedisBroker> {
        let (outbox, queued) = Outbox::new(MAX_WAITING, MAX_WAITING_BYTES);
        let outbox = Arc::new(outbox);
        let (subscriptions, commands) = mpsc::unbounded_channel();
        let delivery: Arc<OnceLock<Weak<dyn LocalDelivery>>> = Arc::default();
        let node: Arc<str> = Arc::from(node);
        let presence = Arc::new(Presence::new(Arc::clone(&node), Arc::clone(&outbox)));
        let subscribed = Arc::new(AtomicBool::new(false));
        let renewed = Arc::new(AtomicBool::new(false));
        let nodes = Arc::default();
        let history: Arc<OnceLock<HistoryConfig>> = Arc::default();
        tokio::spawn(publisher::publish(
            client.clone(),
            queued,
            Arc::downgrade(&outbox),
            Arc::downgrade(&presence),
        ));
        tokio::spawn(subscriber::subscribe(
            client.clone(),
            commands,
            Arc::clone(&presence),
            Arc::clone(&delivery),
            Arc::clone(&subscribed),
            Arc::clone(&history),
        ));
        let client_for_relay = client.clone();
        let watcher = tokio::spawn(liveness::watch(
            client,
            token,
            Arc::clone(&presence),
            Arc::clone(&delivery),
            Arc::clone(&nodes),
            Arc::clone(&renewed),
        ));
        Arc::new(RedisBroker {
            node,
            outbox,
            subscriptions,
            delivery,
            presence,
            subscribed,
            renewed,
            nodes,
            watcher,
            client: client_for_relay,
            history,
        })
    }

    /// The change relay on the same Redis, for `NodeBuilder::change_relay`: the nodes
    /// share one replication slot, one streams it, the others follow.
    pub fn change_relay(&self) -> std::sync::Arc<crate::RedisRelay> {
        std::sync::Arc::new(crate::RedisRelay::new(self.client.clone()))
    }

    /// This node's name on the bus.
    pub fn node(&self) -> &str {
        &self.node
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        // The lease then lapses, and the other nodes clear this node's presences.
        self.watcher.abort();
    }
}

impl PresenceStore for RedisBroker {
    fn open(&self, topic: &str) -> Box<dyn TopicPresence> {
        self.presence.open(topic)
    }

    fn attach(&self, sink: Weak<dyn PresenceSink>) {
        self.presence.attach(sink);
    }
}

impl Broker for RedisBroker {
    fn attach(&self, delivery: Weak<dyn LocalDelivery>) {
        let _ = self.delivery.set(delivery);
    }

    fn publish(&self, topic: &str, publication: Publication<'_>) -> Result<(), BrokerError> {
        let frame = envelope::encode(&self.node, publication);
        let mut command = redis::cmd("PUBLISH");
        command.arg(channel_of(topic)).arg(frame.as_ref());
        self.outbox
            .broadcast(topic, command, frame.len())
            .map_err(|_| BrokerError::Unavailable("the bus has stopped".into()))
    }

    fn subscribe(&self, topic: &str) {
        let _ = self
            .subscriptions
            .send(SubscriberCommand::Subscribe(topic.to_owned()));
    }

    fn unsubscribe(&self, topic: &str) {
        let _ = self
            .subscriptions
            .send(SubscriberCommand::Unsubscribe(topic.to_owned()));
    }

    fn confirms_later(&self) -> bool {
        true
    }

    fn synced(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let (done, answer) = oneshot::channel();
        let sent = self.subscriptions.send(SubscriberCommand::Synced(done));
        Box::pin(async move {
            if sent.is_ok() {
                let _ = answer.await;
            }
        })
    }

    fn shared_history(&self, config: &HistoryConfig) -> Option<Arc<dyn SharedHistory>> {
        let _ = self.history.set(config.clone());
        Some(Arc::new(RedisHistory::new(
            Arc::clone(&self.node),
            config.clone(),
            Arc::clone(&self.outbox),
            (Arc::clone(&self.subscribed), Arc::clone(&self.renewed)),
            self.client.clone(),
        )))
    }

    fn status(&self) -> Option<BusStatus> {
        let nodes = self.nodes.lock();
        Some(BusStatus {
            connected: self.subscribed.load(Ordering::Relaxed)
                && self.renewed.load(Ordering::Relaxed),
            nodes: nodes
                .iter()
                .map(|seen| NodeStatus {
                    name: seen.name.clone(),
                    presence_entries: seen.presence_entries,
                    connections: seen.connections,
                    renewed_ms_ago: seen.renewed_ms_ago_now(),
                })
                .collect(),
        })
    }
}

/// The Redis channel of a topic (by its key).
pub(crate) fn channel_of(topic: &str) -> String {
    format!("{CHANNEL_PREFIX}{topic}")
}
