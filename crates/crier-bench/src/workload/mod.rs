//! The coordinators: each starts workers, tells them what to open and when to publish,
//! switches measurement epochs, and turns the workers' tallies into [`Run`]s.

mod fanout;
mod idle;
mod join_storm;
pub mod pgchanges;
mod vus;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

pub use fanout::{FanoutOptions, fanout};
pub use idle::{IdleOptions, idle};
pub use join_storm::{JoinStormOptions, JoinStormReport, join_storm};
pub use pgchanges::{PgChangesOptions, pgchanges};
pub use vus::{VuOptions, vus};

use crate::BenchError;
use crate::procfs::{self, CpuSample};
use crate::progress::Progress;
use crate::report::{Rate, Run};
use crate::stats::EpochStats;
use crate::wire::Target;
use crate::worker::{Command, Event, Launch, Pool, WorkerHandle, WorkerSpec};

/// Settings shared by every workload.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server.
    pub target: Target,
    /// The server's process id, for its memory and CPU.
    pub server_pid: Option<u32>,
    /// More addresses of the same service (other nodes of a Crier cluster): the
    /// connections are spread over `target.url` and these, one worker per address at
    /// least; the publisher is on `target.url`.
    pub also_urls: Vec<String>,
    /// Other processes whose CPU each window reports (other nodes, Redis), by name.
    pub peer_pids: Vec<(String, u32)>,
    /// How to start workers when one is not enough.
    pub launch: Launch,
    /// Connections per worker; above this a run is split over worker processes, each
    /// dialling from its own 127.0.0.x address.
    pub per_worker: usize,
    /// Connects in flight at once, per worker.
    pub concurrency: usize,
    /// Client read buffer per socket, in bytes.
    pub read_buffer: usize,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Options {
    /// Defaults for `target`: in-process workers only up to 15,000 connections.
    pub fn new(target: Target) -> Options {
        Options {
            target,
            server_pid: None,
            also_urls: Vec::new(),
            peer_pids: Vec::new(),
            launch: Launch::Threads,
            per_worker: 15_000,
            concurrency: 200,
            read_buffer: 4096,
            progress: false,
        }
    }

    /// Starts enough workers for `connections`: one thread when they fit in one,
    /// otherwise processes (when configured) with distinct loopback source addresses.
    fn pool(&self, connections: usize) -> Result<Pool, BenchError> {
        let addresses = 1 + self.also_urls.len();
        let count = connections
            .div_ceil(self.per_worker.max(1))
            .max(1)
            .next_multiple_of(addresses);
        let launch = if count == 1 {
            Launch::Threads
        } else {
            self.launch.clone()
        };
        let loopback = self.target.url.contains("://127.0.0.1");
        let workers = (0..count)
            .map(|index| {
                let source = (count > 1 && loopback)
                    .then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (index % 250) as u8)));
                let mut target = self.target.clone();
                if let Some(url) = (index % addresses)
                    .checked_sub(1)
                    .and_then(|n| self.also_urls.get(n))
                {
                    target.url.clone_from(url);
                }
                let spec = WorkerSpec {
                    index,
                    target,
                    source,
                    concurrency: self.concurrency,
                    read_buffer: self.read_buffer,
                };
                WorkerHandle::spawn(spec, &launch)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pool { workers })
    }
}

/// Splits `total` into `parts` near-equal shares.
fn shares(total: usize, parts: usize) -> Vec<usize> {
    (0..parts)
        .map(|i| total / parts + usize::from(i < total % parts))
        .collect()
}

/// Sums `Joined` answers: (joined, failed, error samples, slowest worker's seconds).
fn joined(answers: &[Event]) -> (usize, usize, Vec<String>, f64) {
    let mut total = (0, 0, Vec::new(), 0.0f64);
    for answer in answers {
        if let Event::Joined {
            joined,
            failed,
            errors,
            seconds,
        } = answer
        {
            total.0 += joined;
            total.1 += failed;
            total
                .2
                .extend(errors.iter().map(|(m, n)| format!("join failed {n}x: {m}")));
            total.3 = total.3.max(*seconds);
        }
    }
    total
}

/// An epoch's tallies summed over every worker, with lost-connection counts.
struct Gathered {
    stats: EpochStats,
    lost: u64,
    problems: Vec<String>,
}

async fn gather(pool: &mut Pool, epoch: u32) -> Result<Gathered, BenchError> {
    let mut gathered = Gathered {
        stats: EpochStats::default(),
        lost: 0,
        problems: Vec::new(),
    };
    for answer in pool.all(Command::Report { epoch }).await? {
        if let Event::Report {
            stats,
            lost,
            lost_samples,
        } = answer
        {
            gathered.stats.merge(&EpochStats::from_wire(&stats));
            gathered.lost += lost;
            gathered.problems.extend(
                lost_samples
                    .into_iter()
                    .map(|(m, n)| format!("connection lost {n}x: {m}")),
            );
        }
    }
    Ok(gathered)
}

