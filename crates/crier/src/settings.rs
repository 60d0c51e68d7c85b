//! `crier serve` settings: flags, their `CRIER_*` environment variables, and an optional
//! TOML file. A flag beats its environment variable (clap), which beats the file, which
//! beats the default.
//!
//! The same struct parses flags and the file, so a setting cannot exist in one and not
//! the other: the TOML keys are the flag names with `_` for `-` (`max_connections = 5000`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// A size written the human way: `16MiB`, `512 MiB`, `64KiB`, or plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanBytes(pub(crate) u64);

impl FromStr for HumanBytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<bytesize::ByteSize>()
            .map(|size| HumanBytes(size.as_u64()))
    }
}

impl<'de> Deserialize<'de> for HumanBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl HumanBytes {
    fn usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

/// A duration written the human way: `60s`, `500ms`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub(crate) Duration);

impl FromStr for HumanDuration {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(HumanDuration)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! serve_args {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty = $default:expr, env $env:literal ;)+) => {
        /// Arguments of `crier serve`.
        #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct ServeArgs {
            /// Read settings from this TOML file (keys are the flag names with `_`).
            #[arg(long, env = "CRIER_CONFIG")]
            #[serde(skip)]
            pub(crate) config: Option<PathBuf>,
            $(
                $(#[$doc])*
                #[arg(long, env = $env, hide_env_values = true)]
                pub(crate) $field: Option<$ty>,
            )+
        }

        /// Settings with every default applied.
        #[derive(Debug, Clone)]
        pub(crate) struct Settings {
            $( pub(crate) $field: $ty, )+
        }

        impl ServeArgs {
            /// Fills what flags and environment left unset from `file`.
            fn or(self, file: ServeArgs) -> ServeArgs {
                ServeArgs {
                    config: self.config,
                    $( $field: self.$field.or(file.$field), )+
                }
            }

            fn with_defaults(self) -> Settings {
                Settings {
                    $( $field: self.$field.unwrap_or_else(|| $default), )+
                }
            }
        }
    };
}

