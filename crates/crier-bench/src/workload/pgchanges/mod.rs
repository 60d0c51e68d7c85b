//! B3: rows written to PostgreSQL and delivered by Crier as postgres changes.
//!
//! 1. Setup (unless [`PgChangesOptions::setup`] is off): the SQL of [`setup_sql`]. It is
//!    idempotent, so every run may apply it, switching the table's RLS variant.
//! 2. N subscriber sockets join, each on `realtime:bench` (or `realtime:bench-<i>` with
//!    a topic per subscriber) with one binding `{"event":"INSERT","schema":"public",
//!    "table":"bench"}`, and wait for the `system` message `Subscribed to PostgreSQL`,
//!    which is when the server starts delivering to them.
//! 3. Writer connections insert rows at the asked rate in total (0: as fast as they can),
//!    some rows per transaction (one autocommitted `INSERT` each). Row `seq` (a counter
//!    of this run) has `owner = 'user-<seq % K>'` and `body = '<run>:<seq>:xxx…'`,
//!    padded to the body size. The run id makes rows of an earlier run that the server
//!    is still delivering recognizable (reported as stale).
//! 4. After the warm-up the measured window starts: every row allocated from then on is
//!    measured. When the window ends the writers stop, and the workload waits up to the
//!    drain time for the measured deliveries still missing.
//!
//! Variants ([`RlsMode`]), with K distinct users (default one per subscriber):
//! * `off`: the table has RLS disabled and every subscriber uses one `anon` token. Every
//!   subscriber should receive every row: expected = rows × subscribers.
//! * `all`: RLS enabled, policy `using (true)` for `authenticated`. Subscriber i carries
//!   `{"role":"authenticated","sub":"user-<i % K>"}`, so the server checks every row once
//!   per distinct claims (K groups) and every check passes: expected = rows ×
//!   subscribers, the figure to compare with `off`.
//! * `per-user`: RLS enabled, policy
//!   `using (owner = current_setting('request.jwt.claims', true)::jsonb->>'sub')`. A row
//!   is visible to the subscribers whose user owns it: expected = Σ over rows of the
//!   subscribers of its owner. A delivery of another user's row counts as unauthorized.
//!
//! Latency is taken per delivery from the row's `at` column, `clock_timestamp()` at the
//! insert, in microseconds, to the wall clock when the frame is read. PostgreSQL and the
//! load generator run on one machine and read the same clock. `at` is a little before
//! the commit (the rest of the transaction), so with one row per transaction it is the
//! commit time to within a few tens of µs. The payload's `commit_timestamp`
//! (milliseconds, truncated) is reported too: it reads 0–1 ms higher.
//!
//! Every delivery is recorded in a bitset per subscriber, so the report gives exact
//! missing, duplicate and per-row completion counts ("rows fully delivered" = rows that
//! reached every subscriber meant to see them). When the writers outrun the server, the
//! measured rows queue behind the warm-up's, so the report also gives the "sustained"
//! rate: every receipt of the run over the time from the first to the last.
//!
//! CPU is reported from the start of the measured window to the end of the drain, for
//! the server, the load generator (subscribers and writers' client side together) and
//! the whole PostgreSQL server (its postmaster's pid: backends, walsender and all).
//!
//! Unlike the broadcast workloads, this one runs in the calling process on one runtime:
//! its subscribers are counted in hundreds, and a current-thread runtime keeps the
//! whole client side on the one core the tool is pinned to.

mod report;
mod setup;
mod subscribers;
mod writers;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use report::{PgChangesFigures, PgChangesReport};
pub use setup::{RlsMode, TABLE, Via, apply_setup, setup_sql, user_claims};

use super::{Options, wait_showing};
use crate::BenchError;
use crate::client::Dialer;
use crate::clock::now_us;
use crate::failures::Failures;
use crate::procfs::{self, CpuSample};
use crate::progress::Progress;
use crate::wire::{ServerKind, Target, Vsn};
use report::Totals;
use subscribers::{Shared, SubStats};
use writers::WriterShared;

