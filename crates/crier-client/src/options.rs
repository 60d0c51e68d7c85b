//! The settings a client and its channels are built with.
//!
//! Plain data with no behaviour of its own, kept apart from the handles so that the
//! driver and the REST calls can read it without depending on [`crate::Client`] or
//! [`crate::Channel`] (the handles depend on them, not the other way round).

use std::sync::Arc;
use std::time::Duration;

use crier_protocol::Vsn;
use url::Url;

use crate::backoff::Backoff;
use crate::transport::Transport;

/// What [`crate::ClientBuilder::build`] settled on, shared read-only by the client, its
/// channels, its driver and its REST calls.
pub(crate) struct ClientOptions {
    /// `ws(s)://.../websocket?vsn=..`; the driver adds `apikey` per attempt.
    pub(crate) socket_url: Url,
    /// `http(s)://.../api/broadcast`, derived from the socket URL.
    pub(crate) http_endpoint: Url,
    pub(crate) api_key: Option<String>,
    pub(crate) vsn: Vsn,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) probe_timeout: Duration,
    /// For joins, leaves, acknowledged pushes, connect attempts and REST calls.
    pub(crate) timeout: Duration,
    pub(crate) postgres_ready_timeout: Duration,
    pub(crate) reconnect: Backoff,
    pub(crate) rejoin: Backoff,
    pub(crate) token_refresh_skew: Duration,
    /// Capacity of the offline push buffer.
    pub(crate) push_buffer: usize,
    /// Capacity of each channel's event broadcast (how far a stream may fall behind).
    pub(crate) stream_capacity: usize,
    pub(crate) transport: Arc<dyn Transport>,
}

/// How a channel joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Receive your own broadcasts (`self`).
    pub broadcast_self: bool,
    /// Wait for the server to acknowledge each broadcast (`ack`).
    pub broadcast_ack: bool,
    /// The presence key (the server picks a UUID when unset).
    pub presence_key: Option<String>,
    /// Receive presence. Also turned on by
    /// [`Channel::presence_events`](crate::Channel::presence_events) before subscribing,
    /// and by [`Channel::track`](crate::Channel::track).
    pub presence: bool,
    /// A private channel (authorized by the server's policies).
    pub private: bool,
    /// On a private channel, replay the stored database broadcasts at join:
    /// `(since, limit)`, `since` in Unix milliseconds, `limit` 1..=25 (`None`: 25). Sent
    /// with every join, a rejoin after a reconnect included, as realtime-js does.
    pub replay: Option<(i64, Option<i64>)>,
    /// Ask the server to say when broadcasts from the database are live for the channel
    /// (`replication_ready`): a [`SystemMessage`](crate::SystemMessage) "Replication
    /// connection established" then arrives on [`Channel::events`](crate::Channel::events),
    /// or the channel is shut down when they do not start within a minute.
    pub replication_ready: bool,
    /// Start from this place in the topic's stream, `(epoch, offset)`, as a rejoin would:
    /// the broadcasts after it come first, then a [`ChannelEvent::Resumed`](crate::ChannelEvent::Resumed)
    /// says whether they were all still there. Rejoins resume on their own.
    pub resume_from: Option<(String, u64)>,
    /// `subscribe()` waits until the server confirms postgres changes are live (on by
    /// default, so no change made right after subscribing is missed).
    pub wait_for_postgres: bool,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            broadcast_self: false,
            broadcast_ack: false,
            presence_key: None,
            presence: false,
            private: false,
            replay: None,
            replication_ready: false,
            resume_from: None,
            wait_for_postgres: true,
        }
    }
}

impl ChannelOptions {
    /// Receive your own broadcasts.
    pub fn broadcast_self(mut self, on: bool) -> Self {
        self.broadcast_self = on;
        self
    }

    /// Acknowledged broadcasts.
    pub fn broadcast_ack(mut self, on: bool) -> Self {
        self.broadcast_ack = on;
        self
    }

    /// The presence key.
    pub fn presence_key(mut self, key: impl Into<String>) -> Self {
        self.presence_key = Some(key.into());
        self.presence = true;
        self
    }

    /// A private channel.
    pub fn private(mut self, on: bool) -> Self {
        self.private = on;
        self
    }

    /// Replays the stored messages sent at or after `since_ms` (Unix milliseconds), at
    /// most `limit`, when the (private) channel joins. Replayed broadcasts carry
    /// `meta: {"replayed": true, "id": ...}`.
    pub fn replay(mut self, since_ms: i64, limit: Option<i64>) -> Self {
        self.replay = Some((since_ms, limit));
        self
    }

    /// Resume from `(epoch, offset)` (see the field), e.g. a position the app saved
    /// before it exited.
    pub fn resume_from(mut self, epoch: impl Into<String>, offset: u64) -> Self {
        self.resume_from = Some((epoch.into(), offset));
        self
    }

    /// Ask to be told when broadcasts from the database are live (see the field).
    pub fn replication_ready(mut self, on: bool) -> Self {
        self.replication_ready = on;
        self
    }

    /// Whether `subscribe()` waits for postgres changes to be live.
    pub fn wait_for_postgres(mut self, on: bool) -> Self {
        self.wait_for_postgres = on;
        self
    }
}
