//! Prometheus metrics, one registry per node.
//!
//! `prometheus-client` (the Prometheus project's Rust client) rather than the `metrics`
//! facade: its registry is a value the node owns, not a process-global recorder, so an
//! application that embeds Crier keeps its own recorder, and two nodes in one process
//! (as in the test suite) keep separate figures.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::authz::CheckMetrics;

/// The node's metrics. Every field is a cheap atomic handle.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) connections: Gauge,
    pub(crate) channels: Gauge,
    pub(crate) messages_in: Counter,
    pub(crate) messages_out: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) slow_consumer_disconnects: Counter,
    pub(crate) connect_rejections: Counter,
    pub(crate) rate_limited: Counter,
    pub(crate) join_errors: Counter,
    pub(crate) malformed_frames: Counter,
    pub(crate) fanout_seconds: Histogram,
    pub(crate) changes_captured: Counter,
    pub(crate) changes_delivered: Counter,
    pub(crate) capture_reconnects: Counter,
    pub(crate) database_broadcasts: Counter,
    pub(crate) database_broadcasts_skipped: Counter,
    pub(crate) queued_bytes: Gauge,
    pub(crate) publisher_waits: Counter,
    pub(crate) overloaded: Counter,
    pub(crate) authorization: CheckMetrics,
    pub(crate) history: HistoryMetrics,
    pub(crate) cluster: ClusterMetrics,
}

/// What the cluster bus reports (set at each scrape; zero on a node of its own).
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterMetrics {
    connected: Gauge,
    nodes: Gauge,
    presence_entries: prometheus_client::metrics::family::Family<Vec<(String, String)>, Gauge>,
}

impl ClusterMetrics {
    /// Sets the figures from the bus's status.
    pub(crate) fn report(&self, status: &crate::broker::BusStatus) {
        self.connected.set(i64::from(status.connected));
        self.nodes.set(status.nodes.len() as i64);
        // A node that left must not linger with its last count.
        self.presence_entries.clear();
        for node in &status.nodes {
            self.presence_entries
                .get_or_create(&vec![("node".to_owned(), node.name.clone())])
                .set(i64::try_from(node.presence_entries).unwrap_or(i64::MAX));
        }
    }
}

