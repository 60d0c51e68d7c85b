//! B1: one topic, N subscribers, one publisher; every (payload size, rate) pair is a
//! phase on the same connections.

use std::time::{Duration, Instant};

use super::{Measured, Options, Window, gather, joined, shares, wait_showing};
use crate::BenchError;
use crate::procfs;
use crate::progress::Progress;
use crate::report::{Rate, Run};
use crate::worker::{Command, PublishPlan, TopicPlan};

/// The topic every B1 subscriber joins.
pub(super) const TOPIC: &str = "bench";

/// How a fan-out run is shaped.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// Subscriber connections.
    pub subscribers: usize,
    /// Payload sizes to run, in bytes.
    pub payloads: Vec<usize>,
    /// Rates to run at each payload size.
    pub rates: Vec<Rate>,
    /// Measured seconds per phase.
    pub seconds: f64,
    /// Seconds of publishing before each measured window.
    pub warmup: f64,
    /// After a window, wait at most this long for its last deliveries.
    pub drain: f64,
    /// Max-rate phases keep this many messages per subscriber in flight.
    pub window: u64,
    /// Seconds between the last join and the idle memory reading.
    pub settle: f64,
}

/// Runs B1. Returns one `memory` run (idle RSS per joined subscriber) and one `B1` run
/// per phase.
pub async fn fanout(options: &Options, shape: &FanoutOptions) -> Result<Vec<Run>, BenchError> {
    let progress = Progress::new(options.progress);
    let server = options.target.kind;
    let rss_before = options.server_pid.and_then(procfs::rss_bytes);
    let mut pool = options.pool(shape.subscribers + 1)?;
    let mut first = 0;
    let commands = shares(shape.subscribers, pool.workers.len())
        .into_iter()
        .map(|count| {
            let command = Command::Subscribe {
                count,
                topics: TopicPlan::One {
                    topic: TOPIC.into(),
                },
                first,
            };
            first += count;
            command
        })
        .collect();
    progress.stage(
        shape.subscribers as u64,
        format!("{server}: joining subscribers"),
    );
    let answers = pool
        .each(commands, &mut |j, f| progress.set((j + f) as u64))
        .await?;
    let (subscribers, failed, join_problems, join_secs) = joined(&answers);
    if subscribers == 0 {
        pool.quit().await;
        progress.finish();
        return Err(BenchError::NoneJoined(
            join_problems.first().cloned().unwrap_or_default(),
        ));
    }
    let connect_join_per_sec = subscribers as f64 / join_secs.max(1e-9);
    progress.println(format!(
        "{server}: {subscribers} subscribers joined in {join_secs:.2} s ({connect_join_per_sec:.0}/s), {failed} failed"
    ));

    // Idle memory: the server has just accepted and joined everyone; let it settle.
    tokio::time::sleep(Duration::from_secs_f64(shape.settle)).await;
    let rss_idle = options.server_pid.and_then(procfs::rss_bytes);
    let mut runs = vec![memory_run(
        options,
        subscribers,
        rss_before,
        rss_idle,
        connect_join_per_sec,
        failed,
        &join_problems,
    )];

    pool.first(Command::OpenPublisher {
        topic: TOPIC.into(),
    })
    .await?;
    let mut epoch = 0;
    for &payload_bytes in &shape.payloads {
        for &rate in &shape.rates {
            let plan = PublishPlan {
                rate: match rate {
                    Rate::PerSec(rate) => Some(rate),
                    Rate::Max => None,
                },
                payload_bytes,
                window: shape.window,
                recipients: subscribers as u64,
            };
            let label = format!("{server}: {subscribers} subs, {payload_bytes} B at {rate}/s");
            epoch += 1;
            pool.all(Command::Epoch { epoch }).await?;
            pool.first(Command::Publish { plan }).await?;
            wait_showing(&progress, shape.warmup, format!("{label}: warm-up")).await;

            epoch += 1;
            let measured = epoch;
            pool.all(Command::Epoch { epoch }).await?;
            let window = Window::open(options, &pool);
            wait_showing(&progress, shape.seconds, format!("{label}: measuring")).await;
            epoch += 1;
            pool.all(Command::Epoch { epoch }).await?;
            let (seconds, server_cpu_pct, tool_cpu_pct) = window.close(options, &pool);
            let peer_cpu_pct = window.peers(options);
            pool.first(Command::Publish {
                plan: PublishPlan::PAUSED,
            })
            .await?;

            // Wait for the window's last deliveries, but not for ones that will never come.
            let drain_until = Instant::now() + Duration::from_secs_f64(shape.drain);
            let gathered = loop {
                let gathered = gather(&mut pool, measured).await?;
                if gathered.stats.received >= gathered.stats.expected
                    || Instant::now() >= drain_until
                {
                    break gathered;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let problems = settle(&mut pool, epoch).await?;
            let run = Measured {
                workload: "B1",
                subscribers: subscribers as u64,
                rate,
                payload_bytes,
                gathered,
                seconds,
                server_cpu_pct,
                tool_cpu_pct,
                peer_cpu_pct,
                connect_join_per_sec,
                failed_joins: failed as u64,
                problems,
            }
            .into_run(options);
            progress.println(format!(
                "{label}: {:.0} deliveries/s, {:.3}% delivered, p50 {:.2} ms, p99 {:.2} ms",
                run.deliveries_per_sec,
                run.delivery_ratio * 100.0,
                run.p50_ms,
                run.p99_ms
            ));
            runs.push(run);
        }
    }
    progress.finish();
    pool.quit().await;
    Ok(runs)
}

/// The longest a phase waits for the previous one's backlog to stop arriving.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Receipts must stay unchanged this long to count as settled.
const SETTLED_AFTER: Duration = Duration::from_millis(500);

/// Waits until messages of the current (unmeasured) `epoch` stop arriving, so that a
/// server still flushing one phase's backlog does not eat into the next phase's window.
/// Returns a note when it gave up waiting.
async fn settle(pool: &mut crate::worker::Pool, epoch: u32) -> Result<Vec<String>, BenchError> {
    let started = Instant::now();
    let mut last = (gather(pool, epoch).await?.stats.received, Instant::now());
    while started.elapsed() < SETTLE_LIMIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let received = gather(pool, epoch).await?.stats.received;
        if received != last.0 {
            last = (received, Instant::now());
        } else if last.1.elapsed() >= SETTLED_AFTER {
            return Ok(Vec::new());
        }
    }
    Ok(vec![format!(
        "the server was still delivering this phase's backlog {} s after it ended",
        SETTLE_LIMIT.as_secs()
    )])
}

/// The `memory` row: server RSS growth per idle joined connection.
pub(super) fn memory_run(
    options: &Options,
    connections: usize,
    rss_before: Option<u64>,
    rss_idle: Option<u64>,
    connect_join_per_sec: f64,
    failed: usize,
    problems: &[String],
) -> Run {
    let per_conn = match (rss_before, rss_idle) {
        (Some(before), Some(after)) if connections > 0 => {
            Some((after as f64 - before as f64) / connections as f64)
        }
        _ => None,
    };
    Run {
        workload: "memory".into(),
        server: options.target.kind.name().into(),
        subscribers: connections as u64,
        rate: Rate::PerSec(0.0),
        payload_bytes: 0,
        publishes_per_sec: 0.0,
        deliveries_per_sec: 0.0,
        delivery_ratio: 0.0,
        p50_ms: 0.0,
        p95_ms: 0.0,
        p99_ms: 0.0,
        max_ms: 0.0,
        rss_bytes: rss_idle,
        idle_rss_per_conn_bytes: per_conn,
        server_cpu_pct: None,
        server_cpu_s_per_m_deliveries: None,
        tool_cpu_pct: None,
        connect_join_per_sec,
        failed_joins: failed as u64,
        lost_connections: 0,
        seconds: 0.0,
        stopped_because: None,
        problems: problems.to_vec(),
        pgchanges: None,
        peer_cpu_pct: Default::default(),
    }
}
