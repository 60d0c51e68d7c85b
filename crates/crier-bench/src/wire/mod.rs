//! The protocols `crier bench` speaks: one [`Wire`] per server kind, so every workload
//! drives every server through the same three verbs (subscribe, publish, decode).
//!
//! A `Wire` value belongs to one connection: NATS packs several operations into a frame
//! and may split one over two, so its decoder keeps a buffer between frames.

mod nats;
pub(crate) mod phoenix;
mod raw;
mod socketio;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

use crate::payload::Stamp;

pub use phoenix::Vsn;

/// The servers `crier bench` can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServerKind {
    /// Crier, or any Supabase Realtime / Phoenix Channels server.
    #[serde(rename = "crier")]
    Crier,
    /// The bare Rust broadcast server on Crier's WebSocket stack (`crier-rawws`).
    #[serde(rename = "raw-ws")]
    RawWs,
    /// The Node `ws` broadcast server (same line protocol as `raw-ws`).
    #[serde(rename = "ws")]
    NodeWs,
    /// socket.io 4 rooms over its WebSocket transport.
    #[serde(rename = "socket.io")]
    SocketIo,
    /// nats-server's WebSocket listener (subjects as topics).
    #[serde(rename = "nats")]
    Nats,
}

impl ServerKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [ServerKind; 5] = [
        ServerKind::Crier,
        ServerKind::RawWs,
        ServerKind::NodeWs,
        ServerKind::SocketIo,
        ServerKind::Nats,
    ];

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Crier => "crier",
            ServerKind::RawWs => "raw-ws",
            ServerKind::NodeWs => "ws",
            ServerKind::SocketIo => "socket.io",
            ServerKind::Nats => "nats",
        }
    }

    /// Where the server listens when started by `bench/peers/start` (or `crier serve`
    /// on its default port).
    pub fn default_url(self) -> &'static str {
        match self {
            ServerKind::Crier => "ws://127.0.0.1:4000/socket/websocket",
            ServerKind::RawWs => "ws://127.0.0.1:4701/",
            ServerKind::NodeWs => "ws://127.0.0.1:4702/",
            ServerKind::SocketIo => "ws://127.0.0.1:4703/socket.io/?EIO=4&transport=websocket",
            ServerKind::Nats => "ws://127.0.0.1:4704/",
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServerKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ServerKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown server {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// Which server to drive and how to reach it; everything a worker needs to connect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// The protocol.
    pub kind: ServerKind,
    /// The WebSocket URL, before protocol-specific parameters are added.
    pub url: String,
    /// Phoenix serializer version (Crier only).
    pub vsn: Vsn,
    /// The `apikey` JWT (Crier only).
    pub token: Option<String>,
}

impl Target {
    /// The URL actually dialled.
    pub fn connect_url(&self) -> String {
        match self.kind {
            ServerKind::Crier => phoenix::connect_url(&self.url, self.token.as_deref(), self.vsn),
            _ => self.url.clone(),
        }
    }

    /// A fresh per-connection protocol state.
    pub fn wire(&self) -> Box<dyn Wire> {
        match self.kind {
            ServerKind::Crier => Box::new(phoenix::Phoenix::new(self.vsn)),
            ServerKind::RawWs | ServerKind::NodeWs => Box::new(raw::Raw),
            ServerKind::SocketIo => Box::new(socketio::SocketIo),
            ServerKind::Nats => Box::new(nats::Nats::default()),
        }
    }
}

/// What one frame from the server means to the load generator.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// A benchmark payload, by its stamp.
    Payload(Stamp),
    /// The server confirmed one subscription.
    Subscribed,
    /// The protocol handshake finished; subscriptions may be sent now.
    Ready,
    /// The server asked for this answer (a ping).
    Reply(Message),
    /// The server refused a subscription or reported an error.
    Refused(String),
    /// Anything else: heartbeat replies, greetings, system messages.
    Other,
}

/// One connection's view of a server protocol.
pub trait Wire: Send {
    /// Frames to send as soon as the WebSocket is open.
    fn open(&mut self) -> Vec<Message> {
        Vec::new()
    }

    /// Whether subscriptions must wait for [`Inbound::Ready`].
    fn waits_for_ready(&self) -> bool {
        false
    }

    /// Whether a connection must subscribe to a topic before publishing to it (Phoenix
    /// channels); such publishers subscribe without receiving their own messages.
    fn publisher_subscribes(&self) -> bool {
        false
    }

    /// The frame(s) subscribing to `topic`; `echo` asks to also receive one's own
    /// publications. Each subscription is confirmed by exactly one
    /// [`Inbound::Subscribed`].
    fn subscribe(&mut self, topic: &str, echo: bool) -> Message;

    /// The frame publishing `payload` (a JSON object) to everyone subscribed to `topic`.
    fn publish(&mut self, topic: &str, payload: &str) -> Message;

    /// A keep-alive this client must send every [`crate::client::HEARTBEAT_EVERY`], if
    /// the protocol expects the client to start them.
    fn heartbeat(&mut self) -> Option<Message> {
        None
    }

    /// Interprets one frame, calling `out` for every event in it.
    fn decode(&mut self, frame: Message, out: &mut dyn FnMut(Inbound));
}

/// The text of a text or binary frame, if it is UTF-8.
fn frame_text(frame: &Message) -> Option<&str> {
    match frame {
        Message::Text(text) => Some(text.as_str()),
        Message::Binary(bytes) => std::str::from_utf8(bytes).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in ServerKind::ALL {
            assert_eq!(kind.name().parse::<ServerKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
        assert!(
            "phoenix"
                .parse::<ServerKind>()
                .unwrap_err()
                .contains("socket.io")
        );
    }
}
