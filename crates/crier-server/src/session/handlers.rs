//! What a session does with each message: routing (Phoenix rules), join, leave,
//! broadcast, presence and token refresh.

use std::sync::Arc;
use std::time::Duration;

use crier_protocol::codes::{CloseCode, ErrorCode, REPLICATION_ESTABLISHED, Reason, shutdown};
use crier_protocol::events::{
    ACCESS_TOKEN, BROADCAST, EXTENSION_POSTGRES_CHANGES, HEARTBEAT, PHOENIX_TOPIC, PHX_ERROR,
    PHX_JOIN, PHX_LEAVE, PRESENCE, PRESENCE_STATE, PRESENCE_TRACK, PRESENCE_UNTRACK, SYSTEM,
    TOPIC_PREFIX, is_valid_topic,
};
use crier_protocol::join::{JoinRequest, PostgresChangeBinding};
use crier_protocol::serializer::{DecodeError, Envelope};
use crier_protocol::{Message, Payload, PayloadEncoding, UserBroadcast};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::channel::{Channel, WriteAccess};
use super::{ReplyAddress, Session};
use crate::auth::Claims;
use crate::authz::{Extension, ReadAccess};
use crate::changes::{Binding, DeferredJoin, Identity};
use crate::fanout::{Content, Outgoing, encode_one, to_raw};
use crate::limits::PresenceWindow;
use crate::outbound::Outbound;
use crate::registry::{Receives, topic_key};