serve_args! {
    /// Port to listen on [default: 4000].
    port: u16 = 4000, env "CRIER_PORT";
    /// Address to bind [default: 0.0.0.0].
    bind: IpAddr = IpAddr::from([0, 0, 0, 0]), env "CRIER_BIND";
    /// Secret that verifies client JWTs (HS256/384/512). Without one (and without
    /// --jwt-jwks), a development secret is generated and printed with ready-made keys.
    jwt_secret: String = String::new(), env "CRIER_JWT_SECRET";
    /// A second HS secret also accepted, while tokens move to a new secret.
    jwt_secret_next: String = String::new(), env "CRIER_JWT_SECRET_NEXT";
    /// A JWK set (a file, or an http(s) URL) that verifies RS256/384/512, PS*, ES256/384
    /// and EdDSA tokens by their `kid`; HS tokens still verify with --jwt-secret. A file is
    /// read again on SIGHUP; a URL again when a token names an unknown kid (at most every
    /// 10 s).
    jwt_jwks: String = String::new(), env "CRIER_JWT_JWKS";
    /// Tenant name, shown in logs and metrics [default: realtime-dev].
    tenant: String = "realtime-dev".to_owned(), env "CRIER_TENANT";
    /// Log filter: a level (`info`, `debug`) or tracing directives [default: info].
    log_level: String = "info".to_owned(), env "CRIER_LOG_LEVEL";
    /// Concurrent connections [default: 200].
    max_connections: usize = 200, env "CRIER_MAX_CONNECTIONS";
    /// Channel joins per second, averaged over a minute [default: 100].
    max_joins_per_second: u32 = 100, env "CRIER_MAX_JOINS_PER_SECOND";
    /// Channels per connection [default: 100].
    max_channels_per_client: usize = 100, env "CRIER_MAX_CHANNELS_PER_CLIENT";
    /// Messages per second (inbound broadcasts plus every delivery), averaged over a
    /// minute [default: 100].
    max_events_per_second: u32 = 100, env "CRIER_MAX_EVENTS_PER_SECOND";
    /// Presence events per second [default: 1000].
    max_presence_events_per_second: u32 = 1000, env "CRIER_MAX_PRESENCE_EVENTS_PER_SECOND";
    /// Largest broadcast or presence payload, in KB [default: 3000].
    max_payload_size_kb: usize = 3000, env "CRIER_MAX_PAYLOAD_SIZE_KB";
    /// Largest WebSocket frame in bytes; larger ones close the socket with 1009
    /// [default: 5000000].
    max_frame_bytes: usize = 5_000_000, env "CRIER_MAX_FRAME_BYTES";
    /// Close sockets that send nothing for this long [default: 60s].
    idle_timeout: HumanDuration = HumanDuration(Duration::from_secs(60)), env "CRIER_IDLE_TIMEOUT";
    /// Disconnect a subscriber (close 1013) whose socket takes no data for this long
    /// [default: 10s].
    slow_consumer_timeout: HumanDuration = HumanDuration(Duration::from_secs(10)), env "CRIER_SLOW_CONSUMER_TIMEOUT";
    /// Disconnect a subscriber (close 1013) whose queue would hold more than this: frames
    /// not yet written plus their bookkeeping. Publishers wait for subscribers that keep
    /// up, so a healthy client does not come near it [default: 16MiB].
    slow_consumer_bytes: HumanBytes = HumanBytes(16 << 20), env "CRIER_SLOW_CONSUMER_BYTES";
    /// Bytes all outbound queues together may hold (each shared frame counted once).
    /// Over it publishers wait and the REST API answers 503 [default: 512MiB].
    max_queued_bytes: HumanBytes = HumanBytes(512 << 20), env "CRIER_MAX_QUEUED_BYTES";
    /// How long a graceful shutdown waits for sockets to drain [default: 10s].
    shutdown_timeout: HumanDuration = HumanDuration(Duration::from_secs(10)), env "CRIER_SHUTDOWN_TIMEOUT";
    /// PostgreSQL to capture row changes from and to authorize private channels with
    /// (`postgres://user:pass@host:port/db`; the role needs REPLICATION or superuser, and
    /// the server `wal_level=logical`). Without it, postgres_changes joins get a `system`
    /// error and private joins are refused.
    database_url: String = String::new(), env "CRIER_DATABASE_URL";
    /// Publication whose tables are streamed; created empty when missing (add tables
    /// with ALTER PUBLICATION ... ADD TABLE) [default: supabase_realtime].
    publication: String = "supabase_realtime".to_owned(), env "CRIER_PUBLICATION";
    /// Persistent logical replication slot; created when missing [default: crier_realtime].
    slot: String = "crier_realtime".to_owned(), env "CRIER_SLOT";
    /// After a restart that finds the slot already there, wait this long before
    /// streaming, so subscribers that reconnect in time get what was committed while
    /// Crier was down [default: 10s].
    cdc_resume_grace: HumanDuration = HumanDuration(Duration::from_secs(10)), env "CRIER_CDC_RESUME_GRACE";
    /// Deliver broadcasts from the database (rows realtime.send and
    /// realtime.broadcast_changes insert into realtime.messages), read from the same slot
    /// as postgres changes [default: true].
    database_broadcasts: bool = true, env "CRIER_DATABASE_BROADCASTS";
    /// Broadcasts kept per topic for subscribers that resume after a reconnect; 0 turns
    /// history and resume off [default: 100].
    history_size: usize = 100, env "CRIER_HISTORY_SIZE";
    /// How long a broadcast is kept in history [default: 5m]. In a cluster give every
    /// node the same size and ttl.
    history_ttl: HumanDuration = HumanDuration(Duration::from_secs(300)), env "CRIER_HISTORY_TTL";
    /// Bytes all topics' history may hold together on this node (in a cluster: its copy
    /// of the recent history); past it the oldest go first [default: 64MiB].
    history_max_bytes: HumanBytes = HumanBytes(64 << 20), env "CRIER_HISTORY_MAX_BYTES";
    /// Join a cluster over this Redis (`redis://[:password@]host:port[/db]`): broadcasts
    /// and presence reach every node, and history is kept in Redis (a client resumes on
    /// any node). Without it the node stands alone.
    redis_url: String = String::new(), env "CRIER_REDIS_URL";
    /// This node's name in the cluster, unique among live nodes [default: the host name
    /// and a random suffix].
    node_name: String = String::new(), env "CRIER_NODE_NAME";
    /// Serve the live inspector page at /inspector (sign-in with the service role key)
    /// [default: true].
    inspector: bool = true, env "CRIER_INSPECTOR";
    /// A token role, besides service_role, that may sign in to the inspector.
    inspector_role: String = String::new(), env "CRIER_INSPECTOR_ROLE";
    /// Refuse public channels: every join must be `private: true` [default: false].
    private_only: bool = false, env "CRIER_PRIVATE_ONLY";
    /// Database connections for private-channel checks, and so the most checks that run
    /// at once; identical checks in flight share one [default: 8].
    authorization_pool: usize = 8, env "CRIER_AUTHORIZATION_POOL";
    /// How long a private channel's check may take (waiting for a connection
    /// included) before the join is refused [default: 5s].
    authorization_timeout: HumanDuration = HumanDuration(Duration::from_secs(5)), env "CRIER_AUTHORIZATION_TIMEOUT";
}

