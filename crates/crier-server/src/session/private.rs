//! Private channels in a session: the read check that decides a join, the lazy write
//! checks of the first broadcast and the first track, and the read check again after a
//! token refresh.
//!
//! Checks are futures the session's loop polls next to the socket (`Session::checks`).
//! A join waits for its read check without holding anything else up: the socket keeps
//! reading, and other channels keep working. A write check is different: the message
//! that needs it waits, and so do the socket's reads until the answer is in, so that
//! messages keep their order (a broadcast sent after a track is not sent before it).
//! Only the first broadcast and the first track of a channel (and the first after a
//! token refresh) wait like this.

use crier_protocol::Message;
use crier_protocol::codes::{ErrorCode, Reason, shutdown};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::json;

use super::{ReplyAddress, Session};
use crate::auth::Claims;
use crate::authz::{AuthorizationError, ChannelCheck, Extension, ReadAccess, StoredMessage};
use crate::fanout::Outgoing;
use crate::session::join::Joining;

/// An answer the session's loop hands back to [`Session::on_check`].
pub(crate) enum CheckDone {
    /// The read check of a join, and the messages it replays when it asked to.
    Join {
        topic: String,
        join_ref: Option<String>,
        result: Result<ReadAccess, AuthorizationError>,
        replayed: Option<Result<Vec<StoredMessage>, AuthorizationError>>,
    },
    /// A write check, with the message that waited for it.
    Write {
        extension: Extension,
        result: Result<bool, AuthorizationError>,
        message: Message,
    },
    /// The read check after a token refresh.
    Refresh {
        topic: String,
        join_ref: Option<String>,
        result: Result<ReadAccess, AuthorizationError>,
    },
    /// The bus has made a join's subscription: its reply can go.
    BusSynced {
        to: super::ReplyAddress,
        response: serde_json::Value,
        after_reply: Vec<crate::frame::Frame>,
    },
    /// This node's copy of the shared stream follows a join's topic, and a resuming
    /// join has read what it may miss.
    SharedReady {
        to: super::ReplyAddress,
        join: super::resume::SharedJoin,
        fetched: Option<crate::history::Fetched>,
        /// Whether the bus confirmed the subscription in time and the shared stream is
        /// not behind the client: else a resume reports a gap.
        trusted: bool,
    },
}

/// A private join waiting for its read check.
pub(crate) struct PendingJoin {
    pub(crate) to: ReplyAddress,
    pub(crate) joining: Joining,
}

/// Whether `access` lets a channel join (or stay): broadcast read, or presence read
/// when presence is enabled.
pub(crate) fn may_read(access: ReadAccess, presence_enabled: bool) -> bool {
    access.broadcast || (presence_enabled && access.presence)
}

impl Session {
    /// The question a check asks about channel `name` for a token's `claims`.
    pub(super) fn channel_check(&self, name: &str, claims: &Claims) -> ChannelCheck {
        crate::authz::channel_check(name, claims, &self.headers)
    }

    /// Starts the read check of a private join; the join is answered in `on_check`.
    pub(super) fn start_join_check(&mut self, to: ReplyAddress, joining: Joining) {
        let Some(checks) = self.node.shared.checks.clone() else {
            tracing::debug!(topic = %to.topic, "private join refused: no authorizer is configured");
            let reason = Reason::unauthorized_read(&joining.name);
            return self.join_error(&to, reason);
        };
        let check = self.channel_check(&joining.name, &joining.claims);
        let (topic, join_ref) = (to.topic.clone(), to.join_ref.clone());
        // Checked at the join already: `checked()` is `Some` here.
        let replay = joining
            .config
            .broadcast
            .replay
            .as_ref()
            .and_then(|replay| replay.checked());
        let name = joining.name.clone();
        let read = checks.read(check);
        checks_of(&mut self.checks).push(
            async move {
                let result = read.await;
                // Stored messages are read only for a join that may read broadcasts.
                let replayed = match (&result, replay) {
                    (Ok(access), Some((since, limit))) if access.broadcast => {
                        Some(checks.replay(name, since, limit).await)
                    }
                    _ => None,
                };
                CheckDone::Join {
                    topic,
                    join_ref,
                    result,
                    replayed,
                }
            }
            .boxed(),
        );
        self.pending_joins
            .get_or_insert_default()
            .insert(to.topic.clone(), PendingJoin { to, joining });
    }

