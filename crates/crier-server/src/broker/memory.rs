//! [`MemoryBus`]: the broker of nodes that share one process.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;

use super::{Broker, BrokerError, LocalDelivery, Publication};

type NodeKey = u64;

/// An in-process bus: every node given one of its [`MemoryBus::broker`]s receives the
/// publications of the topics it subscribes to from every other such node.
///
/// A node built without a broker gets a bus of its own, and publishing on a bus with one
/// node costs an atomic load. Delivery to another node happens on the publisher's task,
/// before [`Broker::publish`] returns.
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Bus>,
}

#[derive(Default)]
struct Bus {
    next_node: AtomicU64,
    /// Nodes attached, so a bus of one skips every lookup.
    attached: AtomicUsize,
    nodes: RwLock<HashMap<NodeKey, Weak<dyn LocalDelivery>>>,
    /// Which nodes subscribe to each topic.
    topics: RwLock<HashMap<Arc<str>, HashSet<NodeKey>>>,
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus")
            .field("nodes", &self.inner.attached.load(Ordering::Relaxed))
            .field("topics", &self.inner.topics.read().len())
            .finish()
    }
}

impl MemoryBus {
    /// A bus with no node on it.
    pub fn new() -> Self {
        MemoryBus::default()
    }

    /// A broker for one more node on this bus.
    pub fn broker(&self) -> Arc<dyn Broker> {
        Arc::new(MemoryBroker {
            bus: Arc::clone(&self.inner),
            node: self.inner.next_node.fetch_add(1, Ordering::Relaxed),
        })
    }
}

/// One node's end of a [`MemoryBus`].
struct MemoryBroker {
    bus: Arc<Bus>,
    node: NodeKey,
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Broker for MemoryBroker {
    fn attach(&self, delivery: Weak<dyn LocalDelivery>) {
        if self.bus.nodes.write().insert(self.node, delivery).is_none() {
            self.bus.attached.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn has_peers(&self) -> bool {
        self.bus.attached.load(Ordering::Relaxed) > 1
    }

    fn publish(&self, topic: &str, publication: Publication<'_>) -> Result<(), BrokerError> {
        if self.bus.attached.load(Ordering::Relaxed) <= 1 {
            return Ok(());
        }
        // Collected first and delivered after both locks are released: a delivery takes
        // the receiving node's registry locks, which are held when that node calls
        // `subscribe`, so holding ours meanwhile could deadlock.
        let targets: Vec<Arc<dyn LocalDelivery>> = {
            let topics = self.bus.topics.read();
            let Some(nodes) = topics.get(topic) else {
                return Ok(());
            };
            let deliveries = self.bus.nodes.read();
            nodes
                .iter()
                .filter(|node| **node != self.node)
                .filter_map(|node| deliveries.get(node)?.upgrade())
                .collect()
        };
        for target in targets {
            target.deliver(topic, publication);
        }
        Ok(())
    }

    fn subscribe(&self, topic: &str) {
        let mut topics = self.bus.topics.write();
        match topics.get_mut(topic) {
            Some(nodes) => {
                nodes.insert(self.node);
            }
            None => {
                topics.insert(Arc::from(topic), HashSet::from([self.node]));
            }
        }
    }

    fn unsubscribe(&self, topic: &str) {
        let mut topics = self.bus.topics.write();
        if let Some(nodes) = topics.get_mut(topic) {
            nodes.remove(&self.node);
            if nodes.is_empty() {
                topics.remove(topic);
            }
        }
    }
}

impl Drop for MemoryBroker {
    fn drop(&mut self) {
        if self.bus.nodes.write().remove(&self.node).is_some() {
            self.bus.attached.fetch_sub(1, Ordering::Relaxed);
        }
        self.bus.topics.write().retain(|_, nodes| {
            nodes.remove(&self.node);
            !nodes.is_empty()
        });
    }
}
