//! What a broadcast says, apart from its frames: [`Content`]. The fan-out encodes it once
//! per serializer, with the stream position the history gave it; the history keeps the
//! same `Arc<Content>` to send again when a subscriber resumes. Nothing here is counted in
//! the node's ledger of queued bytes: only frames are.

use std::borrow::Cow;

use bytes::Bytes;
use crier_protocol::events::BROADCAST;
use crier_protocol::serializer::Members;
use crier_protocol::{PayloadEncoding, UserBroadcast};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::authz::StoredMessage;
use crate::history::Position;

/// A broadcast's event and payload, and the metadata it was sent with.
#[derive(Debug)]
pub(crate) enum Content {
    /// A JSON broadcast: the members of its `{"type":"broadcast","event":…,"payload":…}`
    /// object other than `meta`, as JSON text without the braces.
    Json { members: Box<str>, meta: Meta },
    /// A binary user broadcast (a kind-4 frame for 2.0.0 sockets).
    Binary {
        event: String,
        encoding: PayloadEncoding,
        payload: Bytes,
        meta: Meta,
    },
}

/// What goes into a broadcast's `meta` besides its position.
#[derive(Debug, Default)]
pub(crate) struct Meta {
    /// The message's id, as JSON: a `realtime.messages` row's (a string), or whatever
    /// value a caller of the REST API gave.
    pub(crate) id: Option<Box<RawValue>>,
    /// Sent again from storage at a join (`replay`), not live.
    pub(crate) replayed: bool,
    /// Members of a `meta` object the sender put in its broadcast, as JSON text without
    /// the braces; the server's own keys follow them (and win in every JSON reader).
    pub(crate) sender: Option<Box<str>>,
}

/// A broadcast ready to encode: its body with `meta` written in.
#[derive(Debug)]
pub(crate) enum Assembled {
    /// JSON text, built from parts that were JSON, and not parsed again: frames take it
    /// as it is (`text::encode_raw`).
    Json(Box<str>),
    Binary(UserBroadcast),
}

impl Content {
    /// A client's broadcast map (`{"type":"broadcast","event":…,"payload":…}`), as sent
    /// apart from its `meta`, which is kept as the sender's.
    pub(crate) fn from_map(mut map: Map<String, Value>) -> Content {
        let sender = match map.remove("meta") {
            Some(Value::Object(meta)) if !meta.is_empty() => Some(members_of(&meta)),
            _ => None,
        };
        Content::Json {
            members: members_of(&map),
            meta: Meta {
                sender,
                ..Meta::default()
            },
        }
    }

