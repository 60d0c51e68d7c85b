//! The publisher task of [`crate::RedisBroker`]: sends what the outbox holds, one
//! pipeline per round trip, and tells the other nodes which topics lost broadcasts.

use std::collections::HashSet;
use std::sync::Weak;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::broker::{BACKOFF_MAX, BACKOFF_MIN, COMMAND_TIMEOUT, channel_of};
use crate::envelope;
use crate::outbox::{Outbox, Queued};
use crate::presence::Presence;

/// Most publications sent in one pipeline.
const MAX_PIPELINE: usize = 512;
/// Tries of one pipeline before its publications count as lost (about 3 s in all).
const RETRIES: u32 = 5;

/// Sends what is queued, a pipeline per round trip, until every broker handle is gone.
/// The connection manager reconnects by itself; a pipeline that fails is logged and
/// dropped (the subscribers that missed it learn so when they resume).
pub(crate) async fn publish(
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
    // Ready before the first broadcast (a Redis that restarts later forgets it, and is
    // given it again on `NOSCRIPT`).
    if let Err(err) = crate::history::load_append(&mut connection).await {
        tracing::warn!(error = %err, "cannot load the history script into Redis yet");
    }
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
    // Numbers this node's appends to the shared history, in the order they are sent.
    let mut sequence: u64 = 0;
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
        for (topic, mut command, _, numbered) in batch.drain(..) {
            topics.extend(topic);
            if numbered {
                // In the order sent: Redis applies each sequence number once.
                sequence += 1;
                command.arg(sequence);
            }
            pipeline.add_command(command).ignore();
        }
        // A connection lost under a pipeline is reconnected by the manager: try again a
        // few times. A pipeline cut half way may then deliver some twice; one that still
        // fails is lost, and said so. Broadcasts numbered in the shared history are not
        // numbered twice: their sequence numbers say which Redis applied already. Neither an error Redis answers (it would come back
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
                Err(err) if err.code() == Some("NOSCRIPT") => {
                    // A Redis that restarted forgot the append script. Not sent again:
                    // another node may have loaded it half way through this pipeline,
                    // so later appends ran and earlier ones did not, and their sequence
                    // numbers would now be skipped. Lost, and said so.
                    tracing::warn!(
                        "Redis forgot the history script (it restarted): broadcasts to other nodes were lost"
                    );
                    if let Err(err) = crate::history::load_append(&mut connection).await {
                        tracing::warn!(error = %err, "cannot load the history script into Redis");
                    }
                    lost.extend(topics);
                    presence_lost = true;
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
                    // The Redis on the other end of the new connection may have
                    // restarted and forgotten the script: give it before sending again.
                    let _ = crate::history::load_append(&mut connection).await;
                }
            }
        }
    }
}

fn is_lost_connection(err: &redis::RedisError) -> bool {
    !err.is_timeout()
        && (err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal())
}
