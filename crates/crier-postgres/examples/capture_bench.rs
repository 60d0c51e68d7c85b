//! Change capture, measured two ways: the streaming replication protocol
//! ([`ChangeStream`]) against SQL polling of a second pgoutput slot
//! (`pg_logical_slot_peek_binary_changes` + `pg_replication_slot_advance`, Supabase's
//! way, every `--interval-ms`).
//!
//! ```text
//! cargo build --release -p crier-postgres --example capture_bench
//! B=$CARGO_TARGET_DIR/release/examples/capture_bench
//! $B run --mode stream --rate 1000 --batch 1   --seconds 10   # latency at 1000 rows/s
//! $B run --mode poll   --rate 1000 --batch 1   --seconds 10
//! $B run --mode stream --rate 0    --batch 100 --seconds 10   # writer unthrottled
//! $B run --mode poll   --rate 0    --batch 100 --seconds 10
//! $B run --mode stream --rate 0    --batch 100 --seconds 10 --backlog  # drain only
//! $B run --mode poll   --rate 0    --batch 100 --seconds 10 --backlog
//! ```
//!
//! Each run starts its own private PostgreSQL (crier-testkit), creates
//! `bench (id bigint primary key, title text, n int, payload jsonb, at timestamptz)`, the
//! publication and the slot ([`replication::prepare`]), and in `poll` mode a second
//! pgoutput slot. A writer inserts `--batch` rows per transaction at `--rate` rows/s (0:
//! as fast as one connection can) for `--seconds`; the consumer decodes until it has seen
//! every written row, or gives up `--drain-seconds` after the writer stopped.
//!
//! Design choices, for people reading the numbers:
//! * The writer is this same binary run as a child process (`write`), so the consumer's
//!   CPU is this process's CPU alone. Both run a single-threaded tokio runtime.
//! * Latency is commit → decoded: the commit timestamp pgoutput's `Begin` carries against
//!   the wall clock when the change was decoded. Server and bench share the machine and
//!   its clock. Every row also carries `at = clock_timestamp()` (its insert time), for
//!   anyone reading the table afterwards.
//! * CPU is each task's `sum_exec_runtime` from `/proc/<pid>/schedstat` (summed over
//!   this process's threads): the counter `getrusage` derives utime + stime from, read
//!   from /proc because the workspace forbids `unsafe` (and so a libc call), and because
//!   it works for server processes as well. Server processes are the postmaster and its
//!   children. The "decoder backend" is the walsender (`stream`) or the polling
//!   connection's backend (`poll`). The writer's backend is reported apart: it does the
//!   same work in both modes. Autovacuum is off for `bench`, so a worker that comes and
//!   goes inside the window does not take CPU the snapshot cannot see.
//! * `--backlog` writes everything before the consumer starts. The consumer then drains
//!   alone, without a writer competing for the machine's cores: its pure decode capacity.
//! * `poll` hands changes off (here: counts them) before it advances the slot, so a crash
//!   between the two sends them again: at-least-once, like `stream`'s ack.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use crier_postgres::pgoutput::{self, Message, Relation};
use crier_postgres::replication::{self, CaptureSettings, ChangeStream, StreamEvent};
use crier_testkit::TestPostgres;
use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, interval, timeout};
use tokio_postgres::types::PgLsn;
use tokio_postgres::{Client, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PUBLICATION: &str = "supabase_realtime";
const STREAM_SLOT: &str = "crier_bench";
const POLL_SLOT: &str = "crier_bench_poll";
/// The same session settings `ChangeStream` pins, so both modes decode the same text.
const SESSION_SETTINGS: &str = concat!(
    "set datestyle = 'ISO, MDY'; set timezone = 'UTC'; ",
    "set intervalstyle = 'postgres'; set extra_float_digits = 1"
);

#[derive(Parser)]
#[command(about = "Streaming replication vs SQL polling of a pgoutput slot")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One measured run: a fresh server, a writer, and one consumer.
    Run(RunArgs),
    /// The writer (started by `run`; not meant to be run by hand).
    #[command(hide = true)]
    Write(WriteArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The streaming replication protocol (`ChangeStream`), acking each commit.
    Stream,
    /// `pg_logical_slot_peek_binary_changes` every interval, then `pg_replication_slot_advance`.
    Poll,
}

#[derive(Args, Clone)]
struct Load {
    /// Rows per second; 0 writes as fast as one connection can.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
    batch: i64,
    /// How long the writer writes.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[derive(Args)]
struct RunArgs {
    /// How to read the slot.
    #[arg(long, value_enum)]
    mode: Mode,
    #[command(flatten)]
    load: Load,
    /// Poll interval (`poll`); Supabase's default is 100 ms.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// `upto_nchanges` of each peek (`poll`); Supabase's default is 100. It counts
    /// pgoutput messages (Begin, Relation, each row, Commit), and a transaction is never
    /// cut, so a poll can return more.
    #[arg(long, default_value_t = 100)]
    max_changes: i32,
    /// Write everything first, then start the consumer: its drain rate alone.
    #[arg(long)]
    backlog: bool,
    /// How long the consumer may take, after the writer stopped, to catch up.
    #[arg(long, default_value_t = 15)]
    drain_seconds: u64,
}

#[derive(Args)]
struct WriteArgs {
    /// The database to write to.
    #[arg(long)]
    url: String,
    #[command(flatten)]
    load: Load,
}

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Run(args) => runtime.block_on(run(args)),
        Cmd::Write(args) => runtime.block_on(write(args)),
    }
}

