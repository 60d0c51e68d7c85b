//! Binary frames of serializer 2.0.0.
//!
//! Byte 0 is the kind; then one `u8` length per header field; then the fields; then the
//! payload, which runs to the end of the frame. Every header field is therefore at most
//! 255 bytes of UTF-8.
//!
//! | kind | direction | length bytes                                           |
//! |------|-----------|--------------------------------------------------------|
//! | 0    | C→S       | join_ref, ref, topic, event                            |
//! | 0    | S→C       | join_ref, topic, event                                 |
//! | 2    | S→C       | topic, event                                           |
//! | 3    | C→S       | join_ref, ref, topic, user_event, metadata, *encoding* |
//! | 4    | S→C       | topic, user_event, metadata, *encoding*                |
//!
//! Kind 1 (a binary reply) is not implemented: Realtime never replies with a binary body.

use bytes::Bytes;

use super::{DecodeError, DecodeErrorKind, Envelope};
use crate::events::BROADCAST;
use crate::message::{Message, Payload, PayloadEncoding, UserBroadcast};

/// Kind byte of a push (either direction).
pub const KIND_PUSH: u8 = 0;
/// Kind byte of a reply (not produced by Realtime).
pub const KIND_REPLY: u8 = 1;
/// Kind byte of a server broadcast with a binary payload (phoenix.js).
pub const KIND_BROADCAST: u8 = 2;
/// Kind byte of a client user-broadcast push (realtime-js).
pub const KIND_USER_BROADCAST_PUSH: u8 = 3;
/// Kind byte of a server user broadcast (realtime-js).
pub const KIND_USER_BROADCAST: u8 = 4;

/// A header field does not fit the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A header field is longer than the 255 bytes one length byte can describe.
    #[error("`{field}` is {len} bytes; binary frames allow at most 255")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// Binary payloads cannot be carried by serializer 1.0.0.
    #[error("binary payloads need serializer 2.0.0")]
    BinaryOnV1,
}

fn field_len(field: &'static str, value: &[u8]) -> Result<u8, EncodeError> {
    u8::try_from(value.len()).map_err(|_| EncodeError::FieldTooLong {
        field,
        len: value.len(),
    })
}

/// Writes a frame: kind, length bytes, trailing bytes (such as the encoding byte), fields,
/// then the payload.
fn write_frame(
    kind: u8,
    fields: &[(&'static str, &[u8])],
    trailer: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let header_len = 1 + fields.len() + trailer.len();
    let body_len: usize = fields.iter().map(|(_, bytes)| bytes.len()).sum();
    let mut out = Vec::with_capacity(header_len + body_len + payload.len());
    out.push(kind);
    for (name, bytes) in fields {
        out.push(field_len(name, bytes)?);
    }
    out.extend_from_slice(trailer);
    for (_, bytes) in fields {
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(payload);
    Ok(out)
}

/// Kind 4: a user broadcast to a client.
pub fn encode_user_broadcast(
    topic: &str,
    broadcast: &UserBroadcast,
) -> Result<Vec<u8>, EncodeError> {
    write_frame(
        KIND_USER_BROADCAST,
        &[
            ("topic", topic.as_bytes()),
            ("user_event", broadcast.event.as_bytes()),
            ("metadata", &broadcast.metadata),
        ],
        &[broadcast.encoding.as_byte()],
        &broadcast.payload,
    )
}

/// Kind 3: a user broadcast push from a client.
pub fn encode_user_broadcast_push(
    envelope: &Envelope<'_>,
    broadcast: &UserBroadcast,
) -> Result<Vec<u8>, EncodeError> {
    write_frame(
        KIND_USER_BROADCAST_PUSH,
        &[
            ("join_ref", envelope.join_ref.unwrap_or("").as_bytes()),
            ("ref", envelope.msg_ref.unwrap_or("").as_bytes()),
            ("topic", envelope.topic.as_bytes()),
            ("user_event", broadcast.event.as_bytes()),
            ("metadata", &broadcast.metadata),
        ],
        &[broadcast.encoding.as_byte()],
        &broadcast.payload,
    )
}

/// Kind 0 from a client: a push with a binary payload.
pub fn encode_push_to_server(envelope: &Envelope<'_>, data: &[u8]) -> Result<Vec<u8>, EncodeError> {
    write_frame(
        KIND_PUSH,
        &[
            ("join_ref", envelope.join_ref.unwrap_or("").as_bytes()),
            ("ref", envelope.msg_ref.unwrap_or("").as_bytes()),
            ("topic", envelope.topic.as_bytes()),
            ("event", envelope.event.as_bytes()),
        ],
        &[],
        data,
    )
}

/// Kind 0 to a client: a channel push with a binary payload.
pub fn encode_push_to_client(envelope: &Envelope<'_>, data: &[u8]) -> Result<Vec<u8>, EncodeError> {
    write_frame(
        KIND_PUSH,
        &[
            ("join_ref", envelope.join_ref.unwrap_or("").as_bytes()),
            ("topic", envelope.topic.as_bytes()),
            ("event", envelope.event.as_bytes()),
        ],
        &[],
        data,
    )
}

/// Kind 2 to a client: a fan-out message with a binary payload.
pub fn encode_broadcast(topic: &str, event: &str, data: &[u8]) -> Result<Vec<u8>, EncodeError> {
    write_frame(
        KIND_BROADCAST,
        &[("topic", topic.as_bytes()), ("event", event.as_bytes())],
        &[],
        data,
    )
}

/// Reads length-prefixed fields without ever indexing past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self, field: &'static str) -> Result<u8, DecodeErrorKind> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or(DecodeErrorKind::Truncated(field))?;
        self.pos += 1;
        Ok(byte)
    }

    fn lengths<const N: usize>(
        &mut self,
        names: [&'static str; N],
    ) -> Result<[usize; N], DecodeErrorKind> {
        let mut out = [0; N];
        for (slot, name) in out.iter_mut().zip(names) {
            *slot = usize::from(self.byte(name)?);
        }
        Ok(out)
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], DecodeErrorKind> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeErrorKind::Truncated(field))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn string(&mut self, len: usize, field: &'static str) -> Result<String, DecodeErrorKind> {
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeErrorKind::InvalidUtf8(field))
    }

    /// An empty ref means "none" (realtime-js writes `''` for a null join_ref).
    fn optional_string(
        &mut self,
        len: usize,
        field: &'static str,
    ) -> Result<Option<String>, DecodeErrorKind> {
        let value = self.string(len, field)?;
        Ok((!value.is_empty()).then_some(value))
    }

    fn rest(&mut self) -> Bytes {
        let rest = Bytes::copy_from_slice(&self.bytes[self.pos..]);
        self.pos = self.bytes.len();
        rest
    }
}

