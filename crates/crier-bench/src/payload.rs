//! The benchmark payload: a JSON object carrying when it was sent, a sequence number and
//! the measurement epoch it belongs to, padded to an exact size.
//!
//! Every server under test forwards the payload verbatim, inside its own framing, so the
//! receiving side finds the three numbers with substring searches instead of a JSON
//! parser: parsing every frame would cost the load generator more CPU than the servers
//! spend delivering them. The keys are unusual enough not to clash with any framing.

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
        r#"{{{SENT_KEY}{},{SEQ_KEY}{},{EPOCH_KEY}{},"pad":""#,
        stamp.sent_us, stamp.seq, stamp.epoch
    );
    let pad = size.saturating_sub(head.len() + 2);
    let mut out = String::with_capacity(head.len() + pad + 2);
    out.push_str(&head);
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str("\"}");
    out
}

/// Finds a stamp anywhere in `text` (a whole frame is fine).
pub fn decode(text: &str) -> Option<Stamp> {
    Some(Stamp {
        sent_us: number_after(text, SENT_KEY)?,
        seq: number_after(text, SEQ_KEY)?,
        epoch: u32::try_from(number_after(text, EPOCH_KEY)?).ok()?,
    })
}

/// Whether `text` carries a benchmark payload at all (cheaper than [`decode`]).
pub fn is_stamped(text: &str) -> bool {
    text.contains(SENT_KEY)
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
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
            // Inside someone's framing, too.
            assert_eq!(decode(&format!(r#"42["m",{text}]"#)), Some(stamp));
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
        assert!(!is_stamped("pong"));
    }
}
