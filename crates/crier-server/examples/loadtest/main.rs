//! A small load generator for Crier (or any Supabase Realtime / Phoenix v2 server).
//!
//! ```text
//! cargo build --release -p crier-server --example loadtest
//! taskset -c 1 target/release/examples/loadtest idle   --token $JWT --connections 10000 --server-pid $PID
//! taskset -c 1 target/release/examples/loadtest fanout --token $JWT --subscribers 1000 \
//!     --rate 300 --payload-bytes 100 --seconds 20 --server-pid $PID
//! taskset -c 1 target/release/examples/loadtest pgchanges --jwt-secret $SECRET \
//!     --database-url $PGURL --subscribers 100 --rate 1000 --rls per-user --server-pid $PID
//! ```
//!
//! * `idle` opens N sockets, each joining one channel (`realtime:idle-<i % topics>`), and
//!   holds them with heartbeats. With `--server-pid` it reports the server's RSS growth
//!   per joined connection.
//! * `fanout` joins N subscribers to `realtime:bench`, then one publisher socket sends
//!   `--rate` broadcasts per second. Every payload carries a sequence number and a send
//!   timestamp, so each subscriber measures publish→receive latency and notices gaps.
//! * `pgchanges` joins N subscribers with a `postgres_changes` binding on table `bench`,
//!   writes rows into it through ordinary PostgreSQL connections, and measures
//!   commit→client latency and deliveries, optionally under row level security
//!   (`pgchanges.rs` has the details).
//!
//! Design choices, for people reading the numbers:
//! * One process, one single-threaded tokio runtime. The tool is meant to be pinned to
//!   one core (`taskset -c 1`) next to a server pinned to the other, and a single thread
//!   keeps the whole client side on that core with no cross-thread wakeups.
//! * Publisher and subscribers live in the same process, so latency is the difference
//!   of two readings of one monotonic clock (`ORIGIN.elapsed()`), in microseconds. It
//!   includes the tool's own scheduling delay: when the tool's core saturates, latency
//!   grows for reasons that are not the server's. Watch the reported tool CPU.
//! * Only a fixed window of sequence numbers is measured (after `--warmup`), so ramp-up
//!   and the drain at the end do not dilute the figures. Delivery ratio is exact: every
//!   subscriber should see every measured sequence number once.
//! * Frames are inspected with plain substring searches, not a JSON parser: the server
//!   forwards the payload bytes verbatim, and a parser would cost the tool more CPU than
//!   the thing it measures.
//! * Client read buffers are small (4 KiB instead of tungstenite's eager 128 KiB) so that
//!   ten thousand client sockets do not cost the box 1.3 GB.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use tokio_util::sync::CancellationToken;

mod pgchanges;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The server closes sockets that say nothing for 60 s; stay well inside that.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(25);
/// How long one connect + join may take before it counts as failed.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// /proc reports CPU times in USER_HZ ticks, which is 100 on every Linux ABI we run on.
const TICKS_PER_SEC: f64 = 100.0;
/// How many failure messages to keep verbatim (the rest are only counted).
const KEEP_ERRORS: usize = 8;

/// The process-wide clock origin shared by publisher and subscribers.
static ORIGIN: OnceLock<Instant> = OnceLock::new();

fn now_us() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_micros() as u64
}

#[derive(Parser, Debug)]
#[command(about = "Load generator for Crier (Phoenix Channels v2 JSON over WebSocket)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Open many sockets, join one channel on each, and hold them.
    Idle(IdleArgs),
    /// One publisher, many subscribers on one topic: throughput, delivery ratio, latency.
    Fanout(FanoutArgs),
    /// Rows written to PostgreSQL, delivered as postgres changes: commit→client latency,
    /// deliveries, with or without row level security.
    Pgchanges(pgchanges::PgArgs),
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// WebSocket endpoint; `apikey` and `vsn=2.0.0` are appended.
    #[arg(long, default_value = "ws://127.0.0.1:4600/socket/websocket")]
    url: String,
    /// JWT for the `apikey` parameter (e.g. from `crier token`). Required by `idle` and
    /// `fanout`; `pgchanges` mints its own when given `--jwt-secret`.
    #[arg(long, env = "CRIER_TOKEN")]
    token: Option<String>,
    /// Connects + joins in flight at once during the ramp.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// The server's pid: report its RSS and CPU time from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Read buffer per client socket, in bytes.
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
}

