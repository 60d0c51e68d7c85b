//! Serializers 1.0.0 and 2.0.0, in both directions.
//!
//! | vsn   | text frame                              | binary frame                        |
//! |-------|-----------------------------------------|-------------------------------------|
//! | 1.0.0 | `{"topic","event","payload","ref"}`     | not allowed                         |
//! | 2.0.0 | `[join_ref, ref, topic, event, payload]`| kinds 0-4, see [`binary`]           |
//!
//! Which frames the server sends to which socket (protocol.md §14.1) is a server decision,
//! documented in `docs/PROTOCOL.md`; this module only knows how to write and read each one.
//!
//! Decoding never panics on any input: every malformed frame becomes a [`DecodeError`],
//! which carries the `ref` and `topic` when they could be read, so the server can answer
//! the sender with a `phx_reply` error that clients already understand.

pub mod binary;
mod peek;
pub mod text;

use std::fmt;

use bytes::Bytes;

use crate::message::Message;

pub use binary::EncodeError;
pub use peek::{Members, PushRef, peek_text};

/// The serializer version a socket negotiated with the `vsn` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Vsn {
    /// `1.0.0`: JSON objects; the default when `vsn` is absent.
    #[default]
    V1,
    /// `2.0.0`: JSON arrays, plus binary frames for binary payloads.
    V2,
}

impl Vsn {
    /// Parses the `vsn` query parameter. `None` for anything but `1.0.0` and `2.0.0`.
    pub fn parse(value: &str) -> Option<Vsn> {
        match value {
            "1.0.0" => Some(Vsn::V1),
            "2.0.0" => Some(Vsn::V2),
            _ => None,
        }
    }

    /// The wire spelling, `1.0.0` or `2.0.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Vsn::V1 => "1.0.0",
            Vsn::V2 => "2.0.0",
        }
    }
}

impl fmt::Display for Vsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One WebSocket data frame, as the serializers produce and consume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireFrame {
    /// A text frame (always valid UTF-8).
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

/// Where a reply to an undecodable frame should go, when the frame said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The `join_ref` the frame carried, if any.
    pub join_ref: Option<String>,
    /// The `ref` the frame carried.
    pub msg_ref: String,
    /// The topic the frame carried.
    pub topic: String,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The text frame is not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A 1.0.0 text frame that is not a JSON object.
    #[error("expected a JSON object with topic, event, payload and ref")]
    NotAnObject,
    /// A 2.0.0 text frame that is not a JSON array of at least five elements.
    #[error("expected a JSON array [join_ref, ref, topic, event, payload]")]
    NotAFiveElementArray,
    /// A field is missing.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    FieldType {
        /// The field name.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// A binary frame on a 1.0.0 socket.
    #[error("binary frames need serializer 2.0.0")]
    BinaryOnV1,
    /// A binary frame with no bytes.
    #[error("empty binary frame")]
    EmptyFrame,
    /// A binary frame whose kind byte this direction does not carry.
    #[error("unknown binary frame kind {0}")]
    UnknownKind(u8),
    /// A binary frame whose length bytes point past its end.
    #[error("binary frame truncated: `{0}` runs past the end of the frame")]
    Truncated(&'static str),
    /// A string field of a binary frame is not UTF-8.
    #[error("binary frame field `{0}` is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A user broadcast with an encoding byte other than 0 or 1.
    #[error("unknown payload encoding {0}")]
    UnknownEncoding(u8),
}

/// A frame that could not be decoded, with where to reply if that much was readable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    /// What was wrong.
    pub kind: DecodeErrorKind,
    /// The `ref`/`topic` of the frame, when they could be read despite the error.
    pub reply_to: Option<ReplyTo>,
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind) -> Self {
        DecodeError {
            kind,
            reply_to: None,
        }
    }
}

impl From<DecodeErrorKind> for DecodeError {
    fn from(kind: DecodeErrorKind) -> Self {
        DecodeError::new(kind)
    }
}

/// Decodes a frame a client sent to the server.
pub fn decode_from_client(vsn: Vsn, frame: FrameRef<'_>) -> Result<Message, DecodeError> {
    match frame {
        FrameRef::Text(text) => text::decode(vsn, text, Direction::ToServer),
        FrameRef::Binary(bytes) => match vsn {
            Vsn::V1 => Err(DecodeErrorKind::BinaryOnV1.into()),
            Vsn::V2 => binary::decode_from_client(bytes),
        },
    }
}

/// Decodes a frame a server sent to a client.
pub fn decode_from_server(vsn: Vsn, frame: FrameRef<'_>) -> Result<Message, DecodeError> {
    match frame {
        FrameRef::Text(text) => text::decode(vsn, text, Direction::ToClient),
        FrameRef::Binary(bytes) => match vsn {
            Vsn::V1 => Err(DecodeErrorKind::BinaryOnV1.into()),
            Vsn::V2 => binary::decode_from_server(bytes),
        },
    }
}

/// A borrowed frame to decode.
#[derive(Debug, Clone, Copy)]
pub enum FrameRef<'a> {
    /// Text frame contents.
    Text(&'a str),
    /// Binary frame contents.
    Binary(&'a [u8]),
}

/// Which way a frame travels; 1.0.0 carries `join_ref` only towards the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    ToServer,
    /// Server to client.
    ToClient,
}

/// Encodes a whole [`Message`] for the given direction, choosing a text or binary frame
/// from the payload the way realtime-js and Phoenix do.
///
/// JSON payloads always travel as text. Binary payloads need 2.0.0; on 1.0.0 they are an
/// error ([`EncodeError::BinaryOnV1`]).
pub fn encode(vsn: Vsn, direction: Direction, message: &Message) -> Result<WireFrame, EncodeError> {
    use crate::message::Payload;

    let envelope = Envelope {
        join_ref: message.join_ref.as_deref(),
        msg_ref: message.msg_ref.as_deref(),
        topic: &message.topic,
        event: &message.event,
    };
    match &message.payload {
        Payload::Json(value) => Ok(WireFrame::Text(text::encode(
            vsn, direction, &envelope, value,
        ))),
        _ if vsn == Vsn::V1 => Err(EncodeError::BinaryOnV1),
        Payload::Binary(data) => {
            let bytes = match direction {
                Direction::ToServer => binary::encode_push_to_server(&envelope, data)?,
                Direction::ToClient if envelope.join_ref.is_none() => {
                    binary::encode_broadcast(envelope.topic, envelope.event, data)?
                }
                Direction::ToClient => binary::encode_push_to_client(&envelope, data)?,
            };
            Ok(WireFrame::Binary(bytes.into()))
        }
        Payload::UserBroadcast(broadcast) => {
            let bytes = match direction {
                Direction::ToServer => binary::encode_user_broadcast_push(&envelope, broadcast)?,
                Direction::ToClient => binary::encode_user_broadcast(envelope.topic, broadcast)?,
            };
            Ok(WireFrame::Binary(bytes.into()))
        }
    }
}

/// The routing part of a message, borrowed, for encoding without building a [`Message`].
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// See [`Message::join_ref`].
    pub join_ref: Option<&'a str>,
    /// See [`Message::msg_ref`].
    pub msg_ref: Option<&'a str>,
    /// See [`Message::topic`].
    pub topic: &'a str,
    /// See [`Message::event`].
    pub event: &'a str,
}

impl<'a> Envelope<'a> {
    /// A fan-out message: no `join_ref`, no `ref`.
    pub fn broadcast(topic: &'a str, event: &'a str) -> Self {
        Envelope {
            join_ref: None,
            msg_ref: None,
            topic,
            event,
        }
    }
}