/// The history's totals (set at each scrape and by the node's sweep).
#[derive(Debug, Clone, Default)]
pub(crate) struct HistoryMetrics {
    pub(crate) topics: Gauge,
    pub(crate) messages: Gauge,
    pub(crate) bytes: Gauge,
    pub(crate) evictions: Counter,
    /// Evictions already added to the counter.
    reported: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl HistoryMetrics {
    /// Sets the figures from the store's totals.
    pub(crate) fn report(&self, stats: crate::history::HistoryStats) {
        use std::sync::atomic::Ordering;
        self.topics.set(stats.topics as i64);
        self.messages.set(stats.messages as i64);
        self.bytes.set(stats.bytes as i64);
        let before = self.reported.fetch_max(stats.evicted, Ordering::Relaxed);
        self.evictions.inc_by(stats.evicted.saturating_sub(before));
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("crier");
        let connections = Gauge::default();
        let channels = Gauge::default();
        let messages_in = Counter::default();
        let messages_out = Counter::default();
        let bytes_out = Counter::default();
        let slow_consumer_disconnects = Counter::default();
        let connect_rejections = Counter::default();
        let rate_limited = Counter::default();
        let join_errors = Counter::default();
        let malformed_frames = Counter::default();
        // 1 us .. ~16 s: a fan-out to one socket takes microseconds, to 20k a few ms.
        let fanout_seconds = Histogram::new(exponential_buckets(1e-6, 4.0, 13));
        let changes_captured = Counter::default();
        let changes_delivered = Counter::default();
        let capture_reconnects = Counter::default();
        let database_broadcasts = Counter::default();
        let database_broadcasts_skipped = Counter::default();
        let queued_bytes = Gauge::default();
        let publisher_waits = Counter::default();
        let overloaded = Counter::default();

        registry.register(
            "connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        registry.register(
            "channels",
            "Joined channels across all connections",
            channels.clone(),
        );
        registry.register(
            "messages_in",
            "Frames received from clients",
            messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Frames written to clients",
            messages_out.clone(),
        );
        registry.register(
            "bytes_out",
            "Bytes of frames written to clients",
            bytes_out.clone(),
        );
        registry.register(
            "slow_consumer_disconnects",
            "Clients disconnected because their queue went over its byte budget or their socket took no data for the slow-consumer timeout",
            slow_consumer_disconnects.clone(),
        );
        registry.register(
            "connect_rejections",
            "WebSocket connects refused (auth, limits, version)",
            connect_rejections.clone(),
        );
        registry.register(
            "rate_limited",
            "Joins, messages and presence pushes refused by the rate limits (sockets and the REST API)",
            rate_limited.clone(),
        );
        registry.register("join_errors", "Channel joins refused", join_errors.clone());
        registry.register(
            "malformed_frames",
            "Frames from clients that could not be decoded",
            malformed_frames.clone(),
        );
        registry.register(
            "fanout_duration_seconds",
            "Time to queue one message to every local subscriber of its topic",
            fanout_seconds.clone(),
        );
        registry.register(
            "postgres_changes_captured",
            "Row changes read from the replication slot",
            changes_captured.clone(),
        );
        registry.register(
            "postgres_changes_delivered",
            "Row changes queued to subscribers (one per subscriber)",
            changes_delivered.clone(),
        );
        registry.register(
            "postgres_changes_reconnects",
            "Times change capture stopped on an error and reconnected",
            capture_reconnects.clone(),
        );
        registry.register(
            "database_broadcasts",
            "Broadcasts from the database (realtime.messages rows) published to their topic",
            database_broadcasts.clone(),
        );
        registry.register(
            "database_broadcasts_skipped",
            "realtime.messages rows not delivered: over the payload limit, or unreadable",
            database_broadcasts_skipped.clone(),
        );
        let history = HistoryMetrics::default();
        registry.register(
            "history_topics",
            "Topics with a history stream",
            history.topics.clone(),
        );
        registry.register(
            "history_messages",
            "Broadcasts kept in history",
            history.messages.clone(),
        );
        registry.register(
            "history_bytes",
            "Bytes of the broadcasts kept in history",
            history.bytes.clone(),
        );
        registry.register(
            "history_evictions",
            "Broadcasts dropped from history by its count, age or byte bounds",
            history.evictions.clone(),
        );
        registry.register(
            "queued_bytes",
            "Bytes held by outbound queues: each shared frame once, plus queue slots",
            queued_bytes.clone(),
        );
        registry.register(
            "publisher_waits",
            "Times a publisher waited for subscribers' queues to have room",
            publisher_waits.clone(),
        );
        registry.register(
            "overloaded",
            "Publishes refused because the node's queues were over their byte budget",
            overloaded.clone(),
        );
        let cluster = ClusterMetrics::default();
        registry.register(
            "cluster_connected",
            "1 while the cluster bus (Redis) is reachable; 0 when it is not, or on a node of its own",
            cluster.connected.clone(),
        );
        registry.register(
            "cluster_nodes",
            "Live nodes of the cluster, this one included (0 on a node of its own)",
            cluster.nodes.clone(),
        );
        registry.register(
            "cluster_presence_entries",
            "Presence entries tracked by each live node's connections",
            cluster.presence_entries.clone(),
        );
        let authorization = CheckMetrics::new();
        registry.register(
            "authorization_checks",
            "Private-channel authorization checks asked for (joins, first writes, token refreshes, REST)",
            authorization.asked.clone(),
        );
        registry.register(
            "authorization_queries",
            "Authorization checks that reached the authorizer (identical checks in flight share one)",
            authorization.queries.clone(),
        );
        registry.register(
            "authorization_failures",
            "Authorization checks without an answer: a failing policy, the database unavailable or late",
            authorization.failed.clone(),
        );
        registry.register(
            "authorization_check_duration_seconds",
            "Time from asking to answer of each authorization query, waiting for a connection included",
            authorization.seconds.clone(),
        );
        Metrics {
            registry,
            authorization,
            cluster,
            connections,
            channels,
            messages_in,
            messages_out,
            bytes_out,
            slow_consumer_disconnects,
            connect_rejections,
            rate_limited,
            join_errors,
            malformed_frames,
            fanout_seconds,
            changes_captured,
            changes_delivered,
            capture_reconnects,
            database_broadcasts,
            database_broadcasts_skipped,
            history,
            queued_bytes,
            publisher_waits,
            overloaded,
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
