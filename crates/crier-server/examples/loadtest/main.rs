//! A load generator for Crier's postgres changes (anchor B3 in `docs/PERFORMANCE.md`).
//!
//! ```text
//! cargo build --release -p crier-server --example loadtest
//! taskset -c 1 target/release/examples/loadtest pgchanges --jwt-secret $SECRET \
//!     --database-url $PGURL --subscribers 100 --rate 1000 --rls per-user --server-pid $PID
//! ```
//!
//! `pgchanges` joins N subscribers with a `postgres_changes` binding on table `bench`,
//! writes rows into it through ordinary PostgreSQL connections, and measures
//! commit→client latency and deliveries, optionally under row level security
//! (`pgchanges.rs` has the details).
//!
//! Broadcast fan-out (B1), virtual users (B2) and idle memory per connection are measured
//! by `crier bench fanout|vus|idle` (crate `crier-bench`), which replaced this tool's
//! former `fanout` and `idle` modes.
//!
//! Design choices, for people reading the numbers:
//! * One process, one single-threaded tokio runtime. The tool is meant to be pinned to
//!   one core (`taskset -c 1`) next to a server pinned to the other, and a single thread
//!   keeps the whole client side on that core with no cross-thread wakeups. Latency
//!   includes the tool's own scheduling delay: when its core saturates, latency grows
//!   for reasons that are not the server's. Watch the reported tool CPU.
//! * Frames are inspected with plain substring searches, not a JSON parser: a parser
//!   would cost the tool more CPU than the thing it measures.
//! * Client read buffers are small (4 KiB instead of tungstenite's eager 128 KiB) so that
//!   thousands of client sockets do not cost the box gigabytes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::{Parser, Subcommand};
use crier_bench::client::HEARTBEAT_EVERY;
use crier_bench::procfs;
use crier_bench::{ServerKind, Target, Vsn};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use tokio_util::sync::CancellationToken;

mod pgchanges;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How many failure messages to keep verbatim (the rest are only counted).
const KEEP_ERRORS: usize = 8;

/// The process-wide clock origin of the per-second timelines.
static ORIGIN: OnceLock<Instant> = OnceLock::new();

fn now_us() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_micros() as u64
}

#[derive(Parser, Debug)]
#[command(
    about = "Postgres changes load generator for Crier (broadcast and idle benchmarks: `crier bench`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Rows written to PostgreSQL, delivered as postgres changes: commit→client latency,
    /// deliveries, with or without row level security.
    Pgchanges(pgchanges::PgArgs),
}

fn main() {
    let cli = Cli::parse();
    ORIGIN.get_or_init(Instant::now);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command {
        Command::Pgchanges(args) => runtime.block_on(pgchanges::run(args)),
    }
}

// ---------------------------------------------------------------------------------------
// Protocol helpers
// ---------------------------------------------------------------------------------------

/// The endpoint `url` with `apikey=<token>` and `vsn=2.0.0` appended.
fn socket_url(url: &str, token: &str) -> String {
    Target {
        kind: ServerKind::Crier,
        url: url.trim_end_matches('/').to_owned(),
        vsn: Vsn::V2,
        token: Some(token.to_owned()),
    }
    .connect_url()
}

fn heartbeat_frame(msg_ref: u64) -> Message {
    Message::Text(format!(r#"[null,"{msg_ref}","phoenix","heartbeat",{{}}]"#).into())
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

// ---------------------------------------------------------------------------------------
// Bookkeeping
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

/// CPU readings of the server, this tool and PostgreSQL (each if known) at one instant.
struct CpuSample {
    at: Instant,
    server: procfs::CpuSample,
    tool: procfs::CpuSample,
    postgres: procfs::CpuSample,
}

impl CpuSample {
    fn take(server_pid: Option<u32>, postmaster: Option<u32>) -> Self {
        CpuSample {
            at: Instant::now(),
            server: procfs::CpuSample::take(server_pid.as_slice()),
            tool: procfs::CpuSample::take(&[std::process::id()]),
            postgres: procfs::CpuSample::from_ticks(postmaster.and_then(pg_ticks)),
        }
    }

    /// CPU use between two samples, in percent of one core: [server, tool, postgres].
    fn percent_since(&self, earlier: &CpuSample) -> [Option<f64>; 3] {
        [
            self.server.percent_since(&earlier.server),
            self.tool.percent_since(&earlier.tool),
            self.postgres.percent_since(&earlier.postgres),
        ]
    }
}

/// CPU ticks of a PostgreSQL server: the postmaster, the children it has reaped
/// (cutime + cstime) and every live child (backends, walsender, background workers).
fn pg_ticks(postmaster: u32) -> Option<u64> {
    let reaped = stat_field(postmaster, 16)? + stat_field(postmaster, 17)?;
    let children: u64 = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_field(pid, 4) == Some(postmaster.into()))
        .filter_map(procfs::cpu_ticks)
        .sum();
    Some(procfs::cpu_ticks(postmaster)? + reaped + children)
}

/// Field `number` of `/proc/<pid>/stat`, counted from 1 as in proc(5), for the fields
/// `crier_bench::procfs` does not read: the parent pid (4), cutime (16) and cstime (17).
fn stat_field(pid: u32, number: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; field 3 starts after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace()
        .nth(number.checked_sub(3)?)?
        .parse()
        .ok()
}

fn fmt_opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

fn json_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "null".into(), |v| format!("{v:.3}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls_carry_the_token_and_v2() {
        assert_eq!(
            socket_url("ws://h:1/socket/websocket/", "tok"),
            "ws://h:1/socket/websocket?apikey=tok&vsn=2.0.0"
        );
        assert_eq!(
            socket_url("ws://h:1/socket/websocket?x=1", "tok"),
            "ws://h:1/socket/websocket?x=1&apikey=tok&vsn=2.0.0"
        );
    }

    #[test]
    fn stat_fields_and_postgres_ticks_read_this_process() {
        let me = std::process::id();
        assert_eq!(
            stat_field(me, 4),
            Some(std::os::unix::process::parent_id().into())
        );
        assert!(stat_field(me, 16).is_some());
        assert!(pg_ticks(me).is_some());
        assert!(pg_ticks(u32::MAX).is_none());
    }
}
