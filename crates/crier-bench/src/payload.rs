//! The benchmark payload: a JSON object carrying when it was sent, a sequence number and
//! the measurement epoch it belongs to, padded to an exact size.
//!
//! Every server under test forwards the payload verbatim, inside its own framing, so the
//! receiving side finds the three numbers with substring searches instead of a JSON
//! parser: parsing every frame would cost the load generator more CPU than the servers
//! spend delivering them. The keys are unusual enough not to clash with any framing, and
//! they are written in alphabetical order, which survives servers that re-serialize
//! objects with sorted keys (Crier does), so one search finds all three.

use std::sync::LazyLock;

use memchr::memmem::Finder;

const SENT_KEY: &str = r#""bench_sent_us":"#;
const SEQ_KEY: &str = r#""bench_seq":"#;
const EPOCH_KEY: &str = r#""bench_epoch":"#;

/// The numbers a receiver reads back out of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// When the payload was sent ([`crate::clock::now_us`]).
    pub sent_us: u64,
    /// The publisher's sequence number.
    pub seq: u64,
    /// The measurement epoch the publisher was in when it sent it.
    pub epoch: u32,
}

/// Writes the JSON object for `stamp`, padded with a string field so that the whole
/// object is `size` bytes (or as small as possible when `size` is below ~70 bytes).
pub fn encode(stamp: Stamp, size: usize) -> String {
    let head = format!(
        r#"{{{EPOCH_KEY}{},{SENT_KEY}{},{SEQ_KEY}{},"pad":""#,
        stamp.epoch, stamp.sent_us, stamp.seq
    );
    let pad = size.saturating_sub(head.len() + 2);
    let mut out = String::with_capacity(head.len() + pad + 2);
    out.push_str(&head);
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str("\"}");
    out
}

/// The first key, searched for with a prebuilt (SIMD) finder: receivers run this on
/// every frame.
static EPOCH_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(EPOCH_KEY));

/// Finds a stamp anywhere in `frame` (a whole frame is fine).
pub fn decode(frame: impl AsRef<[u8]>) -> Option<Stamp> {
    let frame = frame.as_ref();
    let start = EPOCH_FINDER.find(frame)? + EPOCH_KEY.len();
    let (epoch, rest) = number(&frame[start..])?;
    let rest = rest.strip_prefix(b",")?.strip_prefix(SENT_KEY.as_bytes())?;
    let (sent_us, rest) = number(rest)?;
    let rest = rest.strip_prefix(b",")?.strip_prefix(SEQ_KEY.as_bytes())?;
    let (seq, _) = number(rest)?;
    Some(Stamp {
        sent_us,
        seq,
        epoch: u32::try_from(epoch).ok()?,
    })
}

/// The decimal number at the start of `bytes`, and what follows it.
fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some((value, &bytes[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size_and_round_trips() {
        let stamp = Stamp {
            sent_us: 123_456_789,
            seq: 42,
            epoch: 7,
        };
        for size in [100, 1000, 10_000] {
            let text = encode(stamp, size);
            assert_eq!(text.len(), size);
            let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            assert_eq!(value["bench_seq"], 42);
            assert_eq!(decode(&text), Some(stamp));
            // Keys are in sorted order, as a re-serializing server would leave them.
            let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
            assert!(text.starts_with(&format!("{{\"{}\"", keys[0])));
            // Inside someone's framing, too.
            assert_eq!(decode(format!(r#"42["m",{text}]"#)), Some(stamp));
        }
    }

    #[test]
    fn tiny_sizes_still_give_a_valid_payload() {
        let stamp = Stamp {
            sent_us: 1,
            seq: 2,
            epoch: 3,
        };
        let text = encode(stamp, 10);
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        assert_eq!(decode(&text), Some(stamp));
    }

    #[test]
    fn frames_without_a_stamp_are_not_mistaken_for_one() {
        assert_eq!(decode(r#"[null,"1","phoenix","phx_reply",{}]"#), None);
        assert_eq!(decode("pong"), None);
        // A key without its companions is not a stamp.
        assert_eq!(decode(r#"{"bench_epoch":12}"#), None);
    }
}
