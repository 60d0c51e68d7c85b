//! Replies the driver waits for, by `ref`, each with its timeout in the timer queue.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Driver;
use crate::Error;
use crate::heartbeat::HeartbeatEvent;

/// What a `ref` awaits.
pub(super) enum Pending {
    Join {
        topic: String,
        join_ref: String,
    },
    Leave {
        topic: String,
    },
    Push {
        reply: oneshot::Sender<Result<Value, Error>>,
    },
    Probe {
        sent: Instant,
        reply: oneshot::Sender<Result<Duration, Error>>,
    },
    /// A push whose reply nobody waits for (an automatic re-track).
    Ignored,
}

impl Driver {
    /// Fails every reply still awaited; joins and leaves resolve through their channels.
    pub(super) fn fail_pending(&mut self, error: impl Fn() -> Error) {
        for (_, (pending, key)) in std::mem::take(&mut self.pending) {
            if let Some(key) = key {
                self.timers.try_remove(&key);
            }
            match pending {
                Pending::Push { reply } => {
                    let _ = reply.send(Err(error()));
                }
                Pending::Probe { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Pending::Leave { topic } => self.leave_done(&topic),
                Pending::Join { .. } | Pending::Ignored => {}
            }
        }
    }

    /// A reply did not come in time: fail what awaited it. An unanswered probe also means
    /// the connection is dead.
    pub(super) fn on_reply_timeout(&mut self, pending: Pending) {
        match pending {
            Pending::Join { topic, join_ref } => self.join_timed_out(&topic, &join_ref),
            Pending::Leave { topic } => self.leave_done(&topic),
            Pending::Push { reply } => {
                let _ = reply.send(Err(Error::Timeout));
            }
            Pending::Probe { reply, .. } => {
                let _ = reply.send(Err(Error::Timeout));
                let _ = self.heartbeats.send(HeartbeatEvent::Timeout);
                self.connection_lost("probe timeout");
            }
            Pending::Ignored => {}
        }
    }
}