    /// Forgets a private join waiting for its check (left, or joined again).
    pub(super) fn forget_pending_join(&mut self, topic: &str) -> Option<PendingJoin> {
        let joins = self.pending_joins.as_mut()?;
        let pending = joins.remove(topic);
        if joins.is_empty() {
            self.pending_joins = None;
        }
        pending
    }

    /// Holds `message` (and the socket's reads) until the channel's write permission
    /// for `extension` is known, then handles it again.
    pub(super) fn start_write_check(&mut self, message: Message, extension: Extension) {
        let Some(channel) = self.channels.get(&message.topic) else {
            return;
        };
        let Some(checks) = self.node.shared.checks.clone() else {
            return;
        };
        let check = self.channel_check(channel.name(), &channel.claims);
        self.awaiting_write = true;
        checks_of(&mut self.checks).push(
            checks
                .write(check, extension)
                .map(move |result| CheckDone::Write {
                    extension,
                    result,
                    message,
                })
                .boxed(),
        );
    }

    /// Re-checks read after a channel's token changed.
    pub(super) fn start_refresh_check(&mut self, topic: &str) {
        let Some(channel) = self.channels.get(topic) else {
            return;
        };
        let Some(checks) = self.node.shared.checks.clone() else {
            return;
        };
        let check = self.channel_check(channel.name(), &channel.claims);
        let (topic, join_ref) = (topic.to_owned(), channel.join_ref.clone());
        checks_of(&mut self.checks).push(
            checks
                .read(check)
                .map(move |result| CheckDone::Refresh {
                    topic,
                    join_ref,
                    result,
                })
                .boxed(),
        );
    }

    /// An answer is in.
    pub(super) fn on_check(&mut self, done: CheckDone) {
        match done {
            CheckDone::Join {
                topic,
                join_ref,
                result,
                replayed,
            } => self.on_join_check(&topic, join_ref, result, replayed),
            CheckDone::Write {
                extension,
                result,
                message,
            } => {
                self.awaiting_write = false;
                self.on_write_check(extension, result, message);
            }
            CheckDone::Refresh {
                topic,
                join_ref,
                result,
            } => self.on_refresh_check(&topic, join_ref, result),
            CheckDone::BusSynced {
                to,
                response,
                after_reply,
            } => self.on_bus_synced(&to, &response, after_reply),
            CheckDone::SharedReady {
                to,
                join,
                fetched,
                trusted,
            } => self.on_shared_ready(&to, join, fetched, trusted),
        }
    }

    fn on_join_check(
        &mut self,
        topic: &str,
        join_ref: Option<String>,
        result: Result<ReadAccess, AuthorizationError>,
        replayed: Option<Result<Vec<StoredMessage>, AuthorizationError>>,
    ) {
        // Left, or joined again, meanwhile: this answer is for nobody.
        let waiting = self
            .pending_joins
            .as_ref()
            .and_then(|joins| joins.get(topic));
        if waiting.map(|p| &p.to.join_ref) != Some(&join_ref) {
            return;
        }
        let PendingJoin { to, joining } = self.forget_pending_join(topic).expect("just found");
        let presence_enabled = joining.config.presence.enabled;
        let wants_replay = joining.config.broadcast.replay.is_some();
        match result {
            // A replay is of broadcasts: it needs broadcast read, presence read is not enough.
            Ok(access) if wants_replay && !access.broadcast => {
                self.join_error(&to, Reason::unauthorized_read(&joining.name));
            }
            Ok(access) if may_read(access, presence_enabled) => match replayed {
                Some(Err(err)) => {
                    tracing::warn!(conn = self.conn.id, topic, error = %err, "replay failed");
                    let reason = Reason::new(
                        ErrorCode::UnableToReplayMessages,
                        "Realtime was unable to read the stored messages",
                    );
                    self.join_error(&to, reason);
                }
                replayed => {
                    let replayed = replayed.and_then(Result::ok).unwrap_or_default();
                    // A live copy of a replayed message is not delivered again.
                    let ids: Box<[String]> = replayed.iter().map(|m| m.id.clone()).collect();
                    self.complete_join(&to, joining, access, (!ids.is_empty()).then_some(ids));
                    for message in &replayed {
                        self.push_replayed(topic, message);
                    }
                }
            },
            Ok(_) => self.join_error(&to, Reason::unauthorized_read(&joining.name)),
            Err(AuthorizationError::Refused(why)) => {
                tracing::warn!(conn = self.conn.id, topic, role = %joining.claims.role, error = %why, "read policy error: join refused");
                self.join_error(&to, Reason::unauthorized_read(&joining.name));
            }
            Err(err) => {
                tracing::warn!(conn = self.conn.id, topic, error = %err, "private join: authorization check failed");
                self.join_error(&to, Reason::unable_to_connect());
            }
        }
    }

