//! The topic registry: which sockets subscribe to which topic, and each topic's presence.
//!
//! A sharded map (`DashMap`) from topic to [`Topic`]. A topic exists while it has a
//! subscriber or a presence, and is removed as soon as it has neither, so the map never
//! grows with every topic name ever used. Subscribing happens while holding the map
//! entry, and removal re-checks emptiness under the same shard lock, so a join can never
//! land in a topic that is being removed.

mod topic;

use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::broker::Broker;
use crate::outbound::ConnHandle;
use crate::presence::PresenceStore;
pub(crate) use topic::{Delivery, Topic};

/// All topics with at least one subscriber on this node.
///
/// The broker is told when a topic gains its first local subscriber and loses its last,
/// while the topic's map entry is locked, so its calls for one topic come in the order
/// the topic came and went.
#[derive(Debug)]
pub(crate) struct Registry {
    topics: DashMap<Arc<str>, Arc<Topic>>,
    broker: Arc<dyn Broker>,
    presence: Arc<dyn PresenceStore>,
}

impl Registry {
    pub(crate) fn new(broker: Arc<dyn Broker>, presence: Arc<dyn PresenceStore>) -> Self {
        Registry {
            topics: DashMap::new(),
            broker,
            presence,
        }
    }

    /// Subscribes `conn` to `topic`. With presence enabled, `state_frame` encodes the
    /// current presence state, which is queued to `conn` atomically with the subscription
    /// so that it sees every later diff and no earlier one.
    pub(crate) fn subscribe(
        &self,
        topic: &str,
        conn: &Arc<ConnHandle>,
        presence_enabled: bool,
        state_frame: impl FnOnce(&crier_protocol::presence::PresenceGroups) -> crate::frame::Frame,
    ) -> Arc<Topic> {
        let entry = match self.topics.entry(Arc::from(topic)) {
            Entry::Occupied(entry) => entry.into_ref(),
            Entry::Vacant(entry) => {
                self.broker.subscribe(topic);
                entry.insert(Arc::new(Topic::new(topic, &*self.presence)))
            }
        };
        entry.add(conn, presence_enabled, state_frame);
        Arc::clone(&entry)
    }

    /// The topic, if anyone subscribes to it here.
    pub(crate) fn get(&self, topic: &str) -> Option<Arc<Topic>> {
        self.topics.get(topic).map(|entry| Arc::clone(&entry))
    }

    /// Drops `topic` from the map if it has become empty.
    pub(crate) fn remove_if_empty(&self, topic: &Topic) {
        self.topics.remove_if(topic.name(), |_, t| {
            let empty = t.is_empty();
            if empty {
                // Under the entry's lock: a join that recreates the topic subscribes after.
                self.broker.unsubscribe(t.name());
            }
            empty
        });
    }
}
