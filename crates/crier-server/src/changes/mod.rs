//! Postgres changes: row changes captured from the database, matched to the channels that
//! subscribed to them, authorized by the database's row level security, and queued to
//! each subscriber like any other fan-out.
//!
//! - `subscriptions`: the bindings of each joined channel, indexed by table.
//! - `subscribe`: the checks a new subscription passes before it goes live, and the
//!   `system` message that says how they went.
//! - `capture`: the loop that streams changes from the replication slot, in batches, and
//!   moves the slot only after a batch has been queued to its subscribers.
//! - `deliver`: one batch rendered, filtered, authorized and queued.
//! - `broadcasts`: broadcasts from the database (`realtime.messages` rows), published
//!   through the node's broadcast funnel from the same loop.
//! - `cache`: table facts and column privileges, remembered for a second.
//!
//! The session talks to this module through [`PostgresChanges`], and only at join, token
//! refresh and leave; the capture loop never touches a socket, only its outbound queue.

mod broadcasts;
mod cache;
mod capture;
mod database;
mod deliver;
mod follow;
#[cfg(test)]
mod memory;
pub mod relay;
mod source;
mod subscribe;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use crier_postgres::replication::CaptureSettings;
use crier_protocol::events::{EXTENSION_POSTGRES_CHANGES, PHX_REPLY, SYSTEM};
use crier_protocol::serializer::Envelope;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use broadcasts::{BroadcastSink, Skipped};
pub use relay::{ChangeRelay, MemoryRelay, RelayCursor, RelayError};
pub(crate) use subscriptions::{Binding, Identity, SubscriptionId};

use self::database::{ChangeDatabase, PgDatabase};
use self::source::{ChangeSource, PgSource};
use self::subscriptions::{Index, Subscription};
use crate::config::{FlowConfig, PostgresChangesConfig};
use crate::fanout::encode_one;
use crate::flow::Ledger;
use crate::metrics::Metrics;
use crate::outbound::{ConnHandle, Outbound};

/// The node's postgres changes: the subscriptions and the capture loop feeding them.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct PostgresChanges {
    inner: Arc<Feed>,
}

/// What the capture loop, the subscription checks and the sessions share.
#[derive(Debug)]
struct Feed {
    config: PostgresChangesConfig,
    index: Index,
    /// Whether the replication slot exists (set by the capture loop once it has made or
    /// found it). Every transaction that commits after that is kept for capture, so a
    /// subscription is confirmed only then: before, a row written right after the
    /// confirmation could commit before the slot's start and never be captured.
    slot_ready: tokio::sync::watch::Sender<bool>,
    /// Whether broadcasts from the database are streaming now (the slot streams with
    /// their publication). `config.broadcast.replication_ready` waits for it.
    broadcasts_live: tokio::sync::watch::Sender<bool>,
    /// Where database broadcasts are published (the node, attached once it is built).
    sink: OnceLock<Weak<dyn BroadcastSink>>,
    /// Where changes come from (the replication slot).
    source: Arc<dyn ChangeSource>,
    /// Table facts and row level security checks.
    database: Arc<dyn ChangeDatabase>,
    next_id: AtomicU64,
    /// The commit position of the last transaction delivered: one that comes again is
    /// skipped (see `capture`).
    done_lsn: AtomicU64,
    /// Flow control: how long to wait for subscribers' queues after a batch.
    flow: FlowConfig,
    /// The node's count of queued bytes, to wait on when it is over budget.
    ledger: Arc<Ledger>,
    metrics: ChangeMetrics,
    /// Where capture stands, for the inspector.
    status: CaptureState,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Where the capture loop stands, as it last said (see [`CaptureStatus`]).
#[derive(Debug, Default)]
struct CaptureState {
    streaming: std::sync::atomic::AtomicBool,
    /// What the streams say: the database's end of WAL, and whether this node follows.
    gauges: Arc<source::StreamGauges>,
    /// The last position acknowledged to the slot.
    acked_lsn: AtomicU64,
    /// The last delivered transaction: its commit time and when it was delivered (unix
    /// microseconds).
    last_commit_micros: AtomicU64,
    last_delivered_micros: AtomicU64,
}

/// What the inspector shows of postgres changes capture.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CaptureStatus {
    /// The replication slot's name.
    pub(crate) slot: String,
    /// `streaming` (this node reads the slot), `following` (another node of the cluster
    /// does, and relays), or `connecting` (neither yet, or reconnecting after an error).
    pub(crate) state: &'static str,
    /// WAL bytes the slot has not moved past: the server's end of WAL less the last
    /// position acknowledged. `None` while unknown (not streaming the slot here).
    pub(crate) lag_bytes: Option<u64>,
    /// From commit to delivery of the last transaction delivered, in seconds.
    pub(crate) lag_seconds: Option<f64>,
    /// Row changes captured since the start.
    pub(crate) captured: u64,
    /// Times capture stopped on an error and reconnected.
    pub(crate) reconnects: u64,
}

