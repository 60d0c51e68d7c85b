//! A message for many sockets, encoded at most once per serializer.
//!
//! The payload is serialized to JSON text once, when the message is built; each frame
//! (1.0.0 object, 2.0.0 array, or binary kind 4) is then built the first time a subscriber
//! with that serializer is reached, and every further subscriber gets a refcounted clone
//! of the same bytes. Per-subscriber work is a queue push. The frame's buffer is counted
//! once in the node's ledger of queued bytes for as long as any queue holds it.
//!
//! Which frame reaches which socket (protocol.md §14.1): JSON payloads always travel as
//! text, because phoenix.js decodes only binary kinds 0-2 and realtime-js only kind 4,
//! while both read text. Binary payloads travel as kind 4 (what realtime-js decodes) to
//! 2.0.0 sockets and cannot reach 1.0.0 sockets at all, as in Supabase Realtime.

use std::cell::OnceCell;

use crier_protocol::UserBroadcast;
use crier_protocol::Vsn;
use crier_protocol::events::BROADCAST;
use crier_protocol::serializer::{Direction, Envelope, binary, text};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::authz::StoredMessage;
use crate::broker::Publication;
use crate::frame::Frame;
use crate::outbound::ConnHandle;

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
    /// The `realtime.messages` id of a broadcast from the database, so that a subscriber
    /// it was replayed to at its join does not get it again.
    stored_id: Option<Box<str>>,
    v1: OnceCell<Option<Frame>>,
    v2: OnceCell<Option<Frame>>,
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
        Outgoing::new(topic, BROADCAST, Body::Binary(broadcast))
    }

    /// A broadcast stored in `realtime.messages`, with `meta: {"id": ...}` (and
    /// `"replayed": true` when `replayed`): a JSON payload as the broadcast any client
    /// reads, a binary one as a kind-4 frame with that metadata. `None` when the row's
    /// JSON payload does not parse or a binary one's event name is over 255 bytes.
    pub(crate) fn stored(topic: &str, message: &StoredMessage, replayed: bool) -> Option<Self> {
        #[derive(serde::Serialize)]
        struct Meta<'a> {
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            replayed: bool,
            id: &'a str,
        }
        #[derive(serde::Serialize)]
        struct Stored<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            event: &'a str,
            payload: &'a RawValue,
            meta: Meta<'a>,
        }
        let meta = Meta {
            replayed,
            id: &message.id,
        };
        let mut outgoing = match (&message.payload, &message.binary) {
            (Some(payload), _) => {
                let payload: &RawValue = serde_json::from_str(payload).ok()?;
                let body = Stored {
                    kind: BROADCAST,
                    event: &message.event,
                    payload,
                    meta,
                };
                Outgoing::raw(topic, BROADCAST, to_raw(&body))
            }
            (None, Some(bytes)) => {
                if message.event.len() > 255 {
                    return None;
                }
                let metadata = serde_json::to_vec(&meta).expect("serializable");
                Outgoing::binary(
                    topic,
                    UserBroadcast {
                        event: message.event.clone(),
                        metadata: metadata.into(),
                        encoding: crier_protocol::PayloadEncoding::Binary,
                        payload: bytes.clone().into(),
                    },
                )
            }
            (None, None) => return None,
        };
        outgoing.stored_id = Some(message.id.as_str().into());
        Some(outgoing)
    }

    /// The `realtime.messages` id of a broadcast from the database.
    pub(crate) fn stored_id(&self) -> Option<&str> {
        self.stored_id.as_deref()
    }

    /// A broadcast from another node.
    pub(crate) fn from_publication(topic: &str, publication: Publication<'_>) -> Self {
        match publication {
            Publication::Json(body) => Outgoing::raw(topic, BROADCAST, body.to_owned()),
            Publication::Binary(broadcast) => Outgoing::binary(topic, broadcast.clone()),
        }
    }

    /// The message as the broker carries it, when it is a broadcast (presence diffs and
    /// postgres changes never travel between nodes this way).
    pub(crate) fn publication(&self) -> Option<Publication<'_>> {
        if self.event != BROADCAST {
            return None;
        }
        Some(match &self.body {
            Body::Json(raw) => Publication::Json(raw),
            Body::Binary(broadcast) => Publication::Binary(broadcast),
        })
    }

    fn new(topic: &str, event: &'static str, body: Body) -> Self {
        Outgoing {
            topic: topic.to_owned(),
            event,
            body,
            stored_id: None,
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

    /// The frame for `conn`'s serializer, or `None` if this message cannot reach it.
    pub(crate) fn frame(&self, conn: &ConnHandle) -> Option<&Frame> {
        let cell = match conn.vsn {
            Vsn::V1 => &self.v1,
            Vsn::V2 => &self.v2,
        };
        cell.get_or_init(|| self.encode(conn)).as_ref()
    }

    fn encode(&self, conn: &ConnHandle) -> Option<Frame> {
        let envelope = Envelope::broadcast(&self.topic, self.event);
        let ledger = conn.ledger();
        match (&self.body, conn.vsn) {
            (Body::Json(raw), vsn) => {
                Some(ledger.shared_text(text::encode(vsn, Direction::ToClient, &envelope, raw)))
            }
            (Body::Binary(broadcast), Vsn::V2) => {
                binary::encode_user_broadcast(&self.topic, broadcast)
                    .ok()
                    .map(|bytes| ledger.shared_binary(bytes))
            }
            (Body::Binary(_), Vsn::V1) => None,
        }
    }
}

/// Serializes any payload to JSON text once.
pub(crate) fn to_raw(payload: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(payload).expect("payloads are JSON-serializable")
}

/// `{"type":"broadcast","event":<event>,"payload":<payload>}` around a payload already
/// serialized, without parsing it again.
pub(crate) fn json_broadcast_body(event: &str, payload: &RawValue) -> Box<RawValue> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        event: &'a str,
        payload: &'a RawValue,
    }
    to_raw(&Body {
        kind: BROADCAST,
        event,
        payload,
    })
}

