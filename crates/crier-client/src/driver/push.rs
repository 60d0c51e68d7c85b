//! Pushes on a channel: sent at once while joined, otherwise kept in the bounded offline
//! buffer (oldest dropped) and sent in order after the next join.

use std::sync::atomic::Ordering;

use crier_protocol::{Message, Payload};
use serde_json::Value;
use tokio::sync::oneshot;

use super::pending::Pending;
use super::{Driver, PushPayload, PushRequest, Timer};
use crate::Error;

/// A push waiting in the offline buffer.
pub(super) struct Buffered {
    topic: String,
    event: &'static str,
    payload: PushPayload,
    wait_reply: bool,
    reply: oneshot::Sender<Result<Value, Error>>,
}

impl Driver {
    /// A push from a handle: refused on a channel nobody wants joined, sent at once while
    /// joined and connected, buffered otherwise.
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
        payload: PushPayload,
        pending: Pending,
    ) {
        self.next_ref += 1;
        let msg_ref = self.next_ref.to_string();
        let payload = match payload {
            PushPayload::Json(value) => Payload::Json(value),
            PushPayload::Binary(broadcast) => Payload::UserBroadcast(broadcast),
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

    /// Sends the buffered pushes of a channel that just joined, in order.
    pub(super) fn flush_buffer(&mut self, topic: &str) {
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

    /// Fails the buffered pushes of a channel that will not join.
    pub(super) fn drop_buffered(&mut self, topic: &str, error: &Error) {
        for item in self.buffer.take(|b| b.topic == topic) {
            let _ = item.reply.send(Err(error.clone()));
        }
    }
}
