//! Test kit: a real node on a loopback port, and a raw WebSocket client that speaks both
//! serializers through `crier-protocol`.
//!
//! Every wait has a timeout, but only as a failure guard: tests await the frame they
//! expect, never a fixed delay. To prove something did *not* arrive, a test sends a later
//! "witness" message on the same path and asserts it comes first.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use crier_server::auth::{sign_token, unix_now};
use crier_server::protocol::serializer::{self, Direction, FrameRef};
use crier_server::protocol::{Message, Payload, Vsn};
use crier_server::{Config, Node};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// The failure guard for every wait.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub node: Node,
    pub addr: SocketAddr,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a node whose config `adjust` may change; limits are raised by default so
    /// tests only meet the limit they are about.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new(SECRET);
        config.limits.max_connections = 1000;
        config.limits.max_joins_per_second = 100_000;
        config.limits.max_events_per_second = 1_000_000;
        config.limits.max_presence_events_per_second = 1_000_000;
        adjust(&mut config);
        Self::start_node(Node::new(config).unwrap()).await
    }

    pub async fn start_node(node: Node) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crier_server::serve(listener, node.clone()));
        TestServer { node, addr }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, vsn: Option<&str>, token: Option<&str>) -> String {
        let mut url = format!("ws://{}/socket/websocket?", self.addr);
        if let Some(token) = token {
            url.push_str(&format!("apikey={token}&"));
        }
        if let Some(vsn) = vsn {
            url.push_str(&format!("vsn={vsn}"));
        }
        url
    }

    /// Connects with a fresh anon token.
    pub async fn connect(&self, vsn: Vsn) -> Client {
        self.connect_with_token(vsn, &token(json!({"role": "anon"})))
            .await
    }

    /// Connects (2.0.0, anon) with a 4 KiB receive buffer: the kernel holds next to
    /// nothing for this client, so it stops taking data as soon as it stops reading.
    pub async fn connect_tiny_buffered(&self) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let url = self.ws_url(Some("2.0.0"), Some(&token(json!({"role": "anon"}))));
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("connect");
        Client::new(ws, Vsn::V2)
    }

    pub async fn connect_with_token(&self, vsn: Vsn, token: &str) -> Client {
        let url = self.ws_url(Some(vsn.as_str()), Some(token));
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Client::new(ws, vsn)
    }

    /// Attempts a connect that the server should refuse; returns (status, JSON body).
    pub async fn refused(&self, request: impl IntoClientRequest + Unpin) -> (u16, Value) {
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => panic!("the connect was accepted"),
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                (
                    response.status().as_u16(),
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                )
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
}

/// A token signed with [`SECRET`]: `claims` plus `exp` one hour ahead unless given.
pub fn token(claims: Value) -> String {
    let mut claims: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
    claims.entry("exp").or_insert(json!(unix_now() + 3600));
    sign_token(SECRET, &claims)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw protocol client.
pub struct Client {
    pub ws: Ws,
    pub vsn: Vsn,
    next_ref: u64,
}

/// What `recv` returns: a decoded message, a close, or nothing before the guard.
#[derive(Debug)]
pub enum Received {
    Message(Message),
    Binary(Bytes),
    Closed(Option<CloseFrame>),
}

impl Client {
    pub fn new(ws: Ws, vsn: Vsn) -> Self {
        Client {
            ws,
            vsn,
            next_ref: 0,
        }
    }

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

    pub async fn send_message(&mut self, message: &Message) {
        let frame = serializer::encode(self.vsn, Direction::ToServer, message).expect("encodable");
        let ws_message = match frame {
            serializer::WireFrame::Text(text) => WsMessage::Text(text.into()),
            serializer::WireFrame::Binary(bytes) => WsMessage::Binary(bytes),
        };
        self.ws.send(ws_message).await.expect("send");
    }

    pub async fn send_raw(&mut self, message: WsMessage) {
        self.ws.send(message).await.expect("send");
    }

    /// The next frame, decoded. Panics if nothing arrives within [`WAIT`].
    pub async fn recv(&mut self) -> Received {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
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

pub fn json_payload(message: &Message) -> &Value {
    match &message.payload {
        Payload::Json(value) => value,
        other => panic!("expected a JSON payload, got {other:?}"),
    }
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

/// Tokens the server must refuse, with the texts Supabase answers each with.
#[derive(Debug, Clone, Copy)]
pub enum BadToken {
    Expired,
    NotYetValid,
    MissingClaims,
    EmptyRole,
    Malformed,
    Forged,
    AlgNone,
}

impl BadToken {
    pub const ALL: [BadToken; 7] = [
        BadToken::Expired,
        BadToken::NotYetValid,
        BadToken::MissingClaims,
        BadToken::EmptyRole,
        BadToken::Malformed,
        BadToken::Forged,
        BadToken::AlgNone,
    ];

    pub fn token(self) -> String {
        let now = unix_now();
        match self {
            BadToken::Expired => token(json!({"role": "anon", "exp": now - 30})),
            BadToken::NotYetValid => token(json!({"role": "anon", "nbf": now + 600})),
            BadToken::MissingClaims => token(json!({"sub": "no-role"})),
            BadToken::EmptyRole => token(json!({"role": ""})),
            BadToken::Malformed => "not.a.jwt".to_owned(),
            BadToken::Forged => sign_token(
                "not-the-secret",
                json!({"role": "anon", "exp": now + 60})
                    .as_object()
                    .unwrap(),
            ),
            BadToken::AlgNone => format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(format!(r#"{{"role":"service_role","exp":{}}}"#, now + 60))
            ),
        }
    }

    /// The message (a prefix for `Expired` and `NotYetValid`, which name the seconds).
    pub fn message(self) -> &'static str {
        match self {
            BadToken::Expired => "Token has expired ",
            BadToken::NotYetValid => "Token is not valid yet: it becomes valid in ",
            BadToken::MissingClaims | BadToken::EmptyRole => {
                "Fields `role` and `exp` are required in JWT"
            }
            BadToken::Malformed => "The token provided is not a valid JWT",
            BadToken::Forged => "Failed to validate JWT signature",
            BadToken::AlgNone => {
                "Failed to generate JWT signer, check your JWT secret or JWKS configuration"
            }
        }
    }

    /// The 401 body's text at connect, where an expired token says only "Token has expired"
    /// and an early one "Token is not valid yet".
    pub fn connect_message(self) -> &'static str {
        match self {
            BadToken::Expired => "Token has expired",
            BadToken::NotYetValid => "Token is not valid yet",
            other => other.message(),
        }
    }

    /// The coded join reason (a prefix for `Expired`).
    pub fn join_reason(self) -> String {
        let code = match self {
            BadToken::Expired
            | BadToken::NotYetValid
            | BadToken::MissingClaims
            | BadToken::EmptyRole => "InvalidJWTToken",
            BadToken::Malformed => "MalformedJWT",
            BadToken::Forged => "JwtSignatureError",
            BadToken::AlgNone => "JwtSignerError",
        };
        format!("{code}: {}", self.message())
    }
}
