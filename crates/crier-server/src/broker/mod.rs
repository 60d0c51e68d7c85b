//! The broker: how a broadcast published on one node reaches the subscribers of its topic
//! on every other node.
//!
//! Every broadcast goes through one funnel (`Node::publish`): it is counted, queued to
//! this node's own subscribers, then handed to the [`Broker`] for the others. A node tells
//! its broker which topics it has local subscribers for ([`Broker::subscribe`] on the
//! first, [`Broker::unsubscribe`] after the last), so a cluster bus only carries a topic
//! to the nodes that want it; publications from other nodes come back in through the
//! [`LocalDelivery`] the node attached. The publishing node never gets its own
//! publication back.
//!
//! [`MemoryBus`] is the in-process implementation: a node built without a broker gets a
//! bus of its own, and several nodes in one process can share one (the tests of
//! anything cluster-wide). The conformance suite in `tests` runs against each
//! implementation.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod memory;
mod memory_history;
#[cfg(any(test, feature = "conformance"))]
pub mod shared_conformance;
mod shared_history;
#[cfg(test)]
mod tests {
    use super::MemoryBus;

    crate::broker_conformance!(memory, MemoryBus::new());
    crate::shared_history_conformance!(memory_shared, MemoryBus::sharing_history());
}

use std::fmt;
use std::sync::Weak;

use crier_protocol::UserBroadcast;
use serde_json::value::RawValue;

pub use memory::MemoryBus;
pub use shared_history::{
    BusFuture, OwnedPublication, SharedEntry, SharedHistory, SharedRead, StreamPosition,
};

/// A broadcast as it travels between nodes, borrowed from its publisher: a broker that
/// must keep it (a network bus) copies or serializes it. It carries no stream position:
/// each node gives it the next one of its own history, unless the bus numbers the
/// broadcasts itself ([`SharedHistory`]).
#[derive(Debug, Clone, Copy)]
pub enum Publication<'a> {
    /// A JSON broadcast: the whole `{"type":"broadcast","event":…,"payload":…}` body,
    /// already serialized, with the sender's `meta` if any.
    Json(&'a RawValue),
    /// A binary broadcast (a kind-4 frame for 2.0.0 sockets).
    Binary(&'a UserBroadcast),
}

/// Why a broker could not carry a publication to the other nodes. The publishing node's
/// own subscribers have it already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The bus is unreachable or refused the publication.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
}

/// What a cluster bus knows of the cluster (for metrics and the health check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusStatus {
    /// Whether the bus reaches the other nodes now (when not, this node delivers to its
    /// own subscribers only).
    pub connected: bool,
    /// The live nodes, this one included.
    pub nodes: Vec<NodeStatus>,
}

/// A live node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Its name.
    pub name: String,
    /// How many presence entries its connections track.
    pub presence_entries: u64,
    /// How many sockets it serves (its load), as it last said.
    pub connections: u64,
    /// How long ago it last renewed its lease, in milliseconds, when the bus can tell
    /// (its liveness: a lease that is not renewed lapses, and the node is gone).
    pub renewed_ms_ago: Option<u64>,
}

/// Where a node hands a publication from another node to its own subscribers.
pub trait LocalDelivery: Send + Sync {
    /// Queues `publication` to this node's subscribers of `topic` (the full topic,
    /// `realtime:<channel>`).
    fn deliver(&self, topic: &str, publication: Publication<'_>);

    /// How many sockets this node serves: the bus tells the other nodes (their inspector
    /// shows each node's load).
    fn connections(&self) -> u64 {
        0
    }

    /// Broadcasts of `topic` from other nodes may have been lost (the bus was cut): the
    /// node tells the topic's subscribers, and a resume from before now reports a gap.
    fn gap(&self, topic: &str) {
        let _ = topic;
    }

    /// A publication of `topic` numbered by the bus's [`SharedHistory`] at `at`: queued
    /// to this node's subscribers of the topic except `exclude` (a connection of this
    /// node, when this node published it), with that position.
    fn deliver_at(
        &self,
        topic: &str,
        publication: Publication<'_>,
        at: StreamPosition<'_>,
        exclude: Option<u64>,
    ) {
        let _ = (at, exclude);
        self.deliver(topic, publication);
    }

    /// The bus's [`SharedHistory`] says that `topic`'s stream stood at `at` here, in the
    /// order of its publications: every later one will be delivered to this node.
    fn continues(&self, topic: &str, at: StreamPosition<'_>) {
        let _ = (topic, at);
    }
}

/// The bus between nodes. Calls never wait: a network implementation queues what it has
/// to send and sends it from its own task.
pub trait Broker: Send + Sync + fmt::Debug {
    /// Connects the node: publications of its subscribed topics from other nodes go to
    /// `delivery` from now on. Called once, when the node is built.
    fn attach(&self, delivery: Weak<dyn LocalDelivery>);

    /// Whether another node may be listening. When not, the node does not prepare its
    /// publications for the bus at all (a node of its own).
    fn has_peers(&self) -> bool {
        true
    }

    /// Carries `publication` to every other node subscribed to `topic`.
    fn publish(&self, topic: &str, publication: Publication<'_>) -> Result<(), BrokerError>;

    /// The node has a local subscriber of `topic` now.
    fn subscribe(&self, topic: &str);

    /// The node's last local subscriber of `topic` has left.
    fn unsubscribe(&self, topic: &str);

    /// Whether subscriptions take effect later than `subscribe` returns (a network bus).
    /// A node then answers the join that made a topic's first local subscription only
    /// once it is in effect ([`Broker::synced`]), so a client that has its join reply
    /// receives whatever any node publishes after it.
    fn confirms_later(&self) -> bool {
        false
    }

    /// Completes once every `subscribe` and `unsubscribe` called before it is in effect
    /// on the bus (a network bus confirms them on its own task). The in-process bus is
    /// always in effect.
    fn synced(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }

    /// A history of every topic kept on the bus for all its nodes, bounded by `config`,
    /// when the bus keeps one: the node then numbers its broadcasts there (a subscriber
    /// can resume on any node) instead of in a history of its own. Asked once, when the
    /// node is built with history on.
    fn shared_history(
        &self,
        config: &crate::HistoryConfig,
    ) -> Option<std::sync::Arc<dyn SharedHistory>> {
        let _ = config;
        None
    }

    /// The cluster as the bus sees it; `None` for a bus within one process.
    fn status(&self) -> Option<BusStatus> {
        None
    }
}
