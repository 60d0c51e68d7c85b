//! A message for many sockets, encoded at most once per serializer.
//!
//! The payload is serialized to JSON text once, when the message is built; each frame
//! (1.0.0 object, 2.0.0 array, or binary kind 4) is then built the first time a subscriber
//! with that serializer is reached, and every further subscriber gets a refcounted clone
//! of the same bytes. Per-subscriber work is a queue push.
//!
//! Which frame reaches which socket (protocol.md §14.1): JSON payloads always travel as
//! text, because phoenix.js decodes only binary kinds 0-2 and realtime-js only kind 4,
//! while both read text. Binary payloads travel as kind 4 (what realtime-js decodes) to
//! 2.0.0 sockets and cannot reach 1.0.0 sockets at all, as in Supabase Realtime.

use std::cell::OnceCell;

use axum::extract::ws::Message as WsMessage;
use bytes::Bytes;
use crier_protocol::UserBroadcast;
use crier_protocol::Vsn;
use crier_protocol::serializer::{Direction, Envelope, binary, text};
use serde::Serialize;
use serde_json::value::RawValue;

/// The body of an [`Outgoing`] message.
#[derive(Debug)]
pub(crate) enum Body {
    /// JSON text, already serialized.
    Json(Box<RawValue>),
    /// A binary user broadcast (kind 4).
    Binary(UserBroadcast),
}

/// A fan-out message (`join_ref` and `ref` are null) with its frames cached per serializer.
#[derive(Debug)]
pub(crate) struct Outgoing {
    topic: String,
    event: &'static str,
    body: Body,
    v1: OnceCell<Option<WsMessage>>,
    v2: OnceCell<Option<WsMessage>>,
}

impl Outgoing {
    /// A message with a JSON body already serialized.
    pub(crate) fn raw(topic: &str, event: &'static str, body: Box<RawValue>) -> Self {
        Outgoing::new(topic, event, Body::Json(body))
    }

    /// A message with a JSON body, serialized now.
    pub(crate) fn json(topic: &str, event: &'static str, payload: &impl Serialize) -> Self {
        Outgoing::raw(topic, event, to_raw(payload))
    }

    /// A binary user broadcast.
    pub(crate) fn binary(topic: &str, broadcast: UserBroadcast) -> Self {
        Outgoing::new(
            topic,
            crier_protocol::events::BROADCAST,
            Body::Binary(broadcast),
        )
    }

    fn new(topic: &str, event: &'static str, body: Body) -> Self {
        Outgoing {
            topic: topic.to_owned(),
            event,
            body,
            v1: OnceCell::new(),
            v2: OnceCell::new(),
        }
    }

    /// Size of the payload in bytes (JSON text or binary payload).
    pub(crate) fn body_len(&self) -> usize {
        match &self.body {
            Body::Json(raw) => raw.get().len(),
            Body::Binary(broadcast) => broadcast.payload.len(),
        }
    }

    /// The frame for sockets speaking `vsn`, or `None` if this message cannot reach them.
    pub(crate) fn frame(&self, vsn: Vsn) -> Option<&WsMessage> {
        let cell = match vsn {
            Vsn::V1 => &self.v1,
            Vsn::V2 => &self.v2,
        };
        cell.get_or_init(|| self.encode(vsn)).as_ref()
    }

    fn encode(&self, vsn: Vsn) -> Option<WsMessage> {
        let envelope = Envelope::broadcast(&self.topic, self.event);
        match (&self.body, vsn) {
            (Body::Json(raw), _) => Some(WsMessage::Text(
                text::encode(vsn, Direction::ToClient, &envelope, raw).into(),
            )),
            (Body::Binary(broadcast), Vsn::V2) => {
                binary::encode_user_broadcast(&self.topic, broadcast)
                    .ok()
                    .map(|bytes| WsMessage::Binary(Bytes::from(bytes)))
            }
            (Body::Binary(_), Vsn::V1) => None,
        }
    }
}

/// Serializes any payload to JSON text once.
pub(crate) fn to_raw(payload: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(payload).expect("payloads are JSON-serializable")
}

/// Encodes a single frame for one socket (replies and channel pushes).
pub(crate) fn encode_one(vsn: Vsn, envelope: &Envelope<'_>, payload: &impl Serialize) -> WsMessage {
    WsMessage::Text(text::encode(vsn, Direction::ToClient, envelope, payload).into())
}

#[cfg(test)]
mod tests {
    use crier_protocol::PayloadEncoding;
    use serde_json::json;

    use super::*;

    #[test]
    fn json_frames_are_built_once_per_serializer() {
        let message = Outgoing::json(
            "realtime:r",
            "broadcast",
            &json!({"event":"e","payload":{"x":1}}),
        );
        let a = message.frame(Vsn::V2).unwrap().clone();
        let b = message.frame(Vsn::V2).unwrap().clone();
        let (WsMessage::Text(a), WsMessage::Text(b)) = (a, b) else {
            panic!("text frames")
        };
        assert_eq!(
            a.as_str().as_ptr(),
            b.as_str().as_ptr(),
            "clones share one buffer"
        );
        assert_eq!(
            a.as_str(),
            r#"[null,null,"realtime:r","broadcast",{"event":"e","payload":{"x":1}}]"#
        );
        let WsMessage::Text(v1) = message.frame(Vsn::V1).unwrap() else {
            panic!("text frame")
        };
        assert_eq!(
            v1.as_str(),
            r#"{"topic":"realtime:r","event":"broadcast","payload":{"event":"e","payload":{"x":1}},"ref":null}"#
        );
    }

    #[test]
    fn binary_broadcasts_reach_only_v2() {
        let message = Outgoing::binary(
            "realtime:r",
            UserBroadcast {
                event: "e".into(),
                metadata: Bytes::new(),
                encoding: PayloadEncoding::Binary,
                payload: Bytes::from_static(b"\x00\x01"),
            },
        );
        assert!(message.frame(Vsn::V1).is_none());
        assert!(matches!(message.frame(Vsn::V2), Some(WsMessage::Binary(b)) if b[0] == 4));
    }
}
