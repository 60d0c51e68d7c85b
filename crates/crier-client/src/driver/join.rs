//! Getting a channel joined and keeping it joined: subscribe, the join itself (sent only
//! once the connection and a token are there), the server's answer, the postgres-changes
//! confirmation, and retries.
//!
//! Refusals are retried with jittered backoff unless retrying cannot help: a bad request
//! is never retried, and an auth refusal waits for the token to change.

use crier_protocol::codes::RetryAdvice;
use crier_protocol::events::{PHX_JOIN, PRESENCE, PRESENCE_TRACK};
use crier_protocol::{Message, Payload};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::channel_state::StreamPosition;
use super::channel_state::{ChannelState, Phase};
use super::pending::Pending;
use super::tokens::unix_now;
use super::{Driver, PushPayload, SubscribeRequest, Timer};
use crate::Error;
use crate::backoff::Backoff;
use crate::events::{ChannelEvent, ChannelStatus};

impl Driver {
    /// The application wants the channel joined: create it, or join it again, or answer
    /// at once when it is already joined.
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
        let needs_token = self.auth.needs_fetch(unix_now());
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
            event: PHX_JOIN.into(),
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

    /// The join was accepted: check that the server bound the filters we asked for, then
    /// resolve subscribers (or wait for postgres changes), re-track and flush the buffer.
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
        let latest = response.get("broadcast").and_then(StreamPosition::of);
        let resumed = channel.lost_at.is_some() && channel.position.is_some();
        if let Some(lost_at) = channel.lost_at.take() {
            let gap = Instant::now().saturating_duration_since(lost_at);
            if resumed && latest.is_some() {
                // The server keeps history: what was missed follows, then a `system`
                // message saying how the resume went (`on_resume_report`).
                channel.resuming = Some(gap);
            } else {
                channel.emit(ChannelEvent::Resumed {
                    gap,
                    recovered: false,
                    missed: 0,
                });
            }
        }
        if !resumed || channel.position.is_none() {
            // From where the stream is now; a resume keeps its own position, which the
            // missed broadcasts then move on.
            channel.position = latest;
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
            let body = json!({"type": PRESENCE, "event": PRESENCE_TRACK, "payload": payload});
            let join_ref = channel.join_ref.clone();
            self.send_push(
                topic,
                join_ref,
                PRESENCE,
                PushPayload::Json(body),
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

    /// No postgres-changes confirmation in time for this join (ignored for older joins).
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

    /// No answer to this join in time; ignored when a newer join replaced it.
    pub(super) fn join_timed_out(&mut self, topic: &str, join_ref: &str) {
        let current =
            self.channels.get(topic).and_then(|c| c.join_ref.as_deref()) == Some(join_ref);
        if current {
            self.join_failed(topic, Error::Timeout);
        }
    }
}
