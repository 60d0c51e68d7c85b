//! Text frames: JSON objects (1.0.0) and JSON arrays (2.0.0).

use serde::Serialize;
use serde_json::Value;

use super::{DecodeError, DecodeErrorKind, Direction, Envelope, ReplyTo, Vsn};
use crate::message::{Message, Payload};

/// Encodes a text frame. 1.0.0 writes `join_ref` only towards the server, as Phoenix's
/// V1 serializer does; 2.0.0 always writes the five-element array.
pub fn encode<P: Serialize + ?Sized>(
    vsn: Vsn,
    direction: Direction,
    envelope: &Envelope<'_>,
    payload: &P,
) -> String {
    let result = match vsn {
        Vsn::V2 => serde_json::to_string(&(
            envelope.join_ref,
            envelope.msg_ref,
            envelope.topic,
            envelope.event,
            payload,
        )),
        Vsn::V1 => {
            let join_ref = match direction {
                Direction::ToServer => envelope.join_ref,
                Direction::ToClient => None,
            };
            serde_json::to_string(&V1Frame {
                topic: envelope.topic,
                event: envelope.event,
                payload,
                msg_ref: envelope.msg_ref,
                join_ref,
            })
        }
    };
    // Serializing strings and a `Serialize` payload into a String only fails if the
    // payload's own `Serialize` impl fails, which serde_json::Value and our types never do.
    result.expect("JSON encoding of a frame cannot fail")
}

/// [`encode`] for a payload that is JSON text already, written as it is: the caller
/// vouches that it is one JSON value (a server's broadcast body, built from checked
/// parts), which saves parsing it again on its way into the frame.
pub fn encode_raw(
    vsn: Vsn,
    direction: Direction,
    envelope: &Envelope<'_>,
    payload: &str,
) -> String {
    let json = |value: Option<&str>| serde_json::to_string(&value).expect("strings serialize");
    match vsn {
        Vsn::V2 => {
            // The envelope's four fields as an array, then the payload before its `]`.
            let head = serde_json::to_string(&(
                envelope.join_ref,
                envelope.msg_ref,
                envelope.topic,
                envelope.event,
            ))
            .expect("strings serialize");
            let mut out = String::with_capacity(head.len() + payload.len() + 2);
            out.push_str(&head[..head.len() - 1]);
            out.push(',');
            out.push_str(payload);
            out.push(']');
            out
        }
        Vsn::V1 => {
            let mut out = String::with_capacity(payload.len() + envelope.topic.len() + 64);
            out.push_str("{\"topic\":");
            out.push_str(&json(Some(envelope.topic)));
            out.push_str(",\"event\":");
            out.push_str(&json(Some(envelope.event)));
            out.push_str(",\"payload\":");
            out.push_str(payload);
            out.push_str(",\"ref\":");
            out.push_str(&json(envelope.msg_ref));
            if let (Direction::ToServer, Some(join_ref)) = (direction, envelope.join_ref) {
                out.push_str(",\"join_ref\":");
                out.push_str(&json(Some(join_ref)));
            }
            out.push('}');
            out
        }
    }
}

#[derive(Serialize)]
struct V1Frame<'a, P: Serialize + ?Sized> {
    topic: &'a str,
    event: &'a str,
    payload: &'a P,
    #[serde(rename = "ref")]
    msg_ref: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    join_ref: Option<&'a str>,
}

/// Decodes a text frame.
pub(super) fn decode(vsn: Vsn, text: &str, _direction: Direction) -> Result<Message, DecodeError> {
    let value: Value = crate::json::from_str(text)
        .map_err(|err| DecodeError::new(DecodeErrorKind::InvalidJson(err.to_string())))?;
    match vsn {
        Vsn::V1 => decode_object(value),
        Vsn::V2 => decode_array(value),
    }
}

fn decode_array(value: Value) -> Result<Message, DecodeError> {
    let Value::Array(items) = value else {
        return Err(DecodeErrorKind::NotAFiveElementArray.into());
    };
    let reply_to = reply_to(items.first(), items.get(1), items.get(2));
    let fail = |kind| DecodeError {
        kind,
        reply_to: reply_to.clone(),
    };
    if items.len() < 5 {
        return Err(fail(DecodeErrorKind::NotAFiveElementArray));
    }
    let mut items = items.into_iter();
    let mut next = || items.next().unwrap_or(Value::Null);
    let join_ref = optional_ref(next(), "join_ref").map_err(fail)?;
    let msg_ref = optional_ref(next(), "ref").map_err(fail)?;
    let topic = required_string(next(), "topic").map_err(fail)?;
    let event = required_string(next(), "event").map_err(fail)?;
    let payload = next();
    Ok(Message {
        join_ref,
        msg_ref,
        topic,
        event,
        payload: Payload::Json(payload),
    })
}

fn decode_object(value: Value) -> Result<Message, DecodeError> {
    let Value::Object(mut map) = value else {
        return Err(DecodeErrorKind::NotAnObject.into());
    };
    let reply_to = reply_to(map.get("join_ref"), map.get("ref"), map.get("topic"));
    let fail = |kind| DecodeError {
        kind,
        reply_to: reply_to.clone(),
    };
    let mut take = |field: &'static str| map.remove(field);
    let topic = take("topic").ok_or(DecodeErrorKind::MissingField("topic"));
    let topic = required_string(topic.map_err(fail)?, "topic").map_err(fail)?;
    let event = take("event").ok_or(DecodeErrorKind::MissingField("event"));
    let event = required_string(event.map_err(fail)?, "event").map_err(fail)?;
    let payload = take("payload")
        .ok_or(DecodeErrorKind::MissingField("payload"))
        .map_err(fail)?;
    let msg_ref = optional_ref(take("ref").unwrap_or(Value::Null), "ref").map_err(fail)?;
    let join_ref =
        optional_ref(take("join_ref").unwrap_or(Value::Null), "join_ref").map_err(fail)?;
    Ok(Message {
        join_ref,
        msg_ref,
        topic,
        event,
        payload: Payload::Json(payload),
    })
}

