//! The subscription state machine of each channel, and the channel operations of the
//! driver: subscribe, join (and rejoin), leave, push, release.
//!
//! A channel the application wants joined (`wanted`) is joined whenever the connection
//! is up and a token is at hand, and rejoined after every loss, with the same filters,
//! presence key and last tracked payload, and the current token. Refusals are retried
//! with jittered backoff unless retrying cannot help: a bad request is never retried, and
//! an auth refusal waits for the token to change.

use std::sync::atomic::Ordering;

use crier_protocol::codes::RetryAdvice;
use crier_protocol::join::{BroadcastConfig, JoinConfig, JoinRequest, PresenceConfig};
use crier_protocol::presence::PresenceView;
use crier_protocol::{Message, Payload};
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;
use tokio_util::time::delay_queue::Key;

use super::{Buffered, Driver, Outgoing, Pending, PushRequest, SubscribeRequest, Timer};
use crate::Error;
use crate::backoff::Backoff;
use crate::channel::{ChannelOptions, PresenceState};
use crate::events::{ChannelEvent, ChannelStatus};
use crate::postgres::PostgresChangesFilter;

/// Where a channel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Closed,
    /// Waiting for the connection, a token, a backoff, or the join reply.
    Joining,
    Joined,
    Leaving,
    Errored,
}

pub(super) struct ChannelState {
    options: ChannelOptions,
    presence_enabled: bool,
    pub(super) filters: Vec<PostgresChangesFilter>,
    pub(super) binding_ids: Vec<u32>,
    pub(super) events: broadcast::Sender<ChannelEvent>,
    status: watch::Sender<ChannelStatus>,
    pub(super) presence_state: watch::Sender<PresenceState>,
    pub(super) phase: Phase,
    /// The application wants this channel joined.
    wanted: bool,
    /// The `ref` of the join in flight or in force.
    pub(super) join_ref: Option<String>,
    attempts: u32,
    pub(super) rejoin_key: Option<Key>,
    postgres_key: Option<Key>,
    /// Waiting for a token (a fetch in flight, or refused until the token changes).
    waiting_token: bool,
    refused_until_token_changes: bool,
    awaiting_postgres: bool,
    /// Why postgres changes are not live for the join in force (the server's refusal, or
    /// no confirmation in time), so a later `subscribe()` does not report them live.
    postgres_error: Option<Error>,
    subscribe_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    unsubscribe_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    pub(super) presence: PresenceView,
    last_track: Option<Map<String, Value>>,
    /// The text of the last `system` error, which names why a `phx_close` follows.
    pub(super) last_system_error: Option<String>,
    /// When the channel stopped being joined, for the `Resumed` gap.
    lost_at: Option<Instant>,
}

impl ChannelState {
    fn new(request: SubscribeRequest) -> (Self, oneshot::Sender<Result<(), Error>>) {
        let SubscribeRequest {
            topic: _,
            options,
            presence,
            filters,
            events,
            status,
            presence_state,
            reply,
        } = request;
        let state = ChannelState {
            presence_enabled: presence || options.presence,
            options,
            filters,
            binding_ids: Vec::new(),
            events,
            status,
            presence_state,
            phase: Phase::Closed,
            wanted: true,
            join_ref: None,
            attempts: 0,
            rejoin_key: None,
            postgres_key: None,
            waiting_token: false,
            refused_until_token_changes: false,
            awaiting_postgres: false,
            postgres_error: None,
            subscribe_waiters: Vec::new(),
            unsubscribe_waiters: Vec::new(),
            presence: PresenceView::new(),
            last_track: None,
            last_system_error: None,
            lost_at: None,
        };
        (state, reply)
    }

    pub(super) fn is_joined(&self) -> bool {
        self.phase == Phase::Joined
    }

