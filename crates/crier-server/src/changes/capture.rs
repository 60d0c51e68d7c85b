//! The capture loop: stream committed changes from the slot, deliver them in batches, and
//! let the slot move past a transaction only once its changes are queued to subscribers.
//!
//! That order is the delivery guarantee. Whatever was not acknowledged comes again from
//! the slot after any failure (a lost database connection, a failed authorization query,
//! a restart of Crier), so a change may reach a subscriber twice but is never skipped.
//! After a failure the loop reconnects with a capped backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crier_postgres::catalog::CatalogError;
use crier_postgres::database_broadcast::{self, DatabaseBroadcast, PublicationState};
use crier_postgres::replication::{CdcError, RowChange, StreamEvent};
use futures_util::FutureExt;

use super::cache::CatalogCache;
use super::{Feed, broadcasts, deliver};

/// Most changes delivered in one batch. Batches are cut earlier whenever the stream has
/// nothing more ready, so a quiet database gets each change at once. After each batch
/// capture waits for the subscribers it left lagging, so a burst of changes moves at
/// their pace (see `deliver`).
pub(super) const MAX_BATCH: usize = 256;
/// First and longest wait before reconnecting after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why capture stopped; the loop logs it and reconnects.
#[derive(Debug, thiserror::Error)]
pub(super) enum CaptureError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("replication: {0}")]
    Replication(#[from] CdcError),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("the replication stream ended")]
    Ended,
    #[error("the replication stream was read before it was started")]
    NotStarted,
    #[error("the change relay: {0}")]
    Relay(String),
    #[error("transactions {0:?} were decoded but other sessions do not see them as ended yet")]
    NotEnded(Vec<u32>),
}

/// A captured change with its transaction's commit time and id.
pub(super) struct Captured {
    pub(super) change: RowChange,
    pub(super) commit_time_micros: i64,
    pub(super) xid: u32,
}

