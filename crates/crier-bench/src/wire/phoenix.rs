//! Phoenix Channels as Supabase Realtime speaks it: JSON serializer v1 (objects) or v2
//! (arrays), `realtime:` topics, broadcasts as `{"type":"broadcast","event":..,"payload":..}`.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

use super::{Inbound, Wire, frame_text};
use crate::payload;

/// The Phoenix JSON serializer version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Vsn {
    /// `vsn=1.0.0`: every frame is a JSON object.
    #[serde(rename = "1")]
    V1,
    /// `vsn=2.0.0`: every frame is a JSON array (what realtime-js uses).
    #[default]
    #[serde(rename = "2")]
    V2,
}

impl FromStr for Vsn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1" | "1.0.0" => Ok(Vsn::V1),
            "2" | "2.0.0" => Ok(Vsn::V2),
            other => Err(format!("unknown vsn {other:?}; expected 1 or 2")),
        }
    }
}

pub(super) fn connect_url(base: &str, token: Option<&str>, vsn: Vsn) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let vsn = match vsn {
        Vsn::V1 => "1.0.0",
        Vsn::V2 => "2.0.0",
    };
    match token {
        Some(token) => format!("{base}{sep}apikey={token}&vsn={vsn}"),
        None => format!("{base}{sep}vsn={vsn}"),
    }
}

/// One connection's Phoenix state: its serializer and the last ref it used.
pub(crate) struct Phoenix {
    vsn: Vsn,
    next_ref: u64,
}

impl Phoenix {
    pub(crate) fn new(vsn: Vsn) -> Self {
        Phoenix { vsn, next_ref: 0 }
    }

