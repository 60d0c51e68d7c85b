//! [`MemoryHistory`] as a node's copy of a cluster's shared history: it keeps what the
//! bus numbered, notices when the numbering does not follow, and serves resumes from
//! itself and from a read of the shared stream.

use std::sync::Arc;
use std::time::Duration;

use crier_protocol::join::ResumeFrom;

use super::{Entry, Fetched, Gap, HistoryConfig, HistoryStore, MemoryHistory, Position};
use crate::fanout::Content;

fn copy(size: usize) -> MemoryHistory {
    MemoryHistory::copy_of_shared(HistoryConfig {
        size,
        ..HistoryConfig::default()
    })
}

fn at(epoch: &str, offset: u64) -> Position {
    Position {
        epoch: Arc::from(epoch),
        offset,
    }
}

fn content(n: u64) -> Arc<Content> {
    let payload = serde_json::value::to_raw_value(&n).unwrap();
    Arc::new(Content::json("e", &payload, None))
}

/// Appends offset `offset` of `epoch`: `None` when dropped, else whether it jumped.
fn land(store: &MemoryHistory, epoch: &str, offset: u64) -> Option<bool> {
    let mut landed = None;
    store.append_at("t", &at(epoch, offset), &content(offset), &mut |jumped| {
        landed = Some(jumped);
    });
    landed
}

fn from(epoch: &str, offset: u64) -> ResumeFrom {
    ResumeFrom {
        epoch: epoch.into(),
        offset,
    }
}

fn missed(
    store: &MemoryHistory,
    from: ResumeFrom,
    fetched: Option<&Fetched>,
) -> Result<Vec<u64>, Gap> {
    let attached = store.attach("t", Some(&from), fetched, &mut || false);
    attached
        .missed
        .unwrap()
        .map(|entries| entries.iter().map(|entry| entry.offset).collect())
}

#[test]
fn the_first_broadcast_or_mark_says_where_the_stream_stands_and_the_next_must_follow() {
    let store = copy(100);
    assert!(!store.follows("t"));
    assert_eq!(
        land(&store, "e1", 7),
        Some(false),
        "the first one starts it"
    );
    assert!(store.follows("t"));
    assert_eq!(land(&store, "e1", 8), Some(false));
    assert_eq!(land(&store, "e1", 10), Some(true), "9 was lost");
    assert_eq!(land(&store, "e2", 1), Some(true), "a new epoch");
    // Offsets going back in one epoch: the shared stream was rewound.
    assert_eq!(land(&store, "e2", 1), Some(true));
    assert!(!store.continue_after("t", &at("e2", 1)), "in step");
    assert!(store.continue_after("t", &at("e2", 5)), "behind");
    assert!(store.continue_after("t", &at("e2", 3)), "rewound");
    assert!(!store.continue_after("t", &at("e2", 3)), "in step again");
}

#[test]
fn a_resume_is_served_from_the_copy_then_from_the_shared_stream_and_says_what_is_missing() {
    let store = copy(3);
    for offset in 1..=6 {
        land(&store, "e", offset);
    }
    // The copy keeps 4..=6.
    assert_eq!(missed(&store, from("e", 3), None), Ok(vec![4, 5, 6]));
    assert_eq!(missed(&store, from("e", 6), None), Ok(vec![]));
    assert_eq!(
        missed(&store, from("e", 1), None),
        Err(Gap::Unavailable),
        "no read"
    );
    let read = |offsets: &[u64]| Fetched {
        latest: at("e", 5),
        entries: offsets
            .iter()
            .map(|&offset| Entry {
                offset,
                content: content(offset),
            })
            .collect(),
    };
    // The shared stream has 2..=5; the copy adds 6.
    assert_eq!(
        missed(&store, from("e", 1), Some(&read(&[2, 3, 4, 5]))),
        Ok(vec![2, 3, 4, 5, 6])
    );
    // Where neither has an offset, that is the gap.
    assert_eq!(
        missed(&store, from("e", 1), Some(&read(&[3, 4, 5]))),
        Err(Gap::TooOld { needed: 2 })
    );
    assert_eq!(
        missed(&store, from("other", 1), None),
        Err(Gap::EpochChanged)
    );
    // The client saw more than this copy has.
    assert_eq!(missed(&store, from("e", 9), None), Err(Gap::Unavailable));
}

#[tokio::test]
async fn caught_up_waits_for_the_copy_to_reach_an_offset() {
    let store = Arc::new(copy(100));
    land(&store, "e", 1);
    store.caught_up("t", "e", 1).await;
    store.caught_up("t", "other", 5).await;
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.caught_up("t", "e", 3).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    land(&store, "e", 2);
    land(&store, "e", 3);
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_copy_keeps_where_an_idle_stream_stands_past_the_retention() {
    let store = copy(100);
    land(&store, "e", 4);
    tokio::time::advance(HistoryConfig::default().ttl * 3).await;
    store.sweep();
    assert!(
        store.follows("t"),
        "the bus will not say it again while subscribed"
    );
    assert_eq!(missed(&store, from("e", 4), None), Ok(vec![]));
}
