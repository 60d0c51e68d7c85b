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

mod content;

use std::cell::OnceCell;
use std::sync::Arc;

use crier_protocol::Vsn;
use crier_protocol::events::BROADCAST;
use crier_protocol::serializer::{Direction, Envelope, binary, text};
use serde::Serialize;
use serde_json::value::RawValue;

pub(crate) use content::{Assembled, Content};

use crate::broker::Publication;
use crate::frame::Frame;
use crate::history::Position;
use crate::outbound::ConnHandle;

/// The body of an [`Outgoing`] message.
#[derive(Debug)]
enum Body {
    /// JSON text, already serialized (presence diffs, postgres changes, system messages).
    Json(Box<RawValue>),
    /// A broadcast, to be given its position and assembled once.
    Broadcast(Arc<Content>),
}

/// A broadcast's body as the bus takes it.
#[derive(Debug)]
enum Bare {
    Json(Box<RawValue>),
    Binary(crier_protocol::UserBroadcast),
}

/// A fan-out message (`join_ref` and `ref` are null) with its frames cached per serializer.
#[derive(Debug)]
pub(crate) struct Outgoing {
    topic: String,
    event: &'static str,
    body: Body,
    /// Where the history put it: set by the publish funnel before anything is encoded.
    position: OnceCell<Position>,
    /// A broadcast's body with its `meta`, built on first use.
    assembled: OnceCell<Assembled>,
    /// The body as the bus carries it to other nodes: without the position (each
    /// gives it its own), and checked to be JSON, which the bus's API asks for.
    bare: OnceCell<Bare>,
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

    /// A broadcast published on this node.
    pub(crate) fn broadcast(topic: &str, content: Arc<Content>) -> Self {
        Outgoing::new(topic, BROADCAST, Body::Broadcast(content))
    }

    /// A broadcast from history or storage, at `position` (resume) or at none (replay).
    pub(crate) fn at(topic: &str, content: Arc<Content>, position: Option<Position>) -> Self {
        let outgoing = Outgoing::broadcast(topic, content);
        if let Some(position) = position {
            outgoing.set_position(position);
        }
        outgoing
    }

    /// A broadcast stored in `realtime.messages` (see [`Content::stored`]).
    pub(crate) fn stored(
        topic: &str,
        message: &crate::authz::StoredMessage,
        replayed: bool,
    ) -> Option<Self> {
        Some(Outgoing::broadcast(
            topic,
            Arc::new(Content::stored(message, replayed)?),
        ))
    }

    /// A broadcast from another node.
    pub(crate) fn from_publication(topic: &str, publication: Publication<'_>) -> Option<Self> {
        let content = match publication {
            Publication::Json(body) => Content::from_body(body)?,
            Publication::Binary(broadcast) => Content::from_user_broadcast(broadcast)?,
        };
        Some(Outgoing::broadcast(topic, Arc::new(content)))
    }

    /// The broadcast's content, for the history (`None` for anything else).
    pub(crate) fn content(&self) -> Option<&Arc<Content>> {
        match &self.body {
            Body::Broadcast(content) => Some(content),
            _ => None,
        }
    }

    /// Gives the broadcast its place in the topic's stream. Only before it is encoded,
    /// by the publish funnel; later calls are ignored.
    pub(crate) fn set_position(&self, position: Position) {
        debug_assert!(self.assembled.get().is_none(), "positioned before encoding");
        let _ = self.position.set(position);
    }

    /// The `id` of a broadcast that has one (a `realtime.messages` row's), so that a
    /// subscriber it was replayed to at its join does not get it again.
    pub(crate) fn stored_id(&self) -> Option<&str> {
        self.content()?.string_id()
    }