    fn set_status(&mut self, phase: Phase, status: ChannelStatus) {
        self.phase = phase;
        let changed = self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status.clone();
            changed
        });
        if changed {
            let _ = self.events.send(ChannelEvent::Status(status));
        }
    }

    fn joining(&mut self) {
        self.set_status(Phase::Joining, ChannelStatus::Joining);
    }

    pub(super) fn emit(&self, event: ChannelEvent) {
        let _ = self.events.send(event);
    }

    fn resolve_subscribers(&mut self, result: Result<(), Error>) {
        for waiter in self.subscribe_waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }

    pub(super) fn fail_waiters(&mut self, error: &Error) {
        self.resolve_subscribers(Err(error.clone()));
        if self.wanted {
            self.set_status(
                Phase::Errored,
                ChannelStatus::Errored {
                    error: error.clone(),
                    retrying: false,
                },
            );
        }
    }

    /// The connection dropped: a wanted channel waits to be rejoined.
    pub(super) fn connection_lost(&mut self, now: Instant) {
        if self.phase == Phase::Joined {
            self.lost_at = Some(now);
        }
        self.join_ref = None;
        if self.wanted {
            self.joining();
        } else {
            self.set_status(Phase::Closed, ChannelStatus::Closed);
        }
    }

    /// `disconnect()`: the channel is closed for now, and rejoins on the next connect.
    pub(super) fn disconnected(&mut self, now: Instant) {
        if self.phase == Phase::Joined {
            self.lost_at = Some(now);
        }
        self.join_ref = None;
        self.resolve_subscribers(Err(Error::Disconnected));
        self.set_status(Phase::Closed, ChannelStatus::Closed);
    }

    pub(super) fn token_failed(&mut self, error: &Error) {
        if self.waiting_token {
            self.resolve_subscribers(Err(error.clone()));
        }
    }

    /// Whether this channel should (re)join now that the token was (re)fetched or set.
    pub(super) fn take_token_wait(&mut self, changed: bool) -> bool {
        let unblocked = self.refused_until_token_changes && changed;
        if unblocked {
            self.refused_until_token_changes = false;
        }
        let waiting = std::mem::take(&mut self.waiting_token);
        self.wanted && (waiting || unblocked)
    }

    fn join_payload(&self, token: Option<&str>) -> Value {
        JoinRequest {
            config: Some(JoinConfig {
                broadcast: BroadcastConfig {
                    ack: self.options.broadcast_ack,
                    self_broadcast: self.options.broadcast_self,
                    ..Default::default()
                },
                presence: PresenceConfig {
                    enabled: self.presence_enabled,
                    key: self.options.presence_key.clone(),
                },
                postgres_changes: self
                    .filters
                    .iter()
                    .map(PostgresChangesFilter::binding)
                    .collect(),
                private: self.options.private,
                postgres_changes_options: Default::default(),
            }),
            access_token: token.map(str::to_owned),
        }
        .to_payload()
    }
}

impl Driver {
    pub(super) fn subscribe(&mut self, request: SubscribeRequest) {
        let topic = request.topic.clone();
        let Some(channel) = self.channels.get_mut(&topic) else {
            let (mut state, reply) = ChannelState::new(request);
            state.subscribe_waiters.push(reply);
            self.channels.insert(topic.clone(), state);
            self.manual = false;
            self.join(&topic);
            return;
        };
        channel.wanted = true;
        if channel.is_joined() && !channel.awaiting_postgres {
            // Joined, but postgres changes may have been refused: say so again.
            let result = match &channel.postgres_error {
                Some(error) if channel.options.wait_for_postgres => Err(error.clone()),
                _ => Ok(()),
            };
            let _ = request.reply.send(result);
            return;
        }
        channel.subscribe_waiters.push(request.reply);
        channel.refused_until_token_changes = false;
        self.manual = false;
        self.join(&topic);
    }

    /// Sends a join for `topic` if everything it needs is there; otherwise arranges for
    /// the missing piece (connection, token) and joins when it arrives.
    pub(super) fn join(&mut self, topic: &str) {
        let token_in_flight = self.token_fetch.is_some();
        let needs_token = self.auth.needs_fetch(super::unix_now());
        let connected = self.live.is_some();
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        if !channel.wanted || channel.refused_until_token_changes || channel.join_ref.is_some() {
            return;
        }
        if let Some(key) = channel.rejoin_key.take() {
            self.timers.try_remove(&key);
        }
        let channel = self.channels.get_mut(topic).expect("checked above");
        channel.joining();
        if !connected {
            self.start_connect();
            return;
        }
        if token_in_flight || needs_token {
            channel.waiting_token = true;
            self.fetch_token();
            return;
        }
        let token = self.auth.current().map(str::to_owned);
        let payload = channel.join_payload(token.as_deref());
        // Only a presence-enabled join gets a presence_state to wait for (Supabase sends
        // diffs to every channel of a public topic, but the state only to those).
        if channel.presence_enabled {
            channel.presence.expect_state();
        }
        channel.last_system_error = None;
        channel.postgres_error = None;
        self.next_ref += 1;
        let join_ref = self.next_ref.to_string();
        let channel = self.channels.get_mut(topic).expect("checked above");
        channel.join_ref = Some(join_ref.clone());
        let message = Message {
            join_ref: Some(join_ref.clone()),
            msg_ref: Some(join_ref.clone()),
            topic: topic.to_owned(),
            event: "phx_join".into(),
            payload: Payload::Json(payload),
        };
        self.send(&message);
        let key = self.timers.insert(
            Timer::ReplyTimeout {
                msg_ref: join_ref.clone(),
            },
            self.options.timeout,
        );
        self.pending.insert(
            join_ref.clone(),
            (
                Pending::Join {
                    topic: topic.to_owned(),
                    join_ref,
                },
                Some(key),
            ),
        );
    }

