//! The subscribers: sockets joined with one `postgres_changes` binding on the table, each
//! tallying what it receives without locks; and the reading of a change frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crier_postgres::render::parse_timestamp_micros;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{TABLE, Timeline, Via, second_of, wall_us};
use crate::client::{Dialer, HEARTBEAT_EVERY, OPEN_TIMEOUT, Ws, truncate};
use crate::failures::KEEP_ERRORS;
use crate::stats::latency_histogram;
use crate::wire::phoenix::Phoenix;
use crate::wire::{Inbound, Vsn, Wire};

/// What the subscribers and the coordinator share.
pub(super) struct Shared {
    /// This run's id, as written at the start of every body.
    pub(super) run: u64,
    /// First measured row; `u64::MAX` until the warm-up ends.
    pub(super) measure_from: AtomicU64,
    /// Measured deliveries received (first receipts only), so the drain can end early.
    pub(super) received: AtomicU64,
    /// [`crate::clock::now_us`] at the run's start, for the per-second timeline.
    pub(super) origin_us: u64,
}

/// A bitset of row numbers.
#[derive(Default)]
pub(super) struct Seen(Vec<u64>);

impl Seen {
    /// Marks `seq`; false when it was already marked.
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        let was = self.0[word] & (1 << bit) != 0;
        self.0[word] |= 1 << bit;
        !was
    }

    pub(super) fn contains(&self, seq: u64) -> bool {
        self.0
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

/// What one subscriber saw. Each subscriber owns its tallies and they are merged at the
/// end, so the receiving path takes no lock.
pub(super) struct SubStats {
    pub(super) user: usize,
    /// `at` → receipt, µs, measured rows only.
    pub(super) at_latency_us: Histogram<u64>,
    /// `commit_timestamp` → receipt, µs, measured rows only.
    pub(super) commit_latency_us: Histogram<u64>,
    pub(super) seen: Seen,
    /// Measured rows received (first receipts).
    pub(super) measured: u64,
    /// This run's rows from before the measured window.
    pub(super) unmeasured: u64,
    /// Rows received again.
    pub(super) duplicates: u64,
    /// Rows of an earlier run.
    pub(super) stale: u64,
    /// Rows of another user (`per-user` only): must be 0.
    pub(super) unauthorized: u64,
    /// Wall clock (µs) of the last measured receipt.
    pub(super) last_receipt_us: i64,
    /// Receipts of this run's rows, warm-up and repeats included, and the wall clock
    /// (µs) of the first and last: the pipeline's throughput when it lags the writers.
    pub(super) receipts: u64,
    pub(super) first_any_us: i64,
    pub(super) last_any_us: i64,
    /// Receipts of this run's rows per second of the run.
    pub(super) per_second: Timeline,
    /// Frames other than changes and heartbeat replies (a few samples).
    pub(super) other: Vec<String>,
    /// Why the socket ended before the run did, if it did.
    pub(super) ended: Option<String>,
}

impl SubStats {
    pub(super) fn new(user: usize) -> Self {
        SubStats {
            user,
            at_latency_us: latency_histogram(),
            commit_latency_us: latency_histogram(),
            seen: Seen::default(),
            measured: 0,
            unmeasured: 0,
            duplicates: 0,
            stale: 0,
            unauthorized: 0,
            last_receipt_us: 0,
            receipts: 0,
            first_any_us: 0,
            last_any_us: 0,
            per_second: Timeline::default(),
            other: Vec::new(),
            ended: None,
        }
    }

    /// Tallies one `postgres_changes` frame.
    fn on_change(&mut self, text: &str, shared: &Shared, check_owner: bool) {
        let now = wall_us();
        let Some(row) = parse_delivered(text) else {
            self.note(format!("unparsable change: {}", truncate(text, 300)));
            return;
        };
        if row.run != shared.run {
            self.stale += 1;
            return;
        }
        self.per_second.add(second_of(shared.origin_us), 1);
        if check_owner && row.owner != Some(self.user as u64) {
            self.unauthorized += 1;
            return;
        }
        self.receipts += 1;
        if self.first_any_us == 0 {
            self.first_any_us = now;
        }
        self.last_any_us = now;
        if !self.seen.insert(row.seq) {
            self.duplicates += 1;
            return;
        }
        if row.seq < shared.measure_from.load(Ordering::Relaxed) {
            self.unmeasured += 1;
            return;
        }
        self.measured += 1;
        shared.received.fetch_add(1, Ordering::Relaxed);
        self.last_receipt_us = now;
        if let Some(at) = row.at_us {
            self.at_latency_us
                .saturating_record(now.saturating_sub(at).max(1) as u64);
        }
        if let Some(commit) = row.commit_us {
            self.commit_latency_us
                .saturating_record(now.saturating_sub(commit).max(1) as u64);
        }
    }

    fn note(&mut self, what: String) {
        if self.other.len() < KEEP_ERRORS {
            self.other.push(what);
        }
    }
}

/// An open socket whose channel is subscribed to the table's changes.
pub(super) struct Subscribed {
    ws: Ws,
    wire: Phoenix,
}

/// The join config: for postgres changes one INSERT binding on the table; for database
/// broadcasts the private channel, asking to be told when they are live.
fn join_config(via: Via) -> String {
    match via {
        Via::PostgresChanges => format!(
            r#"{{"broadcast":{{"self":false,"ack":false}},"presence":{{"enabled":false}},"private":false,"postgres_changes":[{{"event":"INSERT","schema":"public","table":"{TABLE}"}}]}}"#
        ),
        Via::DatabaseBroadcasts => r#"{"broadcast":{"self":false,"ack":false,"replication_ready":true},"presence":{"enabled":false},"private":true,"postgres_changes":[]}"#.to_owned(),
    }
}

/// The `system` message after which the server delivers.
fn live_message(via: Via) -> &'static str {
    match via {
        Via::PostgresChanges => "Subscribed to PostgreSQL",
        Via::DatabaseBroadcasts => "Replication connection established",
    }
}

