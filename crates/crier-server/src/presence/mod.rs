//! Presence storage: who is tracked on each topic, behind a seam a cluster can replicate.
//!
//! A topic opens its [`TopicPresence`] from the node's [`PresenceStore`] when it is
//! created and calls it under the topic's presence lock, then fans out the diff it
//! returns while still holding that lock: that is what keeps every subscriber's diffs in
//! the order they happened (`registry::topic`). The store only keeps state and computes
//! diffs; it never touches a socket.
//!
//! [`MemoryPresence`] keeps each topic's state in this process. A store that replicates
//! presence between nodes keeps each topic in a [`Replica`] and hears of other nodes'
//! changes on its own: it hands them to the node's [`PresenceSink`], which applies them
//! under the topic's lock ([`TopicPresence::merge`]) and fans out the diff. The
//! conformance suite in `conformance` is what any store must pass.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod memory;
mod replica;

use std::fmt;
use std::sync::Weak;

use crier_protocol::presence::{PresenceDiff, PresenceGroups};
use serde_json::{Map, Value};

pub use memory::MemoryPresence;
pub use replica::{NodeNo, RemoteChange, RemoteEntry, Replica};

/// A connection's id on this node: whose presence an entry is.
pub type Owner = u64;

/// Where a node keeps presence: it opens one [`TopicPresence`] per topic.
pub trait PresenceStore: Send + Sync + fmt::Debug {
    /// The presence of `topic` (the full topic, `realtime:<channel>`), opened when the
    /// topic gets its first subscriber on this node.
    fn open(&self, topic: &str) -> Box<dyn TopicPresence>;

    /// Connects the node: a replicating store hands other nodes' changes to `sink` from
    /// now on. Called once, when the node is built.
    fn attach(&self, sink: Weak<dyn PresenceSink>) {
        let _ = sink;
    }
}

/// Where a replicating store hands what it hears from other nodes.
pub trait PresenceSink: Send + Sync {
    /// Applies `change` to the topic with key `topic`, if it has subscribers here, and
    /// sends the resulting diff to them.
    fn merge(&self, topic: &str, change: RemoteChange);

    /// Asks the presence of `topic` (of every topic when `None`) to push this node's
    /// entries to the store again: the store lost them (it restarted, or other nodes took
    /// this node for dead).
    fn republish(&self, topic: Option<&str>);
}

/// The presence of one topic. Calls come one at a time (the topic holds a lock).
pub trait TopicPresence: Send + fmt::Debug {
    /// Tracks `meta` for `owner` under `key`, replacing what `owner` tracked before;
    /// `new_ref` makes the `phx_ref` of a new entry. Returns the diff to fan out, or
    /// `None` when nothing changed.
    fn track(
        &mut self,
        owner: Owner,
        key: &str,
        meta: Map<String, Value>,
        new_ref: &dyn Fn() -> String,
    ) -> Option<PresenceDiff>;

    /// Drops `owner`'s entry. Returns the leave diff, or `None` when it had none.
    fn untrack(&mut self, owner: Owner) -> Option<PresenceDiff>;

    /// Everyone tracked, grouped by key (what a `presence_state` message carries).
    fn state(&self) -> PresenceGroups;

    /// How many entries are tracked (on every node), without copying them.
    fn len(&self) -> usize;

    /// True when nobody on this node is tracked (a topic without local subscribers or
    /// presences is dropped, whatever other nodes track).
    fn is_empty(&self) -> bool;

    /// Applies a change from other nodes (see [`PresenceSink::merge`]); returns the diff
    /// for this node's subscribers. A store that does not replicate has none.
    fn merge(&mut self, change: RemoteChange) -> Option<PresenceDiff> {
        let _ = change;
        None
    }

    /// Pushes this node's entries to the store again (see [`PresenceSink::republish`]).
    fn republish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::MemoryPresence;

    crate::presence_conformance!(memory, std::sync::Arc::new(MemoryPresence));
}
