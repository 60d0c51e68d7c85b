//! The subscriber task of [`crate::RedisBroker`]: owns the pub/sub connection, keeps the
//! topics subscribed with where each one's presence stands, reads presence snapshots,
//! and after a lost connection reconnects, pushes this node's presences again, subscribes
//! again and tells the topics' subscribers of the gap.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crier_server::HistoryConfig;
use crier_server::broker::{LocalDelivery, StreamPosition};
use crier_server::presence::RemoteChange;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};

use crate::broker::{BACKOFF_MAX, BACKOFF_MIN, CHANNEL_PREFIX, COMMAND_TIMEOUT, channel_of};
use crate::envelope::{self, Carried};
use crate::history;
use crate::presence::{self, Cursor, Presence};

/// How often a topic whose presence snapshot could not be read is tried again.
const STALE_RETRY: Duration = Duration::from_secs(2);

/// What the broker asks of the subscriber task.
#[derive(Debug)]
pub(crate) enum SubscriberCommand {
    Subscribe(String),
    Unsubscribe(String),
    /// Answered once every command before it is in effect.
    Synced(oneshot::Sender<()>),
}

/// Where the subscriber stands: the topics subscribed and each one's presence position.
struct Subscriptions {
    topics: HashMap<String, Cursor>,
    /// Topics whose presence snapshot could not be read: read again every few seconds.
    stale: HashSet<String>,
    presence: Arc<Presence>,
    delivery: Arc<OnceLock<Weak<dyn LocalDelivery>>>,
    /// Set when broadcasts are numbered in the shared history (`crate::history`).
    history: Arc<OnceLock<HistoryConfig>>,
    /// The topic whose mark this node waits for, and whether it came.
    awaited_mark: Option<(String, bool)>,
}

impl Subscriptions {
    /// With a shared history: publishes where `topic`'s stream stands, and waits for
    /// that mark to come back through the pub/sub connection (handing what comes before
    /// it to the node), so that when a join's `synced` is answered, this node's copy of
    /// the stream knows where it starts. Returns false when the connection failed.
    async fn mark(
        &mut self,
        reader: &mut MultiplexedConnection,
        stream: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin),
        topic: &str,
    ) -> bool {
        let Some(config) = self.history.get().cloned() else {
            return true;
        };
        if let Err(err) = history::mark(reader, self.presence.node(), topic, &config).await {
            tracing::warn!(topic, error = %err, "cannot read where a topic's history stands");
            return !err.is_io_error() && !err.is_connection_dropped();
        }
        self.awaited_mark = Some((topic.to_owned(), false));
        let deadline = tokio::time::Instant::now() + COMMAND_TIMEOUT;
        let mut healthy = true;
        while self.awaited_mark.as_ref().is_some_and(|(_, seen)| !seen) {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(message)) => {
                    if let Some(stale) = self.receive(&message) {
                        self.stale.insert(stale);
                    }
                }
                Ok(None) => {
                    healthy = false;
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        topic,
                        "the mark of a topic's history did not come back in time"
                    );
                    break;
                }
            }
        }
        self.awaited_mark = None;
        healthy
    }

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
        let shared = self.history.get().is_some();
        match carried {
            Carried::Presence(text) => self.presence_change(topic, origin, &text),
            Carried::Numbered {
                epoch,
                offset,
                exclude,
                publication,
            } => {
                let delivery = self.delivery.get().and_then(Weak::upgrade)?;
                let at = StreamPosition {
                    epoch: &epoch,
                    offset,
                };
                let exclude = exclude.filter(|_| origin == node);
                delivery.deliver_at(topic, publication.publication()?, at, exclude);
                None
            }
            // Another node's mark is for that node.
            Carried::Mark { .. } if origin != node => None,
            Carried::Mark { epoch, offset } => {
                if let Some((awaited, seen)) = &mut self.awaited_mark
                    && awaited == topic
                {
                    *seen = true;
                }
                let delivery = self.delivery.get().and_then(Weak::upgrade)?;
                delivery.continues(
                    topic,
                    StreamPosition {
                        epoch: &epoch,
                        offset,
                    },
                );
                None
            }
            // With a shared history, this node's own publications reach its
            // subscribers through Redis too, so its own gaps are theirs.
            Carried::Gap if origin != node || shared => {
                let delivery = self.delivery.get().and_then(Weak::upgrade)?;
                delivery.gap(topic);
                None
            }
            _ if origin == node => None, // this node delivered it locally already
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
pub(crate) async fn subscribe(
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<SubscriberCommand>,
    presence: Arc<Presence>,
    delivery: Arc<OnceLock<Weak<dyn LocalDelivery>>>,
    connected: Arc<AtomicBool>,
    history: Arc<OnceLock<HistoryConfig>>,
) {
    let mut state = Subscriptions {
        topics: HashMap::new(),
        stale: HashSet::new(),
        presence,
        delivery,
        history,
        awaited_mark: None,
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
        if healthy
            && connected_before
            && let Some(delivery) = state.delivery.get().and_then(Weak::upgrade)
        {
            // What other nodes published while this connection was down never came.
            // With a shared history, each topic's mark then says whether its stream moved
            // on or went back meanwhile (the broadcasts missed are in Redis, for a resume).
            for topic in &topics {
                delivery.gap(topic);
            }
        }
        for topic in &topics {
            if !healthy {
                break;
            }
            healthy = state.mark(&mut reader, &mut stream, topic).await;
        }
        if healthy {
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
                            healthy = state.mark(&mut reader, &mut stream, &topic).await;
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
