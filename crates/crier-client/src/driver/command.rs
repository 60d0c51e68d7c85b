//! The driver's command protocol: everything a handle can ask of the driver task.
//!
//! Handles only ever talk to the driver through these messages (answers come back on the
//! oneshots they carry), which is what lets one task own all the state.

use std::time::Duration;

use crier_protocol::UserBroadcast;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, oneshot, watch};

use crate::Error;
use crate::events::{ChannelEvent, ChannelStatus, PresenceState};
use crate::options::ChannelOptions;
use crate::postgres::PostgresChangesFilter;

/// What a handle asks of the driver.
pub(crate) enum Command {
    /// Connect (or join the attempt in progress); answered once connected or failed.
    Connect(oneshot::Sender<Result<(), Error>>),
    /// Close the connection and stay down until the next `Connect` or subscribe.
    Disconnect(oneshot::Sender<()>),
    /// A token set by hand, or `None` to go back to the provider.
    SetAuth(Option<String>, oneshot::Sender<()>),
    /// A heartbeat now; answered with its round trip.
    Probe(oneshot::Sender<Result<Duration, Error>>),
    /// Boxed: it is by far the largest variant, and every command moves through a queue.
    Subscribe(Box<SubscribeRequest>),
    /// Leave a channel and answer once the server confirms (or the timeout).
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// Send on a channel, or buffer while it cannot send.
    Push(PushRequest),
    /// The last handle of a channel was dropped.
    Release { topic: String },
}

/// A push on a channel: a broadcast or a presence event.
pub(crate) struct PushRequest {
    pub(crate) topic: String,
    pub(crate) event: &'static str,
    pub(crate) payload: PushPayload,
    /// Wait for the server's reply (ack'd broadcasts, presence) or resolve once sent.
    pub(crate) wait_reply: bool,
    /// For presence pushes: the payload to track again after a rejoin (`Some(None)` for
    /// an untrack).
    pub(crate) track: Option<Option<Map<String, Value>>>,
    pub(crate) reply: oneshot::Sender<Result<Value, Error>>,
}

/// A join request, carrying the channel's half of the channels the driver publishes on:
/// the driver keeps the senders, the handle keeps the receivers.
pub(crate) struct SubscribeRequest {
    pub(crate) topic: String,
    pub(crate) options: ChannelOptions,
    /// Presence listeners were taken before subscribing (turns presence on for the join).
    pub(crate) presence: bool,
    /// The postgres-changes filters, in registration order (their index is how routed
    /// changes find their stream).
    pub(crate) filters: Vec<PostgresChangesFilter>,
    pub(crate) events: broadcast::Sender<ChannelEvent>,
    pub(crate) status: watch::Sender<ChannelStatus>,
    pub(crate) presence_state: watch::Sender<PresenceState>,
    pub(crate) reply: oneshot::Sender<Result<(), Error>>,
}

/// What a push carries. Named apart from the server's `fanout::Outgoing` (a frame shared
/// by many sockets): this is one push's payload, before the driver encodes it.
#[derive(Debug, Clone)]
pub(crate) enum PushPayload {
    /// A JSON payload (broadcast or presence body), either serializer.
    Json(Value),
    /// A binary user broadcast (serializer 2.0.0 only).
    Binary(UserBroadcast),
}