/// Phoenix's reason for a push to a topic the socket has not joined.
const UNMATCHED_TOPIC: &str = "unmatched topic";
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
    pub(super) fn on_message(&mut self, message: Message) {
        if message.topic == PHOENIX_TOPIC {
            let to = ReplyAddress::of(&message);
            if message.event == HEARTBEAT {
                self.reply(&to, "ok", &json!({}));
            } else {
                self.reply(&to, "error", &json!({"reason": UNMATCHED_TOPIC}));
            }
            return;
        }
        if message.event == PHX_JOIN {
            return self.join(message);
        }
        let Some(channel) = self.channels.get(&message.topic) else {
            let to = ReplyAddress::of(&message);
            if message.event == PHX_LEAVE {
                // Phoenix answers a leave of an unknown topic with ok: it is already left.
                // A private join still waiting for its check is abandoned.
                self.pending_joins.remove(&message.topic);
                self.reply(&to, "ok", &json!({}));
            } else {
                self.reply(&to, "error", &json!({"reason": UNMATCHED_TOPIC}));
            }
            return;
        };
        if let Some(join_ref) = &message.join_ref
            && channel.join_ref.as_ref() != Some(join_ref)
        {
            tracing::debug!(conn = self.conn.id, topic = %message.topic, "ignoring message with a stale join_ref");
            return;
        }
        match message.event.as_str() {
            PHX_LEAVE => self.leave(message),
            BROADCAST => self.broadcast(message),
            PRESENCE => self.presence(message),
            ACCESS_TOKEN => self.refresh_token(message),
            other => {
                // Counted like any inbound message, as Supabase does.
                self.node.shared.counters.events.add(1);
                let reason = Reason::new(
                    ErrorCode::UnknownEvent,
                    format!(
                        "unknown event `{other}`; a channel accepts broadcast, presence, access_token and phx_leave"
                    ),
                );
                let to = ReplyAddress::of(&message);
                self.reply(&to, "error", &json!({"reason": reason.to_string()}));
            }
        }
    }

    /// A frame that did not decode. The socket stays open (as in Phoenix); the sender
    /// gets a `phx_reply` error when its `ref` and topic were readable, and otherwise a
    /// `phx_error` on the `phoenix` topic, which no channel listens to but which shows
    /// up in every client's message log.
    pub(super) fn on_malformed(&mut self, err: DecodeError) {
        self.node.shared.metrics.malformed_frames.inc();
        tracing::debug!(conn = self.conn.id, error = %err, "malformed frame");
        let reason = Reason::new(ErrorCode::MalformedMessage, err.kind.to_string()).to_string();
        match err.reply_to {
            Some(reply_to) => {
                let to = ReplyAddress {
                    join_ref: reply_to.join_ref,
                    msg_ref: Some(reply_to.msg_ref),
                    topic: reply_to.topic,
                };
                self.reply(&to, "error", &json!({"reason": reason}));
            }
            None => self.push(None, PHOENIX_TOPIC, PHX_ERROR, &json!({"reason": reason})),
        }
    }

    pub(super) fn join_error(&mut self, to: &ReplyAddress, reason: Reason) {
        self.node.shared.metrics.join_errors.inc();
        tracing::debug!(conn = self.conn.id, topic = %to.topic, %reason, "join refused");
        self.reply(to, "error", &json!({"reason": reason.to_string()}));
    }

    /// `phx_join`, with the checks in Supabase's order.
    fn join(&mut self, message: Message) {
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
        self.pending_joins.remove(topic);
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
            self.join_error(&to, Reason::too_many_joins());
            self.closing = Some((CloseCode::Normal, "too many joins per second"));
            return;
        }
        shared.counters.joins.add(1);
        let channels = self.channels.len() + self.pending_joins.len();
        if channels >= shared.config.limits.max_channels_per_client {
            return self.join_error(&to, Reason::too_many_channels());
        }
        let token = request
            .access_token
            .unwrap_or_else(|| self.connect_token.clone());
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
        let ((registry_topic, first_here), attached) =
            self.subscribe_in_stream(&key, receives, replayed, resume, state_frame);
        // The bus subscribes on its own task: the reply waits until it has (see
        // `Broker::confirms_later`).
        let wait_for_bus = first_here && shared.broker.confirms_later();
        if receives.presence {
            shared.counters.presence_events.add(1);
        }
        let limits = &shared.config.limits;
        let channel = Channel {
            topic: registry_topic,
            join_ref: to.join_ref.clone(),
            ack: config.broadcast.ack,
            self_broadcast: config.broadcast.self_broadcast,
            presence_key: config
                .presence
                .key
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
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
        };
        self.channels.insert(topic.to_owned(), channel);
        shared.metrics.channels.inc();

        let bindings: Vec<Value> = config.postgres_changes.iter().map(|b| b.echo()).collect();
        let mut response = json!({"postgres_changes": bindings});
        if let Some(attached) = &attached {
            response["broadcast"] =
                json!({"epoch": &*attached.latest.epoch, "offset": attached.latest.offset});
        }
        let after_reply = match resume {
            Some(_) => self.resume_frames(to, attached),
            None => Vec::new(),
        };
        if config.broadcast.replication_ready {
            self.watch_replication(to);
        }
        if config.postgres_changes.is_empty() {
            if wait_for_bus {
                return self.reply_when_bus_synced(to, response, after_reply);
            }
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

    /// `phx_leave`: reply ok, then `phx_close`.
    fn leave(&mut self, message: Message) {
        let to = ReplyAddress::of(&message);
        self.reply(&to, "ok", &json!({}));
        if let Some(channel) = self.channels.remove(&message.topic) {
            self.push_close(channel.join_ref.as_deref(), &message.topic);
            self.release(channel);
        }
    }

    /// A `broadcast` push: a JSON map from any client, or a kind-3 binary frame from
    /// realtime-js (JSON or binary user payload).
    fn broadcast(&mut self, message: Message) {
        let channel = &self.channels[&message.topic];
        match (channel.private, channel.write.broadcast) {
            (true, None) => return self.start_write_check(message, Extension::Broadcast),
            // Dropped with no reply, even with ack, as Supabase does.
            (true, Some(false)) => return,
            _ => {}
        }
        let to = ReplyAddress::of(&message);
        let topic = message.topic.as_str();
        let outgoing = match message.payload {
            Payload::Json(Value::Object(map)) => {
                Outgoing::broadcast(topic, Arc::new(Content::from_map(map)))
            }
            Payload::Json(_) => {
                let reason = Reason::new(
                    ErrorCode::InvalidBroadcast,
                    "a broadcast payload is a map: {\"type\":\"broadcast\",\"event\":...,\"payload\":...}",
                );
                return self.reply(&to, "error", &json!({"reason": reason.to_string()}));
            }
            Payload::UserBroadcast(broadcast) => match user_broadcast(topic, broadcast) {
                Ok(outgoing) => outgoing,
                Err(reason) => {
                    return self.reply(&to, "error", &json!({"reason": reason.to_string()}));
                }
            },
            Payload::Binary(_) => {
                let reason = Reason::new(
                    ErrorCode::InvalidBroadcast,
                    "binary broadcasts travel as user-broadcast frames (binary kind 3)",
                );
                return self.reply(&to, "error", &json!({"reason": reason.to_string()}));
            }
        };
        let shared = std::sync::Arc::clone(&self.node.shared);
        if outgoing.body_len() > shared.config.limits.max_payload_bytes() {
            // Supabase answers only when ack is on; answering always costs the client
            // nothing (an unexpected reply is ignored) and tells it why nothing arrived.
            return self.reply(&to, "error", &"payload_size_exceeded");
        }
        let channel = &self.channels[topic];
        let (ack, exclude) = (
            channel.ack,
            (!channel.self_broadcast).then_some(self.conn.id),
        );
        // Over the events limit the message is still delivered and every channel it
        // reaches is shut down (Supabase's rule); so is the sending channel, which
        // Supabase leaves open to keep flooding.
        let delivery = self.node.publish(channel.topic.key(), &outgoing, exclude);
        if !delivery.lagging.is_empty() || shared.ledger.is_over_budget() {
            // Read nothing more from this client until they have room (see `serve`).
            self.backpressure
                .get_or_insert_with(Vec::new)
                .extend(delivery.lagging);
        }
        if ack {
            self.reply(&to, "ok", &json!({}));
        }
        if shared.counters.events.is_over_limit() {
            self.shut_down_channel(topic, shutdown::TOO_MANY_MESSAGES);
        }
    }

    /// A `presence` push: track or untrack.
    fn presence(&mut self, message: Message) {
        let track = message
            .payload
            .as_json()
            .and_then(|payload| payload.get("event"))
            .and_then(Value::as_str)
            .is_some_and(|event| event.eq_ignore_ascii_case(PRESENCE_TRACK));
        let channel = &self.channels[&message.topic];
        if track && channel.private {
            match channel.write.presence {
                None => return self.start_write_check(message, Extension::Presence),
                Some(false) => {
                    let reason = Reason::new(
                        ErrorCode::Unauthorized,
                        format!(
                            "You do not have permissions to track presence on this Channel topic: {}",
                            channel.name()
                        ),
                    );
                    let to = ReplyAddress::of(&message);
                    return self.reply(&to, "error", &json!({"reason": reason.to_string()}));
                }
                Some(true) => {}
            }
        }
        let to = ReplyAddress::of(&message);
        let topic = message.topic.clone();
        let Payload::Json(Value::Object(mut body)) = message.payload else {
            return self.reply(
                &to,
                "error",
                &json!({"reason": "Presence payload must be a map with an event"}),
            );
        };
        let Some(event) = body
            .get("event")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
        else {
            return self.reply(
                &to,
                "error",
                &json!({"reason": "Presence payload must be a map with an event"}),
            );
        };
        let Some(channel) = self.channels.get_mut(&topic) else {
            return;
        };
        if !channel.presence_window.allow(Instant::now()) {
            return self.shut_down_channel(&topic, shutdown::CLIENT_PRESENCE_RATE_LIMIT);
        }
        let registry_topic = std::sync::Arc::clone(&channel.topic);
        let shared = std::sync::Arc::clone(&self.node.shared);
        let delivery = match event.as_str() {
            PRESENCE_TRACK => {
                let payload = match body.remove("payload") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(map)) => map,
                    Some(_) => {
                        return self.reply(
                            &to,
                            "error",
                            &json!({"reason": "Presence track payload must be a map"}),
                        );
                    }
                };
                if to_raw(&payload).get().len() > shared.config.limits.max_payload_bytes() {
                    // Answered first, so the client's track() fails at once instead of
                    // at its timeout; then the channel stops, as in Supabase.
                    let reason = shutdown::TRACK_MESSAGE_SIZE_EXCEEDED;
                    self.reply(&to, "error", &json!({"reason": reason}));
                    return self.shut_down_channel(&topic, reason);
                }
                if shared.counters.presence_events.is_over_limit() {
                    return self.shut_down_channel(&topic, shutdown::TOO_MANY_PRESENCE_MESSAGES);
                }
                shared.counters.presence_events.add(1);
                let channel = self.channels.get_mut(&topic).expect("checked above");
                let key = channel.presence_key.clone();
                let join_ref = channel.join_ref.clone();
                // Tracking turns presence on for a channel that joined without it: it
                // gets the current state first, then the diff of its own join (on a
                // private channel, only with presence read).
                let enabling = !channel.presence_enabled && channel.read.presence;
                channel.presence_enabled = true;
                let state_frame = self.state_frame_for(&topic, join_ref);
                let node = &self.node;
                registry_topic.track(
                    self.conn.id,
                    &key,
                    payload,
                    &|| node.next_presence_ref(),
                    enabling.then_some(state_frame),
                )
            }
            PRESENCE_UNTRACK => registry_topic.untrack(self.conn.id),
            other => {
                let reason = format!("Unknown presence event `{other}`: expected track or untrack");
                return self.reply(&to, "error", &json!({"reason": reason}));
            }
        };
        if let Some(delivery) = delivery {
            shared.counters.presence_events.add(delivery.recipients);
        }
        self.reply(&to, "ok", &json!({}));
    }

    /// `access_token`: a refreshed JWT for the channel. No reply, as in Supabase; a bad
    /// token shuts the channel down with the reason.
    fn refresh_token(&mut self, message: Message) {
        let token = match message
            .payload
            .as_json()
            .and_then(|p| p.get("access_token"))
        {
            Some(Value::String(token)) => token.clone(),
            _ => return,
        };
        let Some(channel) = self.channels.get_mut(&message.topic) else {
            return;
        };
        if token.starts_with("sb_") || token == channel.token {
            return;
        }
        match self
            .node
            .shared
            .verifier
            .verify(&token, self.node.shared.clock.unix_now())
        {
            Ok(claims) => {
                if let (Some(changes), Some(id)) =
                    (&self.node.shared.changes, channel.postgres_changes)
                {
                    changes.set_identity(id, identity_of(&claims));
                }
                channel.expires_at = self.node.shared.clock.instant_at(claims.exp);
                channel.claims = claims;
                channel.token = token;
                if channel.private {
                    // What the old token could do says nothing about the new one.
                    channel.write = WriteAccess::default();
                    self.start_refresh_check(&message.topic);
                }
            }
            Err(err) => self.shut_down_channel(&message.topic, &err.to_string()),
        }
    }
}

