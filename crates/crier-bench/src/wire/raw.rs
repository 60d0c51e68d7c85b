//! The bare line protocol of the two transport baselines (`crier-rawws` and the Node `ws`
//! server): `sub <topic>` → `ok <topic>`; `pub <topic> <payload>` delivers `<payload>`
//! verbatim to every subscriber, the sender included; `ping` → `pong`.

use tokio_tungstenite::tungstenite::Message;

use super::{Inbound, Wire, frame_text};
use crate::payload;

pub(super) struct Raw;

impl Wire for Raw {
    fn subscribe(&mut self, topic: &str, _echo: bool) -> Message {
        // Delivery to the sender is how these servers always behave; publishers never
        // subscribe here, so nothing needs turning off.
        Message::Text(format!("sub {topic}").into())
    }

    fn publish(&mut self, topic: &str, payload: &str) -> Message {
        Message::Text(format!("pub {topic} {payload}").into())
    }

    fn heartbeat(&mut self) -> Option<Message> {
        Some(Message::Text("ping".into()))
    }

    fn decode(&mut self, frame: Message, out: &mut dyn FnMut(Inbound)) {
        match frame_text(&frame) {
            Some(text) if text.starts_with('{') => match payload::decode(text) {
                Some(stamp) => out(Inbound::Payload(stamp)),
                None => out(Inbound::Other),
            },
            Some(text) if text.starts_with("ok ") => out(Inbound::Subscribed),
            Some(text) if text.starts_with("err") => out(Inbound::Refused(text.to_owned())),
            _ => out(Inbound::Other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_replies() {
        let mut wire = Raw;
        assert_eq!(wire.subscribe("t", true).to_text().unwrap(), "sub t");
        assert_eq!(
            wire.publish("t", r#"{"a":"b c"}"#).to_text().unwrap(),
            r#"pub t {"a":"b c"}"#
        );
        let mut seen = Vec::new();
        let stamp = payload::encode(
            payload::Stamp {
                sent_us: 1,
                seq: 2,
                epoch: 3,
            },
            100,
        );
        for text in ["ok t", "pong", &stamp, "err unknown"] {
            wire.decode(Message::Text(text.into()), &mut |e| {
                seen.push(format!("{e:?}"));
            });
        }
        assert_eq!(seen[0], "Subscribed");
        assert_eq!(seen[1], "Other");
        assert!(seen[2].starts_with("Payload"));
        assert!(seen[3].starts_with("Refused"));
    }
}