impl ServeArgs {
    /// Merges the file named by `--config` (if any) under the flags, then applies defaults.
    pub(crate) fn resolve(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => ServeArgs::default(),
        };
        Ok(self.or(file).with_defaults())
    }
}

fn read_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid settings in {}", path.display()))
}

impl Settings {
    /// The server library's configuration.
    pub(crate) fn server_config(&self, jwt_secret: String) -> crier_server::Config {
        let mut config = crier_server::Config::new(jwt_secret);
        config.tenant = self.tenant.clone();
        if !self.jwt_secret_next.is_empty() {
            config.jwt_secret_next = Some(self.jwt_secret_next.clone());
        }
        if !self.jwt_jwks.is_empty() {
            config.jwks = Some(crier_server::auth::JwksSource::parse(&self.jwt_jwks));
        }
        config.shutdown_timeout = self.shutdown_timeout.0;
        let limits = &mut config.limits;
        limits.max_connections = self.max_connections;
        limits.max_joins_per_second = self.max_joins_per_second;
        limits.max_channels_per_client = self.max_channels_per_client;
        limits.max_events_per_second = self.max_events_per_second;
        limits.max_presence_events_per_second = self.max_presence_events_per_second;
        limits.max_payload_size_kb = self.max_payload_size_kb;
        limits.max_frame_bytes = self.max_frame_bytes;
        config.socket.idle_timeout = self.idle_timeout.0;
        config.flow.slow_consumer_timeout = self.slow_consumer_timeout.0;
        config.flow.slow_consumer_bytes = self.slow_consumer_bytes.usize();
        config.flow.max_queued_bytes = self.max_queued_bytes.usize();
        config.history.size = self.history_size;
        config.history.ttl = self.history_ttl.0;
        config.history.max_bytes = self.history_max_bytes.usize();
        config.inspector.enabled = self.inspector;
        if !self.inspector_role.is_empty() {
            config.inspector.admin_role = Some(self.inspector_role.clone());
        }
        config.authorization.private_only = self.private_only;
        config.authorization.pool_size = self.authorization_pool;
        config.authorization.check_timeout = self.authorization_timeout.0;
        if !self.database_url.is_empty() {
            config.authorization.database_url = Some(self.database_url.clone());
            let mut changes = crier_server::PostgresChangesConfig::new(&self.database_url);
            changes.publication = self.publication.clone();
            changes.slot = self.slot.clone();
            changes.resume_grace = self.cdc_resume_grace.0;
            changes.database_broadcasts = self.database_broadcasts;
            config.postgres_changes = Some(changes);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crier.toml");
        std::fs::write(
            &path,
            "port = 5000\nmax_connections = 7\nidle_timeout = \"5s\"\n",
        )
        .unwrap();
        let args =
            Wrapper::parse_from(["x", "--port", "6000", "--config", path.to_str().unwrap()]).args;
        let settings = args.resolve().unwrap();
        assert_eq!(settings.port, 6000, "the flag wins");
        assert_eq!(
            settings.max_connections, 7,
            "the file fills what flags left unset"
        );
        assert_eq!(settings.idle_timeout.0, Duration::from_secs(5));
        assert_eq!(settings.max_joins_per_second, 100, "defaults fill the rest");
        assert_eq!(settings.slow_consumer_bytes, HumanBytes(16 << 20));
    }

    #[test]
    fn sizes_read_the_human_way() {
        let args = Wrapper::parse_from([
            "x",
            "--slow-consumer-bytes",
            "8MiB",
            "--max-queued-bytes",
            "1000000",
        ])
        .args;
        let settings = args.resolve().unwrap();
        let config = settings.server_config("secret".into());
        assert_eq!(config.flow.slow_consumer_bytes, 8 << 20);
        assert_eq!(config.flow.max_queued_bytes, 1_000_000);
        assert!("lots".parse::<HumanBytes>().is_err());
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crier.toml");
        std::fs::write(&path, "prot = 5000\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]).args;
        let err = args.resolve().unwrap_err();
        assert!(format!("{err:#}").contains("prot"), "{err:#}");
    }
}
