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
//! 's': a broadcast numbered in the shared history (crate::history): the connection the
//!      origin excludes (u64, big endian; u64::MAX for none) | "<epoch> <offset>\n" |
//!      kind ('j' or 'b') and body as above; the Redis script that numbers it writes
//!      the position
//! 'm': "<epoch> <offset>\n": where the topic's shared stream stands, published by the
//!      origin after it subscribed the topic
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
    /// A broadcast numbered in the shared history.
    Numbered {
        epoch: String,
        offset: u64,
        /// The origin's connection that does not receive it.
        exclude: Option<u64>,
        publication: Box<Carried>,
    },
    /// Where the topic's shared stream stands.
    Mark {
        epoch: String,
        offset: u64,
    },
}

impl PartialEq for Carried {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Carried::Json(a), Carried::Json(b)) => a.get() == b.get(),
            (Carried::Binary(a), Carried::Binary(b)) => a == b,
            (Carried::Presence(a), Carried::Presence(b)) => a == b,
            (Carried::Gap, Carried::Gap) => true,
            (
                Carried::Numbered {
                    epoch,
                    offset,
                    exclude,
                    publication,
                },
                Carried::Numbered {
                    epoch: e,
                    offset: o,
                    exclude: x,
                    publication: p,
                },
            ) => (epoch, offset, exclude, publication) == (e, o, x, p),
            (
                Carried::Mark { epoch, offset },
                Carried::Mark {
                    epoch: e,
                    offset: o,
                },
            ) => (epoch, offset) == (e, o),
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
            Carried::Numbered { publication, .. } => publication.publication(),
            Carried::Presence(_) | Carried::Gap | Carried::Mark { .. } => None,
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
    #[error("the stream position is unreadable")]
    Position,
}

/// Encodes `publication` from node `origin` (at most 255 bytes of name).
pub(crate) fn encode(origin: &str, publication: Publication<'_>) -> Bytes {
    let origin = &origin.as_bytes()[..origin.len().min(255)];
    let mut out = BytesMut::with_capacity(16 + origin.len() + body_len(publication));
    out.put_u8(VERSION);
    out.put_u8(origin.len() as u8);
    out.put_slice(origin);
    put_body(&mut out, publication);
    out.freeze()
}

/// A publication's kind and body alone: what the shared history keeps of it.
pub(crate) fn body(publication: Publication<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + body_len(publication));
    put_body(&mut out, publication);
    out.freeze()
}

/// The start of a numbered broadcast's frame from node `origin`, excluding its
/// connection `exclude`: the script that numbers it appends the position and body.
pub(crate) fn numbered_head(origin: &str, exclude: Option<u64>) -> Vec<u8> {
    let mut frame = head(origin, b's');
    frame.extend_from_slice(&exclude.unwrap_or(u64::MAX).to_be_bytes());
    frame
}

/// The start of node `origin`'s mark of where a topic's shared stream stands: the
/// script appends the position.
pub(crate) fn mark_head(origin: &str) -> Vec<u8> {
    head(origin, b'm')
}

fn head(origin: &str, kind: u8) -> Vec<u8> {
    let mut frame = presence_head(origin);
    *frame.last_mut().expect("the kind byte") = kind;
    frame
}

fn put_body(out: &mut BytesMut, publication: Publication<'_>) {
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
}

