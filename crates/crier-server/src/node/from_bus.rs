//! The node as the destination of what other nodes send through the bus: their
//! broadcasts (numbered by the shared history, or not), gaps, and presence changes.

use std::sync::Arc;

use super::Shared;
use crate::broker::{LocalDelivery, Publication, StreamPosition};
use crate::fanout::Outgoing;
use crate::history::Position;
use crate::outbound::ConnId;
use crate::registry::wire_topic;

/// Presence changes from other nodes, from a replicating presence store.
impl crate::presence::PresenceSink for Shared {
    fn merge(&self, key: &str, change: crate::presence::RemoteChange) {
        if let Some(topic) = self.registry.get(key) {
            topic.merge_presence(change);
        }
    }

    fn republish(&self, topic: Option<&str>) {
        match topic {
            Some(key) => {
                if let Some(topic) = self.registry.get(key) {
                    topic.republish_presence();
                }
            }
            None => {
                for topic in self.registry.topics() {
                    topic.republish_presence();
                }
            }
        }
    }
}

/// Broadcasts published on other nodes: queued to this node's subscribers without
/// waiting (the publishing node paces its publisher, and a bus must not stall on one
/// node's slow readers).
impl LocalDelivery for Shared {
    fn connections(&self) -> u64 {
        self.connections.current() as u64
    }

    /// A broadcast without a position (the bus keeps no shared history): through this
    /// node's history, so that it gets this node's next position, and every broadcast a
    /// subscriber here receives is in one stream, whichever node published it.
    fn deliver(&self, key: &str, publication: Publication<'_>) {
        match Outgoing::from_publication(wire_topic(key), publication) {
            Some(message) => {
                self.publish_here(key, None, &message, None);
            }
            None => {
                tracing::warn!(topic = %key, "ignoring an unreadable broadcast from another node");
            }
        }
    }

    fn deliver_at(
        &self,
        key: &str,
        publication: Publication<'_>,
        at: StreamPosition<'_>,
        exclude: Option<ConnId>,
    ) {
        let (Some(history), Some(message)) = (
            &self.history,
            Outgoing::from_publication(wire_topic(key), publication),
        ) else {
            return self.deliver(key, publication);
        };
        let content = Arc::clone(message.content().expect("a broadcast"));
        let position = Position {
            epoch: Arc::from(at.epoch),
            offset: at.offset,
        };
        let mut jumped = false;
        history.append_at(key, &position, &content, &mut |did_jump| {
            jumped = did_jump;
            message.set_position(position.clone());
            self.deliver_local(key, None, &message, exclude);
        });
        if jumped {
            self.tell_gap(key);
        }
    }

    fn continues(&self, key: &str, at: StreamPosition<'_>) {
        if let Some(history) = &self.history {
            let position = Position {
                epoch: Arc::from(at.epoch),
                offset: at.offset,
            };
            if history.continue_after(key, &position) {
                self.tell_gap(key);
            }
        }
    }

    fn gap(&self, key: &str) {
        // A copy of the shared history keeps where it stands: after a reconnect the
        // bus's mark says whether the stream moved on (or went back) meanwhile, and what
        // was missed is still in the shared stream, for a resume.
        if let Some(history) = &self.history
            && self.shared_history.is_none()
        {
            history.break_stream(key);
        }
        self.tell_gap(key);
    }
}

impl Shared {
    /// Tells the subscribers of `key` that broadcasts may have been lost on their way
    /// here (a `system` message; their next resume from before now reports the gap).
    fn tell_gap(&self, key: &str) {
        let Some(topic) = self.registry.get(key) else {
            return;
        };
        tracing::warn!(topic = %key, "broadcasts from other nodes may have been lost: subscribers are told");
        let report = serde_json::json!({
            "extension": "broadcast",
            "status": "error",
            "message": crier_protocol::codes::BROADCASTS_LOST,
            "resume": {"recovered": false},
        });
        let message = Outgoing::json(topic.name(), crier_protocol::events::SYSTEM, &report);
        topic.deliver(&message, None, None);
    }
}
