//! The history conformance suite: every [`HistoryStore`] implementation must pass it.
//! Each case takes a constructor for a store with the given bounds.

use std::sync::Arc;
use std::time::Duration;

use crier_protocol::join::ResumeFrom;
use parking_lot::Mutex;

use super::{Gap, HistoryConfig, HistoryStore, MemoryHistory, Position};
use crate::fanout::Content;

type Make = fn(HistoryConfig) -> Arc<dyn HistoryStore>;

fn memory(config: HistoryConfig) -> Arc<dyn HistoryStore> {
    Arc::new(MemoryHistory::new(config))
}

const IMPLEMENTATIONS: &[(&str, Make)] = &[("memory", memory)];

fn bounds(size: usize, ttl_secs: u64, max_bytes: usize) -> HistoryConfig {
    HistoryConfig {
        size,
        ttl: Duration::from_secs(ttl_secs),
        max_bytes,
    }
}

fn content(n: usize) -> Arc<Content> {
    let payload = serde_json::value::to_raw_value(&n).unwrap();
    Arc::new(Content::json("e", &payload, None))
}

fn append(store: &dyn HistoryStore, key: &str, n: usize) -> Position {
    let mut at = None;
    store.append(key, &content(n), &mut |position| {
        at = Some(position.clone());
    });
    at.expect("append calls back")
}

fn resume(position: &Position, offset: u64) -> ResumeFrom {
    ResumeFrom {
        epoch: position.epoch.to_string(),
        offset,
    }
}

fn offsets(entries: &[super::Entry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.offset).collect()
}

#[test]
fn offsets_count_from_one_in_one_epoch_per_topic() {
    for (name, make) in IMPLEMENTATIONS {
        let store = make(HistoryConfig::default());
        let first = append(&*store, "a", 1);
        let second = append(&*store, "a", 2);
        let other = append(&*store, "b", 1);
        assert_eq!(
            (first.offset, second.offset, other.offset),
            (1, 2, 1),
            "{name}"
        );
        assert_eq!(first.epoch, second.epoch, "{name}");
        assert_ne!(
            first.epoch, other.epoch,
            "{name}: every stream has its own epoch"
        );
        let (latest, entries) = store.read("a", 0, 10).unwrap();
        assert_eq!((latest, offsets(&entries)), (second, vec![1, 2]), "{name}");
        assert_eq!(offsets(&store.read("a", 1, 10).unwrap().1), [2], "{name}");
        assert!(store.read("never", 0, 10).is_none(), "{name}");
    }
}

#[test]
fn a_broken_stream_tells_a_resume_from_before_it_of_the_gap() {
    for (name, make) in IMPLEMENTATIONS {
        let store = make(HistoryConfig::default());
        append(&*store, "t", 1);
        let before = append(&*store, "t", 2);
        store.break_stream("t");
        store.break_stream("never");
        let attached = store.attach("t", Some(&resume(&before, 1)), None, &mut || false);
        assert_eq!(
            attached.missed.unwrap().unwrap_err(),
            Gap::EpochChanged,
            "{name}"
        );
        let after = append(&*store, "t", 3);
        assert_ne!(after.epoch, before.epoch, "{name}");
        assert!(after.offset > before.offset, "{name}");
        let (_, entries) = store.read("t", 0, 10).unwrap();
        assert_eq!(
            offsets(&entries),
            [after.offset],
            "{name}: what was kept went"
        );
        assert_eq!(store.stats().messages, 1, "{name}");
    }
}

#[test]
fn a_join_reads_what_it_missed_or_says_why_not() {
    for (name, make) in IMPLEMENTATIONS {
        let store = make(bounds(3, 60, usize::MAX));
        let mut last = append(&*store, "t", 0);
        for n in 1..5 {
            last = append(&*store, "t", n);
        }
        // Offsets 3, 4 and 5 are kept.
        let attach =
            |from: Option<ResumeFrom>| store.attach("t", from.as_ref(), None, &mut || false);
        let plain = attach(None);
        assert_eq!(
            (plain.latest.clone(), plain.missed.is_none()),
            (last.clone(), true)
        );
        let missed = attach(Some(resume(&last, 2))).missed.unwrap().unwrap();
        assert_eq!(offsets(&missed), [3, 4, 5], "{name}");
        assert!(
            attach(Some(resume(&last, 5)))
                .missed
                .unwrap()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            attach(Some(resume(&last, 1))).missed.unwrap().unwrap_err(),
            Gap::TooOld { needed: 2 },
            "{name}"
        );
        let elsewhere = ResumeFrom {
            epoch: "another".into(),
            offset: 4,
        };
        assert_eq!(
            attach(Some(elsewhere)).missed.unwrap().unwrap_err(),
            Gap::EpochChanged,
            "{name}"
        );
        // A join on a topic nobody published to yet starts at offset 0.
        assert_eq!(
            store
                .attach("fresh", None, None, &mut || false)
                .latest
                .offset,
            0
        );
    }
}

