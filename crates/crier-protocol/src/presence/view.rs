//! The client's side of presence: applying `presence_state` and `presence_diff` to a
//! local view, and saying what changed.
//!
//! Three rules make the view exact where clients have historically shown ghosts and
//! duplicates:
//!
//! - Metas are identified by `phx_ref`, so a join that is already known, or a leave of an
//!   unknown meta, changes nothing.
//! - A leave and a join in one diff linked by `phx_ref_prev` is one [`PresenceChange::Update`],
//!   not a leave followed by a join.
//! - Diffs that arrive before the first `presence_state` of a (re)join are held back and
//!   applied right after it, as phoenix.js does, because the server may send a diff of a
//!   change that its state snapshot does not contain yet.

use std::collections::BTreeMap;

use super::{PresenceDiff, PresenceGroups, PresenceMeta};

/// Diffs held while waiting for a state, at most.
const MAX_PENDING_DIFFS: usize = 1024;

/// One change to a presence view.
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceChange {
    /// A meta appeared under `key`.
    Join {
        /// The presence key.
        key: String,
        /// The new meta.
        meta: PresenceMeta,
    },
    /// A meta went away from `key`.
    Leave {
        /// The presence key.
        key: String,
        /// The meta that left.
        meta: PresenceMeta,
    },
    /// A meta was replaced by a new one with a changed payload.
    Update {
        /// The presence key.
        key: String,
        /// The meta before.
        old: PresenceMeta,
        /// The meta after (its `phx_ref_prev` is `old.phx_ref`).
        new: PresenceMeta,
    },
}

/// A client's view of one channel's presence.
#[derive(Debug, Clone, Default)]
pub struct PresenceView {
    state: BTreeMap<String, Vec<PresenceMeta>>,
    awaiting_state: bool,
    pending: Vec<PresenceDiff>,
}

impl PresenceView {
    /// An empty view that applies diffs at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Call on every (re)join: diffs are held until the next `presence_state`.
    pub fn expect_state(&mut self) {
        self.awaiting_state = true;
        self.pending.clear();
    }

    /// The current state: key to metas.
    pub fn state(&self) -> &BTreeMap<String, Vec<PresenceMeta>> {
        &self.state
    }

    /// Applies a `presence_state`: the view becomes exactly `state`. Returns the joins and
    /// leaves against the previous view, followed by the changes of any held-back diffs.
    pub fn sync_state(&mut self, state: PresenceGroups) -> Vec<PresenceChange> {
        let mut changes = Vec::new();
        for (key, metas) in &self.state {
            let kept = state.0.get(key);
            for meta in metas {
                if !kept.is_some_and(|k| k.iter().any(|m| m.phx_ref == meta.phx_ref)) {
                    changes.push(PresenceChange::Leave {
                        key: key.clone(),
                        meta: meta.clone(),
                    });
                }
            }
        }
        for (key, metas) in &state.0 {
            let before = self.state.get(key);
            for meta in metas {
                if !before.is_some_and(|b| b.iter().any(|m| m.phx_ref == meta.phx_ref)) {
                    changes.push(PresenceChange::Join {
                        key: key.clone(),
                        meta: meta.clone(),
                    });
                }
            }
        }
        self.state = state
            .0
            .into_iter()
            .filter(|(_, metas)| !metas.is_empty())
            .collect();
        self.awaiting_state = false;
        for diff in std::mem::take(&mut self.pending) {
            changes.extend(self.apply(diff));
        }
        changes
    }

    /// Applies a `presence_diff`, or holds it until the state arrives.
    pub fn sync_diff(&mut self, diff: PresenceDiff) -> Vec<PresenceChange> {
        if self.awaiting_state {
            // Bounded: if the state never comes, old diffs go (the state, when it comes,
            // replaces the view anyway).
            if self.pending.len() >= MAX_PENDING_DIFFS {
                self.pending.remove(0);
            }
            self.pending.push(diff);
            return Vec::new();
        }
        self.apply(diff)
    }