#[derive(Args, Debug)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Number of sockets (one joined channel each).
    #[arg(long)]
    connections: usize,
    /// Spread the sockets over this many topics (`realtime:idle-<i % topics>`).
    #[arg(long, default_value_t = 100)]
    topics: usize,
    /// Seconds to wait after the last join before reading the server's RSS.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Seconds to hold the sockets after that; 0 holds them until Ctrl-C.
    #[arg(long, default_value_t = 0)]
    hold: u64,
}

#[derive(Args, Debug)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Subscriber sockets, all on `realtime:bench`.
    #[arg(long)]
    subscribers: usize,
    /// Broadcasts published per second.
    #[arg(long)]
    rate: u64,
    /// Size of the broadcast's `payload` object in bytes (padded to this exactly).
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of publishing before the measured window starts.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// After the last publish, wait at most this long for stragglers.
    #[arg(long, default_value_t = 5)]
    drain: u64,
}

fn main() {
    let cli = Cli::parse();
    ORIGIN.get_or_init(Instant::now);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command {
        Command::Idle(args) => runtime.block_on(idle(args)),
        Command::Fanout(args) => runtime.block_on(fanout(args)),
        Command::Pgchanges(args) => runtime.block_on(pgchanges::run(args)),
    }
}

// ---------------------------------------------------------------------------------------
// Protocol helpers
// ---------------------------------------------------------------------------------------

impl Common {
    /// `--token`, or exit with a message saying it is needed.
    fn required_token(&self) -> &str {
        self.token.as_deref().unwrap_or_else(|| {
            eprintln!("error: --token (or CRIER_TOKEN) is required for this mode");
            std::process::exit(2)
        })
    }
}

fn socket_url(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{}{sep}apikey={token}&vsn=2.0.0", url.trim_end_matches('/'))
}

fn join_frame(topic: &str) -> String {
    format!(
        r#"["1","1","{topic}","phx_join",{{"config":{{"broadcast":{{"self":false,"ack":false}},"presence":{{"enabled":false}},"private":false}}}}]"#
    )
}

