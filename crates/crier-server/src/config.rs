//! Server configuration: the tenant, the JWT secret, limits and socket tuning.
//!
//! Defaults are the Supabase Realtime tenant defaults (protocol.md §10), so an app that
//! works within Supabase's limits works within Crier's, and vice versa. Raise them for
//! load tests and large deployments.

use std::time::Duration;

/// Everything a [`Node`](crate::Node) needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tenant name; appears in logs and metrics. Crier serves one tenant per node.
    pub tenant: String,
    /// The HMAC secret that verifies client JWTs (HS256/384/512). May be empty when
    /// [`Config::jwks`] is set (HS tokens are then refused unless the set has `oct` keys).
    pub jwt_secret: String,
    /// A second HMAC secret accepted during a rotation.
    pub jwt_secret_next: Option<String>,
    /// A JWK set that verifies RS*, PS*, ES256/384 and EdDSA tokens by `kid`.
    pub jwks: Option<crate::auth::JwksSource>,
    /// Per-tenant and per-socket limits.
    pub limits: Limits,
    /// Socket and buffer tuning.
    pub socket: SocketConfig,
    /// Flow control: when a subscriber counts as too slow, and how publishers wait for
    /// room.
    pub flow: FlowConfig,
    /// How long a graceful shutdown waits for sockets to drain before giving up.
    pub shutdown_timeout: Duration,
    /// Postgres changes: where to capture row changes from. `None` (the default) serves
    /// everything else, and answers postgres_changes joins with a `system` error.
    pub postgres_changes: Option<PostgresChangesConfig>,
    /// Private channels: where their policies are, how checks run, and whether public
    /// channels are allowed at all.
    pub authorization: AuthorizationConfig,
    /// How many recent broadcasts each topic keeps for subscribers that resume.
    pub history: crate::history::HistoryConfig,
    /// The live inspector page (`/inspector`): off unless asked for.
    pub inspector: InspectorConfig,
}

impl Config {
    /// A configuration with the given secret and every other setting at its default.
    pub fn new(jwt_secret: impl Into<String>) -> Self {
        Config {
            tenant: "realtime-dev".to_owned(),
            jwt_secret: jwt_secret.into(),
            jwt_secret_next: None,
            jwks: None,
            limits: Limits::default(),
            socket: SocketConfig::default(),
            flow: FlowConfig::default(),
            shutdown_timeout: Duration::from_secs(10),
            postgres_changes: None,
            authorization: AuthorizationConfig::default(),
            history: crate::history::HistoryConfig::default(),
            inspector: InspectorConfig::default(),
        }
    }
}

/// The live inspector (docs/INSPECTOR.md): a page at `/inspector` and the
/// `crier:inspector` channel that feeds it.
#[derive(Debug, Clone, Default)]
pub struct InspectorConfig {
    /// Serve the page and accept joins of the inspector channel. Off by default in the
    /// library (an embedding application opts in); `crier serve` turns it on.
    pub enabled: bool,
    /// A token role besides `service_role` that may inspect (e.g. `inspector`).
    pub admin_role: Option<String>,
}

/// Private channels (docs/PRIVATE_CHANNELS.md).
#[derive(Clone)]
pub struct AuthorizationConfig {
    /// The database whose row level security policies on `realtime.messages` authorize
    /// private channels. `None` (the default): private joins are refused, unless the
    /// node was built with its own authorizer (`NodeBuilder::channel_authorizer`).
    pub database_url: Option<String>,
    /// Connections for checks, and so the most checks that run at once; the others
    /// wait their turn (identical ones share an answer).
    pub pool_size: usize,
    /// How long a check may take, waiting for a connection included, before the join
    /// is refused (`UnableToConnectToProject`).
    pub check_timeout: Duration,
    /// Refuse public channels: every join must say `private: true`.
    pub private_only: bool,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            database_url: None,
            pool_size: 8,
            check_timeout: Duration::from_secs(5),
            private_only: false,
        }
    }
}

/// The URL holds a password: print everything but.
impl std::fmt::Debug for AuthorizationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationConfig")
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .field("pool_size", &self.pool_size)
            .field("check_timeout", &self.check_timeout)
            .field("private_only", &self.private_only)
            .finish()
    }
}

