//! The node as the destination of broadcasts from the database: each captured
//! `realtime.messages` row goes through the same funnel as a client's broadcast.

use std::sync::Arc;

use crier_postgres::database_broadcast::DatabaseBroadcast;
use crier_protocol::events::TOPIC_PREFIX;

use super::Shared;
use crate::changes::{BroadcastSink, Skipped};
use crate::fanout::Outgoing;
use crate::outbound::ConnHandle;
use crate::registry::topic_key;

impl BroadcastSink for Shared {
    fn publish_stored(
        &self,
        broadcast: &DatabaseBroadcast,
    ) -> Result<Vec<Arc<ConnHandle>>, Skipped> {
        let message = &broadcast.message;
        let size = match (&message.payload, &message.binary) {
            (Some(payload), _) => payload.len(),
            (None, Some(bytes)) => bytes.len(),
            (None, None) => 0,
        };
        let limit = self.config.limits.max_payload_bytes();
        if size > limit {
            return Err(Skipped::TooLarge { size, limit });
        }
        let topic = format!("{TOPIC_PREFIX}{}", broadcast.topic);
        let outgoing = Outgoing::stored(&topic, message, false).ok_or(Skipped::Unencodable)?;
        let key = topic_key(&topic, broadcast.private);
        // Not through the broker: in a cluster every node reads the row from its own slot.
        Ok(self.publish_here(&key, None, &outgoing, None).lagging)
    }
}
