//! B2, the Supabase broadcast benchmark scaled to one machine: each virtual user holds
//! one connection with an echo topic of its own and a topic shared by a group of
//! [`GROUP_SIZE`], and publishes to each every `period_ms`. Users are added step by step
//! until latency or delivery breaks a limit.

use std::time::Duration;

use super::{Measured, Options, Window, gather, joined, shares, wait_showing};
use crate::BenchError;
use crate::progress::Progress;
use crate::report::{Rate, Run};
use crate::worker::{Command, GROUP_SIZE};

/// How a virtual-user ramp is shaped.
#[derive(Debug, Clone)]
pub struct VuOptions {
    /// Users in the first step (rounded up to whole groups).
    pub start: usize,
    /// Users added per step.
    pub step: usize,
    /// The last step's users.
    pub max: usize,
    /// Measured seconds per step.
    pub seconds: f64,
    /// Seconds between a step's joins and its window.
    pub warmup: f64,
    /// After a window, how long its last deliveries may take to count.
    pub drain: f64,
    /// Payload object size, in bytes.
    pub payload_bytes: usize,
    /// Each user publishes to each of its topics every this many milliseconds.
    pub period_ms: u64,
    /// Stop when p99 exceeds this.
    pub p99_limit_ms: f64,
    /// Stop when fewer than this share of deliveries arrive.
    pub min_delivery_ratio: f64,
}

/// Runs the ramp; one `B2` run per step.
pub async fn vus(options: &Options, shape: &VuOptions) -> Result<Vec<Run>, BenchError> {
    let progress = Progress::new(options.progress);
    let server = options.target.kind;
    let mut pool = options.pool(shape.max.div_ceil(GROUP_SIZE) * GROUP_SIZE)?;
    let rate = Rate::PerSec(1000.0 / shape.period_ms.max(1) as f64);
    let (mut groups, mut users, mut failed_total) = (0usize, 0usize, 0usize);
    let mut target = shape.start.max(1);
    let mut epoch = 0;
    let mut runs = Vec::new();
    loop {
        let add = target.div_ceil(GROUP_SIZE).saturating_sub(groups);
        let mut first_group = groups;
        let commands = shares(add, pool.workers.len())
            .into_iter()
            .map(|count| {
                let command = Command::AddVus {
                    first_group,
                    groups: count,
                    payload_bytes: shape.payload_bytes,
                    period_ms: shape.period_ms,
                };
                first_group += count;
                command
            })
            .collect();
        groups += add;
        progress.stage(
            (add * GROUP_SIZE) as u64,
            format!("{server}: adding users to reach {target}"),
        );
        let answers = pool
            .each(commands, &mut |j, f| progress.set((j + f) as u64))
            .await?;
        let (joined_now, failed, problems, join_secs) = joined(&answers);
        users += joined_now;
        failed_total += failed;
        if users == 0 {
            pool.quit().await;
            progress.finish();
            return Err(BenchError::NoneJoined(
                problems.first().cloned().unwrap_or_default(),
            ));
        }

        epoch += 1;
        pool.all(Command::Epoch { epoch }).await?;
        let label = format!("{server}: {users} users");
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
        // Users keep publishing: their traffic is the load. Give the window's last
        // messages their time, then count.
        tokio::time::sleep(Duration::from_secs_f64(shape.drain)).await;
        let gathered = gather(&mut pool, measured).await?;
        let mut run = Measured {
            workload: "B2",
            subscribers: users as u64,
            rate,
            payload_bytes: shape.payload_bytes,
            gathered,
            seconds,
            server_cpu_pct,
            tool_cpu_pct,
            peer_cpu_pct,
            connect_join_per_sec: joined_now as f64 / join_secs.max(1e-9),
            failed_joins: failed_total as u64,
            problems,
        }
        .into_run(options);
        run.stopped_because = if run.p99_ms > shape.p99_limit_ms {
            Some("p99".into())
        } else if run.delivery_ratio < shape.min_delivery_ratio {
            Some("delivery".into())
        } else if target >= shape.max {
            Some("max".into())
        } else {
            None
        };
        progress.println(format!(
            "{label}: {:.0} msgs/s delivered, {:.3}% delivered, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
            run.deliveries_per_sec,
            run.delivery_ratio * 100.0,
            run.p50_ms,
            run.p95_ms,
            run.p99_ms
        ));
        let stop = run.stopped_because.is_some();
        runs.push(run);
        if stop {
            break;
        }
        target = (target + shape.step.max(1)).min(shape.max);
    }
    progress.finish();
    pool.quit().await;
    Ok(runs)
}