    /// A client's broadcast object read in place from its frame (`peek_text`), as
    /// [`Content::from_map`] reads the same object decoded: its members but `meta` in
    /// key order, each key once (the last wins, as in a decoded map), and the members of
    /// an object `meta` kept as the sender's (any other `meta` is dropped). The values'
    /// text is the frame's, checked once by the read.
    pub(crate) fn from_members(members: &Members<'_>) -> Content {
        let mut sorted: Vec<&(Cow<'_, str>, &RawValue)> = members.0.iter().collect();
        // Stable: of equal keys, the frame's last stays last.
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let room = sorted
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut text = String::with_capacity(room);
        let mut sender = None;
        for (at, (key, value)) in sorted.iter().enumerate() {
            if sorted.get(at + 1).is_some_and(|next| next.0 == *key) {
                continue;
            }
            if key == "meta" {
                sender = value
                    .get()
                    .strip_prefix('{')
                    .and_then(|meta| meta.strip_suffix('}'))
                    .map(str::trim)
                    .filter(|meta| !meta.is_empty())
                    .map(Into::into);
                continue;
            }
            if !text.is_empty() {
                text.push(',');
            }
            match key {
                // A key read in place held no escape, and JSON text holds no control
                // character: its text is what goes between the quotes.
                Cow::Borrowed(key) => {
                    text.push('"');
                    text.push_str(key);
                    text.push('"');
                }
                Cow::Owned(key) => text.push_str(&json_string(key)),
            }
            text.push(':');
            text.push_str(value.get());
        }
        Content::Json {
            members: text.into(),
            meta: Meta {
                sender,
                ..Meta::default()
            },
        }
    }

    /// A broadcast from another node, as its body without a position (what the broker
    /// carries): its `meta` is kept whole as the sender's, and this node's position goes
    /// after it. `None` when the body is not a JSON object.
    pub(crate) fn from_body(body: &RawValue) -> Option<Content> {
        // Borrowed values: the payload is copied as text, never parsed into a tree.
        let members: std::collections::BTreeMap<std::borrow::Cow<'_, str>, &RawValue> =
            serde_json::from_str(body.get()).ok()?;
        let mut text = String::with_capacity(body.get().len());
        let mut sender = None;
        for (key, value) in members {
            if key == "meta" {
                let meta = value.get().trim();
                let inner = meta.strip_prefix('{')?.strip_suffix('}')?.trim();
                sender = (!inner.is_empty()).then(|| inner.into());
                continue;
            }
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str(&json_string(&key));
            text.push(':');
            text.push_str(value.get());
        }
        Some(Content::Json {
            members: text.into(),
            meta: Meta {
                sender,
                ..Meta::default()
            },
        })
    }

    /// A binary broadcast from another node (its metadata without a position): the
    /// metadata's members are kept as the sender's. `None` when the metadata is not a
    /// JSON object.
    pub(crate) fn from_user_broadcast(broadcast: &UserBroadcast) -> Option<Content> {
        let sender = if broadcast.metadata.is_empty() {
            None
        } else {
            let meta = std::str::from_utf8(&broadcast.metadata).ok()?;
            let map: Map<String, Value> = serde_json::from_str(meta).ok()?;
            (!map.is_empty()).then(|| members_of(&map))
        };
        Some(Content::Binary {
            event: broadcast.event.clone(),
            encoding: broadcast.encoding,
            payload: broadcast.payload.clone(),
            meta: Meta {
                sender,
                ..Meta::default()
            },
        })
    }

    /// `{"type":"broadcast","event":event,"payload":payload}` with `meta.id` when given.
    pub(crate) fn json(event: &str, payload: &RawValue, id: Option<Box<RawValue>>) -> Content {
        let event = serde_json::to_string(event).expect("a string serializes");
        let mut members = String::with_capacity(payload.get().len() + event.len() + 40);
        members.push_str("\"type\":\"");
        members.push_str(BROADCAST);
        members.push_str("\",\"event\":");
        members.push_str(&event);
        members.push_str(",\"payload\":");
        members.push_str(payload.get());
        Content::Json {
            members: members.into(),
            meta: Meta {
                id,
                ..Meta::default()
            },
        }
    }

    /// A binary broadcast; its metadata is the server's (a client's kind-3 metadata is
    /// dropped, as Supabase drops it).
    pub(crate) fn binary(event: String, encoding: PayloadEncoding, payload: Bytes) -> Content {
        Content::Binary {
            event,
            encoding,
            payload,
            meta: Meta::default(),
        }
    }

    /// A broadcast stored in `realtime.messages`, with `meta.id` (and `meta.replayed`).
    /// `None` when its JSON payload does not parse or a binary one's event name is over
    /// 255 bytes.
    pub(crate) fn stored(message: &StoredMessage, replayed: bool) -> Option<Content> {
        let mut content = match (&message.payload, &message.binary) {
            (Some(payload), _) => {
                let payload: &RawValue = serde_json::from_str(payload).ok()?;
                Content::json(&message.event, payload, Some(json_id(&message.id)))
            }
            (None, Some(bytes)) if message.event.len() <= 255 => Content::Binary {
                event: message.event.clone(),
                encoding: PayloadEncoding::Binary,
                payload: Bytes::copy_from_slice(bytes),
                meta: Meta {
                    id: Some(json_id(&message.id)),
                    ..Meta::default()
                },
            },
            _ => return None,
        };
        content.meta_mut().replayed = replayed;
        Some(content)
    }

    fn meta_mut(&mut self) -> &mut Meta {
        match self {
            Content::Json { meta, .. } | Content::Binary { meta, .. } => meta,
        }
    }

    /// The id when it is a string (a `realtime.messages` row's always is).
    pub(crate) fn string_id(&self) -> Option<&str> {
        serde_json::from_str(self.meta().id.as_deref()?.get()).ok()
    }

    /// The metadata.
    pub(crate) fn meta(&self) -> &Meta {
        match self {
            Content::Json { meta, .. } | Content::Binary { meta, .. } => meta,
        }
    }

    /// The payload's size as the payload limit counts it: the JSON text, or the bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Content::Json { members, .. } => members.len() + 2,
            Content::Binary { payload, .. } => payload.len(),
        }
    }

    /// The body with `meta` (and the position, when it has one) written in.
    pub(crate) fn assemble(&self, position: Option<&Position>) -> Assembled {
        match self {
            Content::Json { members, meta } => {
                let meta = meta.members(position);
                let mut body = String::with_capacity(members.len() + meta.len() + 12);
                body.push('{');
                body.push_str(members);
                if !meta.is_empty() {
                    if !members.is_empty() {
                        body.push(',');
                    }
                    body.push_str("\"meta\":{");
                    body.push_str(&meta);
                    body.push('}');
                }
                body.push('}');
                Assembled::Json(body.into())
            }
            Content::Binary {
                event,
                encoding,
                payload,
                meta,
            } => {
                let meta = meta.members(position);
                let metadata = if meta.is_empty() {
                    Bytes::new()
                } else {
                    Bytes::from(format!("{{{meta}}}"))
                };
                Assembled::Binary(UserBroadcast {
                    event: event.clone(),
                    metadata,
                    encoding: *encoding,
                    payload: payload.clone(),
                })
            }
        }
    }
}

