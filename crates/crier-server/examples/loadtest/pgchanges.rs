//! `pgchanges`: rows written to PostgreSQL and delivered by Crier as postgres changes.
//!
//! ```text
//! loadtest pgchanges --database-url $PGURL --jwt-secret $SECRET --server-pid $PID \
//!     --subscribers 100 --rate 1000 --seconds 10 [--rls all|per-user] [--users K]
//! ```
//!
//! 1. Setup (skipped with `--no-setup`; `--setup-only` stops after it): the SQL of
//!    [`setup_sql`], printed by `--print-setup`. It creates the roles `anon` and
//!    `authenticated`, the table
//!    `bench (id bigserial primary key, owner text, body text, at timestamptz default clock_timestamp())`,
//!    grants `select` on it to both roles, puts the row level security of `--rls` in place
//!    and adds the table to the publication (creating that when missing). It is
//!    idempotent, so every run may apply it, switching the RLS variant of the table.
//! 2. N subscriber sockets join, each on `realtime:bench` (or `realtime:bench-<i>` with
//!    `--topic-per-subscriber`) with one binding `{"event":"INSERT","schema":"public",
//!    "table":"bench"}`, and wait for the `system` message `Subscribed to PostgreSQL`,
//!    which is when the server starts delivering to them.
//! 3. `--writers` connections insert rows at `--rate` rows/s in total (0: as fast as they
//!    can), `--rows-per-tx` rows per transaction (one autocommitted `INSERT` each). Row
//!    `seq` (a counter of this run) has `owner = 'user-<seq % K>'` and
//!    `body = '<run>:<seq>:xxx…'`, padded to `--body-bytes`. The run id makes rows of an
//!    earlier run that the server is still delivering recognizable (reported as stale).
//! 4. After `--warmup` seconds the measured window starts: every row allocated from then
//!    on is measured. After `--seconds` more the writers stop, and the tool waits up to
//!    `--drain` seconds for the measured deliveries still missing.
//!
//! Variants (`--rls`), with K distinct users (`--users`, default one per subscriber):
//! * `off`: the table has RLS disabled and every subscriber uses one `anon` token. Every
//!   subscriber should receive every row: expected = rows × subscribers.
//! * `all`: RLS enabled, policy `using (true)` for `authenticated`. Subscriber i carries
//!   `{"role":"authenticated","sub":"user-<i % K>"}`, so the server checks every row once
//!   per distinct claims (K groups) and every check passes: expected = rows × subscribers,
//!   the figure to compare with `off`.
//! * `per-user`: RLS enabled, policy
//!   `using (owner = current_setting('request.jwt.claims', true)::jsonb->>'sub')`. A row
//!   is visible to the subscribers whose user owns it: expected = Σ over rows of the
//!   subscribers of its owner (rows / K × subscribers / K × K = rows × subscribers / K
//!   when K divides both). A delivery of another user's row counts as unauthorized.
//!
//! Latency is taken per delivery from the row's `at` column, `clock_timestamp()` at the
//! insert, in microseconds, to the wall clock when the frame is read. PostgreSQL and the
//! tool run on one machine and read the same clock. `at` is a little before the commit
//! (the rest of the transaction), so with one row per transaction it is the commit time to
//! within a few tens of µs. The payload's `commit_timestamp` (milliseconds, truncated) is
//! reported too: it reads 0–1 ms higher.
//!
//! Every delivery is recorded in a bitset per subscriber, so the report gives exact
//! missing, duplicate and per-row completion counts ("changes fully delivered" = rows that
//! reached every subscriber meant to see them). When the writers outrun the server, the
//! measured rows queue behind the warm-up's, so the report also gives the "sustained"
//! rate: every receipt of the run over the time from the first to the last.
//!
//! CPU is reported from the start of the measured window to the end of the drain, for the
//! server (`--server-pid`), this tool (subscribers and writers' client side together) and
//! the whole PostgreSQL server (`--pg-pid`, the postmaster: backends, walsender and all).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use crier_bench::client::{OPEN_TIMEOUT, truncate};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio_postgres::types::ToSql;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{
    CpuSample, Failures, KEEP_ERRORS, Ws, connect, fmt_opt, join, json_opt, now_us, read_frames,
    socket_url,
};

/// The table the benchmark writes and subscribes to.
const TABLE: &str = "bench";

/// How a run sets up row level security on `bench` (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RlsMode {
    /// RLS disabled; one `anon` token for everyone.
    Off,
    /// RLS enabled with a policy that passes every row; one group per distinct user.
    All,
    /// RLS enabled; each row visible to its owner's subscribers only.
    PerUser,
}

