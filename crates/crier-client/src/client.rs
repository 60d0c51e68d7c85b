//! [`Client`]: the handle applications hold, and its builder.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crier_protocol::Vsn;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use url::Url;

use crate::Error;
use crate::auth::TokenProvider;
use crate::backoff::Backoff;
use crate::channel::{Channel, ChannelShared};
use crate::driver::{self, Command, DriverHandle};
use crate::events::ConnectionStatus;
use crate::heartbeat::HeartbeatEvent;
use crate::http::{self, BroadcastApi, HttpMessage};
use crate::options::{ChannelOptions, ClientOptions};
use crate::streams::broadcast_stream;
use crate::transport::{Transport, WsTransport};

/// A realtime client: one connection, any number of channels.
///
/// Cheap to clone; every clone is the same client. A background task owns the connection
/// and every channel's state, so nothing here blocks or races: it reconnects with
/// jittered backoff, detects dead connections by unanswered heartbeats, refreshes tokens
/// before they expire, and rejoins channels (with the same bindings and presence) after
/// a reconnect. The task stops when the last handle (client or channel) is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), crier_client::Error> {
/// use crier_client::Client;
/// use futures_util::StreamExt;
///
/// let client = Client::builder("ws://127.0.0.1:4000/socket").api_key("<anon key>").build()?;
/// let room = client.channel("room1");
/// let mut cursors = room.broadcasts_for("cursor");
/// room.subscribe().await?;
/// room.broadcast("cursor", serde_json::json!({"x": 1})).await?;
/// while let Some(message) = cursors.next().await {
///     println!("{message:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<ClientShared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.shared.driver.options.socket_url.as_str())
            .field("status", &self.status())
            .finish()
    }
}

/// What every clone of one client shares. Channels hold the driver and the REST API too,
/// but not this: the map of channels is the client's own business.
struct ClientShared {
    driver: Arc<DriverHandle>,
    rest: BroadcastApi,
    /// Channels by name, weakly: a channel lives as long as its handles.
    channels: Mutex<HashMap<String, Weak<ChannelShared>>>,
}

/// Builds a [`Client`].
///
/// ```no_run
/// use std::time::Duration;
/// use crier_client::{Backoff, Client, Vsn};
///
/// # fn build() -> Result<Client, crier_client::Error> {
/// let client = Client::builder("wss://<project>.supabase.co/realtime/v1")
///     .api_key("<anon key>")
///     .access_token("<user jwt>")
///     .vsn(Vsn::V2)
///     .heartbeat_interval(Duration::from_secs(25))
///     .reconnect_policy(Backoff { max: Duration::from_secs(10), ..Backoff::RECONNECT })
///     .build()?;
/// # Ok(client) }
/// ```
pub struct ClientBuilder {
    url: String,
    api_key: Option<String>,
    access_token: Option<String>,
    token_provider: Option<TokenProvider>,
    vsn: Vsn,
    heartbeat_interval: Duration,
    probe_timeout: Duration,
    timeout: Duration,
    postgres_ready_timeout: Duration,
    reconnect: Backoff,
    rejoin: Backoff,
    token_refresh_skew: Duration,
    push_buffer: usize,
    stream_capacity: usize,
    transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The API key sent as `apikey` when connecting (a JWT for Crier; the project's anon
    /// key for Supabase). Without one, the access token is sent instead.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// A fixed access token: every join carries it (and `set_auth` replaces it).
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.access_token = Some(token.into());
        self
    }

    /// An async provider of the access token, asked before the first join and again
    /// before each token expires.
    pub fn token_provider(mut self, provider: TokenProvider) -> Self {
        self.token_provider = Some(provider);
        self
    }

    /// The serializer: 2.0.0 (the default, as realtime-js) or 1.0.0.
    pub fn vsn(mut self, vsn: Vsn) -> Self {
        self.vsn = vsn;
        self
    }

    /// How often to send a heartbeat (25 s). A heartbeat unanswered when the next is due
    /// means the connection is dead.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long a probe heartbeat waits for its reply (5 s).
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// How long a join, leave or acknowledged push waits for its reply (10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long `subscribe()` waits for the server to confirm postgres changes (15 s).
    pub fn postgres_ready_timeout(mut self, timeout: Duration) -> Self {
        self.postgres_ready_timeout = timeout;
        self
    }

