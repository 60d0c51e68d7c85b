//! The state of one joined channel, owned by its socket's task.

use std::sync::Arc;

use crier_protocol::events::TOPIC_PREFIX;
use tokio::time::Instant;

use crate::auth::Claims;
use crate::authz::ReadAccess;
use crate::changes::SubscriptionId;
use crate::limits::PresenceWindow;
use crate::registry::{Receives, Topic};

/// What a private channel's token may write, learnt at its first broadcast and first
/// track; `None` until then (and again after a token refresh).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WriteAccess {
    pub(crate) broadcast: Option<bool>,
    pub(crate) presence: Option<bool>,
}

/// One channel of one socket. Lives inside the socket's task, so no lock guards it.
#[derive(Debug)]
pub(crate) struct Channel {
    /// The registry entry this channel subscribes to.
    pub(crate) topic: Arc<Topic>,
    /// The `ref` of the `phx_join` that opened the channel; messages carrying another
    /// join_ref are for an older incarnation and are ignored.
    pub(crate) join_ref: Option<String>,
    /// Reply `ok` to broadcasts.
    pub(crate) ack: bool,
    /// Deliver own broadcasts back.
    pub(crate) self_broadcast: bool,
    /// The key this channel tracks presence under: the join's, or a random UUID made
    /// at its first track (most channels never track, and keep no key).
    pub(crate) presence_key: Option<String>,
    /// Receives presence state and diffs.
    pub(crate) presence_enabled: bool,
    /// Presence pushes allowed in the current window.
    pub(crate) presence_window: PresenceWindow,
    /// The JWT this channel is authorized by.
    pub(crate) token: Arc<str>,
    /// Its verified claims.
    pub(crate) claims: Claims,
    /// When the token expires (tokio clock).
    pub(crate) expires_at: Instant,
    /// The channel's postgres changes subscription, if it has one.
    pub(crate) postgres_changes: Option<SubscriptionId>,
    /// Joined with `private: true`: authorized by the database's policies.
    pub(crate) private: bool,
    /// What it may read (everything, on a public channel).
    pub(crate) read: ReadAccess,
    /// What it may write, as far as known (a public channel writes freely).
    pub(crate) write: WriteAccess,
    /// Waiting to attach to its topic's shared stream (see `resume`): it receives no
    /// broadcast until then, whatever a token refresh says meanwhile.
    pub(crate) attaching: bool,
}

impl Channel {
    /// What its subscription receives.
    pub(crate) fn receives(&self) -> Receives {
        Receives {
            broadcasts: self.read.broadcast,
            presence: self.presence_enabled && self.read.presence,
        }
    }

    /// The channel name: the topic without `realtime:`.
    pub(crate) fn name(&self) -> &str {
        self.topic
            .name()
            .strip_prefix(TOPIC_PREFIX)
            .unwrap_or(self.topic.name())
    }
}