/// Refs are strings in every real client; integers are accepted (and echoed as strings)
/// so hand-typed frames such as `[1,1,"realtime:x","phx_join",{}]` work.
fn optional_ref(value: Value, field: &'static str) -> Result<Option<String>, DecodeErrorKind> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        _ => Err(DecodeErrorKind::FieldType {
            field,
            expected: "a string or null",
        }),
    }
}

fn required_string(value: Value, field: &'static str) -> Result<String, DecodeErrorKind> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(DecodeErrorKind::FieldType {
            field,
            expected: "a string",
        }),
    }
}

/// Reads `ref` and `topic` leniently so a malformed frame can still be answered.
fn reply_to(
    join_ref: Option<&Value>,
    msg_ref: Option<&Value>,
    topic: Option<&Value>,
) -> Option<ReplyTo> {
    let as_ref = |value: Option<&Value>| match value {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    };
    Some(ReplyTo {
        join_ref: as_ref(join_ref),
        msg_ref: as_ref(msg_ref)?,
        topic: topic?.as_str()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode_v2(text: &str) -> Result<Message, DecodeError> {
        decode(Vsn::V2, text, Direction::ToServer)
    }

    #[test]
    fn v2_array_decodes_with_null_join_ref() {
        let message = decode_v2(r#"[null,"5","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!(message.join_ref, None);
        assert_eq!(message.msg_ref.as_deref(), Some("5"));
        assert_eq!(message.topic, "phoenix");
        assert_eq!(message.event, "heartbeat");
        assert_eq!(message.payload, Payload::Json(json!({})));
    }

    #[test]
    fn a_raw_payload_encodes_byte_for_byte_as_a_serialized_one() {
        let value = json!({"event": "m", "payload": {"text": "hé \"x\"\n"}, "type": "broadcast"});
        let payload = &serde_json::to_string(&value).unwrap();
        for vsn in [Vsn::V1, Vsn::V2] {
            for direction in [Direction::ToClient, Direction::ToServer] {
                for (join_ref, msg_ref) in [(None, None), (Some("1"), Some("2"))] {
                    let envelope = Envelope {
                        join_ref,
                        msg_ref,
                        topic: "realtime:r\"oom",
                        event: "broadcast",
                    };
                    assert_eq!(
                        encode_raw(vsn, direction, &envelope, payload),
                        encode(vsn, direction, &envelope, &value),
                    );
                }
            }
        }
    }

    #[test]
    fn v2_short_array_is_rejected_but_keeps_reply_context() {
        let err = decode_v2(r#"["1","2","realtime:room"]"#).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NotAFiveElementArray);
        let reply_to = err.reply_to.expect("ref and topic were readable");
        assert_eq!(reply_to.msg_ref, "2");
        assert_eq!(reply_to.topic, "realtime:room");
    }

    #[test]
    fn v2_object_is_not_an_array() {
        let err = decode_v2(r#"{"topic":"x"}"#).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NotAFiveElementArray);
        assert_eq!(err.reply_to, None);
    }

    #[test]
    fn v2_extra_elements_are_ignored() {
        let message = decode_v2(r#"["1","2","t","e",{"a":1},"extra"]"#).unwrap();
        assert_eq!(message.payload, Payload::Json(json!({"a":1})));
    }

    #[test]
    fn v1_object_decodes_and_requires_payload() {
        let message = decode(
            Vsn::V1,
            r#"{"topic":"realtime:r","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}"#,
            Direction::ToServer,
        )
        .unwrap();
        assert_eq!(message.join_ref.as_deref(), Some("1"));
        let err = decode(
            Vsn::V1,
            r#"{"topic":"realtime:r","event":"phx_join","ref":"1"}"#,
            Direction::ToServer,
        )
        .unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::MissingField("payload"));
        assert_eq!(err.reply_to.unwrap().msg_ref, "1");
    }

    #[test]
    fn malformed_json_has_no_reply_context() {
        let err = decode_v2("[\"1\",").unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::InvalidJson(_)));
        assert_eq!(err.reply_to, None);
    }

    #[test]
    fn integer_refs_are_accepted_as_strings() {
        let message = decode_v2(r#"[1,2,"realtime:x","phx_join",{}]"#).unwrap();
        assert_eq!(message.join_ref.as_deref(), Some("1"));
        assert_eq!(message.msg_ref.as_deref(), Some("2"));
    }

    #[test]
    fn v1_to_client_omits_join_ref_and_v1_to_server_keeps_it() {
        let envelope = Envelope {
            join_ref: Some("1"),
            msg_ref: Some("2"),
            topic: "realtime:r",
            event: "phx_reply",
        };
        let to_client = encode(Vsn::V1, Direction::ToClient, &envelope, &json!({}));
        assert_eq!(
            to_client,
            r#"{"topic":"realtime:r","event":"phx_reply","payload":{},"ref":"2"}"#
        );
        let to_server = encode(Vsn::V1, Direction::ToServer, &envelope, &json!({}));
        assert!(to_server.contains(r#""join_ref":"1""#));
    }

    #[test]
    fn v2_fanout_has_null_refs() {
        let frame = encode(
            Vsn::V2,
            Direction::ToClient,
            &Envelope::broadcast("realtime:r", "broadcast"),
            &json!({"x":1}),
        );
        assert_eq!(frame, r#"[null,null,"realtime:r","broadcast",{"x":1}]"#);
    }
}
