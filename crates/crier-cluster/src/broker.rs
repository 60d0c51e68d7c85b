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
//! [`Broker`]'s calls never wait. They queue commands to three tasks: the publisher, which
//! sends every publication and presence change queued since its last round trip in one
//! pipeline over a reconnecting connection; the subscriber, which owns the pub/sub
//! connection, keeps the set of subscribed topics with where each one's presence stands,
//! reads a topic's presence snapshot when it subscribes, and after a lost connection
//! reconnects (with a capped backoff), pushes this node's presences again and subscribes
//! to every topic again; and the liveness watcher (`crate::liveness`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crier_server::broker::{
    Broker, BrokerError, BusStatus, LocalDelivery, NodeStatus, Publication,
};
use crier_server::presence::{PresenceSink, PresenceStore, RemoteChange, TopicPresence};
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use tokio::sync::{mpsc, oneshot};

use crate::ClusterError;
use crate::envelope::{self, Carried};
use crate::liveness::{self, NodeSeen};
use crate::outbox::{Outbox, Queued};
use crate::presence::{self, Cursor, Presence};

/// The prefix of every topic's channel.
const CHANNEL_PREFIX: &str = "crier:topic:";
/// Most commands waiting for Redis (`crate::outbox`): past it, what other nodes would get
/// is dropped, and they are told.
const MAX_WAITING: usize = 100_000;
/// And at most this many bytes of them.
const MAX_WAITING_BYTES: usize = 64 << 20;
/// How often a topic whose presence snapshot could not be read is tried again.
const STALE_RETRY: Duration = Duration::from_secs(2);
/// Most publications sent in one pipeline.
const MAX_PIPELINE: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Tries of one pipeline before its publications count as lost (about 3 s in all).
const RETRIES: u32 = 5;
const BACKOFF_MAX: Duration = Duration::from_secs(2);
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
}

#[derive(Debug)]
enum SubscriberCommand {
    Subscribe(String),
    Unsubscribe(String),
    /// Answered once every command before it is in effect.
    Synced(oneshot::Sender<()>),
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
        tokio::spawn(publish(
            client.clone(),
            queued,
            Arc::downgrade(&outbox),
            Arc::downgrade(&presence),
        ));
        tokio::spawn(subscribe(
            client.clone(),
            commands,
            Arc::clone(&presence),
            Arc::clone(&delivery),
            Arc::clone(&subscribed),
        ));
        let client_for_relay = client.clone();
        let watcher = tokio::spawn(liveness::watch(
            client,
            token,
            Arc::clone(&presence),
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
                })
                .collect(),
        })
    }
}

/// The Redis channel of a topic (by its key).
pub(crate) fn channel_of(topic: &str) -> String {
    format!("{CHANNEL_PREFIX}{topic}")
}