/// Decodes a binary frame sent by a client: kinds 0 and 3.
pub(super) fn decode_from_client(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut reader = Reader { bytes, pos: 0 };
    let kind = reader
        .byte("kind")
        .map_err(|_| DecodeErrorKind::EmptyFrame)?;
    match kind {
        KIND_PUSH => {
            let [jr, r, t, e] = reader.lengths(["join_ref", "ref", "topic", "event"])?;
            let join_ref = reader.optional_string(jr, "join_ref")?;
            let msg_ref = reader.optional_string(r, "ref")?;
            let topic = reader.string(t, "topic")?;
            let event = reader.string(e, "event")?;
            Ok(Message {
                join_ref,
                msg_ref,
                topic,
                event,
                payload: Payload::Binary(reader.rest()),
            })
        }
        KIND_USER_BROADCAST_PUSH => {
            let [jr, r, t, ue, m] =
                reader.lengths(["join_ref", "ref", "topic", "user_event", "metadata"])?;
            let encoding_byte = reader.byte("encoding")?;
            let join_ref = reader.optional_string(jr, "join_ref")?;
            let msg_ref = reader.optional_string(r, "ref")?;
            let topic = reader.string(t, "topic")?;
            let reply_to = msg_ref.clone().map(|msg_ref| super::ReplyTo {
                join_ref: join_ref.clone(),
                msg_ref,
                topic: topic.clone(),
            });
            let with_context = |kind| DecodeError {
                kind,
                reply_to: reply_to.clone(),
            };
            let encoding = PayloadEncoding::from_byte(encoding_byte)
                .ok_or_else(|| with_context(DecodeErrorKind::UnknownEncoding(encoding_byte)))?;
            let event = reader.string(ue, "user_event").map_err(with_context)?;
            let metadata =
                Bytes::copy_from_slice(reader.take(m, "metadata").map_err(with_context)?);
            Ok(Message {
                join_ref,
                msg_ref,
                topic,
                event: BROADCAST.to_owned(),
                payload: Payload::UserBroadcast(UserBroadcast {
                    event,
                    metadata,
                    encoding,
                    payload: reader.rest(),
                }),
            })
        }
        other => Err(DecodeErrorKind::UnknownKind(other).into()),
    }
}