/// Encodes a single frame for one socket (replies and channel pushes).
pub(crate) fn encode_one(vsn: Vsn, envelope: &Envelope<'_>, payload: &impl Serialize) -> Frame {
    Frame::text(text::encode(vsn, Direction::ToClient, envelope, payload))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use crier_protocol::PayloadEncoding;
    use serde_json::json;

    use super::*;
    use crate::flow::Ledger;
    use crate::outbound::OutboundQueue;

    fn conn(vsn: Vsn, ledger: &Arc<Ledger>) -> Arc<ConnHandle> {
        ConnHandle::new(
            1,
            vsn,
            OutboundQueue::new(1 << 20, 1 << 20, Arc::clone(ledger), Arc::default()),
        )
    }

    #[test]
    fn json_frames_are_built_once_per_serializer() {
        let ledger = Ledger::new(usize::MAX);
        let (v1, v2) = (conn(Vsn::V1, &ledger), conn(Vsn::V2, &ledger));
        let message = Outgoing::json(
            "realtime:r",
            "broadcast",
            &json!({"event":"e","payload":{"x":1}}),
        );
        let a = message.frame(&v2).unwrap().clone();
        let b = message.frame(&v2).unwrap().clone();
        let (Frame::Text(a), Frame::Text(b)) = (a, b) else {
            panic!("text frames")
        };
        assert_eq!(a.as_ptr(), b.as_ptr(), "clones share one buffer");
        assert_eq!(
            &a[..],
            br#"[null,null,"realtime:r","broadcast",{"event":"e","payload":{"x":1}}]"#
        );
        assert_eq!(
            message.frame(&v1).unwrap().as_text(),
            r#"{"topic":"realtime:r","event":"broadcast","payload":{"event":"e","payload":{"x":1}},"ref":null}"#
        );
        assert_eq!(ledger.queued(), a.len() + message.frame(&v1).unwrap().len());
        drop((a, b, message));
        assert_eq!(ledger.queued(), 0, "released with the last holder");
    }

    #[test]
    fn binary_broadcasts_reach_only_v2() {
        let ledger = Ledger::new(usize::MAX);
        let message = Outgoing::binary(
            "realtime:r",
            UserBroadcast {
                event: "e".into(),
                metadata: Bytes::new(),
                encoding: PayloadEncoding::Binary,
                payload: Bytes::from_static(b"\x00\x01"),
            },
        );
        assert!(message.frame(&conn(Vsn::V1, &ledger)).is_none());
        assert!(
            matches!(message.frame(&conn(Vsn::V2, &ledger)), Some(Frame::Binary(b)) if b[0] == 4)
        );
    }
}
