//! The message router: every frame from the server goes to exactly one place.
//!
//! Replies are matched by `ref` to what awaits them. Channel messages are matched by
//! topic, and dropped when they carry the `join_ref` of an older join of that topic (a
//! late reply or close of a previous incarnation must not touch the current one).
//! Postgres changes are routed by the binding ids they carry.

use std::sync::Arc;

use bytes::Bytes;
use crier_protocol::events::{
    BROADCAST, EXTENSION_POSTGRES_CHANGES, EXTENSION_SYSTEM, PHOENIX_TOPIC, PHX_CLOSE, PHX_ERROR,
    PHX_REPLY, POSTGRES_CHANGES, PRESENCE_DIFF, PRESENCE_STATE, SYSTEM,
};
use crier_protocol::presence::{PresenceDiff, PresenceGroups};
use crier_protocol::{Message, Payload, PayloadEncoding};
use serde_json::Value;
use tokio::time::Instant;

use super::Driver;
use super::channel_state::ChannelState;
use super::pending::Pending;
use crate::Error;
use crate::events::{
    Broadcast, BroadcastPayload, ChannelEvent, PresenceEvent, RoutedChange, SystemMessage,
};
use crate::heartbeat::HeartbeatEvent;
use crate::postgres::route_change;

impl Driver {
    /// Routes one decoded message from the server.
    pub(super) fn on_message(&mut self, message: Message) {
        if message.event == PHX_REPLY {
            return self.on_reply(message);
        }
        let Some(channel) = self.channels.get_mut(&message.topic) else {
            return;
        };
        if let Some(join_ref) = &message.join_ref
            && channel.join_ref.as_ref() != Some(join_ref)
        {
            return; // for an older join of this topic
        }
        match message.event.as_str() {
            PHX_CLOSE => self.closed_by_server(&message.topic),
            PHX_ERROR => self.errored_by_server(&message.topic),
            SYSTEM => self.on_system(&message),
            BROADCAST => {
                if let Some(broadcast) = broadcast(message.payload)
                    && channel.advance(broadcast.meta.as_ref())
                {
                    channel.emit(ChannelEvent::Broadcast(Arc::new(broadcast)));
                }
            }
            PRESENCE_STATE => {
                if let Some(state) = message
                    .payload
                    .as_json()
                    .and_then(|v| serde_json::from_value::<PresenceGroups>(v.clone()).ok())
                {
                    let changes = channel.presence.sync_state(state);
                    publish_presence(channel, changes);
                }
            }
            PRESENCE_DIFF => {
                if let Some(diff) = message
                    .payload
                    .as_json()
                    .and_then(|v| serde_json::from_value::<PresenceDiff>(v.clone()).ok())
                {
                    let changes = channel.presence.sync_diff(diff);
                    if !changes.is_empty() {
                        publish_presence(channel, changes);
                    }
                }
            }
            POSTGRES_CHANGES => {
                if let Some(change) = message.payload.as_json() {
                    route(channel, change);
                }
            }
            other => {
                tracing::debug!(event = other, topic = %message.topic, "ignoring an unknown event");
            }
        }
    }

