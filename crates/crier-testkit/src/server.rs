//! A real node for a test: on a loopback port ([`TestServer`]) or over in-memory pipes
//! ([`MemoryServer`], for tests on paused time).

use std::net::SocketAddr;
use std::time::Duration;

use crier_server::protocol::Vsn;
use crier_server::{Config, Node};
use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::raw::Client;
use crate::tokens::{SECRET, token};

/// A node served on a loopback port.
pub struct TestServer {
    /// The node, to publish from or inspect.
    pub node: Node,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl TestServer {
    /// A node with the test limits (see [`TestServer::start_with`]).
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

    /// Serves `node` on a free loopback port.
    pub async fn start_node(node: Node) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crier_server::serve(listener, node.clone()));
        TestServer { node, addr }
    }

    /// The URL of `path` on this server.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The WebSocket URL, with a token and a `vsn` when given.
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

    /// Connects with `token`, speaking `vsn`.
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

/// A node served over in-memory pipes instead of TCP, for tests on paused time: with no
/// socket in the way, tokio's paused clock jumps straight to the next timer whenever
/// every task waits, so timeouts are asserted to the instant.
pub struct MemoryServer {
    /// The node, to publish from or inspect.
    pub node: Node,
}

impl MemoryServer {
    /// Serves `node` to the clients it connects.
    pub fn new(node: Node) -> Self {
        MemoryServer { node }
    }

    /// Connects a client with `token` through a fresh pipe served by
    /// `crier_server::serve_connection`.
    pub async fn connect(&self, vsn: Vsn, token: &str) -> Client<DuplexStream> {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let node = self.node.clone();
        tokio::spawn(async move { crier_server::serve_connection(server_end, &node).await });
        let url = format!(
            "ws://crier.test/socket/websocket?apikey={token}&vsn={}",
            vsn.as_str()
        );
        let (ws, _) = tokio_tungstenite::client_async(url, client_end)
            .await
            .expect("connect");
        Client::new(ws, vsn).with_guard(Duration::from_secs(3600))
    }
}
