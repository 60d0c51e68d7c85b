//! `crier serve`: settings in, a listening node out, a graceful stop on SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crier_server::auth::{sign_token, unix_now};
use crier_server::{Config, Node};
use serde_json::{Map, Value};
use tracing_subscriber::EnvFilter;

use crate::settings::ServeArgs;

/// `println!` that ignores a closed stdout: a server must not die because whoever
/// started it stopped reading its banner (`crier serve | head -1`).
macro_rules! say {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Development keys live ten years: the secret changes every run anyway.
const DEV_KEY_LIFETIME_SECS: i64 = 10 * 365 * 24 * 3600;

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut signals = Signals::install()?;
    let settings = args.resolve()?;
    let filter = EnvFilter::try_new(&settings.log_level)
        .with_context(|| format!("invalid --log-level `{}`", settings.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();

    // A development secret only when nothing at all verifies tokens: with a JWK set and
    // no secret, HS tokens are refused instead.
    let dev_secret = settings.jwt_secret.is_empty() && settings.jwt_jwks.is_empty();
    let secret = if dev_secret {
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    } else {
        settings.jwt_secret.clone()
    };
    if !settings.jwt_jwks.is_empty() && !settings.jwt_jwks.starts_with("http") {
        // Read here too, so a set that does not parse is a startup error with its path.
        crier_server::auth::JwtVerifier::with_secrets(&[])
            .with_jwks(
                &std::fs::read_to_string(&settings.jwt_jwks)
                    .with_context(|| format!("cannot read --jwt-jwks {}", settings.jwt_jwks))?,
            )
            .with_context(|| format!("invalid --jwt-jwks {}", settings.jwt_jwks))?;
    }
    let config = settings.server_config(secret.clone());
    // Printed after the banner, whose first line says where the server listens.
    let mut schema_note = None;
    let mut cluster_note = None;
    if let Some(url) = &config.authorization.database_url {
        // A role that may not create what private channels need is told so now, with
        // the grant to give; a database that is down is only a warning (the node keeps
        // trying, and postgres changes wait for it too).
        match crier_server::authz::prepare_database(url).await {
            Ok(created) if !created.is_empty() => {
                schema_note = Some(format!("  realtime schema: created {}", created.join(", ")));
            }
            Ok(_) => {}
            Err(crier_server::authz::PrepareError::MissingPrivilege(why)) => {
                anyhow::bail!("private channels cannot work: {why}")
            }
            Err(err) => {
                tracing::warn!(error = %err, "the database is not ready for private channels yet");
            }
        }
    }
    let mut builder = Node::builder(config);
    if !settings.redis_url.is_empty() {
        let name = if settings.node_name.is_empty() {
            default_node_name()
        } else {
            settings.node_name.clone()
        };
        let url = &settings.redis_url;
        // Takes the node's name too: it stays ours while the node lives.
        let bus = crier_cluster::RedisBroker::connect(url, &name)
            .await
            .context("cannot join the cluster")?;
        // The nodes share the replication slot: one streams it, the others follow.
        builder = builder
            .broker(bus.clone())
            .presence_store(bus.clone())
            .change_relay(bus.change_relay());
        cluster_note = Some(format!(
            "  cluster:    node {name} on Redis {}",
            redact(url)
        ));
    }
    let node = builder.build().context("invalid settings")?;
    let address = SocketAddr::new(settings.bind, settings.port);
    let listener =
        crier_server::bind(address).with_context(|| format!("cannot listen on {address}"))?;
    let address = listener.local_addr()?;
    print_banner(
        node.config(),
        address,
        dev_secret.then_some(secret.as_str()),
    );
    if let Some(note) = schema_note {
        say!("{note}");
    }
    if let Some(note) = cluster_note {
        say!("{note}");
    }

    let server = tokio::spawn(crier_server::serve(listener, node.clone()));
    while signals.wait().await? == Signal::Reload {
        match node.reload_keys().await {
            Ok(keys) => say!("SIGHUP: JWKS reloaded, {keys} keys"),
            Err(err) => say!("SIGHUP: JWKS reload failed, keeping the keys in use: {err}"),
        }
    }
    say!("shutting down: telling clients to reconnect, draining sockets");
    let drained = node.shutdown().await;
    if !drained {
        say!(
            "some sockets did not drain within {:?}",
            settings.shutdown_timeout.0
        );
    }
    server.await??;
    Ok(())
}

fn print_banner(config: &Config, address: SocketAddr, dev_secret: Option<&str>) {
    let shown_host = match address.ip() {
        ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    let shown = SocketAddr::new(shown_host, address.port());
    say!(
        "crier {} listening on {address} (tenant {})",
        env!("CARGO_PKG_VERSION"),
        config.tenant
    );
    say!("  websocket:  ws://{shown}/socket/websocket   (also /realtime/v1/websocket)");
    say!("  realtime-js endpoint: ws://{shown}/socket");
    say!("  http:       POST http://{shown}/api/broadcast   GET /healthcheck   GET /metrics");
    if config.inspector.enabled {
        say!("  inspector:  http://{shown}/inspector   (sign in with the service_role key)");
    } else {
        say!("  inspector:  off (--inspector false)");
    }
    let limits = &config.limits;
    say!(
        "  limits:     {} connections, {} joins/s, {} channels/client, {} events/s, {} presence events/s, {} KB payloads",
        limits.max_connections,
        limits.max_joins_per_second,
        limits.max_channels_per_client,
        limits.max_events_per_second,
        limits.max_presence_events_per_second,
        limits.max_payload_size_kb
    );
    match &config.postgres_changes {
        Some(changes) => say!(
            "  postgres changes: publication {}, slot {}, resume grace {:?}",
            changes.publication,
            changes.slot,
            changes.resume_grace
        ),
        None => say!("  postgres changes: off (no --database-url)"),
    }
    match &config.postgres_changes {
        Some(changes) if changes.database_broadcasts => say!(
            "  database broadcasts: realtime.messages rows, from slot {}",
            changes.slot
        ),
        Some(_) => say!("  database broadcasts: off (--database-broadcasts false)"),
        None => say!("  database broadcasts: off (no --database-url)"),
    }
    let authorization = &config.authorization;
    match (&authorization.database_url, authorization.private_only) {
        (Some(_), only) => say!(
            "  private channels: row level security on realtime.messages{}",
            if only { " (private only)" } else { "" }
        ),
        (None, _) => say!("  private channels: refused (no --database-url)"),
    }
    if let Some(secret) = dev_secret {
        let key = |role: &str| {
            let now = unix_now();
            let mut claims = Map::new();
            claims.insert("role".into(), Value::from(role));
            claims.insert("iss".into(), Value::from("crier-dev"));
            claims.insert("iat".into(), Value::from(now));
            claims.insert("exp".into(), Value::from(now + DEV_KEY_LIFETIME_SECS));
            sign_token(secret, &claims)
        };
        say!();
        say!("  DEVELOPMENT ONLY: no --jwt-secret (CRIER_JWT_SECRET) was given, so this run");
        say!("  generated a random secret. Anyone holding these keys can use this server.");
        say!("  jwt secret:       {secret}");
        say!("  anon key:         {}", key("anon"));
        say!("  service_role key: {}", key("service_role"));
    }
}

/// SIGINT and SIGTERM (stop), SIGHUP (read the JWK set again), registered when created:
/// a signal that arrives while the server is still starting must stop it gracefully, not
/// kill it with the default action.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

/// What a signal asks for.
#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Stop,
    Reload,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn wait(&mut self) -> anyhow::Result<Signal> {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => Ok(Signal::Stop),
            _ = self.terminate.recv() => Ok(Signal::Stop),
            _ = self.hangup.recv() => Ok(Signal::Reload),
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await?;
            Ok(Signal::Stop)
        }
    }
}

/// The host name and a random suffix: unique without configuration, readable in logs.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "crier".to_owned());
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// A Redis URL without its password, for the banner.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}
