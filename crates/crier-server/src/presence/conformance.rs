//! The presence store conformance suite: what every [`PresenceStore`] does with one
//! node's entries, run here against [`MemoryPresence`] and by `crier-cluster` against
//! Redis (feature `conformance`). How entries travel between nodes is tested end to end
//! with real nodes there.

use std::cell::Cell;

use serde_json::{Map, Value, json};

use super::PresenceStore;

fn meta(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an object")
}

/// A `phx_ref` maker counting up from 1.
fn refs() -> impl Fn() -> String {
    let next = Cell::new(0);
    move || {
        next.set(next.get() + 1);
        next.get().to_string()
    }
}

/// Tracking, updating and untracking give Phoenix's diffs.
pub fn joins_updates_and_leaves_come_out_as_diffs(store: &dyn PresenceStore) {
    let new_ref = refs();
    let mut topic = store.open("realtime:room");
    assert!(topic.is_empty());
    let diff = topic
        .track(1, "ana", meta(json!({"status": "online"})), &new_ref)
        .expect("a join");
    assert_eq!(diff.joins.0["ana"][0].phx_ref, "1");
    assert!(diff.leaves.is_empty());
    assert!(
        topic
            .track(1, "ana", meta(json!({"status": "online"})), &new_ref)
            .is_none(),
        "the same meta again changes nothing"
    );
    let diff = topic
        .track(1, "ana", meta(json!({"status": "away"})), &new_ref)
        .expect("an update");
    assert_eq!(diff.leaves.0["ana"][0].phx_ref, "1");
    assert_eq!(diff.joins.0["ana"][0].phx_ref_prev.as_deref(), Some("1"));
    topic.track(2, "ana", meta(json!({"device": "phone"})), &new_ref);
    assert_eq!(topic.state().0["ana"].len(), 2, "one key, two owners");
    let diff = topic.untrack(1).expect("a leave");
    assert_eq!(
        diff.leaves.0["ana"][0].payload,
        meta(json!({"status": "away"}))
    );
    assert!(topic.untrack(1).is_none(), "nothing left to untrack");
    topic.untrack(2);
    assert!(topic.is_empty());
}

/// One topic's entries never show in another.
pub fn topics_are_separate(store: &dyn PresenceStore) {
    let new_ref = refs();
    let mut a = store.open("realtime:a");
    let b = store.open("realtime:b");
    a.track(1, "ana", Map::new(), &new_ref);
    assert!(b.is_empty());
    assert!(b.state().is_empty());
    assert_eq!(a.state().0.len(), 1);
}

/// Runs the suite against the store `$store` (an expression of type
/// `Arc<dyn PresenceStore>`, evaluated once per test inside a tokio runtime, so it may
/// `.await`) in a module named `$name`.
#[macro_export]
macro_rules! presence_conformance {
    ($name:ident, $store:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::presence::conformance as suite;

            #[tokio::test]
            async fn joins_updates_and_leaves_come_out_as_diffs() {
                let store: std::sync::Arc<dyn $crate::presence::PresenceStore> = $store;
                suite::joins_updates_and_leaves_come_out_as_diffs(&*store);
            }

            #[tokio::test]
            async fn topics_are_separate() {
                let store: std::sync::Arc<dyn $crate::presence::PresenceStore> = $store;
                suite::topics_are_separate(&*store);
            }
        }
    };
}