    pub(super) fn on_join_ok(&mut self, topic: &str, response: &Value) {
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        let echoed = response
            .get("postgres_changes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut ids = Vec::with_capacity(channel.filters.len());
        for (i, filter) in channel.filters.iter().enumerate() {
            match echoed.get(i) {
                Some(echo) if filter.matches_echo(echo) => {
                    ids.push(echo.get("id").and_then(Value::as_u64).unwrap_or_default() as u32);
                }
                _ => {
                    // The server subscribed to something else: leave, and say so.
                    let error = Error::BindingMismatch;
                    channel.wanted = false;
                    channel.fail_waiters(&error);
                    self.leave_quietly(topic);
                    return;
                }
            }
        }
        channel.binding_ids = ids;
        channel.attempts = 0;
        channel.set_status(Phase::Joined, ChannelStatus::Joined);
        if let Some(lost_at) = channel.lost_at.take() {
            channel.emit(ChannelEvent::Resumed {
                gap: Instant::now().saturating_duration_since(lost_at),
            });
        }
        if !channel.filters.is_empty() && channel.options.wait_for_postgres {
            channel.awaiting_postgres = true;
            let join_ref = channel.join_ref.clone().unwrap_or_default();
            let timeout = self.options.postgres_ready_timeout;
            let key = self.timers.insert(
                Timer::PostgresReady {
                    topic: topic.to_owned(),
                    join_ref,
                },
                timeout,
            );
            let channel = self.channels.get_mut(topic).expect("present");
            channel.postgres_key = Some(key);
        } else {
            channel.resolve_subscribers(Ok(()));
        }
        // Presence survives rejoins: track the last payload again.
        let channel = self.channels.get_mut(topic).expect("present");
        if let Some(payload) = channel.last_track.clone() {
            let body = json!({"type": "presence", "event": "track", "payload": payload});
            let join_ref = channel.join_ref.clone();
            self.send_push(
                topic,
                join_ref,
                "presence",
                Outgoing::Json(body),
                Pending::Ignored,
            );
        }
        self.flush_buffer(topic);
    }

    /// The server answered `postgres_changes` status for the join in force.
    pub(super) fn postgres_status(&mut self, topic: &str, result: Result<(), Error>) {
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        // Kept even when nobody waits (a rejoin, a confirmation after the timeout): a
        // later `subscribe()` answers with it.
        channel.postgres_error = result.as_ref().err().cloned();
        if !std::mem::take(&mut channel.awaiting_postgres) {
            return;
        }
        let key = channel.postgres_key.take();
        channel.resolve_subscribers(result);
        if let Some(key) = key {
            self.timers.try_remove(&key);
        }
    }

    pub(super) fn postgres_ready_timeout(&mut self, topic: &str, join_ref: &str) {
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        channel.postgres_key = None;
        if channel.join_ref.as_deref() == Some(join_ref)
            && std::mem::take(&mut channel.awaiting_postgres)
        {
            channel.postgres_error = Some(Error::Timeout);
            channel.resolve_subscribers(Err(Error::Timeout));
        }
    }

    /// A join was refused: retry with backoff, or stop, by what the code advises.
    pub(super) fn join_failed(&mut self, topic: &str, error: Error) {
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        channel.join_ref = None;
        channel.resolve_subscribers(Err(error.clone()));
        let advice = error.retry_advice();
        let backoff = match advice {
            RetryAdvice::Never => {
                channel.wanted = false;
                channel.set_status(
                    Phase::Errored,
                    ChannelStatus::Errored {
                        error: error.clone(),
                        retrying: false,
                    },
                );
                self.drop_buffered(topic, &error);
                return;
            }
            RetryAdvice::AfterTokenChange => {
                channel.refused_until_token_changes = true;
                channel.set_status(
                    Phase::Errored,
                    ChannelStatus::Errored {
                        error,
                        retrying: false,
                    },
                );
                return;
            }
            RetryAdvice::RetryLater => Backoff::RATE_LIMITED,
            RetryAdvice::Retry => self.options.rejoin,
        };
        let delay = backoff.delay(channel.attempts);
        channel.attempts += 1;
        channel.set_status(
            Phase::Errored,
            ChannelStatus::Errored {
                error,
                retrying: true,
            },
        );
        let key = self.timers.insert(
            Timer::Rejoin {
                topic: topic.to_owned(),
            },
            delay,
        );
        let channel = self.channels.get_mut(topic).expect("present");
        channel.rejoin_key = Some(key);
    }

    pub(super) fn join_timed_out(&mut self, topic: &str, join_ref: &str) {
        let current =
            self.channels.get(topic).and_then(|c| c.join_ref.as_deref()) == Some(join_ref);
        if current {
            self.join_failed(topic, Error::Timeout);
        }
    }

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
                    event: "phx_leave".into(),
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
    fn leave_quietly(&mut self, topic: &str) {
        let join_ref = self.channels.get_mut(topic).and_then(|c| c.join_ref.take());
        if let Some(join_ref) = join_ref {
            self.next_ref += 1;
            let msg_ref = self.next_ref.to_string();
            self.send(&Message {
                join_ref: Some(join_ref),
                msg_ref: Some(msg_ref),
                topic: topic.to_owned(),
                event: "phx_leave".into(),
                payload: Payload::Json(json!({})),
            });
        }
    }

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

    pub(super) fn push(&mut self, request: PushRequest) {
        let PushRequest {
            topic,
            event,
            payload,
            wait_reply,
            track,
            reply,
        } = request;
        let connected = self.live.is_some();
        let Some(channel) = self.channels.get_mut(&topic) else {
            let _ = reply.send(Err(Error::NotSubscribed));
            return;
        };
        if let Some(track) = track {
            channel.last_track = track;
        }
        if !channel.wanted {
            let _ = reply.send(Err(Error::NotSubscribed));
            return;
        }
        if channel.is_joined() && connected {
            let join_ref = channel.join_ref.clone();
            let pending = if wait_reply {
                Pending::Push { reply }
            } else {
                let _ = reply.send(Ok(Value::Null));
                Pending::Ignored
            };
            self.send_push(&topic, join_ref, event, payload, pending);
            return;
        }
        let buffered = Buffered {
            topic,
            event,
            payload,
            wait_reply,
            reply,
        };
        if let Some(evicted) = self.buffer.push(buffered) {
            self.dropped_pushes.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %evicted.topic, "offline push buffer full: dropped the oldest push");
            let _ = evicted.reply.send(Err(Error::Dropped));
        }
    }

