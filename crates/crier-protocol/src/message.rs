//! The decoded shape of one frame, in either direction.

use bytes::Bytes;
use serde_json::Value;

/// One Phoenix message: `[join_ref, ref, topic, event, payload]`.
///
/// The same struct serves both directions. Fields a direction never carries are `None`:
/// the server never sends `join_ref` to 1.0.0 sockets, and fan-out messages have no `ref`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The `ref` of the `phx_join` that opened the channel this message belongs to.
    pub join_ref: Option<String>,
    /// The client's reference for this push; replies echo it.
    pub msg_ref: Option<String>,
    /// The channel topic, e.g. `realtime:room1`, or `phoenix` for heartbeats.
    pub topic: String,
    /// The event name, e.g. `phx_join`, `broadcast`, `presence_diff`.
    pub event: String,
    /// The body.
    pub payload: Payload,
}

/// The body of a [`Message`].
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A JSON value (every text frame, and JSON user broadcasts once decoded by callers).
    Json(Value),
    /// Raw bytes from a binary push (2.0.0 kinds 0-2).
    Binary(Bytes),
    /// A user broadcast carried in a 2.0.0 binary frame (kind 3 from clients, kind 4 to them).
    /// The message's `event` is always `broadcast`; the user's event name lives here.
    UserBroadcast(UserBroadcast),
}

impl Payload {
    /// The JSON value, if this is a JSON payload.
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            Payload::Json(value) => Some(value),
            _ => None,
        }
    }
}

/// A broadcast whose envelope is binary: the user event name, optional metadata and the
/// user payload, which is either JSON text or opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserBroadcast {
    /// The application's event name (`cursor`, `message`, ...). At most 255 bytes.
    pub event: String,
    /// Metadata as JSON text (e.g. `{"persist":true}` or `{"id":"..."}`); empty when absent.
    pub metadata: Bytes,
    /// How `payload` is encoded.
    pub encoding: PayloadEncoding,
    /// The application's payload.
    pub payload: Bytes,
}

/// How the payload of a [`UserBroadcast`] is encoded (the frame's encoding byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadEncoding {
    /// Opaque bytes (an `ArrayBuffer` in realtime-js). Encoding byte 0.
    Binary,
    /// UTF-8 JSON text. Encoding byte 1.
    Json,
}

impl PayloadEncoding {
    /// The wire byte for this encoding.
    pub fn as_byte(self) -> u8 {
        match self {
            PayloadEncoding::Binary => 0,
            PayloadEncoding::Json => 1,
        }
    }

    /// Parses the wire byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(PayloadEncoding::Binary),
            1 => Some(PayloadEncoding::Json),
            _ => None,
        }
    }
}
