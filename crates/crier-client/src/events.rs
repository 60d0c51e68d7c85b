//! What the client reports: connection and channel status, and the events a channel
//! delivers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crier_protocol::presence::{PresenceChange, PresenceMeta};
use serde_json::Value;

use crate::Error;

/// The state of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// Not connected, and not trying (never connected, or `disconnect()` was called, or
    /// the server refused the credentials).
    Disconnected,
    /// Opening the first connection.
    Connecting,
    /// Connected.
    Connected,
    /// Lost the connection; the next attempt starts after `retry_in`.
    Reconnecting {
        /// Attempts made since the connection was lost.
        attempt: u32,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
}

/// The state of a channel.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelStatus {
    /// Not joined.
    Closed,
    /// A join is on its way (or waits for the connection or a token).
    Joining,
    /// Joined.
    Joined,
    /// A leave is on its way.
    Leaving,
    /// The last join failed; `retrying` says whether another is scheduled.
    Errored {
        /// What went wrong.
        error: Error,
        /// Whether the client will try again by itself.
        retrying: bool,
    },
}

/// The presence state of a channel: key to metas.
pub type PresenceState = BTreeMap<String, Vec<PresenceMeta>>;

/// A broadcast payload: JSON, or bytes (serializer 2.0.0 only).
#[derive(Debug, Clone, PartialEq)]
pub enum BroadcastPayload {
    /// A JSON value.
    Json(Value),
    /// Opaque bytes.
    Binary(Bytes),
}

/// A broadcast message.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// The application's event name.
    pub event: String,
    /// The payload.
    pub payload: BroadcastPayload,
    /// Metadata (`{"id": ...}` for messages sent with an id, `{"replayed": true}` ...).
    pub meta: Option<Value>,
}

impl Broadcast {
    /// The message's id (`meta.id`): every broadcast from the database has one (the
    /// `realtime.messages` row's id), and so has a REST message sent with an `id`.
    pub fn id(&self) -> Option<&str> {
        self.meta.as_ref()?.get("id")?.as_str()
    }

    /// Whether it was replayed from storage at the join (`meta.replayed`), rather than
    /// sent live.
    pub fn is_replayed(&self) -> bool {
        self.meta
            .as_ref()
            .and_then(|meta| meta.get("replayed"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// A presence event.
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceEvent {
    /// The presence state changed; read it with [`crate::Channel::presence_state`].
    Sync,
    /// A presence appeared under `key`.
    Join {
        /// The presence key.
        key: String,
        /// Its meta (payload plus `phx_ref`).
        meta: PresenceMeta,
    },
    /// A presence went away.
    Leave {
        /// The presence key.
        key: String,
        /// The meta that left.
        meta: PresenceMeta,
    },
    /// A presence changed its payload (one event, not a leave and a join).
    Update {
        /// The presence key.
        key: String,
        /// Before.
        old: PresenceMeta,
        /// After.
        new: PresenceMeta,
    },
}

impl From<PresenceChange> for PresenceEvent {
    fn from(change: PresenceChange) -> Self {
        match change {
            PresenceChange::Join { key, meta } => PresenceEvent::Join { key, meta },
            PresenceChange::Leave { key, meta } => PresenceEvent::Leave { key, meta },
            PresenceChange::Update { key, old, new } => PresenceEvent::Update { key, old, new },
        }
    }
}

/// A `system` message from the server (postgres-changes status, shutdown notices).
#[derive(Debug, Clone, PartialEq)]
pub struct SystemMessage {
    /// `system` or `postgres_changes`.
    pub extension: String,
    /// `ok` or `error`.
    pub status: String,
    /// The text.
    pub message: String,
}

/// A postgres change as it arrived, with the indexes of the channel's filters it matched.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedChange {
    /// Indexes into the channel's registered filters.
    pub filters: Vec<usize>,
    /// The `data` object.
    pub data: Value,
}

/// Everything a channel reports, in order. The typed streams on [`crate::Channel`] are
/// filters over this one.
#[derive(Debug, Clone)]
pub enum ChannelEvent {
    /// A broadcast.
    Broadcast(Arc<Broadcast>),
    /// A presence change.
    Presence(Arc<PresenceEvent>),
    /// A postgres change.
    PostgresChange(Arc<RoutedChange>),
    /// A `system` message.
    System(Arc<SystemMessage>),
    /// The channel's status changed.
    Status(ChannelStatus),
    /// The channel joined again after the connection was lost or the channel errored.
    /// The client asked the server for what it missed (`resume`): when `recovered`, the
    /// `missed` broadcasts arrived before this event, in order, and nothing was lost;
    /// otherwise (history no longer reaches back, the server restarted, or it keeps no
    /// history) refetch what matters.
    Resumed {
        /// How long the channel was not joined.
        gap: Duration,
        /// Every broadcast sent meanwhile was delivered.
        recovered: bool,
        /// How many broadcasts the server sent again.
        missed: u64,
    },
}