fn heartbeat_frame(msg_ref: u64) -> Message {
    Message::Text(format!(r#"[null,"{msg_ref}","phoenix","heartbeat",{{}}]"#).into())
}

/// The number right after `key` (e.g. `"s":`), if any.
fn field_u64(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

/// A broadcast frame whose `payload` object is exactly `size` bytes when that is
/// achievable (the fixed fields need ~40 bytes).
fn tick_frame(topic: &str, seq: u64, sent_us: u64, size: usize) -> String {
    let head = format!(r#"{{"t":{sent_us},"s":{seq},"pad":""#);
    let pad = size.saturating_sub(head.len() + 2);
    let mut payload = String::with_capacity(head.len() + pad + 2);
    payload.push_str(&head);
    payload.extend(std::iter::repeat_n('x', pad));
    payload.push_str("\"}");
    format!(
        r#"["1","{ref}","{topic}","broadcast",{{"type":"broadcast","event":"tick","payload":{payload}}}]"#,
        ref = seq + 2
    )
}

async fn connect_and_join(url: &str, topic: &str, read_buffer: usize) -> Result<Ws, String> {
    let attempt = async {
        let mut ws = connect(url, read_buffer).await?;
        join(&mut ws, join_frame(topic)).await?;
        Ok(ws)
    };
    tokio::time::timeout(JOIN_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Opens a client socket with a small read buffer (see the module docs).
async fn connect(url: &str, read_buffer: usize) -> Result<Ws, String> {
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0);
    let (ws, _) = connect_async_with_config(url, Some(config), true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok(ws)
}

/// Sends a `phx_join` frame and waits for its `ok` reply; frames before it are skipped.
async fn join(ws: &mut Ws, frame: String) -> Result<(), String> {
    ws.send(Message::Text(frame.into()))
        .await
        .map_err(|e| format!("send join: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains("\"phx_reply\"") => {
                return if text.contains(r#""status":"ok""#) {
                    Ok(())
                } else {
                    Err(format!("join refused: {}", text.as_str()))
                };
            }
            Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("read: {e}")),
            None => return Err("eof before join reply".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared bookkeeping
// ---------------------------------------------------------------------------------------

/// Counts failures and keeps the first few messages, so a run reports *what* went wrong.
#[derive(Default)]
struct Failures {
    count: AtomicU64,
    samples: Mutex<BTreeMap<String, u64>>,
}

impl Failures {
    fn record(&self, what: &str, message: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().expect("not poisoned");
        let key = format!("{what}: {message}");
        if let Some(n) = samples.get_mut(&key) {
            *n += 1;
        } else if samples.len() < KEEP_ERRORS {
            samples.insert(key, 1);
        }
    }

    fn print(&self, label: &str) {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return;
        }
        println!("{label}: {count}");
        for (message, n) in self.samples.lock().expect("not poisoned").iter() {
            println!("  {n:>6} x {message}");
        }
    }
}

/// CPU ticks (utime + stime) of a process.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields we want come after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, state is field 3, so utime (14) and stime (15) are at 11 and 12.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU ticks of a PostgreSQL server: the postmaster (with the children it has reaped)
/// and every live child (backends, walsender, background workers).
fn pg_ticks(postmaster: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).ok()?;
    // utime, stime, cutime, cstime: exited backends' time lands in the last two.
    let mut total: u64 = stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // The parent pid is the field after the state.
        if rest.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(postmaster) {
            continue;
        }
        let ticks = |i: usize| rest.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        total += ticks(11) + ticks(12);
    }
    Some(total)
}

/// CPU readings of the server and PostgreSQL (if known) and of this tool at one instant.
#[derive(Clone, Copy)]
struct CpuSample {
    at: Instant,
    server: Option<u64>,
    tool: Option<u64>,
    postgres: Option<u64>,
}

impl CpuSample {
    fn take(server_pid: Option<u32>) -> Self {
        CpuSample::take_with_postgres(server_pid, None)
    }

    fn take_with_postgres(server_pid: Option<u32>, postmaster: Option<u32>) -> Self {
        CpuSample {
            at: Instant::now(),
            server: server_pid.and_then(|pid| cpu_ticks(&pid.to_string())),
            tool: cpu_ticks("self"),
            postgres: postmaster.and_then(pg_ticks),
        }
    }

    /// CPU use between two samples, in percent of one core: (server, tool).
    fn percent_since(&self, earlier: &CpuSample) -> (Option<f64>, Option<f64>) {
        (
            self.pct(self.server, earlier.server, earlier),
            self.pct(self.tool, earlier.tool, earlier),
        )
    }

    /// PostgreSQL's CPU use between two samples, in percent of one core.
    fn postgres_percent_since(&self, earlier: &CpuSample) -> Option<f64> {
        self.pct(self.postgres, earlier.postgres, earlier)
    }

    fn pct(&self, now: Option<u64>, then: Option<u64>, earlier: &CpuSample) -> Option<f64> {
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        Some(now?.saturating_sub(then?) as f64 / TICKS_PER_SEC / wall * 100.0)
    }
}

fn fmt_opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

fn json_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "null".into(), |v| format!("{v:.3}"))
}

// ---------------------------------------------------------------------------------------
// idle
// ---------------------------------------------------------------------------------------

async fn idle(args: IdleArgs) {
    let common = &args.common;
    let url = socket_url(&common.url, common.required_token());
    let rss_before = common.server_pid.and_then(rss_kib);
    let joined = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Failures::default());
    let dropped = Arc::new(Failures::default());
    let gate = Arc::new(Semaphore::new(common.concurrency));
    let stop = CancellationToken::new();
    let started = Instant::now();

    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let (url, joined, failures, dropped, gate, stop) = (
            url.clone(),
            joined.clone(),
            failures.clone(),
            dropped.clone(),
            gate.clone(),
            stop.clone(),
        );
        let topic = format!("realtime:idle-{}", i % args.topics.max(1));
        let read_buffer = common.read_buffer;
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore open");
            let ws = match connect_and_join(&url, &topic, read_buffer).await {
                Ok(ws) => ws,
                Err(e) => return failures.record("join", e),
            };
            drop(permit);
            joined.fetch_add(1, Ordering::Relaxed);
            // Spread heartbeats over the period so 10k sockets do not beat in unison.
            let offset = HEARTBEAT_EVERY.mul_f64((i % 1000) as f64 / 1000.0);
            if let Err(e) = hold(ws, offset, stop).await {
                dropped.record("dropped", e);
            }
        }));
    }

    let total = args.connections as u64;
    let mut last_print = Instant::now();
    loop {
        let done = joined.load(Ordering::Relaxed) + failures.count.load(Ordering::Relaxed);
        if done >= total {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            println!(
                "  {:>6.1}s joined {} / {total}, failed {}",
                started.elapsed().as_secs_f64(),
                joined.load(Ordering::Relaxed),
                failures.count.load(Ordering::Relaxed)
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp = started.elapsed().as_secs_f64();
    let ok = joined.load(Ordering::Relaxed);
    println!(
        "ALL JOINED: {ok} of {total} sockets joined in {ramp:.2} s ({:.0} joins/s), topics realtime:idle-0..{}",
        ok as f64 / ramp,
        args.topics.max(1) - 1
    );
    failures.print("join failures");

    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_after = common.server_pid.and_then(rss_kib);
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if ok > 0 => Some((a as f64 - b as f64) / ok as f64),
        _ => None,
    };
    if common.server_pid.is_some() {
        println!(
            "server VmRSS: before {} KiB, after {} KiB (+{}s settle) => {} KiB per joined connection",
            rss_before.map_or("n/a".into(), |v| v.to_string()),
            rss_after.map_or("n/a".into(), |v| v.to_string()),
            args.settle,
            fmt_opt(per_conn, 2)
        );
    }
    println!(
        r#"{{"mode":"idle","connections":{total},"joined":{ok},"failed":{},"ramp_s":{ramp:.3},"joins_per_s":{:.1},"rss_before_kib":{},"rss_after_kib":{},"rss_per_conn_kib":{}}}"#,
        failures.count.load(Ordering::Relaxed),
        ok as f64 / ramp,
        rss_before.map_or("null".into(), |v| v.to_string()),
        rss_after.map_or("null".into(), |v| v.to_string()),
        json_opt(per_conn),
    );

    if args.hold == 0 {
        println!("holding until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    } else {
        println!("holding for {} s", args.hold);
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    dropped.print("sockets lost while holding");
    if let Some(pid) = common.server_pid {
        println!(
            "server VmRSS at end: {} KiB",
            rss_kib(pid).map_or("n/a".into(), |v| v.to_string())
        );
    }
}

/// Keeps a joined socket alive until `stop`; an error means the server dropped it.
async fn hold(mut ws: Ws, offset: Duration, stop: CancellationToken) -> Result<(), String> {
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + offset, HEARTBEAT_EVERY);
    let mut msg_ref = 100;
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = ws.close(None).await;
                return Ok(());
            }
            _ = beat.tick() => {
                msg_ref += 1;
                ws.send(heartbeat_frame(msg_ref)).await.map_err(|e| format!("heartbeat: {e}"))?;
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Close(frame))) => return Err(format!("server closed: {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("eof".into()),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// fanout
// ---------------------------------------------------------------------------------------

const BENCH_TOPIC: &str = "realtime:bench";

/// What one subscriber saw; merged at the end so the hot path takes no locks.
struct SubStats {
    latency_us: Histogram<u64>,
    /// Measured-window broadcasts received.
    measured: u64,
    /// Broadcasts received outside the measured window (warm-up).
    unmeasured: u64,
    /// Sequence numbers skipped (messages lost in between).
    gaps: u64,
    /// Sequence numbers seen again or out of order.
    reordered: u64,
    /// Broadcasts received per second of `ORIGIN` time, for a timeline.
    per_second: Vec<u64>,
    /// Frames other than broadcasts and heartbeat replies (samples).
    other: Vec<String>,
    /// Why the socket ended early, if it did.
    ended: Option<String>,
}

impl SubStats {
    fn new() -> Self {
        SubStats {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
            measured: 0,
            unmeasured: 0,
            gaps: 0,
            reordered: 0,
            per_second: Vec::new(),
            other: Vec::new(),
            ended: None,
        }
    }
}

async fn fanout(args: FanoutArgs) {
    let common = &args.common;
    let url = socket_url(&common.url, common.required_token());
    let failures = Arc::new(Failures::default());
    let gate = Arc::new(Semaphore::new(common.concurrency));
    let stop = CancellationToken::new();
    let measured_seqs = args.rate * args.warmup..args.rate * (args.warmup + args.seconds);
    let total_seqs = measured_seqs.end;
    // Live count of measured receipts, so the drain can end as soon as all arrived.
    let received = Arc::new(AtomicU64::new(0));
    // Each subscriber task reports once: joined (true) or failed (false).
    let (joined_tx, mut joined_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();

    let started = Instant::now();
    let mut subs = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        let (url, failures, gate, stop, received, joined_tx) = (
            url.clone(),
            failures.clone(),
            gate.clone(),
            stop.clone(),
            received.clone(),
            joined_tx.clone(),
        );
        let measured = measured_seqs.clone();
        let read_buffer = common.read_buffer;
        subs.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore open");
            let ws = match connect_and_join(&url, BENCH_TOPIC, read_buffer).await {
                Ok(ws) => ws,
                Err(e) => {
                    failures.record("subscriber join", e);
                    let _ = joined_tx.send(false);
                    return None;
                }
            };
            drop(permit);
            let _ = joined_tx.send(true);
            Some(subscribe(ws, measured, stop, received).await)
        }));
    }
    drop(joined_tx);
    let mut joined = 0u64;
    for _ in 0..args.subscribers {
        if joined_rx.recv().await == Some(true) {
            joined += 1;
        }
    }
    let ramp = started.elapsed().as_secs_f64();
    println!(
        "{joined} of {} subscribers joined {BENCH_TOPIC} in {ramp:.2} s",
        args.subscribers
    );
    failures.print("subscriber join failures");
    if joined == 0 {
        stop.cancel();
        return;
    }

    let publisher = match connect_and_join(&url, BENCH_TOPIC, common.read_buffer).await {
        Ok(ws) => ws,
        Err(e) => {
            println!("publisher failed to join: {e}");
            stop.cancel();
            return;
        }
    };
    println!(
        "publishing {} msg/s of {}-byte payloads: {} s warm-up + {} s measured",
        args.rate, args.payload_bytes, args.warmup, args.seconds
    );
    let rss_start = common.server_pid.and_then(rss_kib);
    let report = publish(
        publisher,
        args.rate,
        args.payload_bytes,
        total_seqs,
        measured_seqs.clone(),
        common.server_pid,
    )
    .await;

    // Wait for stragglers: until everything measured arrived or the drain time is up.
    let expected = (measured_seqs.end - measured_seqs.start) * joined;
    let drain_until = Instant::now() + Duration::from_secs(args.drain);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_end = common.server_pid.and_then(rss_kib);
    stop.cancel();

    let mut total = SubStats::new();
    let ended_early = Failures::default();
    for sub in subs {
        let Ok(Some(stats)) = sub.await else { continue };
        total
            .latency_us
            .add(&stats.latency_us)
            .expect("same bounds");
        total.measured += stats.measured;
        total.unmeasured += stats.unmeasured;
        total.gaps += stats.gaps;
        total.reordered += stats.reordered;
        if total.per_second.len() < stats.per_second.len() {
            total.per_second.resize(stats.per_second.len(), 0);
        }
        for (slot, n) in total.per_second.iter_mut().zip(&stats.per_second) {
            *slot += n;
        }
        if total.other.len() < KEEP_ERRORS {
            total.other.extend(stats.other);
        }
        if let Some(why) = stats.ended {
            ended_early.record("subscriber ended early", why);
        }
    }
    report_fanout(
        &args,
        joined,
        &report,
        &total,
        expected,
        (rss_start, rss_end),
    );
    ended_early.print("ANOMALY: subscribers lost");
    failures.print("ANOMALY: failures");
    if !report.other.is_empty() {
        println!("publisher received unexpected frames (first few):");
        for frame in &report.other {
            println!("  {frame}");
        }
    }
    if !total.other.is_empty() {
        println!("subscribers received unexpected frames (first few):");
        for frame in &total.other {
            println!("  {frame}");
        }
    }
}

