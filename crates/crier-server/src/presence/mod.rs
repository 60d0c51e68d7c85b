//! Presence storage: who is tracked on each topic, behind a seam a cluster can replicate.
//!
//! A topic opens its [`TopicPresence`] from the node's [`PresenceStore`] when it is
//! created and calls it under the topic's presence lock, then fans out the diff it
//! returns while still holding that lock: that is what keeps every subscriber's diffs in
//! the order they happened (`registry::topic`). The store only keeps state and computes
//! diffs; it never touches a socket.
//!
//! [`MemoryPresence`] keeps each topic's state in this process. The conformance suite
//! in `tests` is what any other store must pass too.

mod memory;
#[cfg(test)]
mod tests;

use std::fmt;

use crier_protocol::presence::{PresenceDiff, PresenceGroups};
use serde_json::{Map, Value};

pub use memory::MemoryPresence;

/// A connection's id on this node: whose presence an entry is.
pub type Owner = u64;

/// Where a node keeps presence: it opens one [`TopicPresence`] per topic.
pub trait PresenceStore: Send + Sync + fmt::Debug {
    /// The presence of `topic` (the full topic, `realtime:<channel>`), opened when the
    /// topic gets its first subscriber on this node.
    fn open(&self, topic: &str) -> Box<dyn TopicPresence>;
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

    /// True when nobody is tracked.
    fn is_empty(&self) -> bool;
}