/// Where a feed's changes come from and who answers its questions about them.
struct Backends {
    source: Arc<dyn ChangeSource>,
    database: Arc<dyn ChangeDatabase>,
    /// Where the source's streams report themselves.
    gauges: Arc<source::StreamGauges>,
}

/// A join that asked to be answered only once its postgres changes are live
/// (`postgres_changes_options.wait`): what its answer needs.
#[derive(Debug)]
pub(crate) struct DeferredJoin {
    /// The join's `ref`.
    pub(crate) msg_ref: Option<String>,
    /// The `ok` reply's response (the echoed bindings).
    pub(crate) response: serde_json::Value,
    /// How long the changes may take to go live before the join is refused.
    pub(crate) timeout: std::time::Duration,
    /// Frames that follow an `ok` reply (what a resuming join missed).
    pub(crate) after_reply: Vec<crate::frame::Frame>,
}

/// The figures postgres changes report (handles into the node's registry).
#[derive(Debug, Clone)]
pub(crate) struct ChangeMetrics {
    pub(crate) captured: prometheus_client::metrics::counter::Counter,
    pub(crate) delivered: prometheus_client::metrics::counter::Counter,
    pub(crate) reconnects: prometheus_client::metrics::counter::Counter,
    pub(crate) database_broadcasts: prometheus_client::metrics::counter::Counter,
    pub(crate) database_broadcasts_skipped: prometheus_client::metrics::counter::Counter,
}

impl ChangeMetrics {
    pub(crate) fn of(metrics: &Metrics) -> Self {
        ChangeMetrics {
            captured: metrics.changes_captured.clone(),
            delivered: metrics.changes_delivered.clone(),
            reconnects: metrics.capture_reconnects.clone(),
            database_broadcasts: metrics.database_broadcasts.clone(),
            database_broadcasts_skipped: metrics.database_broadcasts_skipped.clone(),
        }
    }
}

impl PostgresChanges {
    /// Starts capturing from the configured database on the current tokio runtime; it
    /// runs until `shutdown`.
    pub(crate) fn start(
        config: PostgresChangesConfig,
        flow: FlowConfig,
        ledger: Arc<Ledger>,
        metrics: ChangeMetrics,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        relay: Option<Arc<dyn ChangeRelay>>,
    ) -> Self {
        let gauges = Arc::new(source::StreamGauges::default());
        let settings = CaptureSettings {
            database_url: config.database_url.clone(),
            publication: config.publication.clone(),
            slot: config.slot.clone(),
            database_broadcasts: config.database_broadcasts,
        };
        let slot: Arc<dyn ChangeSource> = Arc::new(PgSource::new(settings, Arc::clone(&gauges)));
        // In a cluster the nodes share the slot: one streams it, the others follow.
        let source = match relay {
            Some(relay) => Arc::new(follow::ClusterSource::new(slot, relay, Arc::clone(&gauges))),
            None => slot,
        };
        let database = Arc::new(PgDatabase::new(&config.database_url, config.pool_size));
        let backends = Backends {
            source,
            database,
            gauges,
        };
        PostgresChanges::start_with(backends, config, flow, ledger, metrics, shutdown, tasks)
    }

    /// Starts capturing from `backends`.
    fn start_with(
        backends: Backends,
        config: PostgresChangesConfig,
        flow: FlowConfig,
        ledger: Arc<Ledger>,
        metrics: ChangeMetrics,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        let feed = Arc::new(Feed {
            config,
            index: Index::default(),
            source: backends.source,
            database: backends.database,
            slot_ready: tokio::sync::watch::Sender::new(false),
            broadcasts_live: tokio::sync::watch::Sender::new(false),
            sink: OnceLock::new(),
            next_id: AtomicU64::new(1),
            done_lsn: AtomicU64::new(0),
            flow,
            ledger,
            metrics,
            status: CaptureState {
                gauges: backends.gauges,
                ..CaptureState::default()
            },
            shutdown,
            tasks,
        });
        feed.tasks.spawn(capture::run(Arc::clone(&feed)));
        PostgresChanges { inner: feed }
    }

    /// Where capture stands now.
    pub(crate) fn status(&self) -> CaptureStatus {
        let feed = &self.inner;
        let state = &feed.status;
        let following = state.gauges.following.load(Ordering::Relaxed);
        let streaming = state.streaming.load(Ordering::Relaxed);
        let acked = state.acked_lsn.load(Ordering::Relaxed);
        let end = state.gauges.server_wal_end.load(Ordering::Relaxed);
        let lag_bytes =
            (streaming && !following && end > 0 && acked > 0).then(|| end.saturating_sub(acked));
        let commit = state.last_commit_micros.load(Ordering::Relaxed);
        let delivered = state.last_delivered_micros.load(Ordering::Relaxed);
        CaptureStatus {
            slot: feed.config.slot.clone(),
            state: match (streaming, following) {
                (false, _) => "connecting",
                (true, false) => "streaming",
                (true, true) => "following",
            },
            lag_bytes,
            lag_seconds: (commit > 0)
                .then(|| delivered.saturating_sub(commit) as f64 / 1_000_000.0),
            captured: feed.metrics.captured.get(),
            reconnects: feed.metrics.reconnects.get(),
        }
    }