/// Reads one subscriber's socket until `stop`.
async fn subscribe(
    ws: Ws,
    measured: Range<u64>,
    stop: CancellationToken,
    received: Arc<AtomicU64>,
) -> SubStats {
    let mut stats = SubStats::new();
    let mut next_seq = 0u64;
    let ended = read_frames(ws, stop, |text| {
        if text.starts_with("[null,null,") && text.contains(r#""event":"tick""#) {
            on_tick(text, &measured, &mut stats, &mut next_seq, &received);
        } else if !text.contains(r#""phx_reply",{"status":"ok""#) && stats.other.len() < KEEP_ERRORS
        {
            stats.other.push(text.chars().take(300).collect());
        }
    })
    .await;
    stats.ended = ended;
    stats
}

/// Reads a joined socket until `stop`, sending heartbeats, and hands every text frame to
/// `on_text`. Returns why the socket ended before `stop`, if it did.
async fn read_frames(
    mut ws: Ws,
    stop: CancellationToken,
    mut on_text: impl FnMut(&str),
) -> Option<String> {
    let mut beat = tokio::time::interval_at(
        tokio::time::Instant::now() + HEARTBEAT_EVERY,
        HEARTBEAT_EVERY,
    );
    let mut msg_ref = 100;
    loop {
        tokio::select! {
            // Reading first: a backlog of frames must not be starved by the timers.
            biased;
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => on_text(text.as_str()),
                Some(Ok(Message::Close(frame))) => return Some(format!("server closed: {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Some(format!("read: {e}")),
                None => return Some("eof".into()),
            },
            () = stop.cancelled() => {
                let _ = ws.close(None).await;
                return None;
            }
            _ = beat.tick() => {
                msg_ref += 1;
                if let Err(e) = ws.send(heartbeat_frame(msg_ref)).await {
                    return Some(format!("heartbeat: {e}"));
                }
            }
        }
    }
}

fn on_tick(
    text: &str,
    measured: &Range<u64>,
    stats: &mut SubStats,
    next_seq: &mut u64,
    received: &AtomicU64,
) {
    let now = now_us();
    let (Some(sent), Some(seq)) = (field_u64(text, r#""t":"#), field_u64(text, r#""s":"#)) else {
        if stats.other.len() < KEEP_ERRORS {
            stats.other.push(format!("unparsable tick: {text}"));
        }
        return;
    };
    let second = (now / 1_000_000) as usize;
    if stats.per_second.len() <= second {
        stats.per_second.resize(second + 1, 0);
    }
    stats.per_second[second] += 1;
    // Subscribers join before the first publish, so each must see 0, 1, 2, ...
    if seq > *next_seq {
        stats.gaps += seq - *next_seq;
    } else if seq < *next_seq {
        stats.reordered += 1;
    }
    *next_seq = (*next_seq).max(seq + 1);
    if measured.contains(&seq) {
        stats.measured += 1;
        received.fetch_add(1, Ordering::Relaxed);
        stats
            .latency_us
            .saturating_record(now.saturating_sub(sent).max(1));
    } else {
        stats.unmeasured += 1;
    }
}

struct PublishReport {
    published: u64,
    /// Time from the first measured publish to the end of the last one's schedule slot.
    measured_wall: Duration,
    /// CPU samples at the start and end of the measured window.
    cpu: (CpuSample, CpuSample),
    /// Frames the publisher got other than heartbeat replies.
    other: Vec<String>,
    error: Option<String>,
}

/// Publishes `total` ticks at `rate` per second, keeping to the schedule even if a
/// write is slow (the backlog is sent in one batch), so the offered load is honest.
async fn publish(
    ws: Ws,
    rate: u64,
    payload_bytes: usize,
    total: u64,
    measured: Range<u64>,
    server_pid: Option<u32>,
) -> PublishReport {
    let (mut sink, mut stream) = ws.split();
    // The publisher joined with self=false, so it should only ever get heartbeat replies;
    // anything else (an error, a rate-limit notice) is worth reporting.
    let reader_stop = CancellationToken::new();
    let stop_reading = reader_stop.clone();
    let reader = tokio::spawn(async move {
        let mut other = Vec::new();
        loop {
            let frame = tokio::select! {
                () = stop_reading.cancelled() => break,
                frame = stream.next() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
            };
            match frame {
                Ok(Message::Text(text)) => {
                    if !text.contains(r#""phx_reply",{"status":"ok""#) && other.len() < KEEP_ERRORS
                    {
                        other.push(text.as_str().chars().take(300).collect());
                    }
                }
                Ok(Message::Close(frame)) => {
                    other.push(format!("publisher closed by server: {frame:?}"));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    other.push(format!("publisher read error: {e}"));
                    break;
                }
            }
        }
        other
    });

    let start = tokio::time::Instant::now();
    let mut last_beat = start;
    let mut msg_ref = 1_000_000_000u64;
    let mut seq = 0u64;
    let mut error = None;
    let mut cpu_start = CpuSample::take(server_pid);
    let mut measured_start = Instant::now();
    let mut cpu_end = cpu_start;
    while seq < total {
        // Due so far according to the schedule; sleep until the next one is due.
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
        if due <= seq {
            let next = start + Duration::from_secs_f64(seq as f64 / rate as f64);
            tokio::time::sleep_until(next).await;
            continue;
        }
        let batch = async {
            while seq < due {
                if seq == measured.start {
                    cpu_start = CpuSample::take(server_pid);
                    measured_start = cpu_start.at;
                }
                let frame = tick_frame(BENCH_TOPIC, seq, now_us(), payload_bytes);
                sink.feed(Message::Text(frame.into())).await?;
                seq += 1;
            }
            if last_beat.elapsed() >= HEARTBEAT_EVERY {
                last_beat = tokio::time::Instant::now();
                msg_ref += 1;
                sink.feed(heartbeat_frame(msg_ref)).await?;
            }
            sink.flush().await
        };
        if let Err(e) = batch.await {
            error = Some(format!("publish write: {e}"));
            break;
        }
        if seq == measured.end {
            cpu_end = CpuSample::take(server_pid);
        }
    }
    // The last measured message owns one schedule slot too, hence the extra 1/rate.
    let measured_wall = cpu_end.at.saturating_duration_since(measured_start)
        + Duration::from_secs_f64(1.0 / rate as f64);
    reader_stop.cancel();
    let other = reader.await.unwrap_or_default();
    PublishReport {
        published: seq,
        measured_wall,
        cpu: (cpu_start, cpu_end),
        other,
        error,
    }
}

fn report_fanout(
    args: &FanoutArgs,
    joined: u64,
    report: &PublishReport,
    total: &SubStats,
    expected: u64,
    (rss_start, rss_end): (Option<u64>, Option<u64>),
) {
    let measured_msgs = expected / joined.max(1);
    let wall = report.measured_wall.as_secs_f64().max(1e-9);
    let deliveries_per_s = total.measured as f64 / wall;
    let ratio = total.measured as f64 / expected.max(1) as f64;
    let (server_cpu, tool_cpu) = report.cpu.1.percent_since(&report.cpu.0);
    let server_cpu_per_m = server_cpu.map(|pct| pct / 100.0 * wall / (total.measured as f64 / 1e6));
    let h = &total.latency_us;
    let q = |quantile: f64| h.value_at_quantile(quantile) as f64 / 1000.0;

    println!();
    println!(
        "fanout {BENCH_TOPIC}: {joined} subscribers, {} msg/s offered, {} B payload, {} s measured ({:.2} s actual)",
        args.rate, args.payload_bytes, args.seconds, wall
    );
    println!("  published (total)        {:>12}", report.published);
    println!("  published (measured)     {measured_msgs:>12}");
    println!("  deliveries expected      {expected:>12}");
    println!("  deliveries received      {:>12}", total.measured);
    println!("  delivery ratio           {:>11.4}%", ratio * 100.0);
    println!("  deliveries/s             {deliveries_per_s:>12.0}");
    println!("  latency p50              {:>9.2} ms", q(0.50));
    println!("  latency p90              {:>9.2} ms", q(0.90));
    println!("  latency p99              {:>9.2} ms", q(0.99));
    println!("  latency p99.9            {:>9.2} ms", q(0.999));
    println!(
        "  latency max              {:>9.2} ms",
        h.max() as f64 / 1000.0
    );
    println!(
        "  seq gaps / reordered     {:>6} / {}",
        total.gaps, total.reordered
    );
    println!("  server CPU (1 core=100%) {:>11}%", fmt_opt(server_cpu, 1));
    println!(
        "  server CPU-s per 1M del. {:>12}",
        fmt_opt(server_cpu_per_m, 3)
    );
    println!("  tool CPU (1 core=100%)   {:>11}%", fmt_opt(tool_cpu, 1));
    if args.common.server_pid.is_some() {
        println!(
            "  server VmRSS start/end   {} / {} KiB",
            rss_start.map_or("n/a".into(), |v| v.to_string()),
            rss_end.map_or("n/a".into(), |v| v.to_string())
        );
    }
    if let Some(e) = &report.error {
        println!("  ANOMALY: {e}");
    }
    // The per-second timeline shows whether the rate was steady or collapsed somewhere.
    let first = total.per_second.iter().position(|&n| n > 0).unwrap_or(0);
    let timeline: Vec<String> = total.per_second[first..]
        .iter()
        .map(u64::to_string)
        .collect();
    println!(
        "  receipts per second (all broadcasts, by receive time): {}",
        timeline.join(" ")
    );
    println!(
        r#"{{"mode":"fanout","subscribers":{joined},"rate":{},"payload_bytes":{},"seconds":{},"measured_wall_s":{wall:.3},"published":{},"measured_published":{measured_msgs},"expected":{expected},"received":{},"delivery_ratio":{ratio:.6},"deliveries_per_s":{deliveries_per_s:.0},"p50_ms":{:.3},"p90_ms":{:.3},"p99_ms":{:.3},"p999_ms":{:.3},"max_ms":{:.3},"gaps":{},"reordered":{},"server_cpu_pct":{},"server_cpu_s_per_m_deliveries":{},"tool_cpu_pct":{},"server_rss_end_kib":{}}}"#,
        args.rate,
        args.payload_bytes,
        args.seconds,
        report.published,
        total.measured,
        q(0.50),
        q(0.90),
        q(0.99),
        q(0.999),
        h.max() as f64 / 1000.0,
        total.gaps,
        total.reordered,
        json_opt(server_cpu),
        json_opt(server_cpu_per_m),
        json_opt(tool_cpu),
        rss_end.map_or("null".into(), |v| v.to_string()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_payload_has_the_requested_size_and_parses_back() {
        let frame = tick_frame(BENCH_TOPIC, 42, 123_456, 100);
        let start = frame.find(r#""payload":{"t""#).unwrap() + r#""payload":"#.len();
        let payload = &frame[start..frame.len() - 2];
        assert_eq!(payload.len(), 100, "{payload}");
        assert_eq!(field_u64(&frame, r#""t":"#), Some(123_456));
        assert_eq!(field_u64(&frame, r#""s":"#), Some(42));
    }
}
