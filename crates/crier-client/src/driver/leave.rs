//! How a channel stops being joined: the application leaves (`unsubscribe`) or drops its
//! last handle (`release`), or the server closes or crashes the channel.

use crier_protocol::events::PHX_LEAVE;
use crier_protocol::presence::PresenceView;
use crier_protocol::{Message, Payload};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::channel_state::Phase;
use super::pending::Pending;
use super::{Driver, Timer};
use crate::Error;
use crate::events::{ChannelStatus, PresenceState};

impl Driver {
    /// The server closed the channel (token expired, a limit, a policy change).
    pub(super) fn closed_by_server(&mut self, topic: &str) {
        let has_provider = self.auth.provider().is_some();
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        if channel.phase == Phase::Leaving {
            return; // our own leave; its reply finishes it
        }
        let reason = channel
            .last_system_error
            .take()
            .unwrap_or_else(|| "closed".into());
        channel.join_ref = None;
        if channel.phase == Phase::Joined {
            channel.lost_at = Some(Instant::now());
        }
        if reason.starts_with("Token has expired") && has_provider && channel.wanted {
            // A fresh token, then a rejoin.
            channel.waiting_token = true;
            channel.joining();
            self.fetch_token();
            return;
        }
        let error = Error::ChannelClosed { reason };
        channel.wanted = false;
        channel.resolve_subscribers(Err(error.clone()));
        channel.set_status(Phase::Closed, ChannelStatus::Closed);
        self.drop_buffered(topic, &error);
    }

    /// The channel crashed on the server (`phx_error`): rejoin with backoff.
    pub(super) fn errored_by_server(&mut self, topic: &str) {
        if let Some(channel) = self.channels.get_mut(topic) {
            if channel.phase == Phase::Joined {
                channel.lost_at = Some(Instant::now());
            }
            channel.join_ref = None;
        }
        self.join_failed(
            topic,
            Error::ChannelClosed {
                reason: "channel error".into(),
            },
        );
    }

    /// The application leaves: the channel is no longer wanted. With a join in force (or in
    /// flight) on a live connection, a leave goes out and `reply` waits for its answer;
    /// otherwise the channel is closed at once.
    pub(super) fn unsubscribe(&mut self, topic: &str, reply: oneshot::Sender<Result<(), Error>>) {
        let connected = self.live.is_some();
        let Some(channel) = self.channels.get_mut(topic) else {
            let _ = reply.send(Ok(()));
            return;
        };
        channel.wanted = false;
        channel.resolve_subscribers(Err(Error::NotSubscribed));
        let keys = [channel.rejoin_key.take(), channel.postgres_key.take()];
        channel.awaiting_postgres = false;
        let join_ref = channel.join_ref.clone();
        for key in keys.into_iter().flatten() {
            self.timers.try_remove(&key);
        }
        let channel = self.channels.get_mut(topic).expect("present");
        match join_ref {
            Some(join_ref) if connected => {
                channel.unsubscribe_waiters.push(reply);
                channel.set_status(Phase::Leaving, ChannelStatus::Leaving);
                self.next_ref += 1;
                let msg_ref = self.next_ref.to_string();
                self.send(&Message {
                    join_ref: Some(join_ref),
                    msg_ref: Some(msg_ref.clone()),
                    topic: topic.to_owned(),
                    event: PHX_LEAVE.into(),
                    payload: Payload::Json(json!({})),
                });
                let key = self.timers.insert(
                    Timer::ReplyTimeout {
                        msg_ref: msg_ref.clone(),
                    },
                    self.options.timeout,
                );
                self.pending.insert(
                    msg_ref,
                    (
                        Pending::Leave {
                            topic: topic.to_owned(),
                        },
                        Some(key),
                    ),
                );
            }
            _ => {
                channel.join_ref = None;
                channel.set_status(Phase::Closed, ChannelStatus::Closed);
                let _ = reply.send(Ok(()));
            }
        }
        self.drop_buffered(topic, &Error::NotSubscribed);
    }

    /// The leave was answered (or timed out, or the connection went): the channel is closed.
    pub(super) fn leave_done(&mut self, topic: &str) {
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        channel.join_ref = None;
        channel.presence = PresenceView::new();
        let _ = channel.presence_state.send_replace(PresenceState::new());
        if !channel.wanted {
            channel.set_status(Phase::Closed, ChannelStatus::Closed);
        }
        for waiter in channel.unsubscribe_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
        if channel.wanted {
            // Subscribed again while the leave was in flight.
            self.join(topic);
        }
    }

    /// Leaves without waiting (the last handle is gone, or the bindings did not match).
    pub(super) fn leave_quietly(&mut self, topic: &str) {
        let join_ref = self.channels.get_mut(topic).and_then(|c| c.join_ref.take());
        if let Some(join_ref) = join_ref {
            self.next_ref += 1;
            let msg_ref = self.next_ref.to_string();
            self.send(&Message {
                join_ref: Some(join_ref),
                msg_ref: Some(msg_ref),
                topic: topic.to_owned(),
                event: PHX_LEAVE.into(),
                payload: Payload::Json(json!({})),
            });
        }
    }

    /// The last handle is gone: leave without waiting and forget the channel.
    pub(super) fn release(&mut self, topic: &str) {
        self.leave_quietly(topic);
        if let Some(mut channel) = self.channels.remove(topic) {
            channel.resolve_subscribers(Err(Error::NotSubscribed));
            for key in [channel.rejoin_key.take(), channel.postgres_key.take()]
                .into_iter()
                .flatten()
            {
                self.timers.try_remove(&key);
            }
        }
        self.drop_buffered(topic, &Error::NotSubscribed);
    }
}