/// The frame saying node `origin` lost broadcasts of a topic on their way.
pub(crate) fn gap(origin: &str) -> Vec<u8> {
    head(origin, b'g')
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

/// The first `n` bytes of `rest`, which moves past them.
fn split<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], EnvelopeError> {
    if rest.len() < n {
        return Err(EnvelopeError::Short);
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

/// The origin node's name and the publication.
pub(crate) fn decode(frame: &[u8]) -> Result<(&str, Carried), EnvelopeError> {
    let mut rest = frame;
    let mut take = |n: usize| split(&mut rest, n);
    let version = take(1)?[0];
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    let origin_len = take(1)?[0] as usize;
    let origin = std::str::from_utf8(take(origin_len)?).map_err(|_| EnvelopeError::Short)?;
    let kind = take(1)?[0];
    let carried = match kind {
        b's' => {
            let exclude = u64::from_be_bytes(take(8)?.try_into().expect("eight bytes"));
            let (epoch, offset, body) = position(rest)?;
            Carried::Numbered {
                epoch,
                offset,
                exclude: (exclude != u64::MAX).then_some(exclude),
                publication: Box::new(decode_body(body)?),
            }
        }
        b'm' => {
            let (epoch, offset, _) = position(rest)?;
            Carried::Mark { epoch, offset }
        }
        b'g' => Carried::Gap,
        b'p' => Carried::Presence(
            String::from_utf8(rest.to_vec()).map_err(|err| EnvelopeError::Json(err.to_string()))?,
        ),
        _ => decode_body(&frame[frame.len() - rest.len() - 1..])?,
    };
    Ok((origin, carried))
}

/// `"<epoch> <offset>\n"` and what follows it.
fn position(text: &[u8]) -> Result<(String, u64, &[u8]), EnvelopeError> {
    let end = text
        .iter()
        .position(|&byte| byte == b'\n')
        .ok_or(EnvelopeError::Short)?;
    let line = std::str::from_utf8(&text[..end]).map_err(|_| EnvelopeError::Position)?;
    let (epoch, offset) = line.split_once(' ').ok_or(EnvelopeError::Position)?;
    let offset = offset.parse().map_err(|_| EnvelopeError::Position)?;
    Ok((epoch.to_owned(), offset, &text[end + 1..]))
}

/// A publication's kind and body (see [`body`]).
pub(crate) fn decode_body(frame: &[u8]) -> Result<Carried, EnvelopeError> {
    let mut rest = frame;
    let mut take = |n: usize| split(&mut rest, n);
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
        other => return Err(EnvelopeError::Kind(other)),
    };
    Ok(carried)
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
        assert_eq!(
            decode(&frame).unwrap(),
            ("node-b", Carried::Binary(binary.clone()))
        );

        let mut frame = presence_head("node-c");
        frame.extend_from_slice(b"17.5 3\n{}");
        assert_eq!(
            decode(&frame).unwrap(),
            ("node-c", Carried::Presence("17.5 3\n{}".into()))
        );
        assert_eq!(decode(&gap("node-d")).unwrap(), ("node-d", Carried::Gap));

        let mut frame = numbered_head("node-e", Some(7));
        frame.extend_from_slice(b"1733.5 42\n");
        frame.extend_from_slice(&super::body(Publication::Json(&body_json())));
        let numbered = Carried::Numbered {
            epoch: "1733.5".into(),
            offset: 42,
            exclude: Some(7),
            publication: Box::new(Carried::Json(body_json())),
        };
        assert_eq!(decode(&frame).unwrap(), ("node-e", numbered));
        let mut frame = numbered_head("node-e", None);
        frame.extend_from_slice(b"e 1\n");
        frame.extend_from_slice(&super::body(Publication::Binary(&binary)));
        assert!(matches!(
            decode(&frame).unwrap().1,
            Carried::Numbered {
                exclude: None,
                offset: 1,
                ..
            }
        ));
        let mut frame = mark_head("node-f");
        frame.extend_from_slice(b"e 0\n");
        let mark = Carried::Mark {
            epoch: "e".into(),
            offset: 0,
        };
        assert_eq!(decode(&frame).unwrap(), ("node-f", mark));
    }

    fn body_json() -> Box<RawValue> {
        RawValue::from_string(r#"{"type":"broadcast","event":"e","payload":{}}"#.into()).unwrap()
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
        assert_eq!(decode(b"\x01\x00m1 2"), Err(EnvelopeError::Short));
        assert_eq!(decode(b"\x01\x00mx y\n"), Err(EnvelopeError::Position));
        let mut frame = numbered_head("n", None);
        frame.extend_from_slice(b"e 1\nx");
        assert_eq!(decode(&frame), Err(EnvelopeError::Kind(b'x')));
    }
}
