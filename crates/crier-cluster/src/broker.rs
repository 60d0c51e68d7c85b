//! [`RedisBroker`]: broadcasts between nodes over Redis pub/sub.
//!
//! Each topic is one plain Redis channel, `crier:broadcast:<topic key>`, subscribed by a
//! node only while it has local subscribers of the topic (no pattern subscriptions: each
//! `PUBLISH` would cost Redis a match against every pattern, and a topic named `a*`
//! would be a pattern). A publication is encoded once ([`crate::envelope`]) with the
//! publishing node's name, so that node drops its own echo; it has delivered locally
//! already.
//!
//! [`Broker`]'s calls never wait. They queue commands to two tasks: the publisher, which
//! sends every publication queued since its last round trip in one pipeline over a
//! reconnecting connection, and the subscriber, which owns the pub/sub connection, keeps
//! the set of subscribed topics, and after a lost connection reconnects (with a capped
//! backoff) and subscribes to all of them again.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use crier_server::broker::{Broker, BrokerError, LocalDelivery, Publication};
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::ClusterError;
use crate::envelope;

/// The prefix of every topic's channel.
const CHANNEL_PREFIX: &str = "crier:broadcast:";
/// Most publications sent in one pipeline.
const MAX_PIPELINE: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Tries of one pipeline before its publications count as lost (about 3 s in all).
const RETRIES: u32 = 5;
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The bus between nodes, over one Redis.
#[derive(Debug)]
pub struct RedisBroker {
    node: Arc<str>,
    publications: mpsc::UnboundedSender<(String, Bytes)>,
    subscriptions: mpsc::UnboundedSender<SubscriberCommand>,
    delivery: Arc<OnceLock<Weak<dyn LocalDelivery>>>,
}

#[derive(Debug)]
enum SubscriberCommand {
    Subscribe(String),
    Unsubscribe(String),
    /// Answered once every command before it is in effect.
    Synced(oneshot::Sender<()>),
}

impl RedisBroker {
    /// Connects to the Redis at `url` as node `node` and starts the bus's tasks on the
    /// current tokio runtime. Fails when the URL is unusable or Redis cannot be reached
    /// or refuses the credentials now; later outages are ridden out.
    pub async fn connect(url: &str, node: &str) -> Result<Arc<RedisBroker>, ClusterError> {
        let client = crate::reach(url).await?;
        Ok(RedisBroker::start(client, node))
    }

    /// Starts the bus's tasks on the current tokio runtime without waiting for Redis:
    /// they connect (and reconnect) by themselves, and what is published meanwhile
    /// waits for them. Fails only on an unusable URL.
    pub fn connect_later(url: &str, node: &str) -> Result<Arc<RedisBroker>, ClusterError> {
        let client = redis::Client::open(url).map_err(|err| ClusterError::Url(err.to_string()))?;
        Ok(RedisBroker::start(client, node))
    }

    fn start(client: redis::Client, node: &str) -> Arc<RedisBroker> {
        let (publications, queued) = mpsc::unbounded_channel();
        let (subscriptions, commands) = mpsc::unbounded_channel();
        let delivery: Arc<OnceLock<Weak<dyn LocalDelivery>>> = Arc::default();
        let node: Arc<str> = Arc::from(node);
        tokio::spawn(publish(client.clone(), queued));
        tokio::spawn(subscribe(
            client,
            commands,
            Arc::clone(&node),
            Arc::clone(&delivery),
        ));
        Arc::new(RedisBroker {
            node,
            publications,
            subscriptions,
            delivery,
        })
    }

    /// This node's name on the bus.
    pub fn node(&self) -> &str {
        &self.node
    }
}

impl Broker for RedisBroker {
    fn attach(&self, delivery: Weak<dyn LocalDelivery>) {
        let _ = self.delivery.set(delivery);
    }