/// Where and how postgres changes are captured.
#[derive(Clone)]
pub struct PostgresChangesConfig {
    /// A `postgres://` URL of a role that may create publications and replication slots
    /// and read the catalogs (a superuser or a role with `REPLICATION`).
    pub database_url: String,
    /// The publication whose tables are streamed; created empty when missing.
    pub publication: String,
    /// The persistent logical replication slot; created when missing.
    pub slot: String,
    /// After a restart that found the slot already there, how long to wait before
    /// streaming, so subscribers that reconnect in time receive what was committed while
    /// the server was down.
    pub resume_grace: Duration,
    /// A record larger than this (JSON bytes) is sent with only its small fields and
    /// `Error 413: Payload Too Large`, as Supabase does.
    pub max_record_bytes: usize,
    /// Ordinary connections for catalog lookups and row level security checks.
    pub pool_size: usize,
    /// Also deliver broadcasts from the database: rows inserted into `realtime.messages`
    /// (`realtime.send`, `realtime.broadcast_changes`) go to their topic's subscribers,
    /// read from the same slot.
    pub database_broadcasts: bool,
}

impl PostgresChangesConfig {
    /// Capture from `database_url` with every other setting at its default.
    pub fn new(database_url: impl Into<String>) -> Self {
        PostgresChangesConfig {
            database_url: database_url.into(),
            publication: "supabase_realtime".to_owned(),
            slot: "crier_realtime".to_owned(),
            resume_grace: Duration::from_secs(10),
            max_record_bytes: 1_048_576,
            pool_size: 4,
            database_broadcasts: true,
        }
    }
}

/// The URL holds a password: print everything but.
impl std::fmt::Debug for PostgresChangesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresChangesConfig")
            .field("database_url", &"<redacted>")
            .field("publication", &self.publication)
            .field("slot", &self.slot)
            .field("resume_grace", &self.resume_grace)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// With an empty secret (and no JWK set), any token signed with an empty key would
    /// verify.
    #[error("the JWT secret is empty (and there is no JWK set)")]
    EmptySecret,
    /// The JWK set file cannot be used.
    #[error("{0}")]
    Jwks(#[from] crate::auth::JwksError),
    /// A limit of zero would refuse everything it limits.
    #[error("`{0}` must be greater than zero")]
    ZeroLimit(&'static str),
    /// Postgres changes run a capture task, which needs a tokio runtime to start on.
    #[error("a node with a database must be built inside a tokio runtime")]
    NoRuntime,
}

impl Config {
    /// Checks the settings that would make the node unusable or unsafe.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.is_empty() && self.jwks.is_none() {
            return Err(ConfigError::EmptySecret);
        }
        let limits = &self.limits;
        let positive = [
            ("max_connections", limits.max_connections),
            ("max_channels_per_client", limits.max_channels_per_client),
            ("max_payload_size_kb", limits.max_payload_size_kb),
            ("max_frame_bytes", limits.max_frame_bytes),
            ("slow_consumer_bytes", self.flow.slow_consumer_bytes),
            ("max_queued_bytes", self.flow.max_queued_bytes),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        let durations = [
            ("slow_consumer_timeout", self.flow.slow_consumer_timeout),
            ("stall_patience", self.flow.stall_patience),
        ];
        for (name, value) in durations {
            if value.is_zero() {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        if self.authorization.pool_size == 0 {
            return Err(ConfigError::ZeroLimit("authorization.pool_size"));
        }
        if self.authorization.check_timeout.is_zero() {
            return Err(ConfigError::ZeroLimit("authorization.check_timeout"));
        }
        if let Some(changes) = &self.postgres_changes {
            if changes.pool_size == 0 {
                return Err(ConfigError::ZeroLimit("postgres_changes.pool_size"));
            }
            if changes.max_record_bytes == 0 {
                return Err(ConfigError::ZeroLimit("postgres_changes.max_record_bytes"));
            }
        }
        Ok(())
    }
}

/// Limits. Every limit answers with the reason Supabase Realtime documents for it.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent WebSocket connections (`max_concurrent_users`). Over it: HTTP 429
    /// `Too many connected users` at connect.
    pub max_connections: usize,
    /// Channel joins per second, averaged over the last minute (`max_joins_per_second`).
    /// Over it: `ClientJoinRateLimitReached`, and the socket is closed.
    pub max_joins_per_second: u32,
    /// Channels one socket may join (`max_channels_per_client`). Over it:
    /// `ChannelRateLimitReached: Too many channels`.
    pub max_channels_per_client: usize,
    /// Messages per second, averaged over the last minute: inbound broadcasts, HTTP
    /// broadcasts and every delivery to every subscriber (`max_events_per_second`).
    /// Over it: receiving channels are shut down with `Too many messages per second`, and
    /// HTTP broadcasts get 429.
    pub max_events_per_second: u32,
    /// Presence events per second: each track, each state push and each diff recipient
    /// (`max_presence_events_per_second`). Over it: `Too many presence messages per second`.
    pub max_presence_events_per_second: u32,
    /// Largest broadcast or presence payload, in kilobytes of JSON (`max_payload_size_in_kb`).
    pub max_payload_size_kb: usize,
    /// Largest WebSocket frame in bytes. Over it the socket is closed with 1009.
    pub max_frame_bytes: usize,
    /// Presence pushes one channel may make per [`Self::client_presence_window`].
    pub client_presence_max_calls: u32,
    /// The window of [`Self::client_presence_max_calls`].
    pub client_presence_window: Duration,
}

impl Limits {
    /// The payload limit in bytes.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload_size_kb.saturating_mul(1000)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 200,
            max_joins_per_second: 100,
            max_channels_per_client: 100,
            max_events_per_second: 100,
            max_presence_events_per_second: 1000,
            max_payload_size_kb: 3000,
            max_frame_bytes: 5_000_000,
            client_presence_max_calls: 5,
            client_presence_window: Duration::from_secs(30),
        }
    }
}