/// Connects, joins `realtime:<topic>`, and waits for the `system` message that says the
/// server delivers from now on ([`live_message`]).
pub(super) async fn subscribe(
    dialer: &Dialer,
    topic: &str,
    via: Via,
) -> Result<Subscribed, String> {
    let attempt = async {
        let mut ws = dialer.connect().await?;
        // Frames are read with v2 (array) substring searches, so the dialer speaks v2.
        let mut wire = Phoenix::new(Vsn::V2);
        ws.send(wire.join(topic, &join_config(via)))
            .await
            .map_err(|e| format!("send join: {e}"))?;
        loop {
            let frame = match ws.next().await {
                Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("eof before the system message".into()),
            };
            if let Message::Text(text) = &frame
                && text.contains(r#","system","#)
            {
                return if text.contains(live_message(via)) {
                    Ok(Subscribed { ws, wire })
                } else {
                    Err(format!("subscription refused: {}", text.as_str()))
                };
            }
            let mut refused = None;
            wire.decode(frame, &mut |event| {
                if let Inbound::Refused(why) = event {
                    refused = Some(why);
                }
            });
            if let Some(why) = refused {
                return Err(format!("join refused: {}", truncate(&why, 300)));
            }
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("timed out waiting for {}", live_message(via))))
}

/// Reads one subscriber's socket until `stop`, sending heartbeats, and returns its
/// tallies.
pub(super) async fn receive(
    subscribed: Subscribed,
    mut stats: SubStats,
    shared: Arc<Shared>,
    check_owner: bool,
    stop: CancellationToken,
) -> SubStats {
    let Subscribed { mut ws, mut wire } = subscribed;
    let mut beat = tokio::time::interval_at(
        tokio::time::Instant::now() + HEARTBEAT_EVERY,
        HEARTBEAT_EVERY,
    );
    stats.ended = loop {
        tokio::select! {
            // Reading first: a backlog of frames must not be starved by the timers.
            biased;
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let text = text.as_str();
                    // A change, or a broadcast_changes row (its payload has the record too).
                    if text.contains(r#","postgres_changes",{"ids""#)
                        || text.contains(r#","broadcast",{"type":"broadcast""#)
                    {
                        stats.on_change(text, &shared, check_owner);
                    } else if !text.contains(r#""phx_reply",{"status":"ok""#) {
                        stats.note(truncate(text, 300).to_owned());
                    }
                }
                Some(Ok(Message::Close(frame))) => break Some(format!("server closed: {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(format!("read: {e}")),
                None => break Some("eof".into()),
            },
            () = stop.cancelled() => {
                let _ = ws.close(None).await;
                break None;
            }
            _ = beat.tick() => {
                if let Some(heartbeat) = wire.heartbeat()
                    && let Err(e) = ws.send(heartbeat).await
                {
                    break Some(format!("heartbeat: {e}"));
                }
            }
        }
    };
    stats
}

/// The fields of one delivered row the workload needs.
#[derive(Debug, PartialEq, Eq)]
struct Delivered {
    run: u64,
    seq: u64,
    /// The owner's user number (`user-<n>`).
    owner: Option<u64>,
    /// `at`, µs since the epoch.
    at_us: Option<i64>,
    /// `commit_timestamp`, µs since the epoch (millisecond resolution).
    commit_us: Option<i64>,
}

/// The text of the JSON string value right after `key` (no escapes expected: the
/// workload writes every value itself).
fn string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// Reads a change frame's record with substring searches: a JSON parser would cost the
/// load generator more than the server's work it measures.
fn parse_delivered(text: &str) -> Option<Delivered> {
    let record = &text[text.find(r#""record":{"#)?..];
    let body = string_after(record, r#""body":""#)?;
    let mut parts = body.splitn(3, ':');
    let run = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let owner = string_after(record, r#""owner":"user-"#).and_then(|n| n.parse().ok());
    let at_us = string_after(record, r#""at":""#).and_then(parse_timestamp_micros);
    let commit_us = string_after(text, r#""commit_timestamp":""#).and_then(parse_timestamp_micros);
    Some(Delivered {
        run,
        seq,
        owner,
        at_us,
        commit_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_frame_yields_its_row() {
        let frame = r#"[null,null,"realtime:bench","postgres_changes",{"ids":[7],"data":{"schema":"public","table":"bench","commit_timestamp":"2026-01-02T03:04:05.679Z","type":"INSERT","columns":[{"name":"id","type":"int8"},{"name":"owner","type":"text"},{"name":"body","type":"text"},{"name":"at","type":"timestamptz"}],"record":{"at":"2026-01-02T03:04:05.678901+00:00","body":"42:17:xxxx","id":5,"owner":"user-3"},"errors":null}}]"#;
        assert_eq!(
            parse_delivered(frame),
            Some(Delivered {
                run: 42,
                seq: 17,
                owner: Some(3),
                at_us: Some(1_767_323_045_678_901),
                commit_us: Some(1_767_323_045_679_000),
            })
        );
    }

    #[test]
    fn the_join_asks_for_inserts_on_the_table() {
        let mut wire = Phoenix::new(Vsn::V2);
        let join = wire.join("bench", &join_config(Via::PostgresChanges));
        let join: serde_json::Value = serde_json::from_str(join.to_text().unwrap()).unwrap();
        assert_eq!(join[2], "realtime:bench");
        assert_eq!(join[3], "phx_join");
        let binding = &join[4]["config"]["postgres_changes"][0];
        assert_eq!(binding["table"], TABLE);
        assert_eq!(binding["event"], "INSERT");
    }

    #[test]
    fn a_broadcast_changes_frame_yields_its_row() {
        let frame = r#"[null,null,"realtime:bench","broadcast",{"type":"broadcast","event":"INSERT","payload":{"id":"5f0c","old_record":null,"operation":"INSERT","record":{"at":"2026-01-02T03:04:05.678901+00:00","body":"42:17:xxxx","id":5,"owner":"user-3"},"schema":"public","table":"bench"},"meta":{"id":"5f0c"}}]"#;
        let delivered = parse_delivered(frame).unwrap();
        assert_eq!((delivered.run, delivered.seq), (42, 17));
        assert_eq!(delivered.at_us, Some(1_767_323_045_678_901));
        let join = Phoenix::new(Vsn::V2).join("bench", &join_config(Via::DatabaseBroadcasts));
        let join: serde_json::Value = serde_json::from_str(join.to_text().unwrap()).unwrap();
        assert_eq!(join[4]["config"]["private"], true);
        assert_eq!(join[4]["config"]["broadcast"]["replication_ready"], true);
    }

    #[test]
    fn the_seen_set_notices_repeats() {
        let mut seen = Seen::default();
        assert!(seen.insert(130));
        assert!(!seen.insert(130));
        assert!(seen.contains(130) && !seen.contains(129));
    }
}