    fn on_reply(&mut self, message: Message) {
        let reply = message.payload.as_json().cloned().unwrap_or(Value::Null);
        let ok = reply.get("status").and_then(Value::as_str) == Some("ok");
        let response = reply.get("response").cloned().unwrap_or(Value::Null);
        let Some(msg_ref) = message.msg_ref else {
            return;
        };
        if message.topic == PHOENIX_TOPIC
            && let Some(event) = self.monitor.on_reply(&msg_ref, ok, Instant::now())
        {
            let _ = self.heartbeats.send(event);
            return;
        }
        let Some((pending, key)) = self.pending.remove(&msg_ref) else {
            return;
        };
        if let Some(key) = key {
            self.timers.try_remove(&key);
        }
        match pending {
            Pending::Join { topic, join_ref } => {
                let current = self
                    .channels
                    .get(&topic)
                    .and_then(|c| c.join_ref.as_deref())
                    == Some(join_ref.as_str());
                if !current {
                    return;
                }
                if ok {
                    self.on_join_ok(&topic, &response);
                } else {
                    let reason = response
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| response.to_string());
                    self.join_failed(&topic, Error::join_refused(&reason));
                }
            }
            Pending::Leave { topic } => self.leave_done(&topic),
            Pending::Push { reply } => {
                let _ = reply.send(if ok {
                    Ok(response)
                } else {
                    Err(Error::PushRefused { response })
                });
            }
            Pending::Probe { sent, reply } => {
                let latency = Instant::now().saturating_duration_since(sent);
                let _ = self.heartbeats.send(HeartbeatEvent::Ok { latency });
                let _ = reply.send(Ok(latency));
            }
            Pending::Ignored => {}
        }
    }

    fn on_system(&mut self, message: &Message) {
        let body = message.payload.as_json().cloned().unwrap_or(Value::Null);
        let text = |field: &str| {
            body.get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let system = SystemMessage {
            extension: text("extension"),
            status: text("status"),
            message: text("message"),
        };
        let topic = message.topic.clone();
        if let Some(channel) = self.channels.get_mut(&topic) {
            if system.extension == EXTENSION_SYSTEM && system.status == "error" {
                channel.last_system_error = Some(system.message.clone());
            }
            channel.emit(ChannelEvent::System(Arc::new(system.clone())));
            if system.extension == BROADCAST
                && let Some(report) = body.get("resume")
            {
                channel.on_resume_report(report);
            }
        }
        if system.extension == EXTENSION_POSTGRES_CHANGES {
            let result = if system.status == "ok" {
                Ok(())
            } else {
                Err(Error::PostgresChangesUnavailable {
                    message: system.message,
                })
            };
            self.postgres_status(&topic, result);
        }
    }
}

/// The shapes a broadcast arrives in: a JSON map `{type, event, payload, meta?}`, or a
/// binary user broadcast (kind 4).
fn broadcast(payload: Payload) -> Option<Broadcast> {
    match payload {
        Payload::Json(Value::Object(mut map)) => Some(Broadcast {
            event: map
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            payload: BroadcastPayload::Json(map.remove("payload").unwrap_or(Value::Null)),
            meta: map.remove("meta"),
        }),
        Payload::UserBroadcast(user) => {
            let meta = (!user.metadata.is_empty())
                .then(|| serde_json::from_slice(&user.metadata).ok())
                .flatten();
            let payload = match user.encoding {
                PayloadEncoding::Json => {
                    BroadcastPayload::Json(serde_json::from_slice(&user.payload).ok()?)
                }
                PayloadEncoding::Binary => BroadcastPayload::Binary(user.payload),
            };
            Some(Broadcast {
                event: user.event,
                payload,
                meta,
            })
        }
        Payload::Binary(bytes) => Some(Broadcast {
            event: String::new(),
            payload: BroadcastPayload::Binary(Bytes::clone(&bytes)),
            meta: None,
        }),
        Payload::Json(_) => None,
    }
}

fn publish_presence(
    channel: &ChannelState,
    changes: Vec<crier_protocol::presence::PresenceChange>,
) {
    let _ = channel
        .presence_state
        .send_replace(channel.presence.state().clone());
    for change in changes {
        channel.emit(ChannelEvent::Presence(Arc::new(PresenceEvent::from(
            change,
        ))));
    }
    channel.emit(ChannelEvent::Presence(Arc::new(PresenceEvent::Sync)));
}

/// `{"ids": [...], "data": {...}}` to the filters it matched.
fn route(channel: &ChannelState, change: &Value) {
    let ids: Vec<u32> = change
        .get("ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_u64)
                .map(|id| id as u32)
                .collect()
        })
        .unwrap_or_default();
    let data = change.get("data").cloned().unwrap_or(Value::Null);
    let change_type = data.get("type").and_then(Value::as_str).unwrap_or_default();
    let filters = route_change(&ids, change_type, &channel.filters, &channel.binding_ids);
    if !filters.is_empty() {
        channel.emit(ChannelEvent::PostgresChange(Arc::new(RoutedChange {
            filters,
            data,
        })));
    }
}
