//! [`NodeBuilder`]: a [`Node`] from a [`Config`] and its seams (broker, presence store,
//! clock, channel authorizer), with every background task it needs started.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Node, Shared};
use crate::auth::{JwksSource, JwtVerifier, keep_jwks_fresh, read_file};
use crate::authz::{ChannelAuthorizer, Checks, PgAuthorizer};
use crate::broker::{Broker, LocalDelivery, MemoryBus};
use crate::changes::{BroadcastSink, ChangeMetrics, PostgresChanges};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::flow::Ledger;
use crate::history::{HistoryStore, MemoryHistory};
use crate::hooks::{ConnectionInfo, Hooks};
use crate::limits::{ConnectionLimiter, TenantCounters};
use crate::metrics::Metrics;
use crate::presence::{MemoryPresence, PresenceStore};
use crate::registry::Registry;

/// Builds a [`Node`] with hooks.
#[derive(Debug)]
pub struct NodeBuilder {
    config: Config,
    hooks: Hooks,
    broker: Option<Arc<dyn Broker>>,
    presence: Option<Arc<dyn PresenceStore>>,
    relay: Option<Arc<dyn crate::changes::ChangeRelay>>,
    clock: Option<Arc<dyn Clock>>,
    authorizer: Option<Arc<dyn ChannelAuthorizer>>,
}

impl NodeBuilder {
    /// A builder with no hooks and the default seams.
    pub(super) fn new(config: Config) -> Self {
        NodeBuilder {
            config,
            hooks: Hooks::default(),
            broker: None,
            presence: None,
            relay: None,
            clock: None,
            authorizer: None,
        }
    }

    /// Calls `hook` on the connection's task once a WebSocket connection is accepted.
    pub fn on_connect(mut self, hook: impl Fn(&ConnectionInfo) + Send + Sync + 'static) -> Self {
        self.hooks.on_connect.push(Arc::new(hook));
        self
    }

    /// Calls `hook` once a WebSocket connection has closed and left all its channels.
    pub fn on_disconnect(mut self, hook: impl Fn(&ConnectionInfo) + Send + Sync + 'static) -> Self {
        self.hooks.on_disconnect.push(Arc::new(hook));
        self
    }

