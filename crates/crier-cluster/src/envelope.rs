//! How a publication travels through Redis: one binary frame, encoded once per publish,
//! that names the node it came from (so that node ignores its own echo).
//!
//! ```text
//! version (1) | origin length (u8) | origin | kind ('j' or 'b') | body
//! 'j': the broadcast's JSON body, as is
//! 'g': nothing else: broadcasts of the topic from the origin were lost on their way
//! 'p': a presence change: "<epoch> <seq>\n" and its JSON (crate::presence), written by
//!      the Redis script that applies it
//! 'b': event length (u8) | event | metadata length (u16, big endian) | metadata | encoding (u8) | payload
//! ```
//!
//! Hand-written rather than serde: the JSON body must travel byte for byte (it is already
//! the frame's text), and the binary payload must not be re-encoded as JSON.

use bytes::{BufMut, Bytes, BytesMut};
use crier_protocol::{PayloadEncoding, UserBroadcast};
use crier_server::broker::Publication;
use serde_json::value::RawValue;

const VERSION: u8 = 1;

/// A publication from another node, owned.
#[derive(Debug)]
pub(crate) enum Carried {
    Json(Box<RawValue>),
    Binary(UserBroadcast),
    /// A presence change, as the Redis script published it.
    Presence(String),
    /// The origin lost broadcasts of the topic on their way to the other nodes.
    Gap,
}

impl PartialEq for Carried {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Carried::Json(a), Carried::Json(b)) => a.get() == b.get(),
            (Carried::Binary(a), Carried::Binary(b)) => a == b,
            (Carried::Presence(a), Carried::Presence(b)) => a == b,
            (Carried::Gap, Carried::Gap) => true,
            _ => false,
        }
    }
}

impl Carried {
    /// The broadcast it carries; `None` for a presence change.
    pub(crate) fn publication(&self) -> Option<Publication<'_>> {
        match self {
            Carried::Json(body) => Some(Publication::Json(body)),
            Carried::Binary(broadcast) => Some(Publication::Binary(broadcast)),
            Carried::Presence(_) | Carried::Gap => None,
        }
    }
}

/// Why a frame from Redis could not be read (another program publishing on Crier's
/// channels, or a newer Crier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("unknown envelope version {0}")]
    Version(u8),
    #[error("the envelope ends early")]
    Short,
    #[error("unknown envelope kind {0}")]
    Kind(u8),
    #[error("the JSON body does not parse: {0}")]
    Json(String),
    #[error("the binary broadcast's event or encoding is unreadable")]
    Binary,
}

/// Encodes `publication` from node `origin` (at most 255 bytes of name).
pub(crate) fn encode(origin: &str, publication: Publication<'_>) -> Bytes {
    let origin = &origin.as_bytes()[..origin.len().min(255)];
    let mut out = BytesMut::with_capacity(16 + origin.len() + body_len(publication));
    out.put_u8(VERSION);
    out.put_u8(origin.len() as u8);
    out.put_slice(origin);
    match publication {
        Publication::Json(body) => {
            out.put_u8(b'j');
            out.put_slice(body.get().as_bytes());
        }
        Publication::Binary(broadcast) => {
            out.put_u8(b'b');
            let event = &broadcast.event.as_bytes()[..broadcast.event.len().min(255)];
            out.put_u8(event.len() as u8);
            out.put_slice(event);
            let metadata = &broadcast.metadata[..broadcast.metadata.len().min(u16::MAX.into())];
            out.put_u16(metadata.len() as u16);
            out.put_slice(metadata);
            out.put_u8(broadcast.encoding.as_byte());
            out.put_slice(&broadcast.payload);
        }
    }
    out.freeze()
}

/// The frame saying node `origin` lost broadcasts of a topic on their way.
pub(crate) fn gap(origin: &str) -> Vec<u8> {
    let mut frame = presence_head(origin);
    *frame.last_mut().expect("the kind byte") = b'g';
    frame
}