    /// The message as the broker carries it, when it is a broadcast (presence diffs and
    /// postgres changes never travel between nodes this way).
    pub(crate) fn publication(&self) -> Option<Publication<'_>> {
        if self.event != BROADCAST {
            return None;
        }
        let content = match &self.body {
            Body::Json(raw) => return Some(Publication::Json(raw)),
            Body::Broadcast(content) => content,
        };
        let bare = self.bare.get_or_init(|| match content.assemble(None) {
            Assembled::Json(text) => {
                Bare::Json(RawValue::from_string(text.into()).expect("assembled from JSON parts"))
            }
            Assembled::Binary(broadcast) => Bare::Binary(broadcast),
        });
        Some(match bare {
            Bare::Json(raw) => Publication::Json(raw),
            Bare::Binary(broadcast) => Publication::Binary(broadcast),
        })
    }

    fn assembled(&self) -> Option<&Assembled> {
        let Body::Broadcast(content) = &self.body else {
            return None;
        };
        Some(
            self.assembled
                .get_or_init(|| content.assemble(self.position.get())),
        )
    }

    fn new(topic: &str, event: &'static str, body: Body) -> Self {
        Outgoing {
            topic: topic.to_owned(),
            event,
            body,
            position: OnceCell::new(),
            assembled: OnceCell::new(),
            bare: OnceCell::new(),
            v1: OnceCell::new(),
            v2: OnceCell::new(),
        }
    }

    /// Size of the payload in bytes (JSON text or binary payload).
    pub(crate) fn body_len(&self) -> usize {
        match &self.body {
            Body::Json(raw) => raw.get().len(),
            Body::Broadcast(content) => content.len(),
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
        let json = |raw: &str| {
            ledger.shared_text(text::encode_raw(
                conn.vsn,
                Direction::ToClient,
                &envelope,
                raw,
            ))
        };
        let binary = |broadcast| match conn.vsn {
            Vsn::V2 => binary::encode_user_broadcast(&self.topic, broadcast)
                .ok()
                .map(|bytes| ledger.shared_binary(bytes)),
            Vsn::V1 => None,
        };
        match (&self.body, self.assembled()) {
            (Body::Json(raw), _) => Some(json(raw.get())),
            (Body::Broadcast(_), Some(Assembled::Json(text))) => Some(json(text)),
            (Body::Broadcast(_), Some(Assembled::Binary(broadcast))) => binary(broadcast),
            (Body::Broadcast(_), None) => unreachable!("a broadcast assembles"),
        }
    }
}

/// Serializes any payload to JSON text once.
pub(crate) fn to_raw(payload: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(payload).expect("payloads are JSON-serializable")
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
        let content = Content::binary(
            "e".into(),
            PayloadEncoding::Binary,
            Bytes::from_static(b"\x00\x01"),
        );
        let message = Outgoing::broadcast("realtime:r", Arc::new(content));
        assert!(message.frame(&conn(Vsn::V1, &ledger)).is_none());
        assert!(
            matches!(message.frame(&conn(Vsn::V2, &ledger)), Some(Frame::Binary(b)) if b[0] == 4)
        );
    }

    #[test]
    fn a_broadcast_is_encoded_with_the_position_it_was_given() {
        let ledger = Ledger::new(usize::MAX);
        let payload = to_raw(&json!({"x": 1}));
        let message =
            Outgoing::broadcast("realtime:r", Arc::new(Content::json("e", &payload, None)));
        message.set_position(Position {
            epoch: Arc::from("ep"),
            offset: 9,
        });
        assert_eq!(
            message.frame(&conn(Vsn::V2, &ledger)).unwrap().as_text(),
            r#"[null,null,"realtime:r","broadcast",{"type":"broadcast","event":"e","payload":{"x":1},"meta":{"offset":9,"epoch":"ep"}}]"#
        );
        let Some(Publication::Json(body)) = message.publication() else {
            panic!("a JSON publication")
        };
        assert_eq!(
            body.get(),
            r#"{"type":"broadcast","event":"e","payload":{"x":1}}"#,
            "other nodes get it without this node's position"
        );
    }
}
