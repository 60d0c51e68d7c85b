//! An encoded WebSocket frame as the fan-out core passes it around.
//!
//! The core (queues, topics, fan-out, postgres changes) deals only in finished data
//! frames: never pings, closes or the WebSocket library's other message kinds, which
//! belong to the socket's own task. A frame is a refcounted buffer, so pushing one to a
//! thousand queues copies no bytes.
//!
//! Text frames hold plain `Bytes`, not the WebSocket library's UTF-8 string type: every
//! text frame here comes out of our own JSON encoder (a `String`), and building that
//! type from a shared buffer would validate its UTF-8 once more per frame for nothing.

use bytes::Bytes;
use tungstenite::Message;
use tungstenite::protocol::frame::Frame as WireFrame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// Bookkeeping cost of one queued entry besides its bytes: the slot it takes in a queue.
/// Counted with the frame so that many tiny frames weigh what they really cost.
pub(crate) const SLOT_BYTES: usize = std::mem::size_of::<Frame>();

/// A text or binary data frame, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A text frame (JSON): UTF-8, as it was encoded from a `String`.
    Text(Bytes),
    /// A binary frame (the 2.0.0 serializer's binary kinds).
    Binary(Bytes),
}

impl Frame {
    /// A text frame owned by one socket (a reply, a push to one channel).
    pub(crate) fn text(text: String) -> Frame {
        Frame::Text(Bytes::from(text.into_bytes()))
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

    /// The message to hand to the WebSocket writer (no copy, no validation: the same
    /// frame the writer builds from a text message).
    pub(crate) fn into_message(self) -> Message {
        match self {
            Frame::Text(text) => {
                Message::Frame(WireFrame::message(text, OpCode::Data(Data::Text), true))
            }
            Frame::Binary(bytes) => Message::Binary(bytes),
        }
    }

    /// The text, for tests and logs.
    #[cfg(test)]
    pub(crate) fn as_text(&self) -> &str {
        match self {
            Frame::Text(text) => std::str::from_utf8(text).expect("text frames are UTF-8"),
            Frame::Binary(_) => panic!("not a text frame"),
        }
    }
}
