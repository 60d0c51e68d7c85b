//! socket.io 4 over its WebSocket transport (Engine.IO v4), default namespace.
//!
//! The server opens with `0{...}` (Engine.IO open); the client answers `40` (connect to
//! namespace `/`) and the server confirms with `40{"sid":..}`. Events are `42[name, ..]`.
//! The server pings with `2` and expects `3`. The bench peer
//! (`bench/peers/socketio-server.js`) maps `sub` to a room join answered by an `ok` event
//! and `pub` to `io.to(room).emit("m", payload)`.

use tokio_tungstenite::tungstenite::Message;

use super::{Inbound, Wire, frame_text};
use crate::payload;

pub(super) struct SocketIo;

impl Wire for SocketIo {
    fn waits_for_ready(&self) -> bool {
        true
    }

    fn subscribe(&mut self, topic: &str, _echo: bool) -> Message {
        Message::Text(format!(r#"42["sub","{topic}"]"#).into())
    }

    fn publish(&mut self, topic: &str, payload: &str) -> Message {
        Message::Text(format!(r#"42["pub","{topic}",{payload}]"#).into())
    }

    fn decode(&mut self, frame: Message, out: &mut dyn FnMut(Inbound)) {
        let Some(text) = frame_text(&frame) else {
            return out(Inbound::Other);
        };
        if text.starts_with(r#"42["m","#) {
            match payload::decode(text) {
                Some(stamp) => out(Inbound::Payload(stamp)),
                None => out(Inbound::Other),
            }
        } else if text.starts_with(r#"42["ok""#) {
            out(Inbound::Subscribed);
        } else if text == "2" {
            out(Inbound::Reply(Message::Text("3".into())));
        } else if text.starts_with("40") {
            out(Inbound::Ready);
        } else if text.starts_with('0') {
            out(Inbound::Reply(Message::Text("40".into())));
        } else if text.starts_with("44") || text.starts_with("41") || text == "1" {
            out(Inbound::Refused(text.to_owned()));
        } else {
            out(Inbound::Other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_ping_and_events() {
        let mut wire = SocketIo;
        let mut seen = Vec::new();
        for text in [
            r#"0{"sid":"a","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
            r#"40{"sid":"b"}"#,
            r#"42["ok","bench"]"#,
            "2",
            &format!(
                r#"42["m",{}]"#,
                payload::encode(
                    payload::Stamp {
                        sent_us: 1,
                        seq: 2,
                        epoch: 3
                    },
                    100
                )
            ),
            r#"44{"message":"nope"}"#,
        ] {
            wire.decode(Message::Text(text.to_owned().into()), &mut |e| {
                seen.push(format!("{e:?}"));
            });
        }
        assert_eq!(seen[0], r#"Reply(Text(Utf8Bytes(b"40")))"#);
        assert_eq!(seen[1], "Ready");
        assert_eq!(seen[2], "Subscribed");
        assert_eq!(seen[3], r#"Reply(Text(Utf8Bytes(b"3")))"#);
        assert!(seen[4].starts_with("Payload"));
        assert!(seen[5].starts_with("Refused"));
        assert_eq!(
            wire.publish("bench", r#"{"x":1}"#).to_text().unwrap(),
            r#"42["pub","bench",{"x":1}]"#
        );
    }
}