/// Sends what is queued, a pipeline per round trip, until every broker handle is gone.
/// The connection manager reconnects by itself; a pipeline that fails is logged and
/// dropped (the subscribers that missed it learn so when they resume).
async fn publish(
    client: redis::Client,
    mut queued: mpsc::UnboundedReceiver<Queued>,
    // Weak: the outbox holds the queue's sender, which must go with the broker for this
    // task to end.
    outbox: Weak<Outbox>,
    presence: Weak<Presence>,
) {
    let config =
        redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(COMMAND_TIMEOUT));
    let mut backoff = BACKOFF_MIN;
    let mut connection: ConnectionManager = loop {
        match client
            .get_connection_manager_with_config(config.clone())
            .await
        {
            Ok(connection) => break connection,
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "cannot reach Redis to publish to other nodes");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    };
    let gap = presence
        .upgrade()
        .map(|presence| envelope::gap(presence.node()))
        .unwrap_or_default();
    // Topics whose broadcasts were lost (here, or dropped by a full outbox): the other
    // nodes are told with the next pipeline that goes through. Likewise a dropped
    // presence change makes this node push all its presences again then.
    let mut lost: HashSet<String> = HashSet::new();
    let mut presence_lost = false;
    let mut batch = Vec::with_capacity(MAX_PIPELINE);
    while queued.recv_many(&mut batch, MAX_PIPELINE).await > 0 {
        if let Some(outbox) = outbox.upgrade() {
            let bytes = batch.iter().map(|queued| queued.2).sum();
            outbox.drained(batch.len(), bytes);
            let dropped = outbox.take_dropped();
            lost.extend(dropped.topics);
            presence_lost |= dropped.presence;
        }
        let mut pipeline = redis::pipe();
        for topic in &lost {
            pipeline
                .cmd("PUBLISH")
                .arg(channel_of(topic))
                .arg(&gap)
                .ignore();
        }
        let mut topics = Vec::new();
        for (topic, command, _) in batch.drain(..) {
            topics.extend(topic);
            pipeline.add_command(command).ignore();
        }
        // A connection lost under a pipeline is reconnected by the manager: try again a
        // few times. A pipeline cut half way may then deliver some twice; one that still
        // fails is lost, and said so. Neither an error Redis answers (it would come back
        // on every try) nor a late answer (Redis may have applied it) is tried again.
        let mut wait = BACKOFF_MIN;
        for attempt in 1..=RETRIES {
            match pipeline.query_async::<()>(&mut connection).await {
                Ok(()) => {
                    lost.clear();
                    if std::mem::take(&mut presence_lost)
                        && let Some(presence) = presence.upgrade()
                    {
                        // Leaves that were dropped may be of topics this node no longer
                        // has: clear those, and push the others again.
                        if let Err(err) = presence.resync(&mut connection).await {
                            tracing::warn!(error = %err, "cannot clear this node's stale presences yet");
                            presence_lost = true;
                        }
                        if let Some(sink) = presence.sink() {
                            sink.republish(None);
                        }
                    }
                    break;
                }
                Err(err) if attempt == RETRIES || !is_lost_connection(&err) => {
                    tracing::warn!(error = %err, "broadcasts or presence changes to other nodes were lost: Redis failed");
                    lost.extend(topics);
                    presence_lost = true;
                    break;
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

fn is_lost_connection(err: &redis::RedisError) -> bool {
    !err.is_timeout()
        && (err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal())
}

/// Where the subscriber stands: the topics subscribed and each one's presence position.
struct Subscriptions {
    topics: HashMap<String, Cursor>,
    /// Topics whose presence snapshot could not be read: read again every few seconds.
    stale: HashSet<String>,
    presence: Arc<Presence>,
    delivery: Arc<OnceLock<Weak<dyn LocalDelivery>>>,
}

impl Subscriptions {
    /// Reads `topic`'s presence snapshot and makes this node's view of it exactly that.
    async fn load(
        &mut self,
        reader: &mut MultiplexedConnection,
        topic: &str,
    ) -> redis::RedisResult<()> {
        let (cursor, entries) = self.presence.snapshot(reader, topic).await?;
        if let Some(sink) = self.presence.sink() {
            sink.merge(topic, RemoteChange::Reset(entries));
        }
        if let Some(at) = self.topics.get_mut(topic) {
            *at = cursor;
        }
        Ok(())
    }

    /// [`Subscriptions::load`], or when Redis does not answer in time, later: one slow
    /// read must not cost every topic a reconnect.
    async fn load_or_later(&mut self, reader: &mut MultiplexedConnection, topic: &str) {
        match self.load(reader, topic).await {
            Ok(()) => {
                self.stale.remove(topic);
            }
            Err(err) => {
                tracing::warn!(topic, error = %err, "cannot read a topic's presence yet; trying again");
                self.stale.insert(topic.to_owned());
            }
        }
    }

    /// Hands one message from the topic's channel to this node. Returns a topic whose
    /// presence snapshot must be read again (a change was missed).
    fn receive(&mut self, message: &redis::Msg) -> Option<String> {
        let topic = message.get_channel_name().strip_prefix(CHANNEL_PREFIX)?;
        let (origin, carried) = match envelope::decode(message.get_payload_bytes()) {
            Ok(decoded) => decoded,
            Err(err) => {
                tracing::warn!(topic, error = %err, "ignoring an unreadable frame from Redis");
                return None;
            }
        };
        let node = self.presence.node();
        match carried {
            Carried::Presence(text) => self.presence_change(topic, origin, &text),
            _ if origin == node => None, // this node delivered it locally already
            Carried::Gap => {
                let delivery = self.delivery.get().and_then(Weak::upgrade)?;
                delivery.gap(topic);
                None
            }
            carried => {
                let delivery = self.delivery.get().and_then(Weak::upgrade)?;
                delivery.deliver(topic, carried.publication()?);
                None
            }
        }
    }

    fn presence_change(&mut self, topic: &str, origin: &str, text: &str) -> Option<String> {
        let Some((at, change)) = presence::parse(text) else {
            tracing::warn!(topic, "ignoring an unreadable presence change from Redis");
            return None;
        };
        let cursor = self.topics.get_mut(topic)?;
        if at.epoch == cursor.epoch && at.seq <= cursor.seq {
            return None; // the snapshot has it
        }
        if presence::older(&at.epoch, &cursor.epoch) {
            return None; // of a hash deleted before the snapshot was read
        }
        // The first change of a new hash is all of it; any other must follow the last.
        let fresh = at.seq == 1;
        let next = at.epoch == cursor.epoch && at.seq == cursor.seq + 1;
        if !fresh && !next {
            return Some(topic.to_owned());
        }
        *cursor = at;
        let sink = self.presence.sink()?;
        let about_here = change.node == self.presence.node();
        if about_here && change.clear && origin != self.presence.node() {
            // Another node took this one for dead and cleared its entries here.
            sink.republish(Some(topic));
            return None;
        }
        if fresh {
            sink.merge(topic, self.presence.fresh_start(change));
        } else if !about_here {
            for remote in self.presence.remote_changes(change) {
                sink.merge(topic, remote);
            }
        }
        None
    }
}

/// Owns the pub/sub connection: applies subscription commands, hands other nodes'
/// publications and presence changes to this node, and after a lost connection
/// reconnects, pushes this node's presences again, and subscribes again to every topic
/// it had, reading each one's presence snapshot.
async fn subscribe(
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<SubscriberCommand>,
    presence: Arc<Presence>,
    delivery: Arc<OnceLock<Weak<dyn LocalDelivery>>>,
    connected: Arc<AtomicBool>,
) {
    let mut state = Subscriptions {
        topics: HashMap::new(),
        stale: HashSet::new(),
        presence,
        delivery,
    };
    // `synced` calls that came while the connection was failing: answered once it is
    // back and every topic is subscribed again.
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut backoff = BACKOFF_MIN;
    let mut connected_before = false;
    let mut retry = tokio::time::interval(STALE_RETRY);
    loop {
        if commands.is_closed() {
            return; // the broker is gone
        }
        let opened = async {
            let pubsub = client.get_async_pubsub().await?;
            let config =
                redis::AsyncConnectionConfig::new().set_response_timeout(Some(COMMAND_TIMEOUT));
            let reader = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::RedisResult::Ok((pubsub, reader))
        };
        let (pubsub, mut reader) = match opened.await {
            Ok(opened) => opened,
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "cannot reach Redis for broadcasts from other nodes");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut healthy = true;
        if connected_before {
            // Redis may have restarted, empty or from a snapshot: push this node's
            // presences again, and clear what it holds of this node's that is stale.
            if let Some(presences) = state.presence.sink() {
                presences.republish(None);
            }
            healthy = state.presence.resync(&mut reader).await.is_ok();
        }
        let topics: Vec<String> = state.topics.keys().cloned().collect();
        for topic in &topics {
            if !healthy {
                break;
            }
            healthy = sink.subscribe(channel_of(topic)).await.is_ok();
            if healthy {
                state.load_or_later(&mut reader, topic).await;
            }
        }
        if healthy {
            if connected_before && let Some(delivery) = state.delivery.get().and_then(Weak::upgrade)
            {
                // What other nodes published while this connection was down never came.
                for topic in &topics {
                    delivery.gap(topic);
                }
            }
            backoff = BACKOFF_MIN;
            connected_before = true;
            connected.store(true, Ordering::Relaxed);
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
        }
        while healthy {
            tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(SubscriberCommand::Subscribe(topic)) => {
                        state.topics.insert(topic.clone(), Cursor::default());
                        healthy = sink.subscribe(channel_of(&topic)).await.is_ok();
                        if healthy {
                            state.load_or_later(&mut reader, &topic).await;
                        }
                    }
                    Some(SubscriberCommand::Unsubscribe(topic)) => {
                        healthy = sink.unsubscribe(channel_of(&topic)).await.is_ok();
                        state.topics.remove(&topic);
                        state.stale.remove(&topic);
                    }
                    Some(SubscriberCommand::Synced(done)) => {
                        // A round trip proves the connection is still the live one (a
                        // restarted Redis knows none of the subscriptions).
                        if sink.ping::<redis::Value>().await.is_ok() {
                            let _ = done.send(());
                        } else {
                            waiting.push(done);
                            healthy = false;
                        }
                    }
                },
                _ = retry.tick(), if !state.stale.is_empty() => {
                    let stale: Vec<String> = state.stale.iter().cloned().collect();
                    for topic in stale {
                        state.load_or_later(&mut reader, &topic).await;
                    }
                }
                message = stream.next() => match message {
                    None => healthy = false,
                    Some(message) => {
                        if let Some(topic) = state.receive(&message) {
                            state.load_or_later(&mut reader, &topic).await;
                        }
                    }
                },
            }
        }
        connected.store(false, Ordering::Relaxed);
        tracing::warn!(retry_in = ?backoff, "lost Redis for broadcasts from other nodes; reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
