//! A raw protocol client that speaks both serializers through `crier-protocol`, for
//! tests that must see exactly what goes over the wire.
//!
//! Every wait has a guard, but only as a failure guard: tests await the frame they
//! expect, never a fixed delay. To prove something did *not* arrive, a test sends a later
//! "witness" message on the same path and asserts it comes first.

use std::time::Duration;

use bytes::Bytes;
use crier_server::protocol::serializer::{self, Direction, FrameRef};
use crier_server::protocol::{Message, Payload, Vsn};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::server::TestServer;
use crate::wait::WAIT;

/// A raw protocol client, over TCP or (`MemoryServer`) an in-memory pipe.
pub struct Client<S = MaybeTlsStream<TcpStream>> {
    /// The WebSocket, for tests that send or read frames by hand.
    pub ws: WebSocketStream<S>,
    /// The serializer it speaks.
    pub vsn: Vsn,
    next_ref: u64,
    /// How long a wait may take before the test fails: [`WAIT`] on real time; on paused
    /// time a virtual hour, which passes at once when nothing else is due.
    guard: Duration,
}

/// What `recv` returns: a decoded message, a close, or nothing before the guard.
#[derive(Debug)]
pub enum Received {
    /// A decoded message.
    Message(Message),
    /// A binary frame that is not a message (sent as is).
    Binary(Bytes),
    /// The socket closed, with the close frame if there was one.
    Closed(Option<CloseFrame>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client over `ws` speaking `vsn`, with the real-time failure guard.
    pub fn new(ws: WebSocketStream<S>, vsn: Vsn) -> Self {
        Client {
            ws,
            vsn,
            next_ref: 0,
            guard: WAIT,
        }
    }

    /// The same client with failure guard `guard` on every wait (on paused time a long
    /// one costs nothing).
    pub fn with_guard(mut self, guard: Duration) -> Self {
        self.guard = guard;
        self
    }

    /// A fresh `ref` for a message.
    pub fn next_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    /// Sends a JSON message with the client's serializer.
    pub async fn send(
        &mut self,
        join_ref: Option<&str>,
        msg_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) {
        let message = Message {
            join_ref: join_ref.map(str::to_owned),
            msg_ref: msg_ref.map(str::to_owned),
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload: Payload::Json(payload),
        };
        self.send_message(&message).await;
    }

    /// Sends `message` encoded with the client's serializer.
    pub async fn send_message(&mut self, message: &Message) {
        let frame = serializer::encode(self.vsn, Direction::ToServer, message).expect("encodable");
        let ws_message = match frame {
            serializer::WireFrame::Text(text) => WsMessage::Text(text.into()),
            serializer::WireFrame::Binary(bytes) => WsMessage::Binary(bytes),
        };
        self.ws.send(ws_message).await.expect("send");
    }

    /// Sends a WebSocket frame as is.
    pub async fn send_raw(&mut self, message: WsMessage) {
        self.ws.send(message).await.expect("send");
    }

    /// The next frame, decoded. Panics if nothing arrives within the guard ([`WAIT`]).
    pub async fn recv(&mut self) -> Received {
        loop {
            let frame = tokio::time::timeout(self.guard, self.ws.next())
                .await
                .expect("no frame arrived in time");
            match frame {
                None => return Received::Closed(None),
                Some(Err(_)) => return Received::Closed(None),
                Some(Ok(WsMessage::Close(frame))) => return Received::Closed(frame),
                Some(Ok(WsMessage::Text(text))) => {
                    return Received::Message(
                        serializer::decode_from_server(self.vsn, FrameRef::Text(&text))
                            .expect("decodable text"),
                    );
                }
                Some(Ok(WsMessage::Binary(bytes))) => return Received::Binary(bytes),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next message (panics on a close or a binary frame).
    pub async fn message(&mut self) -> Message {
        match self.recv().await {
            Received::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Skips frames until one matches `pred`.
    pub async fn until(&mut self, mut pred: impl FnMut(&Message) -> bool) -> Message {
        loop {
            let message = self.message().await;
            if pred(&message) {
                return message;
            }
        }
    }

    /// The next message for `topic` with `event`, skipping others.
    pub async fn event(&mut self, topic: &str, event: &str) -> Message {
        self.until(|m| m.topic == topic && m.event == event).await
    }

    /// The reply to `msg_ref`, skipping other frames: (status, response).
    pub async fn reply(&mut self, msg_ref: &str) -> (String, Value) {
        let message = self
            .until(|m| m.event == "phx_reply" && m.msg_ref.as_deref() == Some(msg_ref))
            .await;
        let payload = json_payload(&message);
        (
            payload["status"].as_str().unwrap_or_default().to_owned(),
            payload["response"].clone(),
        )
    }

    /// The close frame, skipping other frames.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            if let Received::Closed(frame) = self.recv().await {
                return frame;
            }
        }
    }

    /// Joins `topic` with `payload`; returns (join_ref, status, response).
    pub async fn join(&mut self, topic: &str, payload: Value) -> (String, String, Value) {
        let join_ref = self.next_ref();
        self.send(Some(&join_ref), Some(&join_ref), topic, "phx_join", payload)
            .await;
        let (status, response) = self.reply(&join_ref).await;
        (join_ref, status, response)
    }

    /// Joins and asserts it worked; returns the join_ref.
    pub async fn join_ok(&mut self, topic: &str, config: Value) -> String {
        let (join_ref, status, response) = self.join(topic, json!({"config": config})).await;
        assert_eq!(status, "ok", "join {topic} refused: {response}");
        join_ref
    }

    /// Pushes `event` on a joined channel and returns the reply.
    pub async fn push(
        &mut self,
        join_ref: &str,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> (String, Value) {
        let msg_ref = self.next_ref();
        self.send(Some(join_ref), Some(&msg_ref), topic, event, payload)
            .await;
        self.reply(&msg_ref).await
    }

    /// Writes `count` broadcasts of event `e` with payloads `{"seq": n, ...extra}` as fast
    /// as the socket takes them, without waiting for anything.
    pub async fn burst(&mut self, join_ref: &str, topic: &str, count: u64, extra: &Value) {
        for seq in 0..count {
            let mut payload = extra.clone();
            payload["seq"] = json!(seq);
            let frame = json!([join_ref, null, topic, "broadcast",
                               {"type": "broadcast", "event": "e", "payload": payload}]);
            self.ws
                .feed(WsMessage::Text(frame.to_string().into()))
                .await
                .expect("send");
        }
        self.ws.flush().await.expect("send");
    }

    /// Sends a broadcast without waiting for anything.
    pub async fn broadcast(
        &mut self,
        join_ref: &str,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> String {
        let msg_ref = self.next_ref();
        let body = json!({"type": "broadcast", "event": event, "payload": payload});
        self.send(Some(join_ref), Some(&msg_ref), topic, "broadcast", body)
            .await;
        msg_ref
    }

    /// A heartbeat round trip: everything the server wrote to this socket before its
    /// reply has arrived by the time this returns.
    pub async fn heartbeat(&mut self) {
        let msg_ref = self.next_ref();
        self.send(None, Some(&msg_ref), "phoenix", "heartbeat", json!({}))
            .await;
        let (status, _) = self.reply(&msg_ref).await;
        assert_eq!(status, "ok");
    }

    /// Collects every message up to the reply of a heartbeat sent now.
    pub async fn drain(&mut self) -> Vec<Message> {
        let msg_ref = self.next_ref();
        self.send(None, Some(&msg_ref), "phoenix", "heartbeat", json!({}))
            .await;
        let mut seen = Vec::new();
        loop {
            let message = self.message().await;
            if message.event == "phx_reply" && message.msg_ref.as_deref() == Some(&msg_ref) {
                return seen;
            }
            seen.push(message);
        }
    }
}

/// The JSON payload of `message` (panics on a binary one).
pub fn json_payload(message: &Message) -> &Value {
    match &message.payload {
        Payload::Json(value) => value,
        other => panic!("expected a JSON payload, got {other:?}"),
    }
}

/// A broadcast body without the stream position the server adds to its `meta`
/// (`offset`, `epoch`), and without `meta` when nothing else is in it: the body as the
/// sender made it, for tests about something else.
pub fn without_position(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(object) = body.as_object_mut()
        && let Some(Value::Object(meta)) = object.get_mut("meta")
    {
        meta.remove("offset");
        meta.remove("epoch");
        if meta.is_empty() {
            object.remove("meta");
        }
    }
    body
}

/// The `reason` of an error reply.
pub fn reason(response: &Value) -> &str {
    response["reason"].as_str().unwrap_or_default()
}

/// A sender and a receiver on another connection (one of each serializer), to prove that
/// bad input on one socket leaves everyone else working.
pub struct Bystanders {
    sender: Client,
    sender_ref: String,
    receiver: Client,
    count: u64,
}

impl Bystanders {
    /// Connects the pair to `server` and joins them to `realtime:calm`.
    pub async fn new(server: &TestServer) -> Self {
        let mut sender = server.connect(Vsn::V2).await;
        let mut receiver = server.connect(Vsn::V1).await;
        let sender_ref = sender
            .join_ok("realtime:calm", json!({"broadcast": {"ack": true}}))
            .await;
        receiver.join_ok("realtime:calm", json!({})).await;
        Bystanders {
            sender,
            sender_ref,
            receiver,
            count: 0,
        }
    }

    /// A broadcast goes from one to the other.
    pub async fn still_fine(&mut self) {
        self.count += 1;
        let msg_ref = self
            .sender
            .broadcast(
                &self.sender_ref,
                "realtime:calm",
                "tick",
                json!({"n": self.count}),
            )
            .await;
        assert_eq!(self.sender.reply(&msg_ref).await.0, "ok");
        let message = self.receiver.event("realtime:calm", "broadcast").await;
        assert_eq!(json_payload(&message)["payload"]["n"], self.count);
    }
}
