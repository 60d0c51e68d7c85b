//! The inspector's channel (`crier:inspector`) on an ordinary socket: its join, its
//! `channels` request and its leave. What it shows is built in `crate::inspector`.

use crier_protocol::Message;
use crier_protocol::Payload;
use crier_protocol::codes::{CloseCode, ErrorCode, Reason, shutdown};
use crier_protocol::events::{EXTENSION_SYSTEM, PHX_JOIN, PHX_LEAVE, SYSTEM};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::handlers::UNMATCHED_TOPIC;
use super::{ReplyAddress, Session};
use crate::inspector::{self, CHANNELS, ChannelsQuery};

/// The socket's place on the inspector's channel.
#[derive(Debug)]
pub(super) struct Inspecting {
    join_ref: Option<String>,
    /// When the join's token expires (tokio clock), and its `exp`.
    expires_at: Instant,
    exp: i64,
}

impl Session {
    /// A message on the inspector's topic.
    pub(super) fn on_inspector(&mut self, message: Message) {
        let to = ReplyAddress::of(&message);
        match message.event.as_str() {
            PHX_JOIN => self.join_inspector(&to, &message.payload),
            PHX_LEAVE => {
                self.reply(&to, "ok", &json!({}));
                if self.inspecting.take().is_some() {
                    self.stop_inspecting();
                    self.push_close(message.join_ref.as_deref(), inspector::TOPIC);
                }
            }
            _ if self.inspecting.is_none() => {
                self.reply(&to, "error", &json!({"reason": UNMATCHED_TOPIC}));
            }
            CHANNELS => self.list_channels(&to, &message.payload),
            other => {
                let reason = Reason::new(
                    ErrorCode::UnknownEvent,
                    format!(
                        "unknown event `{other}`; the inspector accepts channels and phx_leave"
                    ),
                );
                self.reply(&to, "error", &json!({"reason": reason.to_string()}));
            }
        }
    }

    /// Joins the inspector: with the inspector on, a join under the same rate limit as
    /// any, and a token (the join's `access_token`, or the socket's) of an admin role.
    fn join_inspector(&mut self, to: &ReplyAddress, payload: &Payload) {
        // A second join replaces the first, as on any channel.
        if self.inspecting.take().is_some() {
            self.stop_inspecting();
        }
        let shared = std::sync::Arc::clone(&self.node.shared);
        let Some(feed) = &shared.inspector else {
            return self.join_error(
                to,
                Reason::new(
                    ErrorCode::Unauthorized,
                    "The inspector is turned off on this server",
                ),
            );
        };
        if shared.shutdown.is_cancelled() {
            return self.join_error(to, Reason::restarting());
        }
        if shared.counters.joins.is_over_limit() {
            shared.metrics.rate_limited.inc();
            self.join_error(to, Reason::too_many_joins());
            self.closing = Some((CloseCode::Normal, "too many joins per second"));
            return;
        }
        shared.counters.joins.add(1);
        let token = match payload {
            Payload::Json(Value::Object(map)) => map.get("access_token").and_then(Value::as_str),
            _ => None,
        }
        .unwrap_or(&self.connect_token)
        .to_owned();
        let claims = match shared.verifier.verify(&token, shared.clock.unix_now()) {
            Ok(claims) => claims,
            Err(err) => return self.join_error(to, err.join_reason()),
        };
        if !inspector::may_inspect(&shared.config.inspector, &claims) {
            return self.join_error(
                to,
                Reason::new(
                    ErrorCode::Unauthorized,
                    "The inspector needs the service role key (or the inspector's admin role)",
                ),
            );
        }
        shared.metrics.channels.inc();
        self.inspecting = Some(Box::new(Inspecting {
            join_ref: to.join_ref.clone(),
            expires_at: shared.clock.instant_at(claims.exp),
            exp: claims.exp,
        }));
        let welcome = feed.watch(&self.conn);
        self.reply(to, "ok", &welcome);
    }

    /// Answers a `channels` request, counted against the events limit like any push.
    fn list_channels(&mut self, to: &ReplyAddress, payload: &Payload) {
        let shared = std::sync::Arc::clone(&self.node.shared);
        if shared.counters.events.is_over_limit() {
            shared.metrics.rate_limited.inc();
            let reason = Reason::new(
                ErrorCode::ChannelRateLimitReached,
                "Too many messages per second",
            );
            return self.reply(to, "error", &json!({"reason": reason.to_string()}));
        }
        shared.counters.events.add(1);
        let query = match payload {
            Payload::Json(value) => {
                ChannelsQuery::deserialize(value).map_err(|err| err.to_string())
            }
            _ => Err("a binary payload".to_owned()),
        };
        let query = match query {
            Ok(query) => query,
            Err(err) => {
                let reason = Reason::new(
                    ErrorCode::MalformedMessage,
                    format!("channels: expected {{\"search\": text, \"limit\": number}}: {err}"),
                );
                return self.reply(to, "error", &json!({"reason": reason.to_string()}));
            }
        };
        if let Some(feed) = &shared.inspector {
            let list = inspector::channel_list(&shared, feed, &query);
            self.reply(to, "ok", &list);
        }
    }

    /// When the inspector's token expires, while the socket inspects.
    pub(super) fn inspector_expiry(&self) -> Option<Instant> {
        self.inspecting
            .as_ref()
            .map(|inspecting| inspecting.expires_at)
    }

    /// Shuts the inspector's channel down once its token has expired, as any channel's.
    pub(super) fn expire_inspector(&mut self, now: Instant) {
        let Some(inspecting) = self
            .inspecting
            .take_if(|inspecting| inspecting.expires_at <= now)
        else {
            return;
        };
        self.stop_inspecting();
        let seconds_ago = (self.node.shared.clock.unix_now() - inspecting.exp).max(0);
        let body = json!({"extension": EXTENSION_SYSTEM, "status": "error",
                          "message": shutdown::token_expired(seconds_ago), "channel": inspector::TOPIC});
        let join_ref = inspecting.join_ref.as_deref();
        self.push(join_ref, inspector::TOPIC, SYSTEM, &body);
        self.push_close(join_ref, inspector::TOPIC);
    }

    /// Stops the overview pushes (a leave, or the socket's end).
    pub(super) fn stop_inspecting(&mut self) {
        let shared = &self.node.shared;
        if let Some(feed) = &shared.inspector {
            feed.unwatch(self.conn.id);
        }
        shared.metrics.channels.dec();
    }
}
