//! A join: the checks made at once (in Supabase's order), the subscription, its reply,
//! and what follows it (postgres changes, `replication_ready`, a resume's missed
//! broadcasts).

use std::time::Duration;

use crier_protocol::codes::{CloseCode, ErrorCode, REPLICATION_ESTABLISHED, Reason, shutdown};
use crier_protocol::events::{
    EXTENSION_POSTGRES_CHANGES, PRESENCE_STATE, SYSTEM, TOPIC_PREFIX, is_valid_topic,
};
use crier_protocol::join::{JoinRequest, PostgresChangeBinding};
use crier_protocol::serializer::Envelope;
use crier_protocol::{Message, Payload};
use serde_json::{Value, json};

use super::channel::{Channel, WriteAccess};
use super::handlers::UNMATCHED_TOPIC;
use super::{ReplyAddress, Session};
use crate::auth::Claims;
use crate::authz::ReadAccess;
use crate::changes::{Binding, DeferredJoin, Identity};
use crate::fanout::encode_one;
use crate::limits::PresenceWindow;
use crate::outbound::Outbound;
use crate::registry::{Receives, topic_key};

/// How long a join that waits for its postgres changes may wait, unless it says (the
/// default realtime-js gives itself).
const DEFAULT_WAIT: Duration = Duration::from_secs(15);
/// How long `broadcast.replication_ready` waits for broadcasts from the database to
/// stream before it shuts the channel down (Supabase's limit).
const REPLICATION_READY_LIMIT: Duration = Duration::from_secs(60);
/// The `system` message a join with postgres_changes gets while no database is configured.
const NO_DATABASE: &str =
    "Postgres changes are unavailable: no database is configured on this server";

impl Session {
    /// `phx_join`, with the checks in Supabase's order.
    pub(super) fn join(&mut self, message: Message) {
        let to = ReplyAddress::of(&message);
        let topic = message.topic.as_str();
        if topic == TOPIC_PREFIX {
            return self.join_error(&to, Reason::topic_name_required());
        }
        let Some(name) = topic.strip_prefix(TOPIC_PREFIX) else {
            return self.reply(&to, "error", &json!({"reason": UNMATCHED_TOPIC}));
        };
        if !is_valid_topic(topic) {
            return self.join_error(&to, Reason::invalid_topic());
        }
        // A second join of a joined topic closes the first, as Phoenix does (and
        // abandons one still waiting for its check).
        if let Some(old) = self.channels.remove(topic) {
            self.push_close(old.join_ref.as_deref(), topic);
            self.release(old);
        }
        self.forget_pending_join(topic);
        let request = match &message.payload {
            Payload::Json(payload) => JoinRequest::parse(payload),
            _ => {
                return self.join_error(
                    &to,
                    Reason::new(ErrorCode::InvalidJoinPayload, "payload: expected a map"),
                );
            }
        };
        let request = match request {
            Ok(request) => request,
            Err(err) => {
                return self.join_error(
                    &to,
                    Reason::new(ErrorCode::InvalidJoinPayload, err.to_string()),
                );
            }
        };
        let shared = std::sync::Arc::clone(&self.node.shared);
        if shared.shutdown.is_cancelled() {
            return self.join_error(&to, Reason::restarting());
        }
        let private = request.config.as_ref().is_some_and(|config| config.private);
        if shared.config.authorization.private_only && !private {
            return self.join_error(&to, Reason::private_only());
        }
        if shared.counters.joins.is_over_limit() {
            shared.metrics.rate_limited.inc();
            self.join_error(&to, Reason::too_many_joins());
            self.closing = Some((CloseCode::Normal, "too many joins per second"));
            return;
        }
        shared.counters.joins.add(1);
        let pending = self.pending_joins.as_ref().map_or(0, |joins| joins.len());
        let channels = self.channels.len() + pending;
        if channels >= shared.config.limits.max_channels_per_client {
            return self.join_error(&to, Reason::too_many_channels());
        }
        let token = request
            .access_token
            .map_or_else(|| std::sync::Arc::clone(&self.connect_token), Into::into);
        let claims = match shared.verifier.verify(&token, shared.clock.unix_now()) {
            Ok(claims) => claims,
            Err(err) => return self.join_error(&to, err.join_reason()),
        };
        let config = request.config.unwrap_or_default();
        if let Some(replay) = &config.broadcast.replay {
            if replay.checked().is_none() {
                return self.join_error(&to, Reason::invalid_replay_params());
            }
            if !config.private {
                return self.join_error(&to, Reason::replay_on_public_channel());
            }
        }
        let joining = Joining {
            name: name.to_owned(),
            config,
            token,
            claims,
        };
        if joining.config.private {
            return self.start_join_check(to, joining);
        }
        let everything = ReadAccess {
            broadcast: true,
            presence: true,
        };
        self.complete_join(&to, joining, everything, None);
    }

