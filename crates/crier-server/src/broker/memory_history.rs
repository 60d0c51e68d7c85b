//! The shared history of a [`super::MemoryBus`] made with
//! [`super::MemoryBus::sharing_history`]: every topic's stream in the process, numbered
//! under one lock, and delivered to the subscribed nodes while it is held, so that every
//! node sees one order.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::time::Instant;

use super::memory::{Bus, MemoryBroker, NodeKey};
use super::{
    BrokerError, BusFuture, LocalDelivery, OwnedPublication, Publication, SharedEntry,
    SharedHistory, SharedRead, StreamPosition,
};
use crate::HistoryConfig;

/// Every topic's shared stream.
#[derive(Default)]
pub(super) struct Streams {
    topics: HashMap<Arc<str>, Stream>,
}

struct Stream {
    epoch: String,
    last: u64,
    entries: VecDeque<(u64, Instant, OwnedPublication)>,
}

impl Streams {
    /// The stream of `topic`, made with a new epoch when missing.
    fn stream(&mut self, topic: &str) -> &mut Stream {
        if !self.topics.contains_key(topic) {
            let epoch = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 9]>());
            let stream = Stream {
                epoch,
                last: 0,
                entries: VecDeque::new(),
            };
            self.topics.insert(Arc::from(topic), stream);
        }
        self.topics.get_mut(topic).expect("just made")
    }
}

impl Bus {
    /// The nodes subscribed to `topic` now.
    fn subscribers(&self, topic: &str) -> Vec<(NodeKey, Arc<dyn LocalDelivery>)> {
        let topics = self.topics.read();
        let Some(nodes) = topics.get(topic) else {
            return Vec::new();
        };
        let deliveries = self.nodes.read();
        nodes
            .iter()
            .filter_map(|node| Some((*node, deliveries.get(node)?.upgrade()?)))
            .collect()
    }
}

impl MemoryBroker {
    /// Tells this node where the stream of each topic it subscribed since the last call
    /// stands, in order with the publications (the streams' lock is held).
    pub(super) fn mark_subscribed(&self) {
        let topics = std::mem::take(&mut *self.unmarked.lock());
        if topics.is_empty() {
            return;
        }
        let Some(delivery) = self
            .bus
            .nodes
            .read()
            .get(&self.node)
            .and_then(|d| d.upgrade())
        else {
            return;
        };
        let mut streams = self.bus.streams.lock();
        for topic in topics {
            let stream = streams.stream(&topic);
            let at = StreamPosition {
                epoch: &stream.epoch,
                offset: stream.last,
            };
            delivery.continues(&topic, at);
        }
    }
}

/// One node's handle on the bus's shared history.
pub(super) struct MemoryBusHistory {
    bus: Arc<Bus>,
    node: NodeKey,
    config: HistoryConfig,
}

impl fmt::Debug for MemoryBusHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBusHistory")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl MemoryBusHistory {
    pub(super) fn new(bus: Arc<Bus>, node: NodeKey, config: HistoryConfig) -> Self {
        MemoryBusHistory { bus, node, config }
    }
}

impl SharedHistory for MemoryBusHistory {
    fn append(
        &self,
        topic: &str,
        publication: Publication<'_>,
        exclude: Option<u64>,
    ) -> Result<(), BrokerError> {
        let now = Instant::now();
        // Held while delivering: the order of offsets is the order every node sees. A
        // node's delivery takes its own locks, never the bus's streams.
        let mut streams = self.bus.streams.lock();
        let stream = streams.stream(topic);
        stream.last += 1;
        stream
            .entries
            .push_back((stream.last, now, OwnedPublication::from(publication)));
        while stream.entries.len() > self.config.size {
            stream.entries.pop_front();
        }
        let at = StreamPosition {
            epoch: &stream.epoch,
            offset: stream.last,
        };
        for (node, delivery) in self.bus.subscribers(topic) {
            let exclude = exclude.filter(|_| node == self.node);
            delivery.deliver_at(topic, publication, at, exclude);
        }
        Ok(())
    }

    fn read(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> BusFuture<'_, Result<SharedRead, BrokerError>> {
        let mut streams = self.bus.streams.lock();
        let stream = streams.stream(topic);
        let now = Instant::now();
        let entries = stream
            .entries
            .iter()
            .filter(|(offset, at, _)| {
                *offset > after && now.saturating_duration_since(*at) <= self.config.ttl
            })
            .take(limit)
            .map(|(offset, _, publication)| SharedEntry {
                offset: *offset,
                publication: publication.clone(),
            })
            .collect();
        let read = SharedRead {
            epoch: stream.epoch.clone(),
            latest: stream.last,
            entries,
        };
        Box::pin(std::future::ready(Ok(read)))
    }
}
