//! [`Replica`]: one topic's presence across nodes, for a store that replicates it.
//!
//! This node's entries and copies of other nodes' live in one map, so `presence_state`
//! and every diff cover the whole cluster. Other nodes are numbered by the store
//! ([`NodeNo`], never 0: 0 is this node). The store applies what it hears from other
//! nodes with [`Replica::merge`], which returns the diff this node's subscribers need.

use crier_protocol::presence::{PresenceDiff, PresenceGroups, PresenceMeta, Presences};
use serde_json::{Map, Value};

use super::Owner;

/// Another node, as a replicating store numbers it (from 1; 0 is this node).
pub type NodeNo = u32;

/// This node's number in a [`Replica`].
const HERE: NodeNo = 0;

/// An entry another node tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteEntry {
    /// The node that tracks it.
    pub node: NodeNo,
    /// The connection on that node.
    pub owner: Owner,
    /// The presence key.
    pub key: String,
    /// The meta, with the `phx_ref` that node gave it.
    pub meta: PresenceMeta,
}

/// A change to other nodes' presences in one topic.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteChange {
    /// A node tracks this entry now (new, or replacing what its owner tracked).
    Track(RemoteEntry),
    /// A node's connection stopped tracking.
    Untrack {
        /// The node.
        node: NodeNo,
        /// The connection on that node.
        owner: Owner,
    },
    /// A node's entries are exactly these now (it pushed them again; none: it died).
    ReplaceNode {
        /// The node.
        node: NodeNo,
        /// All it tracks in this topic.
        entries: Vec<RemoteEntry>,
    },
    /// Other nodes' entries are exactly these (a snapshot read from the store).
    Reset(Vec<RemoteEntry>),
}

/// A topic's presence: this node's entries and other nodes'.
#[derive(Debug, Default)]
pub struct Replica {
    all: Presences<(NodeNo, Owner)>,
    here: usize,
}

impl Replica {
    /// An empty topic.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tracks for a connection of this node (as [`super::TopicPresence::track`]).
    pub fn track(
        &mut self,
        owner: Owner,
        key: &str,
        meta: Map<String, Value>,
        new_ref: &dyn Fn() -> String,
    ) -> Option<PresenceDiff> {
        let was_tracking = self.all.get((HERE, owner)).is_some();
        let diff = self.all.track((HERE, owner), key, meta, new_ref)?;
        if !was_tracking {
            self.here += 1;
        }
        Some(diff)
    }

    /// Untracks a connection of this node.
    pub fn untrack(&mut self, owner: Owner) -> Option<PresenceDiff> {
        let diff = self.all.untrack((HERE, owner))?;
        self.here -= 1;
        Some(diff)
    }

    /// What a connection of this node tracks: its key and meta.
    pub fn local(&self, owner: Owner) -> Option<(&str, &PresenceMeta)> {
        self.all.get((HERE, owner))
    }

    /// Every entry this node tracks: owner, key and meta.
    pub fn locals(&self) -> Vec<(Owner, &str, &PresenceMeta)> {
        self.all
            .owners()
            .filter(|(node, _)| *node == HERE)
            .filter_map(|(_, owner)| {
                let (key, meta) = self.all.get((HERE, owner))?;
                Some((owner, key, meta))
            })
            .collect()
    }

    /// Applies a change from other nodes; returns the diff for this node's subscribers.
    pub fn merge(&mut self, change: RemoteChange) -> Option<PresenceDiff> {
        match change {
            RemoteChange::Track(entry) => self.track_remote(entry),
            RemoteChange::Untrack { node, owner } if node != HERE => {
                self.all.untrack((node, owner))
            }
            RemoteChange::Untrack { .. } => None,
            RemoteChange::ReplaceNode { node, entries } if node != HERE => {
                self.replace(|(n, _)| n == node, entries)
            }
            RemoteChange::ReplaceNode { .. } => None,
            RemoteChange::Reset(entries) => self.replace(|(n, _)| n != HERE, entries),
        }
    }

    /// Replaces the entries of the owners `covered` selects with `entries`, as one
    /// diff: an entry that stays as it was is neither a leave nor a join.
    fn replace(
        &mut self,
        covered: impl Fn((NodeNo, Owner)) -> bool,
        entries: Vec<RemoteEntry>,
    ) -> Option<PresenceDiff> {
        let kept: std::collections::HashSet<(NodeNo, Owner)> =
            entries.iter().map(|e| (e.node, e.owner)).collect();
        let mut diff = self
            .drop_where(|id| covered(id) && !kept.contains(&id))
            .unwrap_or_default();
        for entry in entries.into_iter().filter(|e| covered((e.node, e.owner))) {
            if let Some(more) = self.track_remote(entry) {
                diff.absorb(more);
            }
        }
        (!diff.is_empty()).then_some(diff)
    }