impl RlsMode {
    fn label(self) -> &'static str {
        match self {
            RlsMode::Off => "off",
            RlsMode::All => "all",
            RlsMode::PerUser => "per-user",
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct PgArgs {
    /// WebSocket endpoint; `apikey` and `vsn=2.0.0` are appended.
    #[arg(long, default_value = "ws://127.0.0.1:4600/socket/websocket")]
    url: String,
    /// JWT for the `apikey` parameter (e.g. from `crier token`), used for every
    /// subscriber when there is no `--jwt-secret` (so only with `--rls off`).
    #[arg(long, env = "CRIER_TOKEN")]
    token: Option<String>,
    /// Connects + joins in flight at once during the ramp.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// The server's pid: report its CPU time from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Read buffer per client socket, in bytes.
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
    /// The database Crier captures from (a role that may create tables, roles and
    /// publications, e.g. the superuser).
    #[arg(long, env = "CRIER_DATABASE_URL")]
    database_url: String,
    /// The server's JWT secret: subscriber tokens are minted with it (one per user). Without
    /// it, `--token` is used for every subscriber, which only suits `--rls off`.
    #[arg(long, env = "CRIER_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// The publication Crier streams (`crier serve --publication`).
    #[arg(long, default_value = "supabase_realtime")]
    publication: String,
    /// Subscriber sockets, one channel each.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Give each subscriber its own topic (`realtime:bench-<i>`) instead of all sharing
    /// `realtime:bench` (the server then encodes one frame per subscriber).
    #[arg(long)]
    topic_per_subscriber: bool,
    /// Row level security variant.
    #[arg(long, value_enum, default_value_t = RlsMode::Off)]
    rls: RlsMode,
    /// Distinct users (`sub` claims `user-0` …): subscriber i is `user-<i % users>`, row
    /// `seq` belongs to `user-<seq % users>`. Default: one per subscriber.
    #[arg(long)]
    users: Option<usize>,
    /// Rows per second, all writers together; 0 writes as fast as they can.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Rows per transaction (one `INSERT` statement each).
    #[arg(long, default_value_t = 1)]
    rows_per_tx: usize,
    /// Writer connections, sharing the rate.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Length of `body`, in bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of writing before the measured window starts.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// After the writers stop, wait at most this long for missing deliveries.
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// Do not run the setup SQL (the table and its RLS must already be as `--rls` says).
    #[arg(long)]
    no_setup: bool,
    /// Run the setup SQL and exit.
    #[arg(long)]
    setup_only: bool,
    /// Print the setup SQL and exit.
    #[arg(long)]
    print_setup: bool,
    /// The PostgreSQL postmaster's pid: report the CPU of the whole database server (its
    /// children's included).
    #[arg(long)]
    pg_pid: Option<u32>,
}

/// The harness SQL for one RLS variant (module docs). Idempotent.
pub(crate) fn setup_sql(publication: &str, rls: RlsMode) -> String {
    let policy = match rls {
        RlsMode::Off => "alter table public.bench disable row level security;".to_owned(),
        RlsMode::All => "alter table public.bench enable row level security;\n\
             create policy bench_read on public.bench for select to authenticated using (true);"
            .to_owned(),
        RlsMode::PerUser => "alter table public.bench enable row level security;\n\
             create policy bench_read on public.bench for select to authenticated\n  \
             using (owner = current_setting('request.jwt.claims', true)::jsonb->>'sub');"
            .to_owned(),
    };
    let name = publication.replace('\'', "''");
    let ident = publication.replace('"', "\"\"");
    format!(
        "do $$ begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then create role anon nologin; end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then create role authenticated nologin; end if;
end $$;
create table if not exists public.bench (
  id bigserial primary key, owner text, body text, at timestamptz default clock_timestamp());
grant usage on schema public to anon, authenticated;
grant select on public.bench to anon, authenticated;
drop policy if exists bench_read on public.bench;
{policy}
do $$ begin
  if not exists (select 1 from pg_publication where pubname = '{name}') then
    create publication \"{ident}\";
  end if;
  if not exists (select 1 from pg_publication_tables
                 where pubname = '{name}' and schemaname = 'public' and tablename = 'bench') then
    alter publication \"{ident}\" add table public.bench;
  end if;
end $$;"
    )
}

/// Microseconds since the Unix epoch, by the wall clock PostgreSQL also reads.
fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

// ---------------------------------------------------------------------------------------
// Parsing what the server sends
// ---------------------------------------------------------------------------------------

/// The fields of one delivered `bench` row the tool needs.
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

/// The text of the JSON string value right after `key` (no escapes expected: the tool
/// writes every value itself).
fn string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// Reads a `postgres_changes` frame's record with substring searches, like the other
/// modes (a JSON parser would cost the tool more than the server's work it measures).
fn parse_delivered(text: &str) -> Option<Delivered> {
    let record = &text[text.find(r#""record":{"#)?..];
    let body = string_after(record, r#""body":""#)?;
    let mut parts = body.splitn(3, ':');
    let run = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let owner = string_after(record, r#""owner":"user-"#).and_then(|n| n.parse().ok());
    let at_us = string_after(record, r#""at":""#).and_then(parse_timestamp_us);
    let commit_us = string_after(text, r#""commit_timestamp":""#).and_then(parse_timestamp_us);
    Some(Delivered {
        run,
        seq,
        owner,
        at_us,
        commit_us,
    })
}

/// `2026-01-02T03:04:05.678901+00:00` (the server's `timestamptz`) or
/// `2026-01-02T03:04:05.678Z` (its `commit_timestamp`) as µs since the epoch. The
/// fraction may have 0–6 digits; the offset may carry seconds.
fn parse_timestamp_us(text: &str) -> Option<i64> {
    let num = |s: &str| -> Option<i64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (date, rest) = text.split_once('T')?;
    let mut ymd = date.splitn(3, '-');
    let (year, month, day) = (num(ymd.next()?)?, num(ymd.next()?)?, num(ymd.next()?)?);
    let hms = rest.get(..8)?;
    let (hour, minute, second) = (num(&hms[0..2])?, num(&hms[3..5])?, num(&hms[6..8])?);
    let mut rest = &rest[8..];
    let mut micros = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 6 {
            return None;
        }
        micros = num(&fraction[..digits])? * 10i64.pow(6 - digits as u32);
        rest = &fraction[digits..];
    }
    let offset_s = match rest.as_bytes().first()? {
        b'Z' => 0,
        sign @ (b'+' | b'-') => {
            let mut parts = rest[1..].split(':');
            let h = num(parts.next()?)?;
            let m = parts.next().map_or(Some(0), num)?;
            let s = parts.next().map_or(Some(0), num)?;
            let total = h * 3600 + m * 60 + s;
            if *sign == b'-' { -total } else { total }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(seconds * 1_000_000 + micros)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

// ---------------------------------------------------------------------------------------
// Subscribers
// ---------------------------------------------------------------------------------------

/// What the subscribers and the coordinator share.
struct Shared {
    run: u64,
    /// First measured seq; `u64::MAX` until the warm-up ends.
    measure_from: AtomicU64,
    /// Measured deliveries received (first receipts only), so the drain can end early.
    received: AtomicU64,
}

/// A bitset of seqs.
#[derive(Default)]
struct Seen(Vec<u64>);

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

    fn contains(&self, seq: u64) -> bool {
        self.0
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

/// What one subscriber saw; merged at the end so the hot path takes no locks.
struct PgSubStats {
    user: usize,
    /// `at` → receipt, µs, measured rows only.
    at_latency_us: Histogram<u64>,
    /// `commit_timestamp` → receipt, µs, measured rows only.
    commit_latency_us: Histogram<u64>,
    seen: Seen,
    /// Measured rows received (first receipts).
    measured: u64,
    /// This run's rows from before the measured window.
    unmeasured: u64,
    /// Rows received again.
    duplicates: u64,
    /// Rows of an earlier run.
    stale: u64,
    /// Rows of another user (`--rls per-user` only): must be 0.
    unauthorized: u64,
    /// Wall clock (µs) of the last measured receipt.
    last_receipt_us: i64,
    /// Receipts of this run's rows, warm-up and repeats included, and the wall clock (µs)
    /// of the first and last: the pipeline's throughput when it lags behind the writers.
    receipts: u64,
    first_any_us: i64,
    last_any_us: i64,
    /// Receipts of this run's rows per second of `ORIGIN` time.
    per_second: Vec<u64>,
    /// Frames other than changes and heartbeat replies (samples).
    other: Vec<String>,
    ended: Option<String>,
}

impl PgSubStats {
    fn new(user: usize) -> Self {
        let histogram = || Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
        PgSubStats {
            user,
            at_latency_us: histogram(),
            commit_latency_us: histogram(),
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
            per_second: Vec::new(),
            other: Vec::new(),
            ended: None,
        }
    }

    fn on_frame(&mut self, text: &str, shared: &Shared, check_owner: bool) {
        let now = wall_us();
        let Some(row) = parse_delivered(text) else {
            if self.other.len() < KEEP_ERRORS {
                self.other
                    .push(format!("unparsable change: {}", truncate(text, 300)));
            }
            return;
        };
        if row.run != shared.run {
            self.stale += 1;
            return;
        }
        let second = (now_us() / 1_000_000) as usize;
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += 1;
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
}

/// The join frame of one subscriber: a postgres_changes INSERT binding on `bench`.
fn pg_join_frame(topic: &str) -> String {
    format!(
        r#"["1","1","{topic}","phx_join",{{"config":{{"broadcast":{{"self":false,"ack":false}},"presence":{{"enabled":false}},"private":false,"postgres_changes":[{{"event":"INSERT","schema":"public","table":"{TABLE}"}}]}}}}]"#
    )
}

/// Connects, joins, and waits for `Subscribed to PostgreSQL`.
async fn subscribe_changes(url: &str, topic: &str, read_buffer: usize) -> Result<Ws, String> {
    let attempt = async {
        let mut ws = connect(url, read_buffer).await?;
        join(&mut ws, pg_join_frame(topic)).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.contains(r#","system","#) => {
                    if text.contains("Subscribed to PostgreSQL") {
                        return Ok(ws);
                    }
                    return Err(format!("subscription refused: {}", text.as_str()));
                }
                Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("eof before the system message".into()),
            }
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err("timed out waiting for Subscribed to PostgreSQL".into()))
}

/// Reads one subscriber's socket until `stop`.
async fn receive(
    ws: Ws,
    mut stats: PgSubStats,
    shared: Arc<Shared>,
    check_owner: bool,
    stop: CancellationToken,
) -> PgSubStats {
    let ended = read_frames(ws, stop, |text| {
        if text.contains(r#","postgres_changes",{"ids""#) {
            stats.on_frame(text, &shared, check_owner);
        } else if !text.contains(r#""phx_reply",{"status":"ok""#) && stats.other.len() < KEEP_ERRORS
        {
            stats.other.push(truncate(text, 300).to_owned());
        }
    })
    .await;
    stats.ended = ended;
    stats
}

// ---------------------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------------------

/// What the writers share.
struct WriterShared {
    run: u64,
    users: u64,
    body_bytes: usize,
    rows_per_tx: usize,
    next_seq: AtomicU64,
    /// Seqs of transactions that failed (not committed).
    failed: Mutex<Vec<Range<u64>>>,
    failures: Failures,
}

impl WriterShared {
    fn owner(&self, seq: u64) -> String {
        format!("user-{}", seq % self.users)
    }

    fn body(&self, seq: u64) -> String {
        let mut body = format!("{}:{seq}:", self.run);
        let pad = self.body_bytes.saturating_sub(body.len());
        body.extend(std::iter::repeat_n('x', pad));
        body
    }
}

/// One writer connection: transactions of `rows_per_tx` rows, at `tx_per_s` (None:
/// back to back), from `offset` on, until `stop`. Returns its commits per second of
/// `ORIGIN` time.
async fn write_rows(
    client: tokio_postgres::Client,
    shared: Arc<WriterShared>,
    tx_per_s: Option<f64>,
    offset: Duration,
    stop: CancellationToken,
) -> Vec<u64> {
    let batch = shared.rows_per_tx;
    let sql = if batch == 1 {
        "insert into public.bench (owner, body) values ($1, $2)"
    } else {
        "insert into public.bench (owner, body) select * from unnest($1::text[], $2::text[])"
    };
    let mut per_second = Vec::new();
    let statement = match client.prepare(sql).await {
        Ok(statement) => statement,
        Err(e) => {
            shared.failures.record("prepare", e.to_string());
            return per_second;
        }
    };
    let start = tokio::time::Instant::now() + offset;
    let mut done = 0u64;
    loop {
        if let Some(rate) = tx_per_s {
            // Keep to the schedule: a slow commit is followed by the next one at once.
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
            Ok(_) => {
                let second = (now_us() / 1_000_000) as usize;
                if per_second.len() <= second {
                    per_second.resize(second + 1, 0);
                }
                per_second[second] += batch as u64;
            }
            Err(e) => {
                shared.failures.record("insert", e.to_string());
                shared.failed.lock().expect("not poisoned").push(seqs);
            }
        }
        done += 1;
    }
    per_second
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

/// Subscriber tokens: one per user, so subscribers of one user share one set of claims
/// (the server groups RLS checks by claims, and `iat` alone would split the groups).
fn tokens(args: &PgArgs, users: usize) -> Result<Vec<String>, String> {
    let Some(secret) = &args.jwt_secret else {
        if args.rls != RlsMode::Off {
            return Err("--rls needs --jwt-secret to mint a token per user".into());
        }
        let token = args
            .token
            .clone()
            .ok_or("give --jwt-secret (or --token for --rls off)")?;
        return Ok(vec![token]);
    };
    let now = crier_server::auth::unix_now();
    let claims = |role: &str, sub: Option<String>| {
        let mut claims = Map::new();
        claims.insert("role".into(), Value::from(role));
        claims.insert("iat".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(now + 7200));
        if let Some(sub) = sub {
            claims.insert("sub".into(), Value::from(sub));
        }
        crier_server::auth::sign_token(secret, &claims)
    };
    Ok(match args.rls {
        RlsMode::Off => vec![claims("anon", None)],
        RlsMode::All | RlsMode::PerUser => (0..users)
            .map(|u| claims("authenticated", Some(format!("user-{u}"))))
            .collect(),
    })
}

async fn pg_connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect to {url}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection: {e}");
        }
    });
    Ok(client)
}

/// Runs the `pgchanges` mode.
pub(crate) async fn run(args: PgArgs) {
    if let Err(e) = run_inner(args).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run_inner(args: PgArgs) -> Result<(), String> {
    let sql = setup_sql(&args.publication, args.rls);
    if args.print_setup {
        println!("{sql}");
        return Ok(());
    }
    let users = args.users.unwrap_or(args.subscribers).max(1);
    let setup = pg_connect(&args.database_url).await?;
    if !args.no_setup {
        setup
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("setup SQL: {e}"))?;
        println!("setup: table public.{TABLE}, rls {}", args.rls.label());
    }
    if args.setup_only {
        return Ok(());
    }
    let tokens = tokens(&args, users)?;
    let run_id = wall_us() as u64;
    let shared = Arc::new(Shared {
        run: run_id,
        measure_from: AtomicU64::new(u64::MAX),
        received: AtomicU64::new(0),
    });
    let check_owner = args.rls == RlsMode::PerUser;

    // Subscribers: each reports its user once joined, or None.
    let failures = Arc::new(Failures::default());
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let stop = CancellationToken::new();
    let (joined_tx, mut joined_rx) = tokio::sync::mpsc::unbounded_channel::<Option<usize>>();
    let started = Instant::now();
    let mut subs = Vec::with_capacity(args.subscribers);
    for i in 0..args.subscribers {
        let user = i % users;
        let url = socket_url(&args.url, &tokens[user % tokens.len()]);
        let topic = if args.topic_per_subscriber {
            format!("realtime:{TABLE}-{i}")
        } else {
            format!("realtime:{TABLE}")
        };
        let (failures, gate, stop, shared, joined_tx) = (
            failures.clone(),
            gate.clone(),
            stop.clone(),
            shared.clone(),
            joined_tx.clone(),
        );
        let read_buffer = args.read_buffer;
        subs.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore open");
            let ws = match subscribe_changes(&url, &topic, read_buffer).await {
                Ok(ws) => ws,
                Err(e) => {
                    failures.record("subscriber", e);
                    let _ = joined_tx.send(None);
                    return None;
                }
            };
            drop(permit);
            let _ = joined_tx.send(Some(user));
            Some(receive(ws, PgSubStats::new(user), shared, check_owner, stop).await)
        }));
    }
    drop(joined_tx);
    // Subscribers per user, for the expected counts.
    let mut per_user = vec![0u64; users];
    for _ in 0..args.subscribers {
        if let Some(Some(user)) = joined_rx.recv().await {
            per_user[user] += 1;
        }
    }
    let joined: u64 = per_user.iter().sum();
    println!(
        "{joined} of {} subscribers subscribed ({} users, rls {}) in {:.2} s",
        args.subscribers,
        users,
        args.rls.label(),
        started.elapsed().as_secs_f64()
    );
    failures.print("ANOMALY: subscriber failures");
    if joined < args.subscribers as u64 {
        stop.cancel();
        return Err("not every subscriber subscribed".into());
    }

    // Writers.
    let writer_shared = Arc::new(WriterShared {
        run: run_id,
        users: users as u64,
        body_bytes: args.body_bytes,
        rows_per_tx: args.rows_per_tx.max(1),
        next_seq: AtomicU64::new(0),
        failed: Mutex::new(Vec::new()),
        failures: Failures::default(),
    });
    let writers = args.writers.max(1);
    let tx_per_s = (args.rate > 0)
        .then(|| args.rate as f64 / writer_shared.rows_per_tx as f64 / writers as f64);
    let stop_writing = CancellationToken::new();
    let mut writer_tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let client = pg_connect(&args.database_url).await?;
        // Stagger the writers over one period so their commits interleave evenly.
        let offset = tx_per_s.map_or(Duration::ZERO, |rate| {
            Duration::from_secs_f64(w as f64 / writers as f64 / rate)
        });
        writer_tasks.push(tokio::spawn(write_rows(
            client,
            writer_shared.clone(),
            tx_per_s,
            offset,
            stop_writing.clone(),
        )));
    }
    let rate_label = if args.rate == 0 {
        "unthrottled".to_owned()
    } else {
        format!("{} rows/s", args.rate)
    };
    println!(
        "writing {rate_label}, {} rows/tx, {writers} writers, {} s warm-up + {} s measured",
        writer_shared.rows_per_tx, args.warmup, args.seconds
    );
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let from = writer_shared.next_seq.load(Ordering::Relaxed);
    shared.measure_from.store(from, Ordering::Relaxed);
    let cpu_start = CpuSample::take(args.server_pid, args.pg_pid);
    let window_start_wall = wall_us();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop_writing.cancel();
    let mut written_per_second: Vec<u64> = Vec::new();
    for task in writer_tasks {
        let seconds = task.await.unwrap_or_default();
        if written_per_second.len() < seconds.len() {
            written_per_second.resize(seconds.len(), 0);
        }
        for (slot, n) in written_per_second.iter_mut().zip(&seconds) {
            *slot += n;
        }
    }
    let window = cpu_start.at.elapsed();
    let to = writer_shared.next_seq.load(Ordering::Relaxed);

    // Expected deliveries of the measured, committed rows.
    let failed = writer_shared.failed.lock().expect("not poisoned").clone();
    let committed = |seq: u64| !failed.iter().any(|r| r.contains(&seq));
    let expected_for = |seq: u64| -> u64 {
        match args.rls {
            RlsMode::Off | RlsMode::All => joined,
            RlsMode::PerUser => per_user[(seq % users as u64) as usize],
        }
    };
    let measured_rows: Vec<u64> = (from..to).filter(|&s| committed(s)).collect();
    let expected: u64 = measured_rows.iter().map(|&s| expected_for(s)).sum();

    let drain_until = Instant::now() + Duration::from_secs(args.drain);
    while shared.received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_end = CpuSample::take(args.server_pid, args.pg_pid);
    stop.cancel();

    let mut all = Vec::with_capacity(subs.len());
    for sub in subs {
        if let Ok(Some(stats)) = sub.await {
            all.push(stats);
        }
    }
    let report = Report::build(
        &args,
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
        },
    );
    report.print(&args, &written_per_second);
    writer_shared.failures.print("ANOMALY: writer failures");
    Ok(())
}

/// The run's figures that do not come from the subscribers.
struct Totals {
    run: u64,
    joined: u64,
    users: usize,
    expected: u64,
    /// The measured write window.
    window: Duration,
    window_start_wall: i64,
    /// (server, tool, postgres) CPU % from the window's start to the end of the drain.
    cpu: [Option<f64>; 3],
    cpu_wall: Duration,
    failed_rows: u64,
    written_total: u64,
}

struct Report {
    totals: Totals,
    rows: u64,
    received: u64,
    fully_delivered: u64,
    /// The first few rows not fully delivered: (seq, subscribers that missed it).
    incomplete: Vec<(u64, u64)>,
    unmeasured: u64,
    duplicates: u64,
    stale: u64,
    unauthorized: u64,
    /// From the window's start to the last measured receipt (at least the window).
    delivery_span: Duration,
    /// All receipts of this run's rows, and the time from the first to the last.
    receipts: u64,
    receipt_span: Duration,
    at_latency: Histogram<u64>,
    commit_latency: Histogram<u64>,
    per_second: Vec<u64>,
    other: Vec<String>,
    ended: Failures,
}

impl Report {
    fn build(
        args: &PgArgs,
        subs: &[PgSubStats],
        measured_rows: &[u64],
        expected_for: impl Fn(u64) -> u64,
        totals: Totals,
    ) -> Report {
        let histogram = || Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
        let mut report = Report {
            rows: measured_rows.len() as u64,
            received: 0,
            fully_delivered: 0,
            incomplete: Vec::new(),
            unmeasured: 0,
            duplicates: 0,
            stale: 0,
            unauthorized: 0,
            delivery_span: totals.window,
            receipts: 0,
            receipt_span: Duration::ZERO,
            at_latency: histogram(),
            commit_latency: histogram(),
            per_second: Vec::new(),
            other: Vec::new(),
            ended: Failures::default(),
            totals,
        };
        let mut last_receipt = 0;
        let (mut first_any, mut last_any) = (i64::MAX, 0);
        for sub in subs {
            report.receipts += sub.receipts;
            if sub.receipts > 0 {
                first_any = first_any.min(sub.first_any_us);
                last_any = last_any.max(sub.last_any_us);
            }
            report
                .at_latency
                .add(&sub.at_latency_us)
                .expect("same bounds");
            report
                .commit_latency
                .add(&sub.commit_latency_us)
                .expect("same bounds");
            report.received += sub.measured;
            report.unmeasured += sub.unmeasured;
            report.duplicates += sub.duplicates;
            report.stale += sub.stale;
            report.unauthorized += sub.unauthorized;
            last_receipt = last_receipt.max(sub.last_receipt_us);
            if report.per_second.len() < sub.per_second.len() {
                report.per_second.resize(sub.per_second.len(), 0);
            }
            for (slot, n) in report.per_second.iter_mut().zip(&sub.per_second) {
                *slot += n;
            }
            if report.other.len() < KEEP_ERRORS {
                report.other.extend(sub.other.iter().cloned());
            }
            if let Some(why) = &sub.ended {
                report.ended.record("subscriber ended early", why.clone());
            }
        }
        // A row is fully delivered when every subscriber meant to see it did.
        let per_user = args.rls == RlsMode::PerUser;
        let users = report.totals.users as u64;
        for &seq in measured_rows {
            let got = subs
                .iter()
                .filter(|s| (!per_user || s.user as u64 == seq % users) && s.seen.contains(seq))
                .count() as u64;
            let want = expected_for(seq);
            if got == want {
                report.fully_delivered += 1;
            } else if report.incomplete.len() < KEEP_ERRORS {
                report.incomplete.push((seq, want.saturating_sub(got)));
            }
        }
        if last_any > first_any {
            report.receipt_span = Duration::from_micros((last_any - first_any) as u64);
        }
        let span_us = last_receipt - report.totals.window_start_wall;
        if span_us > 0 {
            report.delivery_span = report
                .delivery_span
                .max(Duration::from_micros(span_us as u64));
        }
        report
    }

    fn print(&self, args: &PgArgs, written_per_second: &[u64]) {
        let t = &self.totals;
        let window = t.window.as_secs_f64().max(1e-9);
        let span = self.delivery_span.as_secs_f64().max(1e-9);
        let missing = t.expected.saturating_sub(self.received);
        let write_rate = self.rows as f64 / window;
        let deliveries_per_s = self.received as f64 / span;
        let changes_per_s = self.fully_delivered as f64 / span;
        // Throughput over everything of this run that arrived, warm-up included: what the
        // pipeline sustains when it lags behind the writers and the window's own rows
        // queue behind the warm-up's. Changes/s divides by the deliveries each row is due.
        let receipt_span = self.receipt_span.as_secs_f64().max(1e-9);
        let sustained = self.receipts as f64 / receipt_span;
        let fanout = t.expected as f64 / self.rows.max(1) as f64;
        let sustained_changes = sustained / fanout.max(1e-9);
        let [server_cpu, tool_cpu, pg_cpu] = t.cpu;
        let cpu_wall = t.cpu_wall.as_secs_f64();
        let server_cpu_per_m =
            server_cpu.map(|pct| pct / 100.0 * cpu_wall / (self.received.max(1) as f64 / 1e6));
        let q = |h: &Histogram<u64>, quantile: f64| h.value_at_quantile(quantile) as f64 / 1000.0;
        let (a, c) = (&self.at_latency, &self.commit_latency);
        let rate_label = if args.rate == 0 {
            "unthrottled".to_owned()
        } else {
            args.rate.to_string()
        };
        let topics = if args.topic_per_subscriber {
            "one topic each"
        } else {
            "one topic"
        };

        println!();
        println!(
            "pgchanges: {} subscribers ({topics}), rls {}, {} users, rate {rate_label}, {} rows/tx, {} writers, {} s measured ({window:.2} s actual)",
            t.joined,
            args.rls.label(),
            t.users,
            args.rows_per_tx,
            args.writers,
            args.seconds
        );
        println!(
            "  rows written (run/window)  {:>10} / {}",
            t.written_total, self.rows
        );
        println!("  rows failed                {:>10}", t.failed_rows);
        println!("  write rate (window)        {write_rate:>10.0} rows/s");
        println!("  deliveries expected        {:>10}", t.expected);
        println!("  deliveries received        {:>10}", self.received);
        println!("  deliveries missing         {missing:>10}");
        println!(
            "  rows fully delivered       {:>10} of {}",
            self.fully_delivered, self.rows
        );
        println!("  delivery span              {span:>10.2} s (window start → last receipt)");
        println!("  deliveries/s               {deliveries_per_s:>10.0}");
        println!("  changes/s fully delivered  {changes_per_s:>10.0}");
        println!(
            "  sustained (all receipts)   {sustained:>10.0} deliveries/s = {sustained_changes:.0} changes/s ({} receipts over {receipt_span:.2} s)",
            self.receipts
        );
        println!(
            "  latency at→client   p50 {:.2} / p90 {:.2} / p99 {:.2} / max {:.2} ms",
            q(a, 0.5),
            q(a, 0.9),
            q(a, 0.99),
            a.max() as f64 / 1000.0
        );
        println!(
            "  latency commit_ts→client p50 {:.2} / p90 {:.2} / p99 {:.2} / max {:.2} ms (ms-truncated)",
            q(c, 0.5),
            q(c, 0.9),
            q(c, 0.99),
            c.max() as f64 / 1000.0
        );
        println!(
            "  duplicates / stale / unauthorized / warm-up  {} / {} / {} / {}",
            self.duplicates, self.stale, self.unauthorized, self.unmeasured
        );
        println!(
            "  CPU over {cpu_wall:.2} s (1 core = 100%): server {}%, tool {}%, postgres {}%",
            fmt_opt(server_cpu, 1),
            fmt_opt(tool_cpu, 1),
            fmt_opt(pg_cpu, 1)
        );
        println!(
            "  server CPU-s per 1M deliveries {}",
            fmt_opt(server_cpu_per_m, 3)
        );
        let timeline = |counts: &[u64]| -> String {
            let first = counts.iter().position(|&n| n > 0).unwrap_or(0);
            counts[first..]
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "  rows committed per second:   {}",
            timeline(written_per_second)
        );
        println!(
            "  deliveries per second:       {}",
            timeline(&self.per_second)
        );
        self.ended.print("ANOMALY: subscribers lost");
        if missing > 0 {
            println!("ANOMALY: {missing} deliveries missing");
            // The body identifies a row in the table, to check that it did commit.
            for (seq, subscribers) in &self.incomplete {
                println!(
                    "  row body '{}:{seq}:…' missed by {subscribers} subscribers",
                    t.run
                );
            }
        }
        if self.unauthorized > 0 {
            println!("ANOMALY: {} unauthorized deliveries", self.unauthorized);
        }
        if !self.other.is_empty() {
            println!("subscribers received unexpected frames (first few):");
            for frame in &self.other {
                println!("  {frame}");
            }
        }
        println!(
            r#"{{"mode":"pgchanges","subscribers":{},"rls":"{}","users":{},"topic_per_subscriber":{},"rate":{},"rows_per_tx":{},"writers":{},"seconds":{},"window_s":{window:.3},"rows":{},"write_rate":{write_rate:.0},"expected":{},"received":{},"missing":{missing},"fully_delivered":{},"delivery_span_s":{span:.3},"deliveries_per_s":{deliveries_per_s:.0},"changes_per_s":{changes_per_s:.0},"sustained_deliveries_per_s":{sustained:.0},"sustained_changes_per_s":{sustained_changes:.0},"p50_ms":{:.3},"p90_ms":{:.3},"p99_ms":{:.3},"max_ms":{:.3},"commit_p50_ms":{:.3},"commit_p99_ms":{:.3},"duplicates":{},"stale":{},"unauthorized":{},"server_cpu_pct":{},"tool_cpu_pct":{},"pg_cpu_pct":{},"server_cpu_s_per_m_deliveries":{}}}"#,
            t.joined,
            args.rls.label(),
            t.users,
            args.topic_per_subscriber,
            args.rate,
            args.rows_per_tx,
            args.writers,
            args.seconds,
            self.rows,
            t.expected,
            self.received,
            self.fully_delivered,
            q(a, 0.5),
            q(a, 0.9),
            q(a, 0.99),
            a.max() as f64 / 1000.0,
            q(c, 0.5),
            q(c, 0.99),
            self.duplicates,
            self.stale,
            self.unauthorized,
            json_opt(server_cpu),
            json_opt(tool_cpu),
            json_opt(pg_cpu),
            json_opt(server_cpu_per_m),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_in_both_forms() {
        // 2026-01-02T03:04:05Z = 1767323045 s.
        let base = 1_767_323_045_000_000;
        assert_eq!(
            parse_timestamp_us("2026-01-02T03:04:05.678901+00:00"),
            Some(base + 678_901)
        );
        assert_eq!(
            parse_timestamp_us("2026-01-02T03:04:05.678Z"),
            Some(base + 678_000)
        );
        assert_eq!(parse_timestamp_us("2026-01-02T03:04:05Z"), Some(base));
        assert_eq!(
            parse_timestamp_us("2026-01-02T08:34:05.5+05:30"),
            Some(base + 500_000)
        );
        assert_eq!(parse_timestamp_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_timestamp_us("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000_000)
        );
        assert_eq!(parse_timestamp_us("garbage"), None);
    }

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
    fn bodies_are_padded_and_owners_cycle() {
        let shared = WriterShared {
            run: 9,
            users: 4,
            body_bytes: 16,
            rows_per_tx: 1,
            next_seq: AtomicU64::new(0),
            failed: Mutex::new(Vec::new()),
            failures: Failures::default(),
        };
        assert_eq!(shared.body(123), "9:123:xxxxxxxxxx");
        assert_eq!(shared.owner(6), "user-2");
    }

    #[test]
    fn the_seen_set_notices_repeats() {
        let mut seen = Seen::default();
        assert!(seen.insert(130));
        assert!(!seen.insert(130));
        assert!(seen.contains(130) && !seen.contains(129));
    }
}