/// How a postgres-changes run is shaped. The server, its pid, the connects in flight
/// and the read buffer come from [`Options`]; its worker settings do not apply.
#[derive(Debug, Clone)]
pub struct PgChangesOptions {
    /// The database the server captures from, for the setup and the writers (a role
    /// that may create roles, tables and publications, e.g. the superuser).
    pub database_url: String,
    /// The publication the server streams.
    pub publication: String,
    /// One token per user (the claims of [`user_claims`], signed with the server's
    /// secret), or a single token for everyone. Empty: everyone uses the target's
    /// token, which suits only [`RlsMode::Off`].
    pub tokens: Vec<String>,
    /// Subscriber sockets, one channel each.
    pub subscribers: usize,
    /// Give each subscriber its own topic instead of all sharing one (the server then
    /// encodes one frame per subscriber).
    pub topic_per_subscriber: bool,
    /// The row level security variant.
    pub rls: RlsMode,
    /// How rows reach the subscribers: postgres changes, or broadcasts from the database
    /// sent by a trigger (then `rls` must be off and the topic shared).
    pub via: Via,
    /// Distinct users: subscriber i is `user-<i % users>`, row `seq` belongs to
    /// `user-<seq % users>`. `None`: one per subscriber.
    pub users: Option<usize>,
    /// Rows per second, all writers together; 0 writes as fast as they can.
    pub rate: u64,
    /// Rows per transaction.
    pub rows_per_tx: usize,
    /// Writer connections, sharing the rate.
    pub writers: usize,
    /// Length of each row's `body`, in bytes.
    pub body_bytes: usize,
    /// Length of the measured window, in seconds.
    pub seconds: f64,
    /// Seconds of writing before the measured window.
    pub warmup: f64,
    /// After the writers stop, wait at most this long for missing deliveries.
    pub drain: f64,
    /// Apply [`setup_sql`] first.
    pub setup: bool,
    /// The PostgreSQL postmaster's pid, for the database's CPU.
    pub pg_pid: Option<u32>,
}

impl PgChangesOptions {
    /// The defaults of `crier bench pgchanges` against `database_url`: 100 subscribers
    /// on one topic, no RLS, 1,000 rows/s from 4 writers, 64-byte bodies, 2 s warm-up,
    /// 10 s measured, up to 10 s of drain.
    pub fn new(database_url: impl Into<String>) -> PgChangesOptions {
        PgChangesOptions {
            database_url: database_url.into(),
            publication: "supabase_realtime".into(),
            tokens: Vec::new(),
            subscribers: 100,
            topic_per_subscriber: false,
            rls: RlsMode::Off,
            via: Via::PostgresChanges,
            users: None,
            rate: 1000,
            rows_per_tx: 1,
            writers: 4,
            body_bytes: 64,
            seconds: 10.0,
            warmup: 2.0,
            drain: 10.0,
            setup: true,
            pg_pid: None,
        }
    }

    /// The distinct users the run has.
    pub fn user_count(&self) -> usize {
        self.users.unwrap_or(self.subscribers).max(1)
    }
}

/// Counts per second of the run (from its start), for the report's timelines.
#[derive(Debug, Default, Clone)]
pub(super) struct Timeline(Vec<u64>);

impl Timeline {
    fn add(&mut self, second: usize, n: u64) {
        if self.0.len() <= second {
            self.0.resize(second + 1, 0);
        }
        self.0[second] += n;
    }

    fn merge(&mut self, other: &Timeline) {
        for (second, &n) in other.0.iter().enumerate() {
            self.add(second, n);
        }
    }
}

impl fmt::Display for Timeline {
    /// The counts from the first busy second on, space-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.0.iter().position(|&n| n > 0).unwrap_or(self.0.len());
        let counts: Vec<String> = self.0[first..].iter().map(u64::to_string).collect();
        f.write_str(&counts.join(" "))
    }
}

/// The second of the run that started at `origin_us` ([`now_us`]) we are in now.
fn second_of(origin_us: u64) -> usize {
    (now_us().saturating_sub(origin_us) / 1_000_000) as usize
}