    /// Connects the node's broadcast funnel: database broadcasts are published to it
    /// from now on. Called once, when the node is built.
    pub(crate) fn attach(&self, sink: Weak<dyn BroadcastSink>) {
        let _ = self.inner.sink.set(sink);
    }

    /// Waits until broadcasts from the database are streaming; false if the node shuts
    /// down first or `limit` passes.
    pub(crate) async fn broadcasts_live(&self, limit: std::time::Duration) -> bool {
        let mut live = self.inner.broadcasts_live.subscribe();
        tokio::select! {
            outcome = live.wait_for(|live| *live) => outcome.is_ok(),
            () = self.inner.shutdown.cancelled() => false,
            () = tokio::time::sleep(limit) => false,
        }
    }

    /// Registers a channel's bindings. The subscription goes live once the database has
    /// confirmed the tables, filter columns and role; the channel then receives a
    /// `system` message saying so, or saying why not.
    pub(crate) fn subscribe(
        &self,
        conn: &Arc<ConnHandle>,
        topic: &str,
        join_ref: Option<String>,
        bindings: Vec<Binding>,
        identity: Identity,
        deferred: Option<DeferredJoin>,
    ) -> SubscriptionId {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let subscription = Arc::new(Subscription::new(
            id,
            Arc::clone(conn),
            Arc::from(topic),
            join_ref,
            bindings,
            identity,
        ));
        self.inner.index.insert(Arc::clone(&subscription));
        let feed = Arc::clone(&self.inner);
        self.inner.tasks.spawn(async move {
            subscribe::check_and_activate(&feed, &subscription, deferred).await;
        });
        id
    }

    /// A refreshed token: later changes are authorized as its role and claims.
    pub(crate) fn set_identity(&self, id: SubscriptionId, identity: Identity) {
        if let Some(subscription) = self.inner.index.get(id) {
            subscription.set_identity(identity);
        }
    }

    /// The channel left: no more changes for it.
    pub(crate) fn unsubscribe(&self, id: SubscriptionId) {
        self.inner.index.remove(id);
    }
}

impl Feed {
    /// Waits until the replication slot exists; false if the node shuts down first.
    async fn slot_ready(&self) -> bool {
        let mut ready = self.slot_ready.subscribe();
        tokio::select! {
            // The sender lives as long as `self`: the wait ends only when the flag is set.
            outcome = ready.wait_for(|ready| *ready) => outcome.is_ok(),
            () = self.shutdown.cancelled() => false,
        }
    }
}

/// Queues the answer to a deferred join: `ok` with its response, or an error with
/// `reason`, which also makes the socket forget the channel.
fn answer_join(subscription: &Subscription, join: &DeferredJoin, outcome: Result<(), &str>) {
    let envelope = Envelope {
        join_ref: subscription.join_ref.as_deref(),
        msg_ref: join.msg_ref.as_deref(),
        topic: &subscription.topic,
        event: PHX_REPLY,
    };
    let conn = &subscription.conn;
    match outcome {
        Ok(()) => {
            let body = json!({"status": "ok", "response": join.response});
            conn.queue
                .push_own(Outbound::Frame(encode_one(conn.vsn, &envelope, &body)));
            for frame in &join.after_reply {
                conn.queue.push_own(Outbound::Frame(frame.clone()));
            }
        }
        Err(reason) => {
            let body = json!({"status": "error", "response": {"reason": reason}});
            conn.queue.push_own(Outbound::RefuseJoin {
                topic: Arc::clone(&subscription.topic),
                join_ref: subscription.join_ref.clone(),
                reply: encode_one(conn.vsn, &envelope, &body),
            });
        }
    }
}

/// Queues a `postgres_changes` `system` message to a subscription's channel.
fn send_system(subscription: &Subscription, status: &str, message: &str) {
    let body = json!({"extension": EXTENSION_POSTGRES_CHANGES, "status": status,
                      "message": message, "channel": subscription.channel_name()});
    let envelope = Envelope {
        join_ref: subscription.join_ref.as_deref(),
        msg_ref: None,
        topic: &subscription.topic,
        event: SYSTEM,
    };
    let frame = encode_one(subscription.conn.vsn, &envelope, &body);
    // The channel's own status message: it must not be what makes a client count as slow.
    subscription.conn.queue.push_own(Outbound::Frame(frame));
}
