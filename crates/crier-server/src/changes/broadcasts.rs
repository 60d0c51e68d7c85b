//! Broadcasts from the database in the capture loop: rows inserted into
//! `realtime.messages` come through the slot with the changes, and are published through
//! the node's broadcast funnel to the private or public topic the row names.
//!
//! They have the guarantee postgres changes have, because they share the loop: the slot
//! moves past a transaction only after its broadcasts are queued, so a row committed
//! while Crier is down, or while capture reconnects, is delivered when it is back. After
//! a broadcast that leaves subscribers over their room mark, capture waits for them, as
//! after a batch of changes. Broadcasts of one topic go out in commit order.
//!
//! Who receives one is decided when a channel joins: a private channel's subscribers
//! passed the broadcast read check then (and again at each token refresh), as in
//! Supabase. Each broadcast counts towards the events-per-second limit like any other.

use std::sync::Arc;

use crier_postgres::database_broadcast::DatabaseBroadcast;

use super::Feed;
use super::deliver::let_queues_drain;
use crate::outbound::ConnHandle;

/// Why a database broadcast was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Skipped {
    /// Its payload is over the node's payload limit.
    #[error("payload of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// It cannot be sent: a JSON payload that does not parse, or a binary broadcast
    /// whose event name is over 255 bytes.
    #[error("it cannot be encoded as a broadcast")]
    Unencodable,
}

/// Where captured database broadcasts go: the node's broadcast funnel.
pub(crate) trait BroadcastSink: Send + Sync {
    /// Publishes `broadcast` to its topic's subscribers (on every node). Returns the
    /// local subscribers it left over their room mark.
    fn publish_stored(
        &self,
        broadcast: &DatabaseBroadcast,
    ) -> Result<Vec<Arc<ConnHandle>>, Skipped>;
}

/// Publishes a batch's broadcasts in order, waiting after each one that leaves
/// subscribers lagging.
pub(super) async fn deliver(feed: &Feed, broadcasts: &[DatabaseBroadcast]) {
    let Some(sink) = feed.sink.get().and_then(std::sync::Weak::upgrade) else {
        // The node is gone (it is shutting down): nothing to publish to.
        return;
    };
    for broadcast in broadcasts {
        match sink.publish_stored(broadcast) {
            Ok(lagging) => {
                feed.metrics.database_broadcasts.inc();
                if !lagging.is_empty() {
                    let_queues_drain(feed, lagging).await;
                }
            }
            Err(why) => {
                feed.metrics.database_broadcasts_skipped.inc();
                tracing::warn!(id = %broadcast.message.id, topic = %broadcast.topic, %why, "database broadcast skipped");
            }
        }
    }
}