/// CPU and memory readings at the edges of a measured window.
struct Window {
    started: Instant,
    server: CpuSample,
    tool: CpuSample,
    peers: Vec<CpuSample>,
}

impl Window {
    fn open(options: &Options, pool: &Pool) -> Window {
        Window {
            started: Instant::now(),
            server: CpuSample::take(&options.server_pid.into_iter().collect::<Vec<_>>()),
            tool: CpuSample::take(&tool_pids(pool)),
            peers: peer_samples(options),
        }
    }

    /// Each peer's CPU in the window, percent of one core.
    fn peers(&self, options: &Options) -> std::collections::BTreeMap<String, f64> {
        let now = peer_samples(options);
        options
            .peer_pids
            .iter()
            .zip(now.iter().zip(&self.peers))
            .filter_map(|((name, _), (now, then))| Some((name.clone(), now.percent_since(then)?)))
            .collect()
    }

    /// (seconds, server CPU %, tool CPU %)
    fn close(&self, options: &Options, pool: &Pool) -> (f64, Option<f64>, Option<f64>) {
        let server = CpuSample::take(&options.server_pid.into_iter().collect::<Vec<_>>());
        let tool = CpuSample::take(&tool_pids(pool));
        (
            self.started.elapsed().as_secs_f64(),
            server.percent_since(&self.server),
            tool.percent_since(&self.tool),
        )
    }
}

fn peer_samples(options: &Options) -> Vec<CpuSample> {
    options
        .peer_pids
        .iter()
        .map(|(_, pid)| CpuSample::take(&[*pid]))
        .collect()
}

/// This process and every worker process.
fn tool_pids(pool: &Pool) -> Vec<u32> {
    let mut pids = vec![std::process::id()];
    pids.extend(pool.pids());
    pids
}

/// What a workload knows about a measured window, turned into a [`Run`].
struct Measured<'a> {
    workload: &'a str,
    subscribers: u64,
    rate: Rate,
    payload_bytes: usize,
    gathered: Gathered,
    seconds: f64,
    server_cpu_pct: Option<f64>,
    tool_cpu_pct: Option<f64>,
    peer_cpu_pct: std::collections::BTreeMap<String, f64>,
    connect_join_per_sec: f64,
    failed_joins: u64,
    problems: Vec<String>,
}

impl Measured<'_> {
    fn into_run(self, options: &Options) -> Run {
        let stats = &self.gathered.stats;
        let seconds = self.seconds.max(1e-9);
        let deliveries_per_sec = stats.received as f64 / seconds;
        let cpu_per_m = self
            .server_cpu_pct
            .filter(|_| stats.received > 0)
            .map(|pct| pct / 100.0 * seconds / (stats.received as f64 / 1e6));
        let mut problems = self.problems;
        problems.extend(self.gathered.problems);
        Run {
            workload: self.workload.to_owned(),
            server: options.target.kind.name().to_owned(),
            subscribers: self.subscribers,
            rate: self.rate,
            payload_bytes: self.payload_bytes,
            publishes_per_sec: stats.sent as f64 / seconds,
            deliveries_per_sec,
            delivery_ratio: if stats.expected == 0 {
                0.0
            } else {
                stats.received as f64 / stats.expected as f64
            },
            p50_ms: stats.latency_ms(0.50),
            p95_ms: stats.latency_ms(0.95),
            p99_ms: stats.latency_ms(0.99),
            max_ms: stats.max_ms(),
            rss_bytes: options.server_pid.and_then(procfs::rss_bytes),
            idle_rss_per_conn_bytes: None,
            server_cpu_pct: self.server_cpu_pct,
            server_cpu_s_per_m_deliveries: cpu_per_m,
            tool_cpu_pct: self.tool_cpu_pct,
            connect_join_per_sec: self.connect_join_per_sec,
            failed_joins: self.failed_joins,
            lost_connections: self.gathered.lost,
            seconds: self.seconds,
            stopped_because: None,
            problems,
            pgchanges: None,
            peer_cpu_pct: self.peer_cpu_pct,
        }
    }
}

/// Sleeps `seconds` while advancing the progress bar once a second.
async fn wait_showing(progress: &Progress, seconds: f64, message: String) {
    progress.stage((seconds.ceil() as u64).max(1), message);
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    let mut tick = 0;
    while tokio::time::Instant::now() < until {
        let next = (tokio::time::Instant::now() + Duration::from_secs(1)).min(until);
        tokio::time::sleep_until(next).await;
        tick += 1;
        progress.set(tick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        assert_eq!(shares(10, 3), [4, 3, 3]);
        assert_eq!(shares(2, 3), [1, 1, 0]);
        assert_eq!(shares(19_001, 2).iter().sum::<usize>(), 19_001);
    }
}