/// Microseconds since the Unix epoch by the wall clock: PostgreSQL stamps rows with it,
/// so latency from a row's `at` must be read on it too (not on the monotonic clock).
fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// CPU readings of the server, this process and PostgreSQL (each if known) at one
/// instant.
struct CpuReadings {
    at: Instant,
    server: CpuSample,
    tool: CpuSample,
    postgres: CpuSample,
}

impl CpuReadings {
    fn take(server_pid: Option<u32>, postmaster: Option<u32>) -> CpuReadings {
        CpuReadings {
            at: Instant::now(),
            server: CpuSample::take(server_pid.as_slice()),
            tool: CpuSample::take(&[std::process::id()]),
            postgres: CpuSample::from_ticks(postmaster.and_then(procfs::family_cpu_ticks)),
        }
    }

    /// CPU use since `earlier`, in percent of one core: [server, tool, postgres].
    fn percent_since(&self, earlier: &CpuReadings) -> [Option<f64>; 3] {
        [
            self.server.percent_since(&earlier.server),
            self.tool.percent_since(&earlier.tool),
            self.postgres.percent_since(&earlier.postgres),
        ]
    }
}

/// The tokens subscribers connect with: user `u` uses `tokens[u % len]`.
fn tokens(
    options: &Options,
    shape: &PgChangesOptions,
    users: usize,
) -> Result<Vec<String>, BenchError> {
    if shape.rls != RlsMode::Off && shape.tokens.len() != users {
        // With fewer tokens, users would share claims and RLS would check fewer groups
        // than the run says.
        return Err(BenchError::Settings(format!(
            "rls {} needs one token per user ({users}), not {}",
            shape.rls,
            shape.tokens.len()
        )));
    }
    if !shape.tokens.is_empty() {
        return Ok(shape.tokens.clone());
    }
    match &options.target.token {
        Some(token) => Ok(vec![token.clone()]),
        None => Err(BenchError::Settings("no token to connect with".into())),
    }
}