    /// Writes a push; `pending` says what its reply resolves (`Ignored` arms no timer).
    pub(super) fn send_push(
        &mut self,
        topic: &str,
        join_ref: Option<String>,
        event: &'static str,
        payload: Outgoing,
        pending: Pending,
    ) {
        self.next_ref += 1;
        let msg_ref = self.next_ref.to_string();
        let payload = match payload {
            Outgoing::Json(value) => Payload::Json(value),
            Outgoing::Binary(broadcast) => Payload::UserBroadcast(broadcast),
        };
        self.send(&Message {
            join_ref,
            msg_ref: Some(msg_ref.clone()),
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        });
        // A reply nobody awaits is not tracked: the server does not answer un-acked
        // broadcasts, and an entry per message would grow without bound.
        if matches!(pending, Pending::Ignored) {
            return;
        }
        let key = self.timers.insert(
            Timer::ReplyTimeout {
                msg_ref: msg_ref.clone(),
            },
            self.options.timeout,
        );
        self.pending.insert(msg_ref, (pending, Some(key)));
    }

    fn flush_buffer(&mut self, topic: &str) {
        let join_ref = self.channels.get(topic).and_then(|c| c.join_ref.clone());
        for item in self.buffer.take(|b| b.topic == topic) {
            let pending = if item.wait_reply {
                Pending::Push { reply: item.reply }
            } else {
                let _ = item.reply.send(Ok(Value::Null));
                Pending::Ignored
            };
            self.send_push(topic, join_ref.clone(), item.event, item.payload, pending);
        }
    }

    fn drop_buffered(&mut self, topic: &str, error: &Error) {
        for item in self.buffer.take(|b| b.topic == topic) {
            let _ = item.reply.send(Err(error.clone()));
        }
    }
}