    fn publish(&self, topic: &str, publication: Publication<'_>) -> Result<(), BrokerError> {
        let frame = envelope::encode(&self.node, publication);
        self.publications
            .send((channel_of(topic), frame))
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
}

fn channel_of(topic: &str) -> String {
    format!("{CHANNEL_PREFIX}{topic}")
}

/// Sends what is queued, a pipeline per round trip, until every broker handle is gone.
/// The connection manager reconnects by itself; a pipeline that fails is logged and
/// dropped (the subscribers that missed it learn so when they resume).
async fn publish(client: redis::Client, mut queued: mpsc::UnboundedReceiver<(String, Bytes)>) {
    let mut backoff = BACKOFF_MIN;
    let mut connection: ConnectionManager = loop {
        match client.get_connection_manager().await {
            Ok(connection) => break connection,
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "cannot reach Redis to publish to other nodes");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    };
    let mut batch = Vec::with_capacity(MAX_PIPELINE);
    while queued.recv_many(&mut batch, MAX_PIPELINE).await > 0 {
        let mut pipeline = redis::pipe();
        for (channel, frame) in batch.drain(..) {
            pipeline
                .cmd("PUBLISH")
                .arg(channel)
                .arg(frame.as_ref())
                .ignore();
        }
        // A connection lost under a pipeline is reconnected by the manager: try again a
        // few times. A pipeline cut half way may then deliver some twice, which resuming
        // clients drop by offset; one that still fails is lost, and said so.
        let mut wait = BACKOFF_MIN;
        for attempt in 1..=RETRIES {
            match pipeline.query_async::<()>(&mut connection).await {
                Ok(()) => break,
                Err(err) if attempt == RETRIES => {
                    tracing::warn!(error = %err, "broadcasts to other nodes were lost: Redis failed");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// Owns the pub/sub connection: applies subscription commands, hands other nodes'
/// publications to this node, and after a lost connection reconnects and subscribes
/// again to every topic it had.
async fn subscribe(
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<SubscriberCommand>,
    node: Arc<str>,
    delivery: Arc<OnceLock<Weak<dyn LocalDelivery>>>,
) {
    let mut topics: HashSet<String> = HashSet::new();
    // `synced` calls that came while the connection was failing: answered once it is
    // back and every topic is subscribed again.
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut backoff = BACKOFF_MIN;
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "cannot reach Redis for broadcasts from other nodes");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut healthy = true;
        for topic in &topics {
            if sink.subscribe(channel_of(topic)).await.is_err() {
                healthy = false;
                break;
            }
        }
        if healthy {
            backoff = BACKOFF_MIN;
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
        }
        while healthy {
            tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(SubscriberCommand::Subscribe(topic)) => {
                        healthy = sink.subscribe(channel_of(&topic)).await.is_ok();
                        topics.insert(topic);
                    }
                    Some(SubscriberCommand::Unsubscribe(topic)) => {
                        healthy = sink.unsubscribe(channel_of(&topic)).await.is_ok();
                        topics.remove(&topic);
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
                message = stream.next() => match message {
                    None => healthy = false,
                    Some(message) => deliver(&node, &delivery, &message),
                },
            }
        }
        tracing::warn!(retry_in = ?backoff, "lost Redis for broadcasts from other nodes; reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Hands one publication from another node to this node's subscribers.
fn deliver(node: &str, delivery: &OnceLock<Weak<dyn LocalDelivery>>, message: &redis::Msg) {
    let Some(topic) = message.get_channel_name().strip_prefix(CHANNEL_PREFIX) else {
        return;
    };
    let (origin, carried) = match envelope::decode(message.get_payload_bytes()) {
        Ok(decoded) => decoded,
        Err(err) => {
            tracing::warn!(topic, error = %err, "ignoring an unreadable publication from Redis");
            return;
        }
    };
    if origin == node {
        return; // this node delivered it locally already
    }
    if let Some(delivery) = delivery.get().and_then(Weak::upgrade) {
        delivery.deliver(topic, carried.publication());
    }
}
