//! The topic registry: which sockets subscribe to which topic, and each topic's presence.
//!
//! A sharded map (`DashMap`) from topic to [`Topic`]. A topic exists while it has a
//! subscriber or a presence, and is removed as soon as it has neither, so the map never
//! grows with every topic name ever used. Subscribing happens while holding the map
//! entry, and removal re-checks emptiness under the same shard lock, so a join can never
//! land in a topic that is being removed.

mod topic;

use std::borrow::Cow;
use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::broker::Broker;
use crate::outbound::ConnHandle;
use crate::presence::PresenceStore;
pub(crate) use topic::{Delivery, Topic};

/// What a private topic's key starts with. Private and public channels of one name are
/// different topics (Supabase keeps them apart the same way), so their messages and
/// presences never meet; the wire topic (`realtime:room1`) is the same for both.
const PRIVATE_KEY_PREFIX: &str = "private:";

/// The key of a topic in the registry, the presence store and the broker: the wire topic
/// for a public channel, `private:` and the wire topic for a private one. Wire topics
/// start with `realtime:`, so no public key can look like a private one.
pub(crate) fn topic_key(topic: &str, private: bool) -> Cow<'_, str> {
    if private {
        Cow::Owned(format!("{PRIVATE_KEY_PREFIX}{topic}"))
    } else {
        Cow::Borrowed(topic)
    }
}

/// The wire topic of a key made by [`topic_key`].
pub(crate) fn wire_topic(key: &str) -> &str {
    key.strip_prefix(PRIVATE_KEY_PREFIX).unwrap_or(key)
}

/// What a subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receives {
    /// Broadcasts (on a private channel: only with broadcast read).
    pub(crate) broadcasts: bool,
    /// Presence state and diffs (enabled, and on a private channel presence read).
    pub(crate) presence: bool,
}

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

    /// Subscribes `conn` to the topic with this key ([`topic_key`]). When it receives
    /// presence, `state_frame` encodes the current presence state, which is queued to
    /// `conn` atomically with the subscription so that it sees every later diff and no
    /// earlier one. `replayed`: ids of stored messages `conn` was replayed at its join,
    /// which it must not get again live. Also says whether this made the topic's first
    /// local subscription (the broker was asked to subscribe).
    pub(crate) fn subscribe(
        &self,
        key: &str,
        conn: &Arc<ConnHandle>,
        receives: Receives,
        replayed: Option<Box<[String]>>,
        state_frame: impl FnOnce(&crier_protocol::presence::PresenceGroups) -> crate::frame::Frame,
    ) -> (Arc<Topic>, bool) {
        let (entry, first) = match self.topics.entry(Arc::from(key)) {
            Entry::Occupied(entry) => (entry.into_ref(), false),
            Entry::Vacant(entry) => {
                self.broker.subscribe(key);
                (
                    entry.insert(Arc::new(Topic::new(key, &*self.presence))),
                    true,
                )
            }
        };
        entry.add(conn, receives, replayed, state_frame);
        (Arc::clone(&entry), first)
    }

    /// The topic with this key, if anyone subscribes to it here.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Topic>> {
        self.topics.get(key).map(|entry| Arc::clone(&entry))
    }

    /// Every topic with subscribers here now.
    pub(crate) fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .iter()
            .map(|entry| Arc::clone(entry.value()))
            .collect()
    }

    /// How many topics have subscribers here now.
    pub(crate) fn len(&self) -> usize {
        self.topics.len()
    }

    /// Drops `topic` from the map if it has become empty.
    pub(crate) fn remove_if_empty(&self, topic: &Topic) {
        self.topics.remove_if(topic.key(), |_, t| {
            let empty = t.is_empty();
            if empty {
                // Under the entry's lock: a join that recreates the topic subscribes after.
                self.broker.unsubscribe(t.key());
            }
            empty
        });
    }
}