    fn apply(&mut self, diff: PresenceDiff) -> Vec<PresenceChange> {
        let mut changes = Vec::new();
        let mut left: Vec<(String, PresenceMeta)> = Vec::new();
        for (key, metas) in diff.leaves.0 {
            for meta in metas {
                if let Some(current) = self.state.get_mut(&key)
                    && let Some(i) = current.iter().position(|m| m.phx_ref == meta.phx_ref)
                {
                    let removed = current.remove(i);
                    if current.is_empty() {
                        self.state.remove(&key);
                    }
                    left.push((key.clone(), removed));
                }
            }
        }
        for (key, metas) in diff.joins.0 {
            for meta in metas {
                let known = self
                    .state
                    .get(&key)
                    .is_some_and(|current| current.iter().any(|m| m.phx_ref == meta.phx_ref));
                if known {
                    continue;
                }
                self.state
                    .entry(key.clone())
                    .or_default()
                    .push(meta.clone());
                let replaced = meta.phx_ref_prev.as_ref().and_then(|prev| {
                    left.iter()
                        .position(|(k, old)| *k == key && &old.phx_ref == prev)
                });
                match replaced {
                    Some(i) => {
                        let (_, old) = left.remove(i);
                        changes.push(PresenceChange::Update {
                            key: key.clone(),
                            old,
                            new: meta,
                        });
                    }
                    None => changes.push(PresenceChange::Join {
                        key: key.clone(),
                        meta,
                    }),
                }
            }
        }
        changes.extend(
            left.into_iter()
                .map(|(key, meta)| PresenceChange::Leave { key, meta }),
        );
        changes
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn groups(value: serde_json::Value) -> PresenceGroups {
        serde_json::from_value(value).unwrap()
    }

    fn diff(value: serde_json::Value) -> PresenceDiff {
        serde_json::from_value(value).unwrap()
    }

    fn keys(view: &PresenceView) -> Vec<(String, Vec<String>)> {
        view.state()
            .iter()
            .map(|(k, metas)| (k.clone(), metas.iter().map(|m| m.phx_ref.clone()).collect()))
            .collect()
    }

    #[test]
    fn state_then_join_update_and_leave() {
        let mut view = PresenceView::new();
        let changes = view.sync_state(groups(json!({"a": {"metas": [{"phx_ref": "1", "x": 1}]}})));
        assert!(matches!(&changes[..], [PresenceChange::Join { key, .. }] if key == "a"));

        let changes = view.sync_diff(diff(json!({
            "joins": {"b": {"metas": [{"phx_ref": "2"}]}}, "leaves": {}
        })));
        assert!(matches!(&changes[..], [PresenceChange::Join { key, .. }] if key == "b"));

        // An update: leave of 1 and join of 3 with phx_ref_prev 1 is one Update.
        let changes = view.sync_diff(diff(json!({
            "joins": {"a": {"metas": [{"phx_ref": "3", "phx_ref_prev": "1", "x": 2}]}},
            "leaves": {"a": {"metas": [{"phx_ref": "1", "x": 1}]}}
        })));
        match &changes[..] {
            [PresenceChange::Update { key, old, new }] => {
                assert_eq!(key, "a");
                assert_eq!(old.payload["x"], 1);
                assert_eq!(new.payload["x"], 2);
            }
            other => panic!("expected one update, got {other:?}"),
        }

        let changes = view.sync_diff(diff(
            json!({"joins": {}, "leaves": {"b": {"metas": [{"phx_ref": "2"}]}}}),
        ));
        assert!(matches!(&changes[..], [PresenceChange::Leave { key, .. }] if key == "b"));
        assert_eq!(keys(&view), vec![("a".to_owned(), vec!["3".to_owned()])]);
    }

    #[test]
    fn duplicate_joins_and_unknown_leaves_change_nothing() {
        let mut view = PresenceView::new();
        view.sync_state(groups(json!({"a": {"metas": [{"phx_ref": "1"}]}})));
        let changes = view.sync_diff(diff(json!({
            "joins": {"a": {"metas": [{"phx_ref": "1"}]}},
            "leaves": {"z": {"metas": [{"phx_ref": "9"}]}}
        })));
        assert!(changes.is_empty());
        assert_eq!(view.state()["a"].len(), 1);
    }

    #[test]
    fn diffs_before_the_state_are_held_then_applied() {
        let mut view = PresenceView::new();
        view.expect_state();
        assert!(
            view.sync_diff(diff(
                json!({"joins": {"late": {"metas": [{"phx_ref": "5"}]}}, "leaves": {}})
            ))
            .is_empty()
        );
        assert!(view.state().is_empty(), "held back");
        let changes = view.sync_state(groups(json!({"early": {"metas": [{"phx_ref": "4"}]}})));
        assert_eq!(changes.len(), 2);
        assert_eq!(keys(&view).len(), 2);
    }

    #[test]
    fn a_new_state_replaces_the_view_with_joins_and_leaves() {
        let mut view = PresenceView::new();
        view.sync_state(groups(
            json!({"a": {"metas": [{"phx_ref": "1"}]}, "b": {"metas": [{"phx_ref": "2"}]}}),
        ));
        view.expect_state();
        let changes = view.sync_state(groups(
            json!({"b": {"metas": [{"phx_ref": "2"}]}, "c": {"metas": [{"phx_ref": "3"}]}}),
        ));
        assert_eq!(changes.len(), 2);
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, PresenceChange::Leave { key, .. } if key == "a"))
        );
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, PresenceChange::Join { key, .. } if key == "c"))
        );
    }

    #[test]
    fn server_diffs_round_trip_through_json() {
        // What the server's Presences produces, the view reads.
        let mut presences = super::super::Presences::new();
        let mut view = PresenceView::new();
        let d = presences
            .track(
                7u64,
                "k",
                json!({"n": 1}).as_object().unwrap().clone(),
                || "r1".into(),
            )
            .unwrap();
        let wire: PresenceDiff = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(view.sync_diff(wire).len(), 1);
        assert_eq!(view.state()["k"][0].payload["n"], 1);
    }
}