/// Runs until the node shuts down.
pub(super) async fn run(feed: Arc<Feed>) {
    let mut first_start = true;
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut streamed = false;
        let outcome = tokio::select! {
            () = feed.shutdown.cancelled() => return,
            outcome = capture(&feed, &mut first_start, &mut streamed) => outcome,
        };
        if streamed {
            backoff = BACKOFF_MIN;
        }
        match outcome {
            Ok(()) => return,
            Err(err) => {
                feed.metrics.reconnects.inc();
                tracing::warn!(error = %err, retry_in = ?backoff, "postgres changes capture stopped; reconnecting");
            }
        }
        tokio::select! {
            () = feed.shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn capture(
    feed: &Feed,
    first_start: &mut bool,
    streamed: &mut bool,
) -> Result<(), CaptureError> {
    let config = &feed.config;
    let mut stream = feed.source.open().await?;
    feed.slot_ready.send_replace(true);
    let broadcasts = match stream.broadcasts() {
        Some(PublicationState::Ready) => true,
        Some(PublicationState::Unavailable(why)) => {
            tracing::warn!(%why, "broadcasts from the database are off");
            false
        }
        None => false,
    };
    if *first_start && !stream.slot_created() && !config.resume_grace.is_zero() {
        // The slot holds what was committed while no Crier was streaming from it. Give
        // the subscribers that were connected then a moment to come back for it.
        tracing::info!(grace = ?config.resume_grace, slot = %config.slot, "resuming from an existing slot after the grace period");
        tokio::time::sleep(config.resume_grace).await;
    }
    *first_start = false;
    stream.start().await?;
    tracing::info!(slot = %config.slot, publication = %config.publication, broadcasts, "postgres changes streaming");
    *streamed = true;
    // Off again whenever this attempt ends, until the next one streams.
    let _live = LiveWhileStreaming::new(&feed.broadcasts_live, broadcasts);
    let _status = StatusWhileStreaming::new(&feed.status);

    let mut batch: Vec<Captured> = Vec::new();
    let mut stored: Vec<DatabaseBroadcast> = Vec::new();
    let mut cache = CatalogCache::default();
    let mut commit_time_micros = 0;
    let mut xid = 0;
    // A transaction this node delivered already (it came again after a reconnect, or
    // from a new capturing node of the cluster) is skipped, by its commit position.
    let mut skipping = false;
    let mut final_lsn = 0;
    loop {
        // Wait for one event, then take whatever else is already buffered (the stream's
        // `next` is cancel-safe, so polling it once and dropping it loses nothing).
        let mut event = stream.next().await?.ok_or(CaptureError::Ended)?;
        let mut ack = None;
        let mut done = None;
        loop {
            match event {
                StreamEvent::Begin {
                    final_lsn: commit_at,
                    commit_time_micros: at,
                    xid: id,
                } => {
                    (commit_time_micros, xid, final_lsn) = (at, id, commit_at);
                    skipping = commit_at <= feed.done_lsn.load(Ordering::Relaxed);
                }
                StreamEvent::Change(_) if skipping => {}
                StreamEvent::Change(change)
                    if broadcasts && database_broadcast::is_messages_table(&change.relation) =>
                {
                    match database_broadcast::read_row(&change) {
                        Ok(Some(broadcast)) => stored.push(broadcast),
                        Ok(None) => {}
                        Err(err) => {
                            feed.metrics.database_broadcasts_skipped.inc();
                            tracing::warn!(error = %err, "database broadcast skipped");
                        }
                    }
                }
                StreamEvent::Change(change) => {
                    feed.metrics.captured.inc();
                    batch.push(Captured {
                        change,
                        commit_time_micros,
                        xid,
                    });
                }
                StreamEvent::Commit { end_lsn } => {
                    ack = Some(end_lsn);
                    if !std::mem::take(&mut skipping) {
                        done = Some(final_lsn);
                    }
                }
                StreamEvent::Relation(relation) => {
                    cache.forget_table(relation.id);
                    for column in &relation.columns {
                        stream.learn_type(column.type_oid).await?;
                    }
                }
                StreamEvent::Type { oid, .. } => stream.learn_type(oid).await?,
            }
            if batch.len() + stored.len() >= MAX_BATCH {
                break;
            }
            // Unconstrained: tokio's cooperative budget would otherwise report buffered
            // events as not ready after about a hundred reads, cutting every batch short
            // and paying each batch's database round trips every ~25 changes.
            match tokio::task::unconstrained(stream.next()).now_or_never() {
                Some(next) => event = next?.ok_or(CaptureError::Ended)?,
                None => break,
            }
        }
        if !batch.is_empty() {
            deliver::deliver(feed, stream.types(), &batch, &mut cache).await?;
            batch.clear();
            cache.prune();
        }
        if !stored.is_empty() {
            broadcasts::deliver(feed, &stored).await;
            stored.clear();
        }
        if let Some(lsn) = done {
            feed.done_lsn.fetch_max(lsn, Ordering::Relaxed);
            let status = &feed.status;
            status.last_commit_micros.store(
                u64::try_from(commit_time_micros).unwrap_or(0),
                Ordering::Relaxed,
            );
            status
                .last_delivered_micros
                .store(unix_micros(), Ordering::Relaxed);
        }
        if let Some(lsn) = ack {
            stream.ack(lsn).await;
            feed.status.acked_lsn.store(lsn, Ordering::Relaxed);
        }
    }
}

/// Says broadcasts from the database are live for as long as it is held.
/// Marks the capture state streaming for as long as an attempt streams.
struct StatusWhileStreaming<'a>(&'a super::CaptureState);

impl<'a> StatusWhileStreaming<'a> {
    fn new(state: &'a super::CaptureState) -> Self {
        state.streaming.store(true, Ordering::Relaxed);
        StatusWhileStreaming(state)
    }
}

impl Drop for StatusWhileStreaming<'_> {
    fn drop(&mut self) {
        self.0.streaming.store(false, Ordering::Relaxed);
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

struct LiveWhileStreaming<'a>(&'a tokio::sync::watch::Sender<bool>);

impl<'a> LiveWhileStreaming<'a> {
    fn new(live: &'a tokio::sync::watch::Sender<bool>, streaming: bool) -> Self {
        live.send_replace(streaming);
        LiveWhileStreaming(live)
    }
}

impl Drop for LiveWhileStreaming<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}
