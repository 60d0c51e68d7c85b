//! Crier nodes as one cluster over Redis.
//!
//! [`RedisBroker`] is the bus between nodes: the `Broker` and `PresenceStore` seams of
//! `crier-server` over one Redis. It carries broadcasts on one Redis channel per topic
//! with local subscribers, keeps presence cluster-wide (a hash per topic, changes on the
//! topic's channel), and holds the node's name in a lease while the node lives: two
//! nodes never run under one name, and a dead node's presences are cleared by the others
//! within about 8 s.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use crier_server::{Config, Node};
//!
//! let url = "redis://127.0.0.1:6379";
//! let bus = crier_cluster::RedisBroker::connect(url, "node-a").await?;
//! let node = Node::builder(Config::new("a-long-random-secret"))
//!     .broker(bus.clone())
//!     .presence_store(bus)
//!     .build()?;
//! # let _ = node; Ok(()) }
//! ```
//!
//! History and change capture are per node for now (docs/CLUSTER.md).

mod broker;
mod envelope;
mod history;
mod liveness;
mod outbox;
mod presence;
mod publisher;
mod relay;
mod subscriber;

pub use broker::RedisBroker;
pub use relay::RedisRelay;

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL cannot be used.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// Redis refused the credentials.
    #[error("Redis refused the credentials: {0}")]
    Auth(String),
    /// Redis could not be reached or failed.
    #[error("Redis: {0}")]
    Redis(String),
    /// Another live node holds this name.
    #[error(
        "another node runs as {0:?}; give this one another --node-name (a crashed node's name frees itself within 6 s)"
    )]
    NameTaken(String),
    /// The node name cannot be used.
    #[error("invalid node name {0:?}: use 1 to 200 bytes, without `|`")]
    InvalidName(String),
}

/// Checks a node name: it is written into Redis field names (`<node>|<connection>`) and
/// frame headers (at most 255 bytes).
pub(crate) fn check_name(node: &str) -> Result<(), ClusterError> {
    if node.is_empty() || node.len() > 200 || node.contains('|') {
        return Err(ClusterError::InvalidName(node.to_owned()));
    }
    Ok(())
}

/// Opens a client for `url` and proves Redis answers it with these credentials, at once
/// (a reconnecting connection would keep retrying a refusal instead of reporting it).
pub(crate) async fn reach(url: &str) -> Result<redis::Client, ClusterError> {
    let client = redis::Client::open(url).map_err(|err| ClusterError::Url(err.to_string()))?;
    let mut probe = client
        .get_multiplexed_async_connection()
        .await
        .map_err(ClusterError::from_redis)?;
    let _: String = redis::cmd("PING")
        .query_async(&mut probe)
        .await
        .map_err(ClusterError::from_redis)?;
    Ok(client)
}

impl ClusterError {
    pub(crate) fn from_redis(err: redis::RedisError) -> Self {
        let text = err.to_string();
        let refused = err.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(err.code(), Some("NOAUTH" | "WRONGPASS"));
        if refused {
            ClusterError::Auth(text)
        } else {
            ClusterError::Redis(text)
        }
    }
}
