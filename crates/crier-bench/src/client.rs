//! One benchmark connection: dial (from a chosen source address), run the protocol
//! handshake, subscribe, then read frames until told to stop.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::wire::{Inbound, Target, Wire};

/// A client WebSocket over plain TCP (benchmarks run on loopback).
pub type Ws = WebSocketStream<TcpStream>;

/// Keep-alive period for protocols where the client must speak first; every server
/// here tolerates at least 60 s of silence.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(25);

/// How long one connect + subscribe may take before it counts as failed.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How a worker's connections dial.
#[derive(Debug, Clone)]
pub struct Dialer {
    /// What to connect to.
    pub target: Target,
    /// The URL actually dialled (with protocol parameters).
    url: String,
    /// The server's address, resolved once.
    server: SocketAddr,
    /// Local address to bind, so large runs can spread over 127.0.0.x sources.
    pub source: Option<IpAddr>,
    /// Client read buffer per socket; small, because ten thousand sockets with
    /// tungstenite's 128 KiB default would cost the load generator 1.3 GB.
    pub read_buffer: usize,
}

impl Dialer {
    /// Resolves the target's host once.
    pub async fn new(
        target: Target,
        source: Option<IpAddr>,
        read_buffer: usize,
    ) -> Result<Dialer, String> {
        let url = target.connect_url();
        let parsed = url::Url::parse(&url).map_err(|e| format!("bad url {url}: {e}"))?;
        let host = parsed.host_str().ok_or("url has no host")?.to_owned();
        let port = parsed.port_or_known_default().ok_or("url has no port")?;
        let server = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        Ok(Dialer {
            target,
            url,
            server,
            source,
            read_buffer,
        })
    }

    /// Connects and subscribes to every `(topic, echo)`; returns once the server has
    /// confirmed all of them.
    pub async fn open(&self, topics: &[(String, bool)]) -> Result<Conn, String> {
        tokio::time::timeout(OPEN_TIMEOUT, self.open_inner(topics))
            .await
            .unwrap_or_else(|_| Err("timed out connecting and subscribing".into()))
    }

    async fn open_inner(&self, topics: &[(String, bool)]) -> Result<Conn, String> {
        let mut conn = Conn {
            ws: self.connect().await?,
            wire: self.target.wire(),
        };
        conn.handshake(topics).await?;
        Ok(conn)
    }

    /// Dials and completes the WebSocket handshake, without subscribing: for workloads
    /// that join channels of their own kind (postgres changes). No timeout of its own.
    pub async fn connect(&self) -> Result<Ws, String> {
        let socket = match self.server {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|e| format!("socket: {e}"))?;
        if let Some(source) = self.source {
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(|e| format!("bind {source}: {e}"))?;
        }
        let stream = socket
            .connect(self.server)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        let config = WebSocketConfig::default()
            .read_buffer_size(self.read_buffer)
            .write_buffer_size(0);
        let (ws, _) = client_async_with_config(self.url.as_str(), stream, Some(config))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok(ws)
    }
}

/// An open, subscribed connection.
pub struct Conn {
    /// The socket.
    pub ws: Ws,
    /// Its protocol state.
    pub wire: Box<dyn Wire>,
}

impl Conn {
    async fn handshake(&mut self, topics: &[(String, bool)]) -> Result<(), String> {
        for frame in self.wire.open() {
            self.ws
                .feed(frame)
                .await
                .map_err(|e| format!("send: {e}"))?;
        }
        self.ws.flush().await.map_err(|e| format!("send: {e}"))?;
        let mut ready = !self.wire.waits_for_ready();
        let mut sent = false;
        let mut confirmed = 0;
        loop {
            if ready && !sent {
                for (topic, echo) in topics {
                    let frame = self.wire.subscribe(topic, *echo);
                    self.ws
                        .feed(frame)
                        .await
                        .map_err(|e| format!("send: {e}"))?;
                }
                self.ws.flush().await.map_err(|e| format!("send: {e}"))?;
                sent = true;
            }
            if sent && confirmed == topics.len() {
                return Ok(());
            }
            let frame = match self.ws.next().await {
                Some(Ok(Message::Close(close))) => return Err(format!("closed: {close:?}")),
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("connection ended during subscribe".into()),
            };
            let mut replies = Vec::new();
            let mut refused = None;
            self.wire.decode(frame, &mut |event| match event {
                Inbound::Subscribed => confirmed += 1,
                Inbound::Ready => ready = true,
                Inbound::Reply(reply) => replies.push(reply),
                Inbound::Refused(why) => refused = Some(why),
                Inbound::Payload(_) | Inbound::Other => {}
            });
            if let Some(why) = refused {
                return Err(format!("refused: {}", truncate(&why, 300)));
            }
            for reply in replies {
                self.ws
                    .send(reply)
                    .await
                    .map_err(|e| format!("send: {e}"))?;
            }
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