    /// Encodes the `presence_state` a channel of `topic` gets when it starts receiving
    /// presence.
    pub(super) fn state_frame_for(
        &self,
        topic: &str,
        join_ref: Option<String>,
    ) -> impl FnOnce(&crier_protocol::presence::PresenceGroups) -> crate::frame::Frame + use<> {
        let vsn = self.vsn;
        let topic = topic.to_owned();
        move |state| {
            let envelope = Envelope {
                join_ref: join_ref.as_deref(),
                msg_ref: None,
                topic: &topic,
                event: PRESENCE_STATE,
            };
            encode_one(vsn, &envelope, state)
        }
    }

    /// Subscribes a join that passed every check, and answers it.
    /// Subscribes a channel whose join passed its checks, and answers the join.
    /// `replayed`: ids of the stored messages replayed to it, not to be delivered again.
    pub(super) fn complete_join(
        &mut self,
        to: &ReplyAddress,
        joining: Joining,
        read: ReadAccess,
        replayed: Option<Box<[String]>>,
    ) {
        let shared = std::sync::Arc::clone(&self.node.shared);
        let Joining {
            config,
            token,
            claims,
            ..
        } = joining;
        let topic = to.topic.as_str();
        let presence_enabled = config.presence.enabled;
        let receives = Receives {
            broadcasts: read.broadcast,
            presence: presence_enabled && read.presence,
        };
        let state_frame = self.state_frame_for(topic, to.join_ref.clone());
        let key = topic_key(topic, config.private);
        // A resume is of broadcasts: a channel that may not read them has nothing to get.
        let resume = config
            .broadcast
            .resume
            .as_ref()
            .filter(|_| receives.broadcasts);
        // A bus that subscribes on its own task also brings other nodes' presences then:
        // the channel's presence state waits until it has.
        let bus_later = shared.broker.confirms_later();
        // With a history the cluster shares, a join is answered once this node knows
        // where the topic's stream stands, and a resuming channel receives broadcasts
        // only once it has what it missed (see `resume`).
        let shared_stream = shared.shared_history.is_some()
            && resume.is_some_and(|_| config.postgres_changes.is_empty());
        let shared_stream_resume = shared_stream;
        let subscribed = Receives {
            presence: receives.presence && !bus_later,
            broadcasts: receives.broadcasts && !shared_stream,
        };
        let ((registry_topic, first_here), attached) = self.subscribe_in_stream(
            &key,
            subscribed,
            replayed,
            resume.filter(|_| !shared_stream),
            state_frame,
        );
        let shared_stream = shared_stream
            || (shared.shared_history.is_some()
                && config.postgres_changes.is_empty()
                && shared.history.as_ref().is_some_and(|h| !h.follows(&key)));
        // The reply to a topic's first join here waits for the bus (see
        // `Broker::confirms_later`), and its presence state comes after the reply.
        let wait_for_bus = first_here && bus_later && config.postgres_changes.is_empty();
        if subscribed != receives && !wait_for_bus && !shared_stream {
            let state_frame = self.state_frame_for(topic, to.join_ref.clone());
            registry_topic.set_receives(self.conn.id, receives, state_frame);
        }
        if receives.presence {
            shared.counters.presence_events.add(1);
        }
        let limits = &shared.config.limits;
        let channel = Channel {
            topic: registry_topic,
            join_ref: to.join_ref.clone(),
            ack: config.broadcast.ack,
            self_broadcast: config.broadcast.self_broadcast,
            presence_key: config.presence.key,
            presence_enabled,
            presence_window: PresenceWindow::new(
                limits.client_presence_max_calls,
                limits.client_presence_window,
            ),
            token,
            expires_at: shared.clock.instant_at(claims.exp),
            claims,
            postgres_changes: None,
            private: config.private,
            read,
            write: WriteAccess::default(),
            attaching: shared_stream_resume,
        };
        self.channels.insert(topic.to_owned(), Box::new(channel));
        shared.metrics.channels.inc();

        let bindings: Vec<Value> = config.postgres_changes.iter().map(|b| b.echo()).collect();
        let mut response = json!({"postgres_changes": bindings});
        if let Some(attached) = &attached {
            response["broadcast"] =
                json!({"epoch": &*attached.latest.epoch, "offset": attached.latest.offset});
        }
        if config.broadcast.replication_ready {
            self.watch_replication(to);
        }
        if shared_stream {
            let pending = super::resume::SharedJoin {
                key: key.into_owned(),
                resume: resume.cloned(),
                subscribed,
                response,
            };
            return self.attach_when_following(to, pending);
        }
        let after_reply = match resume {
            Some(_) => self.resume_frames(to, attached),
            None => Vec::new(),
        };
        if wait_for_bus {
            return self.reply_when_bus_synced(to, response, after_reply);
        }
        if config.postgres_changes.is_empty() {
            self.reply(to, "ok", &response);
            self.out.extend(after_reply);
            return;
        }
        let options = &config.postgres_changes_options;
        let mut after_reply = Some(after_reply);
        let deferred = (options.wait && shared.changes.is_some()).then(|| DeferredJoin {
            msg_ref: to.msg_ref.clone(),
            response: response.clone(),
            timeout: options
                .timeout_ms
                .map_or(DEFAULT_WAIT, Duration::from_millis),
            after_reply: after_reply.take().unwrap_or_default(),
        });
        if deferred.is_none() {
            self.reply(to, "ok", &response);
            self.out.extend(after_reply.unwrap_or_default());
        }
        self.subscribe_to_changes(to, &config.postgres_changes, deferred);
    }