    fn track_remote(&mut self, entry: RemoteEntry) -> Option<PresenceDiff> {
        if entry.node == HERE {
            return None;
        }
        let RemoteEntry {
            node,
            owner,
            key,
            meta,
        } = entry;
        let phx_ref = meta.phx_ref;
        self.all
            .track((node, owner), &key, meta.payload, || phx_ref)
    }

    fn drop_where(&mut self, gone: impl Fn((NodeNo, Owner)) -> bool) -> Option<PresenceDiff> {
        let owners: Vec<_> = self.all.owners().filter(|id| gone(*id)).collect();
        let mut diff = PresenceDiff::default();
        for owner in owners {
            if let Some(leave) = self.all.untrack(owner) {
                diff.absorb(leave);
            }
        }
        (!diff.is_empty()).then_some(diff)
    }

    /// Everyone tracked on every node.
    pub fn state(&self) -> PresenceGroups {
        self.all.state()
    }

    /// Number of entries tracked on every node.
    pub fn entries(&self) -> usize {
        self.all.len()
    }

    /// Number of entries this node tracks.
    pub fn local_len(&self) -> usize {
        self.here
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(node: NodeNo, owner: Owner, key: &str, phx_ref: &str, status: &str) -> RemoteEntry {
        RemoteEntry {
            node,
            owner,
            key: key.into(),
            meta: PresenceMeta {
                phx_ref: phx_ref.into(),
                phx_ref_prev: None,
                payload: json!({"status": status}).as_object().cloned().unwrap(),
            },
        }
    }

    fn keys(groups: &PresenceGroups) -> Vec<(&str, usize)> {
        groups
            .0
            .iter()
            .map(|(k, m)| (k.as_str(), m.len()))
            .collect()
    }

    #[test]
    fn other_nodes_entries_join_the_state_and_leave_with_their_node() {
        let mut replica = Replica::new();
        replica.track(1, "ana", Map::new(), &|| "here-1".into());
        let diff = replica
            .merge(RemoteChange::Track(entry(1, 1, "ana", "there-1", "on")))
            .expect("a join");
        assert_eq!(
            diff.joins.0["ana"][0].phx_ref, "there-1",
            "the origin's ref is kept"
        );
        replica.merge(RemoteChange::Track(entry(2, 7, "bo", "far-7", "on")));
        assert_eq!(keys(&replica.state()), [("ana", 2), ("bo", 1)]);
        assert_eq!(replica.local_len(), 1);

        let update = replica
            .merge(RemoteChange::Track(entry(1, 1, "ana", "there-2", "away")))
            .expect("an update");
        assert_eq!(update.leaves.0["ana"][0].phx_ref, "there-1");
        assert_eq!(
            update.joins.0["ana"][0].phx_ref_prev.as_deref(),
            Some("there-1")
        );

        let gone = replica
            .merge(RemoteChange::ReplaceNode {
                node: 1,
                entries: vec![],
            })
            .expect("leaves");
        assert_eq!(keys(&gone.leaves), [("ana", 1)]);
        assert!(gone.joins.is_empty());
        assert_eq!(keys(&replica.state()), [("ana", 1), ("bo", 1)]);
        assert_eq!(
            replica.merge(RemoteChange::ReplaceNode {
                node: 1,
                entries: vec![]
            }),
            None,
            "nothing left of it"
        );
        let pushed_again = replica.merge(RemoteChange::ReplaceNode {
            node: 2,
            entries: vec![entry(2, 7, "bo", "far-7", "on")],
        });
        assert_eq!(
            pushed_again, None,
            "the same entries pushed again change nothing"
        );
    }

    #[test]
    fn a_reset_becomes_one_diff_and_never_touches_this_nodes_entries() {
        let mut replica = Replica::new();
        replica.track(5, "me", Map::new(), &|| "here-5".into());
        replica.merge(RemoteChange::Track(entry(1, 1, "gone", "r1", "on")));
        replica.merge(RemoteChange::Track(entry(1, 2, "kept", "r2", "on")));
        let diff = replica
            .merge(RemoteChange::Reset(vec![
                entry(1, 2, "kept", "r2", "on"),
                entry(2, 3, "new", "r3", "on"),
            ]))
            .expect("a diff");
        assert_eq!(keys(&diff.leaves), [("gone", 1)]);
        assert_eq!(keys(&diff.joins), [("new", 1)]);
        assert_eq!(keys(&replica.state()), [("kept", 1), ("me", 1), ("new", 1)]);
        assert_eq!(
            replica.merge(RemoteChange::Untrack { node: 0, owner: 5 }),
            None,
            "another node cannot untrack this node's entries"
        );
        assert_eq!(replica.locals().len(), 1);
        replica.untrack(5);
        assert_eq!(replica.local_len(), 0);
    }
}
