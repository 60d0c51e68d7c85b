//! An encoded WebSocket frame as the fan-out core passes it around.
//!
//! The core (queues, topics, fan-out, postgres changes) deals only in finished data
//! frames: never pings, closes or the WebSocket library's other message kinds, which
//! belong to the socket's own task. A frame is a refcounted buffer, so pushing one to a
//! thousand queues copies no bytes.

use bytes::Bytes;
use tungstenite::{Message, Utf8Bytes};

/// Bookkeeping cost of one queued entry besides its bytes: the slot it takes in a queue.
/// Counted with the frame so that many tiny frames weigh what they really cost.
pub(crate) const SLOT_BYTES: usize = std::mem::size_of::<Frame>();

/// A text or binary data frame, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A text frame (JSON).
    Text(Utf8Bytes),
    /// A binary frame (the 2.0.0 serializer's binary kinds).
    Binary(Bytes),
}

impl Frame {
    /// A text frame owned by one socket (a reply, a push to one channel).
    pub(crate) fn text(text: String) -> Frame {
        Frame::Text(text.into())
    }

    /// Payload length in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Frame::Text(text) => text.len(),
            Frame::Binary(bytes) => bytes.len(),
        }
    }

    /// What a queue holding this frame costs: its bytes and its slot.
    pub(crate) fn cost(&self) -> usize {
        self.len() + SLOT_BYTES
    }

    /// The message to hand to the WebSocket writer (no copy).
    pub(crate) fn into_message(self) -> Message {
        match self {
            Frame::Text(text) => Message::Text(text),
            Frame::Binary(bytes) => Message::Binary(bytes),
        }
    }

    /// The text, for tests and logs.
    #[cfg(test)]
    pub(crate) fn as_text(&self) -> &str {
        match self {
            Frame::Text(text) => text.as_str(),
            Frame::Binary(_) => panic!("not a text frame"),
        }
    }
}