    fn next_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    /// One frame; `body` is already JSON. Joins use their own ref as join_ref; other
    /// pushes on a channel carry `join_ref` only in v2 arrays (v1 may omit it).
    fn frame(&mut self, join_ref: Option<u64>, topic: &str, event: &str, body: &str) -> Message {
        let msg_ref = self.next_ref();
        let join_ref = join_ref.map_or_else(|| "null".to_owned(), |r| format!("\"{r}\""));
        let text = match self.vsn {
            Vsn::V2 => format!(r#"[{join_ref},"{msg_ref}","{topic}","{event}",{body}]"#),
            Vsn::V1 => format!(
                r#"{{"topic":"{topic}","event":"{event}","payload":{body},"ref":"{msg_ref}","join_ref":{join_ref}}}"#
            ),
        };
        Message::Text(text.into())
    }

    /// The `phx_join` of `realtime:<topic>` with `config` (a JSON object) as its join
    /// config: broadcast subscriptions and, for the postgres-changes workload, bindings.
    pub(crate) fn join(&mut self, topic: &str, config: &str) -> Message {
        // A join's own ref is its join_ref: the ref `frame` is about to take.
        let join_ref = self.next_ref + 1;
        let body = format!(r#"{{"config":{config}}}"#);
        self.frame(Some(join_ref), &realtime_topic(topic), "phx_join", &body)
    }
}

fn realtime_topic(topic: &str) -> String {
    format!("realtime:{topic}")
}

impl Wire for Phoenix {
    fn publisher_subscribes(&self) -> bool {
        true
    }

    fn subscribe(&mut self, topic: &str, echo: bool) -> Message {
        self.join(
            topic,
            &format!(
                r#"{{"broadcast":{{"self":{echo},"ack":false}},"presence":{{"enabled":false}},"private":false}}"#
            ),
        )
    }

    fn publish(&mut self, topic: &str, payload: &str) -> Message {
        let body = format!(r#"{{"type":"broadcast","event":"bench","payload":{payload}}}"#);
        self.frame(None, &realtime_topic(topic), "broadcast", &body)
    }

    fn heartbeat(&mut self) -> Option<Message> {
        Some(self.frame(None, "phoenix", "heartbeat", "{}"))
    }

    fn decode(&mut self, frame: Message, out: &mut dyn FnMut(Inbound)) {
        let Some(text) = frame_text(&frame) else {
            return out(Inbound::Other);
        };
        if let Some(stamp) = payload::decode(text) {
            out(Inbound::Payload(stamp));
        } else if text.contains(r#""phx_reply""#) && !text.contains(r#""phoenix""#) {
            if text.contains(r#""status":"ok""#) {
                out(Inbound::Subscribed);
            } else {
                out(Inbound::Refused(text.to_owned()));
            }
        } else if text.contains(r#""phx_error""#) || text.contains(r#""phx_close""#) {
            out(Inbound::Refused(text.to_owned()));
        } else {
            out(Inbound::Other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(wire: &mut Phoenix, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        wire.decode(Message::Text(text.into()), &mut |event| {
            seen.push(format!("{event:?}"));
        });
        seen
    }

    #[test]
    fn v2_frames_are_arrays_and_v1_frames_objects() {
        let mut v2 = Phoenix::new(Vsn::V2);
        let join = v2.subscribe("bench", true);
        let join: serde_json::Value = serde_json::from_str(join.to_text().unwrap()).unwrap();
        assert_eq!(join[0], join[1], "a join's join_ref is its own ref");
        assert_eq!(join[2], "realtime:bench");
        assert_eq!(join[4]["config"]["broadcast"]["self"], true);
        let publish = v2.publish("bench", r#"{"a":1}"#);
        let publish: serde_json::Value = serde_json::from_str(publish.to_text().unwrap()).unwrap();
        assert_eq!(publish[3], "broadcast");
        assert_eq!(publish[4]["payload"]["a"], 1);

        let mut v1 = Phoenix::new(Vsn::V1);
        let join = v1.subscribe("bench", false);
        let join: serde_json::Value = serde_json::from_str(join.to_text().unwrap()).unwrap();
        assert_eq!(join["topic"], "realtime:bench");
        assert_eq!(join["event"], "phx_join");
        assert_eq!(join["payload"]["config"]["broadcast"]["self"], false);
        let beat = v1.heartbeat().unwrap();
        let beat: serde_json::Value = serde_json::from_str(beat.to_text().unwrap()).unwrap();
        assert_eq!(beat["topic"], "phoenix");
    }

    #[test]
    fn replies_are_told_apart() {
        let mut wire = Phoenix::new(Vsn::V2);
        assert_eq!(
            decoded(
                &mut wire,
                r#"["1","1","realtime:bench","phx_reply",{"status":"ok","response":{}}]"#
            ),
            ["Subscribed"]
        );
        assert_eq!(
            decoded(
                &mut wire,
                r#"[null,"9","phoenix","phx_reply",{"status":"ok","response":{}}]"#
            ),
            ["Other"]
        );
        let refused = decoded(
            &mut wire,
            r#"["1","1","realtime:x","phx_reply",{"status":"error","response":{"reason":"no"}}]"#,
        );
        assert!(refused[0].starts_with("Refused"), "{refused:?}");
        let stamp = payload::encode(
            payload::Stamp {
                sent_us: 5,
                seq: 6,
                epoch: 7,
            },
            100,
        );
        let frame = format!(
            r#"[null,null,"realtime:bench","broadcast",{{"event":"bench","payload":{stamp},"type":"broadcast"}}]"#
        );
        assert!(decoded(&mut wire, &frame)[0].starts_with("Payload"));
    }

    #[test]
    fn connect_url_adds_key_and_version() {
        assert_eq!(
            connect_url("ws://h/socket/websocket", Some("k"), Vsn::V2),
            "ws://h/socket/websocket?apikey=k&vsn=2.0.0"
        );
        assert_eq!(
            connect_url("ws://h/s?x=1", None, Vsn::V1),
            "ws://h/s?x=1&vsn=1.0.0"
        );
    }
}