    /// The reconnect backoff ([`Backoff::RECONNECT`]).
    pub fn reconnect_policy(mut self, backoff: Backoff) -> Self {
        self.reconnect = backoff;
        self
    }

    /// The channel rejoin backoff ([`Backoff::REJOIN`]).
    pub fn rejoin_policy(mut self, backoff: Backoff) -> Self {
        self.rejoin = backoff;
        self
    }

    /// How long before `exp` a provided token is refreshed (60 s; at most half its life).
    pub fn token_refresh_skew(mut self, skew: Duration) -> Self {
        self.token_refresh_skew = skew;
        self
    }

    /// How many pushes are kept while a channel cannot send (100; the oldest is dropped).
    pub fn push_buffer(mut self, capacity: usize) -> Self {
        self.push_buffer = capacity;
        self
    }

    /// How many events a stream may fall behind before it skips the oldest (1024).
    pub fn stream_capacity(mut self, capacity: usize) -> Self {
        self.stream_capacity = capacity.max(1);
        self
    }

    /// The transport ([`WsTransport`] by default; [`crate::transport::memory`] for tests).
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Arc::new(transport);
        self
    }

    /// Builds the client and starts its background task (call inside a tokio runtime).
    /// It does not connect until [`Client::connect`] or the first subscribe.
    pub fn build(self) -> Result<Client, Error> {
        let socket_url = socket_url(&self.url, self.vsn)?;
        let http_endpoint = http::endpoint(&socket_url)?;
        let options = Arc::new(ClientOptions {
            socket_url,
            http_endpoint,
            api_key: self.api_key,
            vsn: self.vsn,
            heartbeat_interval: self.heartbeat_interval,
            probe_timeout: self.probe_timeout,
            timeout: self.timeout,
            postgres_ready_timeout: self.postgres_ready_timeout,
            reconnect: self.reconnect,
            rejoin: self.rejoin,
            token_refresh_skew: self.token_refresh_skew,
            push_buffer: self.push_buffer,
            stream_capacity: self.stream_capacity,
            transport: self.transport,
        });
        let driver = driver::spawn(options, self.access_token, self.token_provider);
        let rest = BroadcastApi::new(Arc::clone(&driver.options), Arc::clone(&driver.token));
        Ok(Client {
            shared: Arc::new(ClientShared {
                driver: Arc::new(driver),
                rest,
                channels: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// The WebSocket URL: `ws(s)://.../websocket?apikey=..&vsn=..`. Accepts what realtime-js
/// accepts (`ws://host/socket`, `.../websocket`) and a Supabase project URL
/// (`https://<ref>.supabase.co`, which maps to `/realtime/v1/websocket`).
fn socket_url(input: &str, vsn: Vsn) -> Result<Url, Error> {
    let mut url = Url::parse(input)
        .map_err(|err| Error::Unsupported(format!("invalid URL `{input}`: {err}")))?;
    let project_url = matches!(url.scheme(), "http" | "https");
    let scheme = match url.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(Error::Unsupported(format!(
                "unsupported URL scheme `{other}`"
            )));
        }
    };
    url.set_scheme(scheme)
        .map_err(|()| Error::Unsupported("cannot set the URL scheme".into()))?;
    let mut path = url.path().trim_end_matches('/').to_owned();
    if project_url && !path.ends_with("/websocket") && !path.ends_with("/socket") {
        path.push_str("/realtime/v1");
    }
    if !path.ends_with("/websocket") {
        path.push_str("/websocket");
    }
    url.set_path(&path);
    url.query_pairs_mut().append_pair("vsn", vsn.as_str());
    Ok(url)
}

impl Client {
    /// A builder for a client of the server at `url` (`ws://host:4000/socket`, or a
    /// Supabase project URL).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            api_key: None,
            access_token: None,
            token_provider: None,
            vsn: Vsn::V2,
            heartbeat_interval: Duration::from_secs(25),
            probe_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            postgres_ready_timeout: Duration::from_secs(15),
            reconnect: Backoff::RECONNECT,
            rejoin: Backoff::REJOIN,
            token_refresh_skew: Duration::from_secs(60),
            push_buffer: 100,
            stream_capacity: 1024,
            transport: Arc::new(WsTransport),
        }
    }

    /// Connects, or waits for the connection in progress. Concurrent calls share one
    /// attempt. Resolves when connected, or with the first attempt's error (the client
    /// keeps retrying in the background unless the server refused the credentials).
    pub async fn connect(&self) -> Result<(), Error> {
        self.shared.driver.request(Command::Connect).await?
    }

    /// Closes the connection and stays disconnected: no reconnect follows until
    /// `connect()` (or a subscribe) is called again.
    pub async fn disconnect(&self) {
        let _ = self.shared.driver.request(Command::Disconnect).await;
    }

    /// The connection status now.
    pub fn status(&self) -> ConnectionStatus {
        self.shared.driver.status.borrow().clone()
    }

    /// The connection status, now and at every change.
    pub fn status_stream(&self) -> BoxStream<'static, ConnectionStatus> {
        let mut rx = self.shared.driver.status.clone();
        rx.mark_changed();
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let status = rx.borrow_and_update().clone();
            Some((status, rx))
        })
        .boxed()
    }

    /// Heartbeat events: sent, ok with latency, timeout.
    pub fn heartbeats(&self) -> BoxStream<'static, HeartbeatEvent> {
        broadcast_stream(self.shared.driver.heartbeats.subscribe(), Some)
    }

    /// Sends a heartbeat now and waits for its reply (for a wake-up after sleep, say).
    /// No reply within the probe timeout means the connection is dead: it is closed and
    /// re-established, and this returns [`Error::Timeout`].
    pub async fn probe(&self) -> Result<Duration, Error> {
        self.shared.driver.request(Command::Probe).await?
    }

    /// Sets the access token every channel uses (pushed to joined channels at once), or
    /// with `None` returns to the token provider. Channels refused for their token are
    /// retried with the new one.
    pub async fn set_auth(&self, token: Option<String>) {
        let _ = self
            .shared
            .driver
            .request(|reply| Command::SetAuth(token, reply))
            .await;
    }

    /// The channel for `name` with default options. The same name returns the same
    /// channel while any handle to it is alive.
    pub fn channel(&self, name: &str) -> Channel {
        self.channel_with(name, ChannelOptions::default())
    }

    /// The channel for `name`. Options apply when the channel is created; a channel that
    /// already exists is returned as it is.
    pub fn channel_with(&self, name: &str, options: ChannelOptions) -> Channel {
        let mut channels = self.shared.channels.lock().expect("not poisoned");
        channels.retain(|_, weak| weak.strong_count() > 0);
        if let Some(shared) = channels.get(name).and_then(Weak::upgrade) {
            return Channel { shared };
        }
        let channel = Channel::new(
            Arc::clone(&self.shared.driver),
            self.shared.rest.clone(),
            name,
            options,
        );
        channels.insert(name.to_owned(), Arc::downgrade(&channel.shared));
        channel
    }

    /// Broadcasts through the REST API (`POST /api/broadcast`), no channel needed.
    pub async fn http_broadcast(&self, messages: &[HttpMessage]) -> Result<(), Error> {
        self.shared.rest.broadcast(messages).await
    }

    /// Pushes dropped from the full offline buffer so far.
    pub fn dropped_pushes(&self) -> u64 {
        self.shared.driver.dropped_pushes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls_follow_realtime_js() {
        let cases = [
            (
                "ws://localhost:4000/socket",
                "ws://localhost:4000/socket/websocket?vsn=2.0.0",
            ),
            (
                "ws://localhost:4000/socket/",
                "ws://localhost:4000/socket/websocket?vsn=2.0.0",
            ),
            (
                "ws://h/socket/websocket",
                "ws://h/socket/websocket?vsn=2.0.0",
            ),
            (
                "wss://x.supabase.co/realtime/v1",
                "wss://x.supabase.co/realtime/v1/websocket?vsn=2.0.0",
            ),
            (
                "https://x.supabase.co",
                "wss://x.supabase.co/realtime/v1/websocket?vsn=2.0.0",
            ),
            (
                "http://127.0.0.1:4000",
                "ws://127.0.0.1:4000/realtime/v1/websocket?vsn=2.0.0",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                socket_url(input, Vsn::V2).unwrap().as_str(),
                expected,
                "{input}"
            );
        }
        assert!(socket_url("ftp://x", Vsn::V2).is_err());
        assert!(socket_url("not a url", Vsn::V2).is_err());
    }
}