impl Meta {
    /// The members of the `meta` object, without braces; empty when there are none.
    fn members(&self, position: Option<&Position>) -> String {
        let mut out = String::new();
        let mut add = |member: &str| {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(member);
        };
        if let Some(sender) = &self.sender {
            add(sender);
        }
        if self.replayed {
            add("\"replayed\":true");
        }
        if let Some(id) = &self.id {
            add(&format!("\"id\":{}", id.get()));
        }
        if let Some(position) = position {
            add(&format!(
                "\"offset\":{},\"epoch\":{}",
                position.offset,
                json_string(&position.epoch)
            ));
        }
        out
    }
}

/// A string id as a JSON value.
fn json_id(id: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(id).expect("a string serializes")
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// An object's members as JSON text, without the braces.
fn members_of(map: &Map<String, Value>) -> Box<str> {
    let text = serde_json::to_string(map).expect("a map serializes");
    text[1..text.len() - 1].into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn position(offset: u64) -> Position {
        Position {
            epoch: Arc::from("ep"),
            offset,
        }
    }

    #[test]
    fn a_broadcast_read_in_place_is_the_one_decoded() {
        for body in [
            r#"{"type":"broadcast","event":"m","payload":{"x":[1,{"y":null}]}}"#,
            r#"{"type":"broadcast","event":"m","payload":1,"meta":{"id":"a","n":2}}"#,
            r#"{"type":"broadcast","event":"m","meta":"not an object"}"#,
            r#"{"type":"broadcast","event":"m","meta":{}}"#,
            r#"{"event":"first","type":"broadcast","event":"last"}"#,
            r#"{"k\u0065y":"escaped key","\"q\"":true,"type":"broadcast"}"#,
            r#"{}"#,
        ] {
            let frame = format!(r#"[null,null,"realtime:r","broadcast",{body}]"#);
            let push = crier_protocol::serializer::peek_text(crier_protocol::Vsn::V2, &frame)
                .expect("a plain frame");
            let in_place = Content::from_members(&push.payload);
            let Value::Object(map) = serde_json::from_str(body).unwrap() else {
                panic!("an object")
            };
            let decoded = Content::from_map(map);
            let (
                Content::Json {
                    members: a,
                    meta: ma,
                },
                Content::Json {
                    members: b,
                    meta: mb,
                },
            ) = (&in_place, &decoded)
            else {
                panic!("json contents")
            };
            assert_eq!(a, b, "{body}");
            assert_eq!(ma.sender, mb.sender, "{body}");
        }
    }

    fn json_of(assembled: Assembled) -> Value {
        let Assembled::Json(text) = assembled else {
            panic!("json")
        };
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_broadcast_from_another_node_takes_this_nodes_position_after_its_meta() {
        let body = RawValue::from_string(
            r#"{"type":"broadcast","event":"e","payload":{"x":[1,{"meta":2}]},"meta":{"mine":2,"id":"7"}}"#
                .into(),
        )
        .unwrap();
        let content = Content::from_body(&body).unwrap();
        assert_eq!(
            json_of(content.assemble(Some(&position(4)))),
            json!({"type": "broadcast", "event": "e", "payload": {"x": [1, {"meta": 2}]},
                   "meta": {"mine": 2, "id": "7", "offset": 4, "epoch": "ep"}})
        );
        let bare = RawValue::from_string(r#"{"event":"e","payload":1}"#.into()).unwrap();
        assert_eq!(
            json_of(Content::from_body(&bare).unwrap().assemble(None)),
            json!({"event": "e", "payload": 1})
        );
        let not_an_object = RawValue::from_string("[1]".into()).unwrap();
        assert!(Content::from_body(&not_an_object).is_none());

        let binary = UserBroadcast {
            event: "b".into(),
            metadata: Bytes::from_static(br#"{"id":"9"}"#),
            encoding: PayloadEncoding::Binary,
            payload: Bytes::from_static(b"\x01"),
        };
        let Assembled::Binary(out) = Content::from_user_broadcast(&binary)
            .unwrap()
            .assemble(Some(&position(5)))
        else {
            panic!("binary")
        };
        assert_eq!(&out.metadata[..], br#"{"id":"9","offset":5,"epoch":"ep"}"#);
        let junk = UserBroadcast {
            metadata: Bytes::from_static(b"nope"),
            ..binary
        };
        assert!(Content::from_user_broadcast(&junk).is_none());
    }

    #[test]
    fn a_client_map_keeps_its_members_and_gets_the_position_in_meta() {
        let map =
            json!({"type": "broadcast", "event": "e", "payload": {"x": 1}, "meta": {"mine": 2}});
        let Value::Object(map) = map else { panic!() };
        let content = Content::from_map(map);
        assert_eq!(
            json_of(content.assemble(Some(&position(7)))),
            json!({"type": "broadcast", "event": "e", "payload": {"x": 1},
                   "meta": {"mine": 2, "offset": 7, "epoch": "ep"}})
        );
        assert_eq!(
            json_of(content.assemble(None)),
            json!({"type": "broadcast", "event": "e", "payload": {"x": 1}, "meta": {"mine": 2}})
        );
        let Value::Object(empty) = json!({}) else {
            panic!()
        };
        assert_eq!(json_of(Content::from_map(empty).assemble(None)), json!({}));
    }

    #[test]
    fn stored_messages_carry_their_id_and_replayed_flag() {
        let message = StoredMessage {
            id: "a\"b".into(),
            event: "e".into(),
            payload: Some(r#"{"n":1}"#.into()),
            binary: None,
        };
        let content = Content::stored(&message, true).unwrap();
        assert_eq!(
            json_of(content.assemble(Some(&position(3)))),
            json!({"type": "broadcast", "event": "e", "payload": {"n": 1},
                   "meta": {"replayed": true, "id": "a\"b", "offset": 3, "epoch": "ep"}})
        );
        let binary = StoredMessage {
            payload: None,
            binary: Some(vec![1, 2]),
            ..message
        };
        let Assembled::Binary(user) = Content::stored(&binary, false).unwrap().assemble(None)
        else {
            panic!("binary")
        };
        assert_eq!(&user.payload[..], &[1, 2]);
        let metadata: Value = serde_json::from_slice(&user.metadata).unwrap();
        assert_eq!(metadata, json!({"id": "a\"b"}));
    }

    #[test]
    fn a_binary_broadcast_without_meta_has_empty_metadata() {
        let content = Content::binary(
            "e".into(),
            PayloadEncoding::Binary,
            Bytes::from_static(b"x"),
        );
        let Assembled::Binary(user) = content.assemble(None) else {
            panic!("binary")
        };
        assert!(user.metadata.is_empty());
        let Assembled::Binary(user) = content.assemble(Some(&position(1))) else {
            panic!("binary")
        };
        let metadata: Value = serde_json::from_slice(&user.metadata).unwrap();
        assert_eq!(metadata, json!({"offset": 1, "epoch": "ep"}));
    }
}
