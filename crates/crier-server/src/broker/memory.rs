//! [`MemoryBus`]: the broker of nodes that share one process.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;

use super::{Broker, BrokerError, LocalDelivery, Publication};

pub(super) type NodeKey = u64;

/// An in-process bus: every node given one of its [`MemoryBus::broker`]s receives the
/// publications of the topics it subscribes to from every other such node. For nodes
/// that keep history, it keeps one history for all of them ([`super::SharedHistory`]).
///
/// A node built without a broker gets a bus of its own, and publishing on a bus with one
/// node costs an atomic load. Delivery to another node happens on the publisher's task,
/// before [`Broker::publish`] returns.
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Bus>,
}

#[derive(Default)]
pub(super) struct Bus {
    next_node: AtomicU64,
    /// Nodes attached, so a bus of one skips every lookup.
    attached: AtomicUsize,
    pub(super) nodes: RwLock<HashMap<NodeKey, Weak<dyn LocalDelivery>>>,
    /// Which nodes subscribe to each topic.
    pub(super) topics: RwLock<HashMap<Arc<str>, HashSet<NodeKey>>>,
    /// Whether nodes that keep history keep it in the bus's shared one.
    shares_history: bool,
    /// That shared history (`super::memory_history`).
    pub(super) streams: parking_lot::Mutex<super::memory_history::Streams>,
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

    /// A bus with no node on it whose nodes that keep history number their broadcasts
    /// in one history for all of them ([`super::SharedHistory`]), as a Redis cluster's
    /// do: a subscriber can resume on any node.
    pub fn sharing_history() -> Self {
        MemoryBus {
            inner: Arc::new(Bus {
                shares_history: true,
                ..Bus::default()
            }),
        }
    }

    /// A broker for one more node on this bus.
    pub fn broker(&self) -> Arc<dyn Broker> {
        Arc::new(MemoryBroker {
            bus: Arc::clone(&self.inner),
            node: self.inner.next_node.fetch_add(1, Ordering::Relaxed),
            history: std::sync::OnceLock::new(),
            unmarked: parking_lot::Mutex::new(Vec::new()),
        })
    }
}

/// One node's end of a [`MemoryBus`].
pub(super) struct MemoryBroker {
    pub(super) bus: Arc<Bus>,
    pub(super) node: NodeKey,
    /// Set when the node keeps history in the bus's shared one.
    pub(super) history: std::sync::OnceLock<crate::HistoryConfig>,
    /// Topics subscribed since the last `synced`, which marks them then.
    pub(super) unmarked: parking_lot::Mutex<Vec<Arc<str>>>,
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
        drop(topics);
        // Marked at the next `synced`, once the node receives the topic.
        if self.history.get().is_some() {
            self.unmarked.lock().push(Arc::from(topic));
        }
    }

    fn confirms_later(&self) -> bool {
        // The node's copy of the shared history learns where a topic's stream stands
        // at `synced`.
        self.history.get().is_some()
    }

    fn synced(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.mark_subscribed();
        Box::pin(std::future::ready(()))
    }

    fn shared_history(
        &self,
        config: &crate::HistoryConfig,
    ) -> Option<Arc<dyn super::SharedHistory>> {
        if !self.bus.shares_history {
            return None;
        }
        let _ = self.history.set(config.clone());
        Some(Arc::new(super::memory_history::MemoryBusHistory::new(
            Arc::clone(&self.bus),
            self.node,
            config.clone(),
        )))
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