    /// Carries broadcasts between this node and others through `broker` (for example
    /// nodes in one process sharing a [`MemoryBus`]). Without one, the node has a bus of
    /// its own.
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Shares the replication slot with the other nodes of a cluster through `relay`: one
    /// node streams the slot and appends what it captures to the relay, the others read
    /// it (`changes::relay`). Give every node the same `--slot`. Without a relay the node
    /// streams its slot alone.
    pub fn change_relay(mut self, relay: Arc<dyn crate::changes::ChangeRelay>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Keeps presence in `store` (without one, in this node's memory).
    pub fn presence_store(mut self, store: Arc<dyn PresenceStore>) -> Self {
        self.presence = Some(store);
        self
    }

    /// Reads the wall time (for token claims) from `clock` instead of the system's; a
    /// [`crate::clock::TokioClock`] lets tests on paused time see tokens expire.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Authorizes private channels with `authorizer` instead of the database of
    /// [`Config::authorization`](crate::AuthorizationConfig) (for example an
    /// [`FnAuthorizer`](crate::authz::FnAuthorizer), with no database at all).
    pub fn channel_authorizer(mut self, authorizer: Arc<dyn ChannelAuthorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// Builds the node, or says which setting is unusable.
    pub fn build(self) -> Result<Node, ConfigError> {
        let NodeBuilder {
            config,
            hooks,
            broker,
            presence,
            relay,
            clock,
            authorizer,
        } = self;
        let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
        let presence = presence.unwrap_or_else(|| Arc::new(MemoryPresence));
        let broker = broker.unwrap_or_else(|| MemoryBus::new().broker());
        config.validate()?;
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let ledger = Ledger::new(config.flow.max_queued_bytes);
        let changes = match &config.postgres_changes {
            None => None,
            Some(changes) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(ConfigError::NoRuntime);
                }
                Some(PostgresChanges::start(
                    changes.clone(),
                    config.flow.clone(),
                    Arc::clone(&ledger),
                    ChangeMetrics::of(&metrics),
                    shutdown.clone(),
                    tasks.clone(),
                    relay,
                ))
            }
        };
        let authorizer = match (authorizer, &config.authorization.database_url) {
            (Some(authorizer), _) => Some(authorizer),
            (None, None) => None,
            (None, Some(url)) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(ConfigError::NoRuntime);
                }
                let pg = Arc::new(PgAuthorizer::new(url, config.authorization.pool_size));
                let maintained = Arc::clone(&pg);
                let stop = shutdown.clone();
                tasks.spawn(async move { maintained.maintain(stop).await });
                Some(pg as Arc<dyn ChannelAuthorizer>)
            }
        };
        // Database broadcasts without private channels: their partitions still need
        // keeping (with private channels, the authorizer above keeps them).
        if config.authorization.database_url.is_none()
            && let Some(changes) = config
                .postgres_changes
                .as_ref()
                .filter(|changes| changes.database_broadcasts)
        {
            let keeper = PgAuthorizer::new(&changes.database_url, 1);
            let stop = shutdown.clone();
            tasks.spawn(async move { keeper.maintain(stop).await });
        }
        let checks = authorizer.map(|authorizer| {
            Checks::new(
                authorizer,
                config.authorization.pool_size,
                config.authorization.check_timeout,
                metrics.authorization.clone(),
            )
        });
        let secrets = [
            config.jwt_secret.as_str(),
            config.jwt_secret_next.as_deref().unwrap_or_default(),
        ];
        let verifier = JwtVerifier::with_secrets(&secrets);
        if let Some(source) = &config.jwks {
            match source {
                JwksSource::File(path) => verifier.set_jwks(read_file(path)?),
                // Until the first fetch, connects that need it wait for it.
                JwksSource::Url(url) => {
                    verifier.set_jwks_problem(Some(format!("{url} has not been fetched yet")));
                }
            }
            match tokio::runtime::Handle::try_current() {
                Ok(_) => {
                    tasks.spawn(keep_jwks_fresh(
                        verifier.clone(),
                        source.clone(),
                        shutdown.clone(),
                    ));
                }
                // A file read once serves without a runtime; a URL needs one.
                Err(_) if matches!(source, JwksSource::File(_)) => {}
                Err(_) => return Err(ConfigError::NoRuntime),
            }
        }
        // With history on, a bus that keeps one for all nodes numbers the broadcasts,
        // and this node's store is its copy of the recent part.
        let shared_history = (config.history.size > 0)
            .then(|| broker.shared_history(&config.history))
            .flatten();
        let history = (config.history.size > 0).then(|| {
            let store: Arc<dyn HistoryStore> = match shared_history {
                Some(_) => Arc::new(MemoryHistory::copy_of_shared(config.history.clone())),
                None => Arc::new(MemoryHistory::new(config.history.clone())),
            };
            if tokio::runtime::Handle::try_current().is_ok() {
                tasks.spawn(keep_history(
                    Arc::clone(&store),
                    metrics.history.clone(),
                    shutdown.clone(),
                ));
            }
            store
        });
        let inspector = config
            .inspector
            .enabled
            .then(|| Arc::new(crate::inspector::Inspector::default()));
        let shared = Arc::new_cyclic(|shared: &std::sync::Weak<Shared>| {
            let delivery: std::sync::Weak<dyn LocalDelivery> = shared.clone();
            broker.attach(delivery);
            let sink: std::sync::Weak<dyn crate::presence::PresenceSink> = shared.clone();
            presence.attach(sink);
            if let Some(changes) = &changes {
                let sink: std::sync::Weak<dyn BroadcastSink> = shared.clone();
                changes.attach(sink);
            }
            Shared {
                verifier,
                registry: Registry::new(Arc::clone(&broker), presence),
                counters: TenantCounters::new(&config.limits),
                connections: ConnectionLimiter::new(config.limits.max_connections),
                metrics,
                hooks,
                shutdown,
                sockets: DashMap::new(),
                ledger,
                tasks,
                changes,
                next_conn_id: AtomicU64::new(1),
                ref_nonce: rand::random(),
                next_ref: AtomicU64::new(1),
                broker,
                history,
                shared_history,
                clock,
                checks,
                inspector,
                started: std::time::Instant::now(),
                config,
            }
        });
        // Started once the node is whole: the task's first look must find it.
        if let Some(inspector) = &shared.inspector
            && tokio::runtime::Handle::try_current().is_ok()
        {
            shared.tasks.spawn(crate::inspector::run(
                Arc::clone(inspector),
                Arc::downgrade(&shared),
            ));
        }
        Ok(Node { shared })
    }
}

/// Sweeps the history every few seconds (what outlived the retention goes, and streams
/// left empty) and reports its totals, until `shutdown`.
async fn keep_history(
    store: Arc<dyn HistoryStore>,
    metrics: crate::metrics::HistoryMetrics,
    shutdown: CancellationToken,
) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);
    let mut evicted = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        store.sweep();
        let stats = store.stats();
        metrics.topics.set(stats.topics as i64);
        metrics.messages.set(stats.messages as i64);
        metrics.bytes.set(stats.bytes as i64);
        metrics
            .evictions
            .inc_by(stats.evicted.saturating_sub(evicted));
        evicted = stats.evicted;
    }
}
