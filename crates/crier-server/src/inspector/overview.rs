//! The figures of the overview: each second's [`Sample`] (rates, for the chart) and the
//! whole [`Overview`] pushed to the page.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::changes::CaptureStatus;
use crate::node::Shared;

/// One second of the node's activity.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    /// When, in unix seconds.
    pub(crate) t: u64,
    /// Frames received from clients per second.
    pub(crate) messages_in: f64,
    /// Frames written to clients per second.
    pub(crate) messages_out: f64,
    /// Bytes written to clients per second.
    pub(crate) bytes_out: f64,
    /// Row changes captured per second.
    pub(crate) changes: f64,
    /// Open connections.
    pub(crate) connections: u64,
}

/// Turns the node's counters into rates: remembers them from one sample to the next.
#[derive(Debug, Default)]
pub(super) struct Meter {
    last: Option<(Instant, [u64; 4])>,
}

impl Meter {
    /// This second's sample, and the seconds since the previous one.
    pub(super) fn sample(&mut self, shared: &Shared) -> (Sample, f64) {
        let metrics = &shared.metrics;
        let now = Instant::now();
        let counts = [
            metrics.messages_in.get(),
            metrics.messages_out.get(),
            metrics.bytes_out.get(),
            metrics.changes_captured.get(),
        ];
        let (seconds, rates) = match self.last {
            Some((at, before)) => {
                let seconds = now.duration_since(at).as_secs_f64().max(1e-3);
                let rate = |i: usize| counts[i].saturating_sub(before[i]) as f64 / seconds;
                (seconds, [rate(0), rate(1), rate(2), rate(3)])
            }
            None => (1.0, [0.0; 4]),
        };
        self.last = Some((now, counts));
        let sample = Sample {
            t: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            messages_in: rates[0],
            messages_out: rates[1],
            bytes_out: rates[2],
            changes: rates[3],
            connections: shared.connections.current() as u64,
        };
        (sample, seconds)
    }
}

/// Everything the overview shows (docs/INSPECTOR.md says what each figure means).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Overview {
    /// The crate version of this server.
    version: &'static str,
    /// Seconds since the node started.
    uptime_seconds: u64,
    /// This second's rates and connection count.
    sample: Sample,
    /// Joined channels across all connections.
    channels: i64,
    /// Topics with a subscriber on this node.
    topics: usize,
    /// Bytes held by outbound queues.
    queued_bytes: usize,
    /// Totals since the start.
    totals: Totals,
    history: Option<HistoryFigures>,
    postgres_changes: Option<CaptureStatus>,
    cluster: Option<ClusterFigures>,
}

#[derive(Debug, Clone, Serialize)]
struct Totals {
    messages_in: u64,
    messages_out: u64,
    slow_consumer_disconnects: u64,
    rate_limited: u64,
    connect_rejections: u64,
    join_errors: u64,
    malformed_frames: u64,
    publisher_waits: u64,
    overloaded: u64,
}

#[derive(Debug, Clone, Serialize)]
struct HistoryFigures {
    topics: usize,
    messages: usize,
    bytes: usize,
    evicted: u64,
}

#[derive(Debug, Clone, Serialize)]
struct ClusterFigures {
    /// Whether the bus (Redis) is reachable now.
    connected: bool,
    /// The live nodes (each holds its lease), with their load and when each last
    /// renewed its lease.
    nodes: Vec<NodeFigures>,
}

#[derive(Debug, Clone, Serialize)]
struct NodeFigures {
    name: String,
    presence_entries: u64,
    connections: u64,
    renewed_ms_ago: Option<u64>,
}

impl Overview {
    /// The overview of the node now, with this second's sample.
    pub(crate) fn of(shared: &Shared, sample: Sample) -> Overview {
        let metrics = &shared.metrics;
        let totals = Totals {
            messages_in: metrics.messages_in.get(),
            messages_out: metrics.messages_out.get(),
            slow_consumer_disconnects: metrics.slow_consumer_disconnects.get(),
            rate_limited: metrics.rate_limited.get(),
            connect_rejections: metrics.connect_rejections.get(),
            join_errors: metrics.join_errors.get(),
            malformed_frames: metrics.malformed_frames.get(),
            publisher_waits: metrics.publisher_waits.get(),
            overloaded: metrics.overloaded.get(),
        };
        let history = shared.history.as_ref().map(|store| {
            let stats = store.stats();
            HistoryFigures {
                topics: stats.topics,
                messages: stats.messages,
                bytes: stats.bytes,
                evicted: stats.evicted,
            }
        });
        let cluster = shared.broker.status().map(|status| ClusterFigures {
            connected: status.connected,
            nodes: status
                .nodes
                .into_iter()
                .map(|node| NodeFigures {
                    name: node.name,
                    presence_entries: node.presence_entries,
                    connections: node.connections,
                    renewed_ms_ago: node.renewed_ms_ago,
                })
                .collect(),
        });
        Overview {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: shared.started.elapsed().as_secs(),
            sample,
            channels: metrics.channels.get(),
            topics: shared.registry.len(),
            queued_bytes: shared.ledger.queued(),
            totals,
            history,
            postgres_changes: shared.changes.as_ref().map(|changes| changes.status()),
            cluster,
        }
    }
}