    /// Queues one replayed message, right after the join reply (see
    /// `Outgoing::stored`; a binary one reaches 2.0.0 sockets only, as 1.0.0 has no
    /// binary broadcast).
    fn push_replayed(&mut self, topic: &str, message: &StoredMessage) {
        let Some(outgoing) = Outgoing::stored(topic, message, true) else {
            return;
        };
        if let Some(frame) = outgoing.frame(&self.conn) {
            self.out.push(frame.clone());
        }
    }

    fn on_write_check(
        &mut self,
        extension: Extension,
        result: Result<bool, AuthorizationError>,
        message: Message,
    ) {
        let Some(channel) = self.channels.get_mut(&message.topic) else {
            return;
        };
        if message.join_ref.is_some() && message.join_ref != channel.join_ref {
            return;
        }
        let allowed = match result {
            Ok(allowed) => Some(allowed),
            Err(AuthorizationError::Refused(why)) => {
                tracing::warn!(conn = self.conn.id, topic = %message.topic, error = %why, ?extension, "write policy error: write refused");
                Some(false)
            }
            // Not known: this message is refused, the next one asks again.
            Err(err) => {
                tracing::warn!(conn = self.conn.id, topic = %message.topic, error = %err, ?extension, "write check failed");
                None
            }
        };
        match extension {
            Extension::Broadcast => channel.write.broadcast = allowed,
            Extension::Presence => channel.write.presence = allowed,
        }
        match allowed {
            Some(_) => self.on_message(message),
            None if extension == Extension::Presence => {
                let to = ReplyAddress::of(&message);
                let reason = Reason::unable_to_connect().to_string();
                self.reply(&to, "error", &json!({"reason": reason}));
            }
            // A broadcast nobody could authorize is dropped, as a denied one is.
            None => {}
        }
    }

    fn on_refresh_check(
        &mut self,
        topic: &str,
        join_ref: Option<String>,
        result: Result<ReadAccess, AuthorizationError>,
    ) {
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        if channel.join_ref != join_ref {
            return;
        }
        let name = channel.name().to_owned();
        match result {
            Ok(access) if may_read(access, channel.presence_enabled) => {
                channel.read = access;
                let mut receives = channel.receives();
                // Broadcasts start when it attaches, with what it reads then.
                receives.broadcasts &= !channel.attaching;
                let registry_topic = std::sync::Arc::clone(&channel.topic);
                let state_frame = self.state_frame_for(topic, join_ref);
                registry_topic.set_receives(self.conn.id, receives, state_frame);
            }
            Ok(_) => self.shut_down_channel(topic, &shutdown::read_revoked(&name)),
            Err(AuthorizationError::Refused(why)) => {
                tracing::warn!(conn = self.conn.id, topic, error = %why, "read policy error after a token refresh");
                self.shut_down_channel(topic, &shutdown::read_revoked(&name));
            }
            Err(err) => {
                tracing::warn!(conn = self.conn.id, topic, error = %err, "read check after a token refresh failed");
                self.shut_down_channel(topic, shutdown::UNABLE_TO_CONNECT);
            }
        }
    }
}

/// Authorization checks in flight.
pub(super) type Checks = FuturesUnordered<BoxFuture<'static, CheckDone>>;

/// The session's checks in flight (see `Session::checks`), made if there were none.
pub(super) fn checks_of(checks: &mut std::sync::Mutex<Option<Checks>>) -> &mut Checks {
    checks
        .get_mut()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_or_insert_with(FuturesUnordered::new)
}

/// Whether any check is in flight.
pub(super) fn has_checks(checks: &mut std::sync::Mutex<Option<Checks>>) -> bool {
    checks
        .get_mut()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .is_some_and(|checks| !checks.is_empty())
}

/// The next check to finish; `None` at once when none is in flight (the loop's branch
/// is disabled then).
pub(super) async fn next_check(checks: &mut std::sync::Mutex<Option<Checks>>) -> Option<CheckDone> {
    match checks
        .get_mut()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(checks) => checks.next().await,
        None => None,
    }
}
