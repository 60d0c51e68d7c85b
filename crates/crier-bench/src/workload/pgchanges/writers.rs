//! The writers: ordinary PostgreSQL connections inserting numbered rows into the table
//! at a steady rate, and remembering which rows did not commit.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

use super::setup::user_name;
use super::{Timeline, second_of};
use crate::failures::Failures;

/// What the writers share.
pub(super) struct WriterShared {
    /// This run's id, the first part of every body.
    pub(super) run: u64,
    /// Distinct users the rows cycle through.
    pub(super) users: u64,
    pub(super) body_bytes: usize,
    pub(super) rows_per_tx: usize,
    /// The next row number to hand out.
    pub(super) next_seq: AtomicU64,
    /// Row numbers of transactions that failed (not committed).
    pub(super) failed: Mutex<Vec<Range<u64>>>,
    pub(super) failures: Mutex<Failures>,
    /// [`crate::clock::now_us`] at the run's start, for the per-second timeline.
    pub(super) origin_us: u64,
}

impl WriterShared {
    /// The owner of row `seq`: the users take turns.
    pub(super) fn owner(&self, seq: u64) -> String {
        user_name(seq % self.users)
    }

    /// `<run>:<seq>:` padded with `x` to the body size: the subscribers read the row's
    /// identity back out of it.
    pub(super) fn body(&self, seq: u64) -> String {
        let mut body = format!("{}:{seq}:", self.run);
        let pad = self.body_bytes.saturating_sub(body.len());
        body.extend(std::iter::repeat_n('x', pad));
        body
    }

    fn fail(&self, what: &str, error: &tokio_postgres::Error) {
        self.failures
            .lock()
            .expect("not poisoned")
            .record(format!("{what}: {error}"));
    }
}

/// One writer connection: transactions of `rows_per_tx` rows at `tx_per_s` (None: back
/// to back), starting `offset` from now, until `stop`. Returns its committed rows per
/// second of the run.
pub(super) async fn write_rows(
    client: tokio_postgres::Client,
    shared: Arc<WriterShared>,
    tx_per_s: Option<f64>,
    offset: Duration,
    stop: CancellationToken,
) -> Timeline {
    let batch = shared.rows_per_tx;
    // One autocommitted statement per transaction: a single row, or many through unnest.
    let sql = if batch == 1 {
        "insert into public.bench (owner, body) values ($1, $2)"
    } else {
        "insert into public.bench (owner, body) select * from unnest($1::text[], $2::text[])"
    };
    let mut per_second = Timeline::default();
    let statement = match client.prepare(sql).await {
        Ok(statement) => statement,
        Err(e) => {
            shared.fail("prepare", &e);
            return per_second;
        }
    };
    let start = tokio::time::Instant::now() + offset;
    let mut done = 0u64;
    loop {
        if let Some(rate) = tx_per_s {
            // Keep to the schedule: after a slow commit the next one goes at once, so
            // the rate asked for is the rate offered, not the rate that felt possible.
            let due = start + Duration::from_secs_f64(done as f64 / rate);
            if due > tokio::time::Instant::now() {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
        if stop.is_cancelled() {
            break;
        }
        let base = shared.next_seq.fetch_add(batch as u64, Ordering::Relaxed);
        let seqs = base..base + batch as u64;
        let result = if batch == 1 {
            let (owner, body) = (shared.owner(base), shared.body(base));
            client.execute(&statement, &[&owner, &body]).await
        } else {
            let owners: Vec<String> = seqs.clone().map(|s| shared.owner(s)).collect();
            let bodies: Vec<String> = seqs.clone().map(|s| shared.body(s)).collect();
            let params: [&(dyn ToSql + Sync); 2] = [&owners, &bodies];
            client.execute(&statement, &params).await
        };
        match result {
            Ok(_) => per_second.add(second_of(shared.origin_us), batch as u64),
            Err(e) => {
                shared.fail("insert", &e);
                shared.failed.lock().expect("not poisoned").push(seqs);
            }
        }
        done += 1;
    }
    per_second
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_padded_and_owners_cycle() {
        let shared = WriterShared {
            run: 9,
            users: 4,
            body_bytes: 16,
            rows_per_tx: 1,
            next_seq: AtomicU64::new(0),
            failed: Mutex::new(Vec::new()),
            failures: Mutex::default(),
            origin_us: 0,
        };
        assert_eq!(shared.body(123), "9:123:xxxxxxxxxx");
        assert_eq!(shared.body(123).len(), 16);
        assert_eq!(shared.owner(6), "user-2");
    }
}