#[tokio::test(start_paused = true)]
async fn broadcasts_older_than_the_retention_go() {
    for (name, make) in IMPLEMENTATIONS {
        let store = make(bounds(100, 10, usize::MAX));
        let first = append(&*store, "t", 1);
        tokio::time::advance(Duration::from_secs(6)).await;
        append(&*store, "t", 2);
        tokio::time::advance(Duration::from_secs(5)).await;
        let missed = store
            .attach("t", Some(&resume(&first, 0)), None, &mut || false)
            .missed;
        assert_eq!(
            missed.unwrap().unwrap_err(),
            Gap::TooOld { needed: 1 },
            "{name}"
        );
        assert_eq!(offsets(&store.read("t", 0, 10).unwrap().1), [2], "{name}");
        assert_eq!(store.stats().messages, 1, "{name}");

        // Empty and untouched past the retention: the stream goes, and comes back with
        // a new epoch.
        tokio::time::advance(Duration::from_secs(11)).await;
        store.sweep();
        assert_eq!(store.stats().topics, 0, "{name}");
        let again = append(&*store, "t", 3);
        assert_eq!(again.offset, 1, "{name}");
        assert_ne!(again.epoch, first.epoch, "{name}");
    }
}

#[test]
fn the_node_byte_bound_drops_the_oldest_of_any_topic() {
    for (name, make) in IMPLEMENTATIONS {
        // Room for about three entries in all.
        let store = make(bounds(100, 60, 3 * 100));
        let a1 = append(&*store, "a", 1);
        append(&*store, "b", 1);
        append(&*store, "a", 2);
        append(&*store, "b", 2);
        let stats = store.stats();
        assert!(
            stats.bytes <= 300 && stats.evicted >= 1,
            "{name}: {stats:?}"
        );
        let missed = store
            .attach("a", Some(&resume(&a1, 0)), None, &mut || false)
            .missed;
        assert_eq!(
            missed.unwrap().unwrap_err(),
            Gap::TooOld { needed: 1 },
            "{name}"
        );
        assert_eq!(
            offsets(&store.read("b", 0, 10).unwrap().1),
            [2],
            "{name}: b's first went next"
        );
        store.sweep();
        assert_eq!(
            store.stats().messages,
            offsets(&store.read("a", 0, 9).unwrap().1).len() + 1
        );
    }
}

/// Publishers append while a subscriber joins with a resume: every broadcast reaches it
/// exactly once, either in what it missed or live, and in offset order.
#[test]
fn a_join_racing_publishers_sees_every_broadcast_once() {
    for (name, make) in IMPLEMENTATIONS {
        for round in 0..20 {
            let store = make(bounds(10_000, 60, usize::MAX));
            let start = append(&*store, "t", 0);
            // (subscribed, what it received live)
            let live = Arc::new(Mutex::new((false, Vec::<u64>::new())));
            let publishers: Vec<_> = (0..2)
                .map(|_| {
                    let (store, live) = (Arc::clone(&store), Arc::clone(&live));
                    std::thread::spawn(move || {
                        for n in 0..500 {
                            store.append("t", &content(n), &mut |position| {
                                let mut live = live.lock();
                                if live.0 {
                                    live.1.push(position.offset);
                                }
                            });
                        }
                    })
                })
                .collect();
            std::thread::yield_now();
            let attached = store.attach("t", Some(&resume(&start, 1)), None, &mut || {
                live.lock().0 = true;
                false
            });
            for publisher in publishers {
                publisher.join().unwrap();
            }
            let mut seen = offsets(&attached.missed.unwrap().unwrap());
            assert_eq!(
                seen.last().copied().unwrap_or(1),
                attached.latest.offset,
                "{name}"
            );
            seen.extend(live.lock().1.iter().copied());
            assert_eq!(
                seen,
                (2..=1001).collect::<Vec<_>>(),
                "{name}, round {round}"
            );
        }
    }
}