/// Decodes a binary frame sent by a server: kinds 0, 2 and 4.
pub(super) fn decode_from_server(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut reader = Reader { bytes, pos: 0 };
    let kind = reader
        .byte("kind")
        .map_err(|_| DecodeErrorKind::EmptyFrame)?;
    match kind {
        KIND_PUSH => {
            let [jr, t, e] = reader.lengths(["join_ref", "topic", "event"])?;
            Ok(Message {
                join_ref: reader.optional_string(jr, "join_ref")?,
                msg_ref: None,
                topic: reader.string(t, "topic")?,
                event: reader.string(e, "event")?,
                payload: Payload::Binary(reader.rest()),
            })
        }
        KIND_BROADCAST => {
            let [t, e] = reader.lengths(["topic", "event"])?;
            Ok(Message {
                join_ref: None,
                msg_ref: None,
                topic: reader.string(t, "topic")?,
                event: reader.string(e, "event")?,
                payload: Payload::Binary(reader.rest()),
            })
        }
        KIND_USER_BROADCAST => {
            let [t, ue, m] = reader.lengths(["topic", "user_event", "metadata"])?;
            let encoding_byte = reader.byte("encoding")?;
            let encoding = PayloadEncoding::from_byte(encoding_byte)
                .ok_or(DecodeErrorKind::UnknownEncoding(encoding_byte))?;
            let topic = reader.string(t, "topic")?;
            let event = reader.string(ue, "user_event")?;
            let metadata = Bytes::copy_from_slice(reader.take(m, "metadata")?);
            Ok(Message {
                join_ref: None,
                msg_ref: None,
                topic,
                event: BROADCAST.to_owned(),
                payload: Payload::UserBroadcast(UserBroadcast {
                    event,
                    metadata,
                    encoding,
                    payload: reader.rest(),
                }),
            })
        }
        other => Err(DecodeErrorKind::UnknownKind(other).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact bytes realtime-js 2.x writes for
    /// `send({type:'broadcast', event:'cursor', payload:{x:1}})` on join_ref "1", ref "3".
    #[test]
    fn decodes_realtime_js_kind_3_json() {
        let frame = {
            let mut f = vec![3u8, 1, 1, 13, 6, 0, 1];
            f.extend_from_slice(b"1");
            f.extend_from_slice(b"3");
            f.extend_from_slice(b"realtime:room");
            f.extend_from_slice(b"cursor");
            f.extend_from_slice(br#"{"x":1}"#);
            f
        };
        let message = decode_from_client(&frame).unwrap();
        assert_eq!(message.join_ref.as_deref(), Some("1"));
        assert_eq!(message.msg_ref.as_deref(), Some("3"));
        assert_eq!(message.topic, "realtime:room");
        assert_eq!(message.event, "broadcast");
        let Payload::UserBroadcast(ub) = message.payload else {
            panic!("expected a user broadcast")
        };
        assert_eq!(ub.event, "cursor");
        assert_eq!(ub.encoding, PayloadEncoding::Json);
        assert!(ub.metadata.is_empty());
        assert_eq!(&ub.payload[..], br#"{"x":1}"#);
    }

    #[test]
    fn lengths_past_the_end_are_truncation_errors() {
        // Says the topic is 200 bytes but the frame ends after 3.
        let frame = [0u8, 0, 0, 200, 1, b'a', b'b', b'c'];
        let err = decode_from_client(&frame).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Truncated("topic"));
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let err = decode_from_client(&[9, 1, 2, 3]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownKind(9));
        let err = decode_from_client(&[]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::EmptyFrame);
    }

    #[test]
    fn bad_encoding_byte_keeps_reply_context() {
        let mut frame = vec![3u8, 1, 1, 1, 1, 0, 7];
        frame.extend_from_slice(b"12te");
        let err = decode_from_client(&frame).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownEncoding(7));
        assert_eq!(err.reply_to.unwrap().msg_ref, "2");
    }

    #[test]
    fn kind_4_layout_matches_realtime_js_decoder() {
        let frame = encode_user_broadcast(
            "realtime:room",
            &UserBroadcast {
                event: "cursor".into(),
                metadata: Bytes::new(),
                encoding: PayloadEncoding::Binary,
                payload: Bytes::from_static(&[1, 2, 3]),
            },
        )
        .unwrap();
        // realtime-js reads: kind, topic len, event len, meta len, encoding, then fields.
        assert_eq!(&frame[..5], &[4, 13, 6, 0, 0]);
        assert_eq!(&frame[5..18], b"realtime:room");
        assert_eq!(&frame[18..24], b"cursor");
        assert_eq!(&frame[24..], &[1, 2, 3]);
    }

    #[test]
    fn over_long_fields_are_encode_errors() {
        let long = "x".repeat(256);
        let err = encode_broadcast(&long, "e", b"").unwrap_err();
        assert_eq!(
            err,
            EncodeError::FieldTooLong {
                field: "topic",
                len: 256
            }
        );
    }
}
