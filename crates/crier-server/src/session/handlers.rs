//! What a session does with each message: routing (Phoenix rules), leave, broadcast,
//! presence and token refresh. Joins are in `join`.

use std::sync::Arc;

use crier_protocol::codes::{ErrorCode, Reason, shutdown};
use crier_protocol::events::{
    ACCESS_TOKEN, BROADCAST, HEARTBEAT, PHOENIX_TOPIC, PHX_ERROR, PHX_JOIN, PHX_LEAVE, PRESENCE,
    PRESENCE_TRACK, PRESENCE_UNTRACK,
};
use crier_protocol::serializer::{DecodeError, PushRef};
use crier_protocol::{Message, Payload, PayloadEncoding, UserBroadcast};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::channel::WriteAccess;
use super::join::identity_of;
use super::{ReplyAddress, Session};
use crate::authz::Extension;
use crate::fanout::{Content, Outgoing, to_raw};

/// Phoenix's reason for a push to a topic the socket has not joined.
pub(super) const UNMATCHED_TOPIC: &str = "unmatched topic";

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
        if message.topic == crate::inspector::TOPIC {
            return self.on_inspector(message);
        }
        if message.event == PHX_JOIN {
            return self.join(message);
        }
        let Some(channel) = self.channels.get(&message.topic) else {
            let to = ReplyAddress::of(&message);
            if message.event == PHX_LEAVE {
                // Phoenix answers a leave of an unknown topic with ok: it is already left.
                // A private join still waiting for its check is abandoned.
                self.forget_pending_join(&message.topic);
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
        self.publish_broadcast(topic, &outgoing, || to);
    }

    /// A `broadcast` push read in place from a text frame (see `peek_text`): handled
    /// here when it goes to a public channel (or a private one already allowed to
    /// write), which is every broadcast a client library sends (`peek_text` reads only
    /// object payloads). `false` leaves the frame to the full decode, which handles (and
    /// answers) everything else.
    pub(super) fn broadcast_in_place(&mut self, push: &PushRef<'_>) -> bool {
        let Some(channel) = self.channels.get(push.topic) else {
            return false;
        };
        let current = push
            .join_ref
            .is_none_or(|join_ref| channel.join_ref.as_deref() == Some(join_ref));
        if !current || (channel.private && channel.write.broadcast != Some(true)) {
            return false;
        }
        let content = Content::from_members(&push.payload);
        let outgoing = Outgoing::broadcast(push.topic, Arc::new(content));
        self.publish_broadcast(push.topic, &outgoing, || ReplyAddress {
            join_ref: push.join_ref.map(str::to_owned),
            msg_ref: push.msg_ref.map(str::to_owned),
            topic: push.topic.to_owned(),
        });
        true
    }

    /// Publishes a client's broadcast on its channel `topic`; `to` says where a reply
    /// goes, made only when one is due.
    fn publish_broadcast(
        &mut self,
        topic: &str,
        outgoing: &Outgoing,
        to: impl FnOnce() -> ReplyAddress,
    ) {
        let shared = std::sync::Arc::clone(&self.node.shared);
        if outgoing.body_len() > shared.config.limits.max_payload_bytes() {
            // Supabase answers only when ack is on; answering always costs the client
            // nothing (an unexpected reply is ignored) and tells it why nothing arrived.
            return self.reply(&to(), "error", &"payload_size_exceeded");
        }
        let channel = &self.channels[topic];
        let (ack, exclude) = (
            channel.ack,
            (!channel.self_broadcast).then_some(self.conn.id),
        );
        // Over the events limit the message is still delivered and every channel it
        // reaches is shut down (Supabase's rule); so is the sending channel, which
        // Supabase leaves open to keep flooding.
        let delivery = self.node.publish_to(&channel.topic, outgoing, exclude);
        if !delivery.lagging.is_empty() || shared.ledger.is_over_budget() {
            // Read nothing more from this client until they have room (see `serve`).
            self.backpressure
                .get_or_insert_with(Vec::new)
                .extend(delivery.lagging);
        }
        if ack {
            self.reply(&to(), "ok", &json!({}));
        }
        if shared.counters.events.is_over_limit() {
            shared.metrics.rate_limited.inc();
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
                    shared.metrics.rate_limited.inc();
                    return self.shut_down_channel(&topic, shutdown::TOO_MANY_PRESENCE_MESSAGES);
                }
                shared.counters.presence_events.add(1);
                let channel = self.channels.get_mut(&topic).expect("checked above");
                let key = channel
                    .presence_key
                    .get_or_insert_with(|| uuid::Uuid::new_v4().to_string())
                    .clone();
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
        if token.starts_with("sb_") || *token == *channel.token {
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
                channel.token = token.into();
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