    /// `config.broadcast.replication_ready`: tells the channel with a `system` message
    /// once broadcasts from the database are streaming, or shuts it down when they are
    /// not within [`REPLICATION_READY_LIMIT`] (at once when no database is configured,
    /// as they never will be), as Supabase does.
    fn watch_replication(&self, to: &ReplyAddress) {
        let shared = &self.node.shared;
        let changes = shared.changes.clone();
        let conn = std::sync::Arc::clone(&self.conn);
        let topic: std::sync::Arc<str> = std::sync::Arc::from(to.topic.as_str());
        let join_ref = to.join_ref.clone();
        shared.tasks.spawn(async move {
            let live = match &changes {
                Some(changes) => changes.broadcasts_live(REPLICATION_READY_LIMIT).await,
                None => false,
            };
            if !live {
                conn.queue.push_own(Outbound::ShutdownChannel {
                    topic,
                    message: shutdown::REPLICATION_NOT_ESTABLISHED,
                });
                return;
            }
            let envelope = Envelope {
                join_ref: join_ref.as_deref(),
                msg_ref: None,
                topic: &topic,
                event: SYSTEM,
            };
            let body = json!({"extension": "system", "status": "ok",
                              "message": REPLICATION_ESTABLISHED});
            // Queued after the join reply, which the session writes before it next reads.
            let frame = encode_one(conn.vsn, &envelope, &body);
            conn.queue.push_own(Outbound::Frame(frame));
        });
    }

    /// Subscribes a just-joined channel to postgres changes. How the subscription went
    /// arrives as a `system` message, as in Supabase: at once when the bindings cannot work
    /// here, after the database's checks otherwise. A join that asked to wait
    /// (`postgres_changes_options.wait`) is answered only then instead, and refused if
    /// they fail.
    fn subscribe_to_changes(
        &mut self,
        to: &ReplyAddress,
        bindings: &[PostgresChangeBinding],
        deferred: Option<DeferredJoin>,
    ) {
        let topic = to.topic.as_str();
        let channel = &self.channels[topic];
        let (join_ref, name) = (channel.join_ref.clone(), channel.name().to_owned());
        let failure = match (&self.node.shared.changes, Binding::parse_all(bindings)) {
            (None, _) => NO_DATABASE.to_owned(),
            (Some(_), Err(message)) => message,
            (Some(changes), Ok(bindings)) => {
                let identity = identity_of(&channel.claims);
                let id =
                    changes.subscribe(&self.conn, topic, join_ref, bindings, identity, deferred);
                self.channels
                    .get_mut(topic)
                    .expect("just joined")
                    .postgres_changes = Some(id);
                return;
            }
        };
        if deferred.is_some() {
            let channel = self.channels.remove(topic).expect("just joined");
            self.release(channel);
            self.node.shared.metrics.join_errors.inc();
            return self.reply(to, "error", &json!({"reason": failure}));
        }
        let body = json!({"extension": EXTENSION_POSTGRES_CHANGES, "status": "error",
                          "message": failure, "channel": name});
        self.push(join_ref.as_deref(), topic, SYSTEM, &body);
    }
}

/// A join that passed the checks made at once, waiting to be subscribed (at once for a
/// public channel, after its read check for a private one).
pub(crate) struct Joining {
    /// The channel name, the topic without `realtime:`.
    pub(crate) name: String,
    pub(crate) config: crier_protocol::join::JoinConfig,
    pub(crate) token: std::sync::Arc<str>,
    pub(crate) claims: Claims,
}

/// Whom a channel's postgres changes are authorized as: its token's role and claims.
pub(super) fn identity_of(claims: &Claims) -> Identity {
    Identity {
        role: claims.role.clone(),
        claims: claims.all.to_string(),
    }
}
