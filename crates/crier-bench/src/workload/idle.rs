//! Memory: N idle connections, each subscribed to one of a few topics; the server's RSS
//! growth per connection.

use std::time::Duration;

use super::fanout::memory_run;
use super::{Options, joined, shares};
use crate::BenchError;
use crate::procfs;
use crate::progress::Progress;
use crate::report::Run;
use crate::worker::{Command, TopicPlan};

/// How an idle run is shaped.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// Connections to open.
    pub connections: usize,
    /// Spread them over this many topics.
    pub topics: usize,
    /// Seconds between the last join and the memory reading.
    pub settle: f64,
}

/// Opens the connections, reads the server's memory, closes them.
pub async fn idle(options: &Options, shape: &IdleOptions) -> Result<Vec<Run>, BenchError> {
    let progress = Progress::new(options.progress);
    let rss_before = options.server_pid.and_then(procfs::rss_bytes);
    let mut pool = options.pool(shape.connections)?;
    let mut first = 0;
    let commands = shares(shape.connections, pool.workers.len())
        .into_iter()
        .map(|count| {
            let command = Command::Subscribe {
                count,
                topics: TopicPlan::Spread {
                    prefix: "idle".into(),
                    count: shape.topics,
                },
                first,
            };
            first += count;
            command
        })
        .collect();
    progress.stage(shape.connections as u64, "joining idle connections");
    let answers = pool
        .each(commands, &mut |j, f| progress.set((j + f) as u64))
        .await?;
    let (connections, failed, problems, seconds) = joined(&answers);
    tokio::time::sleep(Duration::from_secs_f64(shape.settle)).await;
    let rss_idle = options.server_pid.and_then(procfs::rss_bytes);
    progress.finish();
    pool.quit().await;
    if connections == 0 {
        return Err(BenchError::NoneJoined(
            problems.first().cloned().unwrap_or_default(),
        ));
    }
    Ok(vec![memory_run(
        options,
        connections,
        rss_before,
        rss_idle,
        connections as f64 / seconds.max(1e-9),
        failed,
        &problems,
    )])
}
