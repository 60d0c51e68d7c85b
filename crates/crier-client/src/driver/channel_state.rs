//! The subscription state of one channel, as the driver keeps it.
//!
//! A channel the application wants joined (`wanted`) is joined whenever the connection
//! is up and a token is at hand, and rejoined after every loss, with the same filters,
//! presence key and last tracked payload, and the current token. The transitions that
//! need only the channel itself live here; those that send or arm timers are driver
//! operations (`join.rs`, `leave.rs`).

use crier_protocol::join::{
    BroadcastConfig, JoinConfig, JoinRequest, PresenceConfig, ReplayConfig, ResumeFrom,
};
use crier_protocol::presence::PresenceView;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;
use tokio_util::time::delay_queue::Key;

use super::SubscribeRequest;
use crate::Error;
use crate::events::{ChannelEvent, ChannelStatus, PresenceState};
use crate::options::ChannelOptions;
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

/// One channel as the driver tracks it: what its join asks for, where it stands, who
/// waits on it, and the senders its handles listen to.
pub(super) struct ChannelState {
    pub(super) options: ChannelOptions,
    pub(super) presence_enabled: bool,
    pub(super) filters: Vec<PostgresChangesFilter>,
    pub(super) binding_ids: Vec<u32>,
    events: broadcast::Sender<ChannelEvent>,
    status: watch::Sender<ChannelStatus>,
    pub(super) presence_state: watch::Sender<PresenceState>,
    pub(super) phase: Phase,
    /// The application wants this channel joined.
    pub(super) wanted: bool,
    /// The `ref` of the join in flight or in force.
    pub(super) join_ref: Option<String>,
    pub(super) attempts: u32,
    pub(super) rejoin_key: Option<Key>,
    pub(super) postgres_key: Option<Key>,
    /// Waiting for a token (a fetch in flight, or refused until the token changes).
    pub(super) waiting_token: bool,
    pub(super) refused_until_token_changes: bool,
    pub(super) awaiting_postgres: bool,
    /// Why postgres changes are not live for the join in force (the server's refusal, or
    /// no confirmation in time), so a later `subscribe()` does not report them live.
    pub(super) postgres_error: Option<Error>,
    pub(super) subscribe_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    pub(super) unsubscribe_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    pub(super) presence: PresenceView,
    pub(super) last_track: Option<Map<String, Value>>,
    /// The text of the last `system` error, which names why a `phx_close` follows.
    pub(super) last_system_error: Option<String>,
    /// When the channel stopped being joined, for the `Resumed` gap.
    pub(super) lost_at: Option<Instant>,
    /// The last place in the topic's stream this channel received (the join reply's, then
    /// each broadcast's): a rejoin resumes from it, and a broadcast at or before it is a
    /// duplicate.
    pub(super) position: Option<StreamPosition>,
    /// A rejoin asked to resume: the gap it covers, until the server says how it went.
    pub(super) resuming: Option<std::time::Duration>,
}

/// A place in a topic's stream, as the server numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StreamPosition {
    pub(super) epoch: String,
    pub(super) offset: u64,
}

impl StreamPosition {
    /// `{"epoch": "...", "offset": N}` (a join reply's `broadcast`, a broadcast's `meta`,
    /// a resume report); `None` without both.
    pub(super) fn of(value: &Value) -> Option<StreamPosition> {
        Some(StreamPosition {
            epoch: value.get("epoch")?.as_str()?.to_owned(),
            offset: value.get("offset")?.as_u64()?,
        })
    }
}

impl ChannelState {
    /// Notes a broadcast's place in the stream (`meta.epoch`, `meta.offset`); false when
    /// it is at or before the last one received, a copy to drop (a resume overlapping
    /// what arrived before the connection went).
    pub(super) fn advance(&mut self, meta: Option<&Value>) -> bool {
        let Some(at) = meta.and_then(StreamPosition::of) else {
            return true;
        };
        if let Some(last) = &self.position
            && last.epoch == at.epoch
            && at.offset <= last.offset
        {
            return false;
        }
        self.position = Some(at);
        true
    }

    /// The server's `system` report on a resume: `Resumed` for the app, and, when
    /// history could not serve it, the stream's position from now on.
    pub(super) fn on_resume_report(&mut self, report: &Value) {
        let Some(gap) = self.resuming.take() else {
            return;
        };
        let recovered = report.get("recovered").and_then(Value::as_bool) == Some(true);
        if !recovered {
            self.position = StreamPosition::of(report);
        }
        self.emit(ChannelEvent::Resumed {
            gap,
            recovered,
            missed: report.get("missed").and_then(Value::as_u64).unwrap_or(0),
        });
    }

    /// A channel from its subscribe request; the reply is handed back for the caller to
    /// queue as the first subscribe waiter.
    pub(super) fn new(request: SubscribeRequest) -> (Self, oneshot::Sender<Result<(), Error>>) {
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
        // A given position is resumed from like a rejoin's.
        let position = options
            .resume_from
            .as_ref()
            .map(|(epoch, offset)| StreamPosition {
                epoch: epoch.clone(),
                offset: *offset,
            });
        let lost_at = position.as_ref().map(|_| Instant::now());
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
            lost_at,
            position,
            resuming: None,
        };
        (state, reply)
    }

    /// Whether the join in force was accepted.
    pub(super) fn is_joined(&self) -> bool {
        self.phase == Phase::Joined
    }

    /// Moves to `phase` and publishes `status` (once per change) to the status watch and
    /// the event stream.
    pub(super) fn set_status(&mut self, phase: Phase, status: ChannelStatus) {
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

    /// A join is on its way, or waits for what it needs.
    pub(super) fn joining(&mut self) {
        self.set_status(Phase::Joining, ChannelStatus::Joining);
    }

    /// Publishes an event to the channel's streams (none listening is fine).
    pub(super) fn emit(&self, event: ChannelEvent) {
        let _ = self.events.send(event);
    }

    /// Answers every pending `subscribe()`.
    pub(super) fn resolve_subscribers(&mut self, result: Result<(), Error>) {
        for waiter in self.subscribe_waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }

    /// Fails pending subscribes; a wanted channel shows the error, not retrying.
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

    /// The token provider failed: subscribes waiting for a token get the error.
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

    /// The `phx_join` payload: broadcast and presence settings, filters, and the token.
    pub(super) fn join_payload(&self, token: Option<&str>) -> Value {
        JoinRequest {
            config: Some(JoinConfig {
                broadcast: BroadcastConfig {
                    ack: self.options.broadcast_ack,
                    self_broadcast: self.options.broadcast_self,
                    replay: self.options.replay.map(|(since, limit)| ReplayConfig {
                        since: Some(since),
                        limit,
                        malformed: false,
                    }),
                    replication_ready: self.options.replication_ready,
                    // Only a rejoin resumes: a first join starts from where the stream is.
                    resume: self
                        .position
                        .as_ref()
                        .filter(|_| self.lost_at.is_some())
                        .map(|position| ResumeFrom {
                            epoch: position.epoch.clone(),
                            offset: position.offset,
                        }),
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
