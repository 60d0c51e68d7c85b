//! A client's text push read in place, for the server's hot path.
//!
//! Decoding a frame into a [`Message`](crate::Message) builds a `serde_json::Value` tree
//! for its payload, which a broadcast only turns back into text for its subscribers.
//! [`peek_text`] reads the envelope's strings where they lie in the frame and the
//! payload object's members as their own JSON text, checking each once. It takes only
//! the plain shape every client sends (string or null refs, strings without escapes,
//! exactly five elements or the 1.0.0 object's fields, an object payload); for anything
//! else it says `None`, and the caller decodes the frame fully, which also words the
//! error for a malformed one.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::Vsn;

/// A client push, borrowed from its text frame.
#[derive(Debug, Clone)]
pub struct PushRef<'a> {
    /// The `ref` of the channel's `phx_join`.
    pub join_ref: Option<&'a str>,
    /// The push's own `ref`.
    pub msg_ref: Option<&'a str>,
    /// The channel topic.
    pub topic: &'a str,
    /// The event name.
    pub event: &'a str,
    /// The payload object's members, in the frame's order.
    pub payload: Members<'a>,
}

/// The members of a payload object, borrowed from the frame: each key (unescaped) with
/// its value's JSON text (checked to be JSON).
#[derive(Debug, Clone, Default)]
pub struct Members<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Object<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(Key(key)) = map.next_key()? {
                    let value = map.next_value::<&'de RawValue>()?;
                    // A raw value is only scanned: no depth bound, no number range, no
                    // check of `\u` surrogates. Read through once more as the full decode
                    // reads it, so that what it refuses (or takes deeper than serde_json
                    // goes by default) is left to it.
                    serde_json::from_str::<Checked>(value.get())
                        .map_err(serde::de::Error::custom)?;
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Object(PhantomData))
    }
}

/// A JSON value read through as the full decode reads it into a tree (numbers in range,
/// escapes that make Unicode, no deeper than serde_json's default limit), and dropped.
/// (`IgnoredAny` would only scan it, as a raw value does.)
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Checked;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
                while map.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked)
            }
        }
        deserializer.deserialize_any(Any)
    }
}

/// An object key, borrowed from the frame unless it held escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Text<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(Text(PhantomData))
    }
}

#[derive(Deserialize)]
struct V2Push<'a>(
    #[serde(borrow)] Option<&'a str>,
    #[serde(borrow)] Option<&'a str>,
    &'a str,
    &'a str,
    #[serde(borrow)] Members<'a>,
);

#[derive(Deserialize)]
struct V1Push<'a> {
    topic: &'a str,
    event: &'a str,
    #[serde(borrow)]
    payload: Members<'a>,
    #[serde(default, rename = "ref", borrow)]
    msg_ref: Option<&'a str>,
    #[serde(default, borrow)]
    join_ref: Option<&'a str>,
}

/// Reads a text frame from a client in place; `None` when it is not of the plain shape
/// (decode it fully then).
pub fn peek_text(vsn: Vsn, text: &str) -> Option<PushRef<'_>> {
    match vsn {
        Vsn::V2 => {
            let V2Push(join_ref, msg_ref, topic, event, payload) =
                serde_json::from_str(text).ok()?;
            Some(PushRef {
                join_ref,
                msg_ref,
                topic,
                event,
                payload,
            })
        }
        Vsn::V1 => {
            let push: V1Push<'_> = serde_json::from_str(text).ok()?;
            Some(PushRef {
                join_ref: push.join_ref,
                msg_ref: push.msg_ref,
                topic: push.topic,
                event: push.event,
                payload: push.payload,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serializer::{Direction, text};

    /// What a peek reads is what a full decode reads, field for field.
    fn agrees(vsn: Vsn, frame: &str) {
        let push = peek_text(vsn, frame).expect("a plain frame");
        let message = text::decode(vsn, frame, Direction::ToServer).expect("decodes");
        assert_eq!(push.join_ref, message.join_ref.as_deref());
        assert_eq!(push.msg_ref, message.msg_ref.as_deref());
        assert_eq!(push.topic, message.topic);
        assert_eq!(push.event, message.event);
        let payload: serde_json::Map<String, serde_json::Value> = push
            .payload
            .0
            .iter()
            .map(|(key, value)| (key.to_string(), serde_json::from_str(value.get()).unwrap()))
            .collect();
        assert_eq!(
            Some(&serde_json::Value::Object(payload)),
            message.payload.as_json()
        );
    }

    #[test]
    fn plain_frames_read_as_a_full_decode_reads_them() {
        agrees(
            Vsn::V2,
            r#"["1","2","realtime:room","broadcast",{"type":"broadcast","event":"m","payload":{"a":[1,2]}}]"#,
        );
        agrees(Vsn::V2, r#"[null,null,"realtime:room","broadcast",{}]"#);
        agrees(
            Vsn::V2,
            r#"[null,null,"realtime:room","broadcast",{"k\u0065y":"v","meta":{}}]"#,
        );
        agrees(
            Vsn::V1,
            r#"{"topic":"realtime:room","event":"broadcast","payload":{"x":1},"ref":"3","join_ref":"1"}"#,
        );
        agrees(
            Vsn::V1,
            r#"{"topic":"realtime:room","event":"broadcast","payload":{"x":1},"ref":"3"}"#,
        );
    }

    #[test]
    fn anything_but_the_plain_shape_is_left_to_the_full_decode() {
        for frame in [
            // Integer refs, escapes in the topic, a sixth element, four elements,
            // not JSON, an object on 2.0.0.
            r#"[1,2,"realtime:room","broadcast",{}]"#,
            r#"["1","2","realtime:r\u006fom","broadcast",{}]"#,
            r#"["1","2","realtime:room","broadcast",{},0]"#,
            r#"["1","2","realtime:room","broadcast"]"#,
            r#"["1","2","realtime:room","broadcast",{"#,
            r#"{"topic":"realtime:room","event":"broadcast","payload":{}}"#,
            // A payload that is not an object; values the full decode refuses: a number
            // out of range, a lone surrogate; one nested past serde_json's default depth.
            r#"["1","2","realtime:room","broadcast",[1]]"#,
            r#"["1","2","realtime:room","broadcast",{"n":1e400}]"#,
            r#"["1","2","realtime:room","broadcast",{"s":"\ud800"}]"#,
            &format!(
                r#"["1","2","realtime:room","broadcast",{{"d":{}1{}}}]"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
        ] {
            assert!(peek_text(Vsn::V2, frame).is_none(), "{frame}");
        }
        assert!(peek_text(Vsn::V1, r#"{"topic":"t","event":"e"}"#).is_none());
        assert!(peek_text(Vsn::V1, r#"["1","2","t","e",{}]"#).is_none());
    }
}