/// Runs B3 against the Crier node of `options.target` (which must capture from
/// `shape.database_url`): sets up, subscribes, writes, measures.
///
/// Fails when a subscriber cannot subscribe (a partial run would not measure what was
/// asked) or the database cannot be reached; missing deliveries are reported, not
/// failed.
pub async fn pgchanges(
    options: &Options,
    shape: &PgChangesOptions,
) -> Result<PgChangesReport, BenchError> {
    let progress = Progress::new(options.progress);
    if shape.via == Via::DatabaseBroadcasts
        && (shape.rls != RlsMode::Off || shape.topic_per_subscriber)
    {
        return Err(BenchError::Settings(
            "database broadcasts go to one topic for everyone: use --rls off and no --topic-per-subscriber".into(),
        ));
    }
    let users = shape.user_count();
    let tokens = tokens(options, shape, users)?;
    if shape.setup {
        apply_setup(
            &shape.database_url,
            &shape.publication,
            shape.rls,
            shape.via,
        )
        .await?;
        progress.println(format!(
            "setup: table public.{TABLE}, rls {}, via {}",
            shape.rls, shape.via
        ));
    }
    let mut dialers = Vec::with_capacity(tokens.len());
    for token in tokens {
        let target = Target {
            kind: ServerKind::Crier,
            url: options.target.url.clone(),
            vsn: Vsn::V2,
            token: Some(token),
        };
        let dialer = Dialer::new(target, None, options.read_buffer)
            .await
            .map_err(BenchError::NoneJoined)?;
        dialers.push(Arc::new(dialer));
    }

    let origin_us = now_us();
    let run_id = wall_us() as u64;
    let shared = Arc::new(Shared {
        run: run_id,
        measure_from: AtomicU64::new(u64::MAX),
        received: AtomicU64::new(0),
        origin_us,
    });
    let check_owner = shape.rls == RlsMode::PerUser;
    // Whatever ends this function, early or not, ends the subscribers with it.
    let stop = CancellationToken::new();
    let _stop_subscribers = stop.clone().drop_guard();

    // Subscribers: each reports its user once subscribed, or None.
    let failures = Arc::new(Mutex::new(Failures::default()));
    let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let (joined_tx, mut joined_rx) = mpsc::unbounded_channel::<Option<usize>>();
    let started = Instant::now();
    progress.stage(
        shape.subscribers as u64,
        format!("subscribing ({})", shape.via),
    );
    let mut subs = Vec::with_capacity(shape.subscribers);
    for i in 0..shape.subscribers {
        let user = i % users;
        let topic = if shape.topic_per_subscriber {
            format!("{TABLE}-{i}")
        } else {
            TABLE.to_owned()
        };
        let dialer = dialers[user % dialers.len()].clone();
        let via = shape.via;
        let (failures, gate, stop, shared, joined_tx) = (
            failures.clone(),
            gate.clone(),
            stop.clone(),
            shared.clone(),
            joined_tx.clone(),
        );
        subs.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore open");
            let subscribed = match subscribers::subscribe(&dialer, &topic, via).await {
                Ok(subscribed) => subscribed,
                Err(e) => {
                    failures.lock().expect("not poisoned").record(e);
                    let _ = joined_tx.send(None);
                    return None;
                }
            };
            drop(permit);
            let _ = joined_tx.send(Some(user));
            let stats = SubStats::new(user);
            Some(subscribers::receive(subscribed, stats, shared, check_owner, stop).await)
        }));
    }
    drop(joined_tx);
    // Subscribers per user, for the expected counts. Every task answers once and then
    // lives on, so answers are counted rather than waiting for the channel to close.
    let mut per_user = vec![0u64; users];
    for answered in 1..=shape.subscribers {
        if let Some(Some(user)) = joined_rx.recv().await {
            per_user[user] += 1;
        }
        progress.set(answered as u64);
    }
    let joined: u64 = per_user.iter().sum();
    let join_secs = started.elapsed().as_secs_f64();
    progress.println(format!(
        "{joined} of {} subscribers subscribed ({users} users, rls {}) in {join_secs:.2} s",
        shape.subscribers, shape.rls
    ));
    if joined < shape.subscribers as u64 {
        let failures = failures.lock().expect("not poisoned");
        progress.finish();
        return Err(BenchError::NotAllJoined {
            joined: joined as usize,
            wanted: shape.subscribers,
            samples: failures
                .samples()
                .into_iter()
                .map(|(message, n)| format!("{n}x {message}"))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }

    // Writers.
    let writer_shared = Arc::new(WriterShared {
        run: run_id,
        users: users as u64,
        body_bytes: shape.body_bytes,
        rows_per_tx: shape.rows_per_tx.max(1),
        next_seq: AtomicU64::new(0),
        failed: Mutex::new(Vec::new()),
        failures: Mutex::default(),
        origin_us,
    });
    let writers = shape.writers.max(1);
    let tx_per_s = (shape.rate > 0)
        .then(|| shape.rate as f64 / writer_shared.rows_per_tx as f64 / writers as f64);
    let stop_writing = CancellationToken::new();
    let _stop_writers = stop_writing.clone().drop_guard();
    let mut writer_tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let client = setup::connect(&shape.database_url).await?;
        // Stagger the writers over one period so that their commits interleave evenly.
        let offset = tx_per_s.map_or(Duration::ZERO, |rate| {
            Duration::from_secs_f64(w as f64 / writers as f64 / rate)
        });
        writer_tasks.push(tokio::spawn(writers::write_rows(
            client,
            writer_shared.clone(),
            tx_per_s,
            offset,
            stop_writing.clone(),
        )));
    }
    let rate_label = if shape.rate == 0 {
        "unthrottled".to_owned()
    } else {
        format!("{} rows/s", shape.rate)
    };
    progress.println(format!(
        "writing {rate_label}, {} rows/tx, {writers} writers, {} s warm-up + {} s measured",
        writer_shared.rows_per_tx, shape.warmup, shape.seconds
    ));
    wait_showing(&progress, shape.warmup, "pgchanges: warm-up".into()).await;
    let from = writer_shared.next_seq.load(Ordering::Relaxed);
    shared.measure_from.store(from, Ordering::Relaxed);
    let cpu_start = CpuReadings::take(options.server_pid, shape.pg_pid);
    let window_start_wall = wall_us();
    wait_showing(&progress, shape.seconds, "pgchanges: measuring".into()).await;
    stop_writing.cancel();
    let mut written_per_second = Timeline::default();
    for task in writer_tasks {
        if let Ok(seconds) = task.await {
            written_per_second.merge(&seconds);
        }
    }
    let window = cpu_start.at.elapsed();
    let to = writer_shared.next_seq.load(Ordering::Relaxed);

    // Expected deliveries of the measured, committed rows.
    let failed = writer_shared.failed.lock().expect("not poisoned").clone();
    let committed = |seq: u64| !failed.iter().any(|r| r.contains(&seq));
    let expected_for = |seq: u64| -> u64 {
        match shape.rls {
            RlsMode::Off | RlsMode::All => joined,
            RlsMode::PerUser => per_user[(seq % users as u64) as usize],
        }
    };
    let measured_rows: Vec<u64> = (from..to).filter(|&s| committed(s)).collect();
    let expected: u64 = measured_rows.iter().map(|&s| expected_for(s)).sum();

    progress.stage(expected, "pgchanges: waiting for the last deliveries");
    let drain_until = Instant::now() + Duration::from_secs_f64(shape.drain);
    loop {
        let received = shared.received.load(Ordering::Relaxed);
        progress.set(received);
        if received >= expected || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_end = CpuReadings::take(options.server_pid, shape.pg_pid);
    let rss_bytes = options.server_pid.and_then(procfs::rss_bytes);
    stop.cancel();
    let mut all = Vec::with_capacity(subs.len());
    for sub in subs {
        if let Ok(Some(stats)) = sub.await {
            all.push(stats);
        }
    }
    progress.finish();
    let writer_failures =
        std::mem::take(&mut *writer_shared.failures.lock().expect("not poisoned"));
    Ok(PgChangesReport::build(
        shape,
        &all,
        &measured_rows,
        expected_for,
        Totals {
            run: run_id,
            joined,
            users,
            expected,
            window,
            window_start_wall,
            cpu: cpu_end.percent_since(&cpu_start),
            cpu_wall: cpu_end.at.duration_since(cpu_start.at),
            failed_rows: failed.iter().map(|r| r.end - r.start).sum(),
            written_total: to,
            written_per_second,
            writer_failures,
            rss_bytes,
            connect_join_per_sec: joined as f64 / join_secs.max(1e-9),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timelines_add_merge_and_skip_the_idle_start() {
        let mut a = Timeline::default();
        a.add(2, 5);
        a.add(3, 1);
        let mut b = Timeline::default();
        b.add(3, 2);
        b.add(5, 4);
        a.merge(&b);
        assert_eq!(a.to_string(), "5 3 0 4");
        assert_eq!(Timeline::default().to_string(), "");
    }

    #[test]
    fn rls_runs_need_a_token_per_user() {
        let options = Options::new(Target {
            kind: ServerKind::Crier,
            url: "ws://127.0.0.1:1/socket/websocket".into(),
            vsn: Vsn::V2,
            token: Some("shared".into()),
        });
        let mut shape = PgChangesOptions::new("postgres://x");
        shape.subscribers = 4;
        assert_eq!(tokens(&options, &shape, 4).unwrap(), ["shared"]);
        shape.rls = RlsMode::All;
        let error = tokens(&options, &shape, 4).unwrap_err();
        assert!(error.to_string().contains("one token per user"), "{error}");
        shape.tokens = (0..4).map(|u| format!("t{u}")).collect();
        assert_eq!(tokens(&options, &shape, 4).unwrap().len(), 4);
    }
}