/// The start of a presence change's frame from node `origin`: the script that applies
/// the change appends its position and body.
pub(crate) fn presence_head(origin: &str) -> Vec<u8> {
    let origin = &origin.as_bytes()[..origin.len().min(255)];
    let mut out = Vec::with_capacity(3 + origin.len());
    out.push(VERSION);
    out.push(origin.len() as u8);
    out.extend_from_slice(origin);
    out.push(b'p');
    out
}

fn body_len(publication: Publication<'_>) -> usize {
    match publication {
        Publication::Json(body) => body.get().len(),
        Publication::Binary(broadcast) => {
            broadcast.event.len() + broadcast.metadata.len() + broadcast.payload.len()
        }
    }
}

/// The origin node's name and the publication.
pub(crate) fn decode(frame: &[u8]) -> Result<(&str, Carried), EnvelopeError> {
    let mut rest = frame;
    let mut take = |n: usize| -> Result<&[u8], EnvelopeError> {
        if rest.len() < n {
            return Err(EnvelopeError::Short);
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let version = take(1)?[0];
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    let origin_len = take(1)?[0] as usize;
    let origin = std::str::from_utf8(take(origin_len)?).map_err(|_| EnvelopeError::Short)?;
    let kind = take(1)?[0];
    let carried = match kind {
        b'j' => {
            let text =
                std::str::from_utf8(rest).map_err(|err| EnvelopeError::Json(err.to_string()))?;
            let body = RawValue::from_string(text.to_owned())
                .map_err(|err| EnvelopeError::Json(err.to_string()))?;
            Carried::Json(body)
        }
        b'b' => {
            let event_len = take(1)?[0] as usize;
            let event =
                String::from_utf8(take(event_len)?.to_vec()).map_err(|_| EnvelopeError::Binary)?;
            let metadata_len = u16::from_be_bytes(take(2)?.try_into().expect("two bytes")) as usize;
            let metadata = Bytes::copy_from_slice(take(metadata_len)?);
            let encoding = PayloadEncoding::from_byte(take(1)?[0]).ok_or(EnvelopeError::Binary)?;
            Carried::Binary(UserBroadcast {
                event,
                metadata,
                encoding,
                payload: Bytes::copy_from_slice(rest),
            })
        }
        b'g' => Carried::Gap,
        b'p' => Carried::Presence(
            String::from_utf8(rest.to_vec()).map_err(|err| EnvelopeError::Json(err.to_string()))?,
        ),
        other => return Err(EnvelopeError::Kind(other)),
    };
    Ok((origin, carried))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_binary_round_trip_with_their_origin() {
        let body = RawValue::from_string(r#"{"type":"broadcast","n":"é"}"#.into()).unwrap();
        let frame = encode("node-a", Publication::Json(&body));
        let (origin, carried) = decode(&frame).unwrap();
        assert_eq!((origin, carried), ("node-a", Carried::Json(body)));

        let binary = UserBroadcast {
            event: "blob".into(),
            metadata: Bytes::from_static(br#"{"offset":1}"#),
            encoding: PayloadEncoding::Binary,
            payload: Bytes::from_static(b"\x00\xff"),
        };
        let frame = encode("node-b", Publication::Binary(&binary));
        assert_eq!(decode(&frame).unwrap(), ("node-b", Carried::Binary(binary)));

        let mut frame = presence_head("node-c");
        frame.extend_from_slice(b"17.5 3\n{}");
        assert_eq!(
            decode(&frame).unwrap(),
            ("node-c", Carried::Presence("17.5 3\n{}".into()))
        );
        assert_eq!(decode(&gap("node-d")).unwrap(), ("node-d", Carried::Gap));
    }

    #[test]
    fn foreign_frames_are_errors_not_panics() {
        assert_eq!(decode(b""), Err(EnvelopeError::Short));
        assert_eq!(decode(b"\x02"), Err(EnvelopeError::Version(2)));
        assert_eq!(decode(b"\x01\x05ab"), Err(EnvelopeError::Short));
        assert_eq!(decode(b"\x01\x00x"), Err(EnvelopeError::Kind(b'x')));
        assert!(matches!(
            decode(b"\x01\x00j{nope"),
            Err(EnvelopeError::Json(_))
        ));
        assert_eq!(decode(b"\x01\x00b\x09ab"), Err(EnvelopeError::Short));
    }
}
