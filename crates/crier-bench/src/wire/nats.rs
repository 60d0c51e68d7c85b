//! The NATS client protocol over nats-server's WebSocket listener.
//!
//! The server greets with `INFO {...}`; the client sends `CONNECT {...}`. A subscription
//! is `SUB <subject> <sid>` followed by `PING`: the server answers in order, so its
//! `PONG` confirms the subscription. `PUB <subject> <len>\r\n<payload>` arrives at
//! subscribers as `MSG <subject> <sid> <len>\r\n<payload>`. The server sends `PING` now
//! and then and expects `PONG`. WebSocket frames are just a byte stream here: one frame
//! may hold several operations and an operation may continue in the next frame, so
//! bytes are buffered until an operation is complete.

use tokio_tungstenite::tungstenite::Message;

use super::{Inbound, Wire};
use crate::payload;

#[derive(Default)]
pub(super) struct Nats {
    buffer: Vec<u8>,
    next_sid: u64,
}

const CONNECT: &str = "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":true,\"protocol\":1,\"lang\":\"crier-bench\",\"version\":\"0\"}\r\n";

impl Wire for Nats {
    fn open(&mut self) -> Vec<Message> {
        vec![Message::Binary(CONNECT.as_bytes().to_vec().into())]
    }

    fn subscribe(&mut self, topic: &str, _echo: bool) -> Message {
        self.next_sid += 1;
        let ops = format!("SUB {topic} {}\r\nPING\r\n", self.next_sid);
        Message::Binary(ops.into_bytes().into())
    }

    fn publish(&mut self, topic: &str, payload: &str) -> Message {
        let ops = format!("PUB {topic} {}\r\n{payload}\r\n", payload.len());
        Message::Binary(ops.into_bytes().into())
    }

    fn decode(&mut self, frame: Message, out: &mut dyn FnMut(Inbound)) {
        match frame {
            Message::Binary(bytes) => self.buffer.extend_from_slice(&bytes),
            Message::Text(text) => self.buffer.extend_from_slice(text.as_bytes()),
            _ => return out(Inbound::Other),
        }
        let consumed = parse_ops(&self.buffer, out);
        self.buffer.drain(..consumed);
    }
}

/// Hands every complete operation in `buffer` to `out`; returns the bytes used.
fn parse_ops(buffer: &[u8], out: &mut dyn FnMut(Inbound)) -> usize {
    let mut at = 0;
    while let Some(line_len) = find_crlf(&buffer[at..]) {
        let line = &buffer[at..at + line_len];
        let after_line = at + line_len + 2;
        if let Some(args) = line.strip_prefix(b"MSG ") {
            // MSG <subject> <sid> [reply-to] <#bytes>: the size is the last argument.
            let size = std::str::from_utf8(args)
                .ok()
                .and_then(|args| args.rsplit(' ').next())
                .and_then(|size| size.parse::<usize>().ok());
            let Some(size) = size else {
                out(Inbound::Refused(format!(
                    "bad MSG line: {}",
                    String::from_utf8_lossy(line)
                )));
                at = after_line;
                continue;
            };
            if buffer.len() < after_line + size + 2 {
                break; // the payload continues in the next frame
            }
            match payload::decode(&buffer[after_line..after_line + size]) {
                Some(stamp) => out(Inbound::Payload(stamp)),
                None => out(Inbound::Other),
            }
            at = after_line + size + 2;
            continue;
        }
        match line {
            b"PING" => out(Inbound::Reply(Message::Binary(b"PONG\r\n".to_vec().into()))),
            b"PONG" => out(Inbound::Subscribed),
            _ if line.starts_with(b"-ERR") => {
                out(Inbound::Refused(String::from_utf8_lossy(line).into_owned()));
            }
            _ => out(Inbound::Other),
        }
        at = after_line;
    }
    at
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(wire: &mut Nats, chunk: &str) -> Vec<String> {
        let mut seen = Vec::new();
        wire.decode(
            Message::Binary(chunk.as_bytes().to_vec().into()),
            &mut |e| {
                seen.push(match e {
                    Inbound::Payload(stamp) => format!("payload {}", stamp.seq),
                    other => format!("{other:?}"),
                });
            },
        );
        seen
    }

    use crate::payload::Stamp;

    fn stamped(seq: u64) -> String {
        payload::encode(
            Stamp {
                sent_us: 1,
                seq,
                epoch: 0,
            },
            100,
        )
    }

    #[test]
    fn several_operations_in_one_frame_and_one_split_over_two() {
        let mut wire = Nats::default();
        let (one, two, three) = (stamped(1), stamped(2), stamped(3));
        let first = format!(
            "INFO {{\"server_id\":\"x\"}} \r\nPONG\r\nMSG bench 1 100\r\n{one}\r\nMSG bench 1 100\r\n{}",
            &two[..40]
        );
        let seen = feed(&mut wire, &first);
        assert_eq!(seen, ["Other", "Subscribed", "payload 1"]);
        let second = format!(
            "{}\r\nPING\r\nMSG bench 1 reply.to 100\r\n{three}\r\n",
            &two[40..]
        );
        let seen = feed(&mut wire, &second);
        assert_eq!(seen[0], "payload 2");
        assert!(seen[1].starts_with("Reply"));
        assert_eq!(seen[2], "payload 3");
        assert!(wire.buffer.is_empty());
    }

    #[test]
    fn errors_and_publish_framing() {
        let mut wire = Nats::default();
        let seen = feed(&mut wire, "-ERR 'Unknown Protocol Operation'\r\n");
        assert!(seen[0].starts_with("Refused"));
        let publish = wire.publish("bench", "{}");
        assert_eq!(publish.into_data().as_ref(), b"PUB bench 2\r\n{}\r\n");
        let sub = wire.subscribe("bench", true);
        assert_eq!(sub.into_data().as_ref(), b"SUB bench 1\r\nPING\r\n");
    }
}
