//! Topic → subscribers, shaped like Crier's registry (`crier-server/src/registry/`): a
//! sharded map of topics, each with a read-mostly subscriber map, so publishes to
//! different topics do not contend and publishes to one topic share a read lock.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Message;
use dashmap::DashMap;
use parking_lot::RwLock;

use crate::queue::Queue;

/// Identifies one socket for the life of the server.
pub(crate) type ConnId = u64;

/// What the registry holds of a socket: its id and its queue.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: ConnId,
    pub(crate) queue: Queue,
}

/// The subscribers of one topic.
#[derive(Debug)]
pub(crate) struct Topic {
    name: Arc<str>,
    subscribers: RwLock<HashMap<ConnId, Arc<Conn>>>,
}

impl Topic {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Queues `frame` (a refcounted clone per subscriber) to every subscriber; returns
    /// how many took it.
    pub(crate) fn deliver(&self, frame: &Message) -> usize {
        let subscribers = self.subscribers.read();
        subscribers
            .values()
            .filter(|conn| conn.queue.push(frame.clone()))
            .count()
    }

    pub(crate) fn remove(&self, conn: ConnId) {
        self.subscribers.write().remove(&conn);
    }

    fn is_empty(&self) -> bool {
        self.subscribers.read().is_empty()
    }
}

/// All topics with at least one subscriber.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    topics: DashMap<Arc<str>, Arc<Topic>>,
}

impl Registry {
    /// Subscribes `conn` to `topic`, creating the topic if needed. The subscriber is
    /// added while the map entry is held, so it cannot land in a topic being removed.
    pub(crate) fn subscribe(&self, topic: &str, conn: &Arc<Conn>) -> Arc<Topic> {
        let entry = self.topics.entry(Arc::from(topic)).or_insert_with(|| {
            Arc::new(Topic {
                name: Arc::from(topic),
                subscribers: RwLock::new(HashMap::new()),
            })
        });
        entry.subscribers.write().insert(conn.id, Arc::clone(conn));
        Arc::clone(&entry)
    }

    /// The topic, if anyone subscribes to it.
    pub(crate) fn get(&self, topic: &str) -> Option<Arc<Topic>> {
        self.topics.get(topic).map(|entry| Arc::clone(&entry))
    }

    /// Drops `topic` from the map once it has no subscriber (re-checked under the shard
    /// lock, so a concurrent subscribe wins).
    pub(crate) fn remove_if_empty(&self, topic: &Topic) {
        self.topics.remove_if(topic.name(), |_, t| t.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: ConnId) -> Arc<Conn> {
        Arc::new(Conn {
            id,
            queue: Queue::new(1 << 20),
        })
    }

    #[test]
    fn delivers_to_subscribers_and_forgets_empty_topics() {
        let registry = Registry::default();
        let (a, b) = (conn(1), conn(2));
        let topic = registry.subscribe("t", &a);
        registry.subscribe("t", &b);
        assert_eq!(topic.deliver(&Message::Text("x".into())), 2);

        topic.remove(a.id);
        registry.remove_if_empty(&topic);
        assert!(registry.get("t").is_some(), "b still subscribes");
        topic.remove(b.id);
        registry.remove_if_empty(&topic);
        assert!(registry.get("t").is_none(), "an empty topic is dropped");
    }
}