// ---------------------------------------------------------------------------------------
// The writer

/// Connects, says `ready pid=<its backend>`, waits for a line on stdin so that the
/// consumer is in place first, inserts rows as told, says `rows=N seconds=S`, then holds
/// its connection open until stdin closes: its backend must still exist when `run` takes
/// the last CPU snapshot.
async fn write(args: WriteArgs) -> Result<(), BoxError> {
    let (client, connection) = tokio_postgres::connect(&args.url, NoTls).await?;
    tokio::spawn(connection);
    let insert = client
        .prepare(
            "insert into bench (id, title, n, payload, at) \
             select g, 'row ' || g, (g % 1000)::int, \
                    jsonb_build_object('id', g, 'kind', 'bench', 'tags', jsonb_build_array('a', 'b', 'c')), \
                    clock_timestamp() \
             from generate_series($1::bigint, $2::bigint) as g",
        )
        .await?;
    let pid: i32 = client
        .query_one("select pg_backend_pid()", &[])
        .await?
        .get(0);
    say(&format!("ready pid={pid}"))?;
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;

    let load = args.load;
    // One transaction per tick; Burst catches up after a slow commit so the average
    // rate holds (the timer's granularity is 1 ms).
    let mut ticker = (load.rate > 0).then(|| {
        let period = Duration::from_secs_f64(load.batch as f64 / load.rate as f64);
        let mut ticker = interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        ticker
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs(load.seconds);
    let mut next_id = 1_i64;
    while Instant::now() < deadline {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        client
            .execute(&insert, &[&next_id, &(next_id + load.batch - 1)])
            .await?;
        next_id += load.batch;
    }
    let elapsed = start.elapsed().as_secs_f64();
    say(&format!("rows={} seconds={elapsed:.3}", next_id - 1))?;
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
    Ok(())
}

/// One line to the parent, flushed (stdout is a pipe, so it would sit in the buffer).
fn say(line: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

/// A writer child process.
struct Writer {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    /// Its server backend.
    backend_pid: u32,
}

impl Writer {
    /// Starts the writer and waits until it is connected and ready to write.
    async fn spawn(url: &str, load: &Load) -> Result<Writer, BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["write", "--url", url])
            .args(["--rate", &load.rate.to_string()])
            .args(["--batch", &load.batch.to_string()])
            .args(["--seconds", &load.seconds.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = BufReader::new(child.stdout.take().ok_or("writer stdout")?);
        let mut writer = Writer {
            child,
            stdout: Some(stdout),
            backend_pid: 0,
        };
        let line = writer.line().await?;
        writer.backend_pid = field(&line, "pid=")?;
        Ok(writer)
    }

    /// Lets it write.
    fn go(&mut self) -> Result<(), BoxError> {
        let stdin = self.child.stdin.as_mut().ok_or("writer stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for the writer to finish writing: (rows, seconds it wrote for).
    async fn written(&mut self) -> Result<(u64, f64), BoxError> {
        let line = self.line().await?;
        Ok((field(&line, "rows=")?, field(&line, "seconds=")?))
    }

    async fn line(&mut self) -> Result<String, BoxError> {
        let mut stdout = self.stdout.take().ok_or("writer stdout")?;
        let (stdout, line) = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            stdout.read_line(&mut line).map(|_| (stdout, line))
        })
        .await??;
        self.stdout = Some(stdout);
        Ok(line)
    }

    /// Lets the writer exit (closing its stdin) and reaps it.
    async fn finish(mut self) -> Result<(), BoxError> {
        drop(self.child.stdin.take());
        let status = tokio::task::spawn_blocking(move || self.child.wait()).await??;
        if !status.success() {
            return Err(format!("writer exited with {status}").into());
        }
        Ok(())
    }
}

/// The value of `name=` in a line the writer said.
fn field<T: std::str::FromStr>(line: &str, name: &str) -> Result<T, BoxError> {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(name))
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| format!("writer said {line:?}").into())
}

// ---------------------------------------------------------------------------------------
// The consumers

/// What a consumer saw.
#[derive(Default)]
struct Stats {
    /// Row changes decoded.
    changes: u64,
    /// Transactions handed off.
    transactions: u64,
    /// Polls made (`poll`).
    polls: u64,
    /// Commit → decoded, microseconds, one per change.
    latencies_us: Vec<i64>,
    /// When the last transaction was handed off.
    last: Option<Instant>,
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
async fn consume_stream(
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
async fn consume_poll(
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

// ---------------------------------------------------------------------------------------
// CPU accounting

/// CPU time a task has run, in nanoseconds: the first field of its `schedstat`, the
/// kernel's `sum_exec_runtime`, which is what `getrusage` scales utime and stime from
/// (and finer than /proc's 10 ms ticks). `task` is `<pid>` or `<pid>/task/<tid>`.
fn cpu_ns(task: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{task}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The parent of a process.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after the last ')'
    // are fixed: state, ppid, ...
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process's CPU time: the sum over its threads (a process's own `schedstat` is
/// its main thread's alone).
fn own_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| cpu_ns(&format!("self/task/{}", entry.file_name().to_str()?)))
        .sum()
}

/// CPU time of this process and of every server process at one moment.
struct CpuSnapshot {
    own: u64,
    server: HashMap<u32, u64>,
}

impl CpuSnapshot {
    fn take(postmaster: u32) -> CpuSnapshot {
        let own = own_cpu_ns();
        let mut server = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            // Server processes are single-threaded: the process's schedstat is all of it.
            if (pid == postmaster || parent(pid) == Some(postmaster))
                && let Some(ns) = cpu_ns(&pid.to_string())
            {
                server.insert(pid, ns);
            }
        }
        CpuSnapshot { own, server }
    }
}

/// CPU seconds between two snapshots.
struct CpuUse {
    consumer: f64,
    decoder_backend: f64,
    writer_backend: f64,
    server_total: f64,
}

impl CpuUse {
    fn between(before: &CpuSnapshot, after: &CpuSnapshot, decoder: u32, writer: u32) -> CpuUse {
        // A process born inside the window counts from zero.
        let delta = |pid: &u32| {
            let end = after.server.get(pid).copied().unwrap_or(0);
            end.saturating_sub(before.server.get(pid).copied().unwrap_or(0)) as f64 / 1e9
        };
        CpuUse {
            consumer: after.own.saturating_sub(before.own) as f64 / 1e9,
            decoder_backend: delta(&decoder),
            writer_backend: delta(&writer),
            server_total: after.server.keys().map(delta).sum(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// A run

/// The consumer, running.
struct Consumer {
    task: tokio::task::JoinHandle<Result<Stats, BoxError>>,
    stop: watch::Sender<bool>,
    progress: watch::Receiver<u64>,
    /// The server process decoding for it.
    backend_pid: u32,
}

async fn start_consumer(
    args: &RunArgs,
    admin: &Client,
    settings: &CaptureSettings,
) -> Result<Consumer, BoxError> {
    let (stop, stop_rx) = watch::channel(false);
    let (progress_tx, progress) = watch::channel(0);
    let (task, backend_pid) = match args.mode {
        Mode::Stream => {
            let stream = ChangeStream::connect(settings).await?;
            let pid = walsender_pid(admin).await?;
            (
                tokio::spawn(consume_stream(stream, stop_rx, progress_tx)),
                pid,
            )
        }
        Mode::Poll => {
            let (client, connection) =
                tokio_postgres::connect(&settings.database_url, NoTls).await?;
            tokio::spawn(connection);
            client.batch_execute(SESSION_SETTINGS).await?;
            let pid: i32 = client
                .query_one("select pg_backend_pid()", &[])
                .await?
                .get(0);
            let every = Duration::from_millis(args.interval_ms);
            (
                tokio::spawn(consume_poll(
                    client,
                    every,
                    args.max_changes,
                    stop_rx,
                    progress_tx,
                )),
                pid as u32,
            )
        }
    };
    Ok(Consumer {
        task,
        stop,
        progress,
        backend_pid,
    })
}

/// The walsender serving the stream slot: it holds the slot once streaming started.
async fn walsender_pid(admin: &Client) -> Result<u32, BoxError> {
    let mut ticker = interval(Duration::from_millis(10));
    timeout(Duration::from_secs(10), async {
        loop {
            ticker.tick().await;
            let pid: Option<i32> = admin
                .query_one(
                    "select active_pid from pg_replication_slots where slot_name = $1",
                    &[&STREAM_SLOT],
                )
                .await?
                .get(0);
            if let Some(pid) = pid {
                return Ok::<u32, BoxError>(pid as u32);
            }
        }
    })
    .await
    .map_err(|_| "the stream never took its slot")?
}

async fn run(args: RunArgs) -> Result<(), BoxError> {
    let pg = TestPostgres::start()?;
    pg.psql(
        "create table bench (id bigint primary key, title text, n int, payload jsonb, \
                             at timestamptz default now()) with (autovacuum_enabled = off)",
    )?;
    let (admin, connection) = tokio_postgres::connect(&pg.url(), NoTls).await?;
    tokio::spawn(connection);
    let settings = CaptureSettings {
        database_url: pg.url(),
        publication: PUBLICATION.into(),
        slot: STREAM_SLOT.into(),
    };
    replication::prepare(&admin, &settings).await?;
    admin
        .batch_execute(&format!("alter publication {PUBLICATION} add table bench"))
        .await?;
    if args.mode == Mode::Poll {
        admin
            .query_one(
                "select pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&POLL_SLOT],
            )
            .await?;
    }
    let admin_pid: i32 = admin
        .query_one("select pg_backend_pid()", &[])
        .await?
        .get(0);
    let postmaster = parent(admin_pid as u32).ok_or("no /proc entry for the server")?;

    let mut writer = Writer::spawn(&pg.url(), &args.load).await?;
    let (rows, write_seconds);
    let before;
    let start;
    let mut consumer;
    let wal_start = current_wal(&admin).await?;
    if args.backlog {
        writer.go()?;
        (rows, write_seconds) = writer.written().await?;
        before = CpuSnapshot::take(postmaster);
        start = Instant::now();
        consumer = start_consumer(&args, &admin, &settings).await?;
    } else {
        consumer = start_consumer(&args, &admin, &settings).await?;
        before = CpuSnapshot::take(postmaster);
        start = Instant::now();
        writer.go()?;
        (rows, write_seconds) = writer.written().await?;
    }
    let lag_at_writer_end = rows.saturating_sub(*consumer.progress.borrow());
    let drained = timeout(
        Duration::from_secs(args.drain_seconds),
        consumer.progress.wait_for(|decoded| *decoded >= rows),
    )
    .await
    .is_ok();
    let after = CpuSnapshot::take(postmaster);
    let wall = start.elapsed().as_secs_f64();
    let cpu = CpuUse::between(&before, &after, consumer.backend_pid, writer.backend_pid);
    let wal_written = current_wal(&admin).await? - wal_start;
    let slot = match args.mode {
        Mode::Stream => STREAM_SLOT,
        Mode::Poll => POLL_SLOT,
    };
    // Every peek and advance decodes from restart_lsn, not from where the last poll
    // ended; how far back that is explains what a poll costs the server.
    let restart_trails: f64 = admin
        .query_one(
            "select pg_wal_lsn_diff(confirmed_flush_lsn, restart_lsn)::float8 \
             from pg_replication_slots where slot_name = $1",
            &[&slot],
        )
        .await?
        .get(0);
    consumer.stop.send_replace(true);
    let mut stats = consumer.task.await??;
    writer.finish().await?;

    let span = stats
        .last
        .map_or(wall, |last| last.duration_since(start).as_secs_f64());
    stats.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let v = &stats.latencies_us;
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
    };
    let mode = match args.mode {
        Mode::Stream => "stream",
        Mode::Poll => "poll",
    };
    println!(
        "mode={mode} rate={} batch={} seconds={} backlog={} interval_ms={} max_changes={}",
        args.load.rate,
        args.load.batch,
        args.load.seconds,
        args.backlog,
        args.interval_ms,
        args.max_changes
    );
    println!(
        "written: {rows} rows in {write_seconds:.2} s ({:.0} rows/s)",
        rows as f64 / write_seconds
    );
    println!(
        "decoded: {} rows, {} transactions{}, {:.0} rows/s over {span:.2} s; \
         behind by {lag_at_writer_end} rows when the writer stopped; {}",
        stats.changes,
        stats.transactions,
        if args.mode == Mode::Poll {
            format!(" in {} polls", stats.polls)
        } else {
            String::new()
        },
        stats.changes as f64 / span,
        if drained {
            "drained".to_owned()
        } else {
            format!("NOT drained within {} s", args.drain_seconds)
        }
    );
    println!(
        "latency commit->decoded ms: p50 {:.2} p99 {:.2} max {:.2}",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "cpu s over {wall:.2} s: consumer {:.2}, decoder backend {:.2}, writer backend {:.2}, \
         server total {:.2}; {:.0} decoded rows per consumer cpu-s",
        cpu.consumer,
        cpu.decoder_backend,
        cpu.writer_backend,
        cpu.server_total,
        stats.changes as f64 / cpu.consumer.max(0.01)
    );
    println!(
        "decoder backend: {:.1} us per decoded row{}; WAL written {:.1} MB; \
         slot restart_lsn trails confirmed_flush_lsn by {:.1} MB",
        cpu.decoder_backend * 1e6 / stats.changes.max(1) as f64,
        if args.mode == Mode::Poll {
            format!(
                ", {:.1} ms per poll",
                cpu.decoder_backend * 1e3 / stats.polls.max(1) as f64
            )
        } else {
            String::new()
        },
        wal_written as f64 / 1e6,
        restart_trails / 1e6
    );
    drop(pg);
    Ok(())
}

/// The server's current WAL position.
async fn current_wal(admin: &Client) -> Result<u64, BoxError> {
    let lsn: PgLsn = admin
        .query_one("select pg_current_wal_lsn()", &[])
        .await?
        .get(0);
    Ok(lsn.into())
}