/// A join that passed the checks made at once, waiting to be subscribed (at once for a
/// public channel, after its read check for a private one).
pub(crate) struct Joining {
    /// The channel name, the topic without `realtime:`.
    pub(crate) name: String,
    pub(crate) config: crier_protocol::join::JoinConfig,
    pub(crate) token: String,
    pub(crate) claims: Claims,
}

/// Whom a channel's postgres changes are authorized as: its token's role and claims.
fn identity_of(claims: &Claims) -> Identity {
    Identity {
        role: claims.role.clone(),
        claims: serde_json::to_string(&claims.all).expect("claims are JSON"),
    }
}

/// Turns a kind-3 user broadcast into a fan-out message. JSON payloads become the same
/// JSON map any other broadcast is (so every client can read them); binary payloads stay
/// binary (kind 4). The metadata is dropped, as Supabase does.
fn user_broadcast(topic: &str, broadcast: UserBroadcast) -> Result<Outgoing, Reason> {
    match broadcast.encoding {
        PayloadEncoding::Json => {
            let payload =
                crier_protocol::json::raw_from_slice(&broadcast.payload).map_err(|err| {
                    Reason::new(
                        ErrorCode::InvalidBroadcast,
                        format!("payload is not valid JSON: {err}"),
                    )
                })?;
            let content = Content::json(&broadcast.event, payload, None);
            Ok(Outgoing::broadcast(topic, Arc::new(content)))
        }
        PayloadEncoding::Binary => {
            let content = Content::binary(broadcast.event, broadcast.encoding, broadcast.payload);
            Ok(Outgoing::broadcast(topic, Arc::new(content)))
        }
    }
}