/// Socket and buffer tuning.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// A socket that sends nothing (not even a heartbeat) for this long is closed.
    pub idle_timeout: Duration,
    /// WebSocket read buffer per socket. Small, because most sockets are idle most of the
    /// time and memory per connection is what bounds how many a node can hold.
    pub read_buffer_bytes: usize,
    /// Bytes of frames the WebSocket layer gathers before it writes; queued frames are
    /// written in batches up to this size, one syscall per batch.
    pub write_buffer_bytes: usize,
    /// How long a client may take to send its HTTP request headers.
    pub header_read_timeout: Duration,
    /// An HTTP request body that stops arriving for this long is answered 408 and its
    /// connection closed. The whole body may take six times as long.
    pub body_read_timeout: Duration,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            idle_timeout: Duration::from_secs(60),
            read_buffer_bytes: 4 << 10,
            write_buffer_bytes: 16 << 10,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Flow control (docs/PROTOCOL.md, "Slow consumers and flow control"): a subscriber is
/// disconnected as too slow only when it really is, and a burst waits for room instead
/// of overflowing queues.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// A subscriber whose socket takes no data for this long is disconnected (1013).
    pub slow_consumer_timeout: Duration,
    /// A subscriber whose queue (frames plus their slots, until written) would hold more
    /// than this is disconnected (1013). Raised to two of the largest frames when lower.
    pub slow_consumer_bytes: usize,
    /// Publishers that can wait do while a subscriber they reached holds more than this.
    pub room_bytes: usize,
    /// How long publishers wait for a subscriber whose current write is waiting on its
    /// socket; past that, until the write completes, it is left to its budget and the
    /// timeout, and holds nobody back.
    pub stall_patience: Duration,
    /// All of the node's queues together: each shared frame once, plus every queue's
    /// slots. Over it, publishers wait and the REST API answers 503.
    pub max_queued_bytes: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            slow_consumer_timeout: Duration::from_secs(10),
            slow_consumer_bytes: 16 << 20,
            room_bytes: 256 << 10,
            stall_patience: Duration::from_millis(20),
            max_queued_bytes: 512 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_settings_are_named() {
        assert_eq!(Config::new("").validate(), Err(ConfigError::EmptySecret));
        let mut config = Config::new("secret");
        assert_eq!(config.validate(), Ok(()));
        config.limits.max_frame_bytes = 0;
        assert_eq!(
            config.validate(),
            Err(ConfigError::ZeroLimit("max_frame_bytes"))
        );
        let mut config = Config::new("secret");
        config.flow.slow_consumer_timeout = Duration::ZERO;
        assert_eq!(
            config.validate(),
            Err(ConfigError::ZeroLimit("slow_consumer_timeout"))
        );
    }
}
