//! [`MemoryPresence`]: presence kept in this process.

use crier_protocol::presence::{PresenceDiff, PresenceGroups, Presences};
use serde_json::{Map, Value};

use super::{Owner, PresenceStore, TopicPresence};

/// Keeps each topic's presence in this node's memory (a single node's store).
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryPresence;

impl PresenceStore for MemoryPresence {
    fn open(&self, _topic: &str) -> Box<dyn TopicPresence> {
        Box::new(Local(Presences::new()))
    }
}

#[derive(Debug)]
struct Local(Presences<Owner>);

impl TopicPresence for Local {
    fn track(
        &mut self,
        owner: Owner,
        key: &str,
        meta: Map<String, Value>,
        new_ref: &dyn Fn() -> String,
    ) -> Option<PresenceDiff> {
        self.0.track(owner, key, meta, new_ref)
    }

    fn untrack(&mut self, owner: Owner) -> Option<PresenceDiff> {
        self.0.untrack(owner)
    }

    fn state(&self) -> PresenceGroups {
        self.0.state()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
