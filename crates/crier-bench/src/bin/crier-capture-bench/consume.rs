//! The consumers: the slot read by streaming replication (`stream`) or by SQL polling
//! (`poll`), each counting what it decodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crier_postgres::pgoutput::{self, Message, Relation};
use crier_postgres::replication::{ChangeStream, StreamEvent};
use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, interval};
use tokio_postgres::Client;
use tokio_postgres::types::PgLsn;

use crate::{BoxError, POLL_SLOT, PUBLICATION};

/// What a consumer saw.
#[derive(Default)]
pub(crate) struct Stats {
    /// Row changes decoded.
    pub(crate) changes: u64,
    /// Transactions handed off.
    pub(crate) transactions: u64,
    /// Polls made (`poll`).
    pub(crate) polls: u64,
    /// Commit → decoded, microseconds, one per change.
    pub(crate) latencies_us: Vec<i64>,
    /// When the last transaction was handed off.
    pub(crate) last: Option<Instant>,
}

impl Stats {
    fn change(&mut self, commit_time_micros: i64) {
        self.latencies_us.push(now_micros() - commit_time_micros);
        self.changes += 1;
    }

    /// A transaction is handed off: the progress watch sees it only now.
    fn commit(&mut self, progress: &watch::Sender<u64>) {
        self.transactions += 1;
        self.last = Some(Instant::now());
        progress.send_replace(self.changes);
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i64
}

/// Streams changes until told to stop, acknowledging each commit as soon as its changes
/// are counted (standing in for "handed to fan-out").
pub(crate) async fn consume_stream(
    mut stream: ChangeStream,
    mut stop: watch::Receiver<bool>,
    progress: watch::Sender<u64>,
) -> Result<Stats, BoxError> {
    let mut stats = Stats::default();
    let mut commit_time = 0;
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => break,
            event = stream.next() => event?,
        };
        match event {
            None => break,
            Some(StreamEvent::Begin {
                commit_time_micros, ..
            }) => commit_time = commit_time_micros,
            Some(StreamEvent::Change(_change)) => stats.change(commit_time),
            Some(StreamEvent::Commit { end_lsn }) => {
                stream.ack(end_lsn);
                stats.commit(&progress);
            }
            Some(_) => {}
        }
    }
    Ok(stats)
}

/// Polls the slot every `every`, or at once again after a full poll (a backlog is
/// drained without waiting), decodes each message, and advances the slot past the last
/// transaction once its changes are handed off.
pub(crate) async fn consume_poll(
    client: Client,
    every: Duration,
    max_changes: i32,
    mut stop: watch::Receiver<bool>,
    progress: watch::Sender<u64>,
) -> Result<Stats, BoxError> {
    let peek = client
        .prepare(&format!(
            "select lsn, data from pg_logical_slot_peek_binary_changes($1, NULL, $2, \
             'proto_version', '1', 'publication_names', '{PUBLICATION}')"
        ))
        .await?;
    let advance = client
        .prepare("select pg_replication_slot_advance($1, $2)")
        .await?;
    let mut ticker = interval(every);
    // After a slow poll, wait a whole interval again rather than polling in a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Each peek is a new decoding session, so pgoutput describes every table again in
    // each poll; kept like ChangeStream keeps them, to do the same work per change.
    let mut relations: HashMap<u32, Arc<Relation>> = HashMap::new();
    let mut stats = Stats::default();
    let mut full = false;
    loop {
        if full {
            if stop.has_changed()? {
                break;
            }
        } else {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = ticker.tick() => {}
            }
        }
        let rows = client.query(&peek, &[&POLL_SLOT, &max_changes]).await?;
        stats.polls += 1;
        full = rows.len() >= max_changes as usize;
        let mut commit_time = 0;
        let mut handed_off: Option<PgLsn> = None;
        for row in &rows {
            let data: &[u8] = row.get(1);
            match pgoutput::decode(&Bytes::copy_from_slice(data))? {
                Message::Begin {
                    commit_time: time, ..
                } => commit_time = time + pgoutput::POSTGRES_EPOCH_OFFSET_MICROS,
                Message::Relation(relation) => {
                    relations.insert(relation.id, Arc::new(relation));
                }
                Message::Insert { relation, .. }
                | Message::Update { relation, .. }
                | Message::Delete { relation, .. } => {
                    let _relation = relations
                        .get(&relation)
                        .cloned()
                        .ok_or_else(|| format!("change for unknown relation {relation}"))?;
                    stats.change(commit_time);
                }
                Message::Commit { .. } => {
                    // The row's lsn is the commit's end: advancing to it skips this
                    // transaction next time, and nothing after it.
                    handed_off = Some(row.get(0));
                    stats.commit(&progress);
                }
                _ => {}
            }
        }
        // Only now, with every change of these transactions handed off, may the slot
        // move: a crash before this line delivers them again.
        if let Some(lsn) = handed_off {
            client.query_one(&advance, &[&POLL_SLOT, &lsn]).await?;
        }
    }
    Ok(stats)
}
