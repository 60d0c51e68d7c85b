//! An in-memory transport: each connect hands the test a [`MemoryPeer`], the server end of
//! the connection, to read the client's frames from and answer as any server would (or
//! wouldn't: an unanswered heartbeat is how a test makes a connection look dead).
//!
//! ```
//! # async fn run() {
//! use crier_client::transport::memory;
//! use crier_client::Client;
//!
//! let (transport, mut server) = memory::transport();
//! let client = Client::builder("ws://test/socket").api_key("key").transport(transport).build().unwrap();
//! let connecting = tokio::spawn({ let client = client.clone(); async move { client.connect().await } });
//! let mut peer = server.accept().await.unwrap();
//! assert_eq!(peer.url.query_pairs().find(|(k, _)| k == "apikey").unwrap().1, "key");
//! connecting.await.unwrap().unwrap();
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crier_protocol::events::{PHOENIX_TOPIC, PHX_REPLY};
use crier_protocol::serializer::{self, Direction, FrameRef};
use crier_protocol::{Message, Vsn, WireFrame};
use futures_util::{StreamExt, sink};
use tokio::sync::mpsc;
use url::Url;

use super::{ConnectFuture, Connection, Transport, TransportEvent};
use crate::Error;

/// The client side: give it to [`crate::ClientBuilder::transport`].
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    accepted: mpsc::UnboundedSender<MemoryPeer>,
    refusals: Arc<Mutex<VecDeque<Scripted>>>,
}

/// What the next connect attempts do instead of connecting.
#[derive(Debug)]
enum Scripted {
    Refuse(Error),
    /// Never complete, like a server that accepts TCP and never answers the handshake.
    Stall,
}

/// The server side: accepts the client's connections.
#[derive(Debug)]
pub struct MemoryServer {
    accepted: mpsc::UnboundedReceiver<MemoryPeer>,
    refusals: Arc<Mutex<VecDeque<Scripted>>>,
}

/// A connected pair of transport and server.
pub fn transport() -> (MemoryTransport, MemoryServer) {
    let (tx, rx) = mpsc::unbounded_channel();
    let refusals = Arc::new(Mutex::new(VecDeque::new()));
    (
        MemoryTransport {
            accepted: tx,
            refusals: Arc::clone(&refusals),
        },
        MemoryServer {
            accepted: rx,
            refusals,
        },
    )
}

impl MemoryServer {
    /// The next connection the client opens. `None` once the client is gone.
    pub async fn accept(&mut self) -> Option<MemoryPeer> {
        self.accepted.recv().await
    }

    /// Makes the next connect attempt fail with `error`.
    pub fn refuse_next(&self, error: Error) {
        self.refusals
            .lock()
            .expect("not poisoned")
            .push_back(Scripted::Refuse(error));
    }

    /// Makes the next connect attempt hang forever (the handshake never completes).
    pub fn stall_next(&self) {
        self.refusals
            .lock()
            .expect("not poisoned")
            .push_back(Scripted::Stall);
    }
}

impl Transport for MemoryTransport {
    fn connect(&self, url: &Url) -> ConnectFuture {
        let refusal = self.refusals.lock().expect("not poisoned").pop_front();
        let accepted = self.accepted.clone();
        let url = url.clone();
        Box::pin(async move {
            match refusal {
                Some(Scripted::Refuse(error)) => return Err(error),
                Some(Scripted::Stall) => std::future::pending::<()>().await,
                None => {}
            }
            let (to_server, from_client) = mpsc::unbounded_channel();
            let (to_client, from_server) = mpsc::unbounded_channel();
            let vsn = url
                .query_pairs()
                .find(|(k, _)| k == "vsn")
                .and_then(|(_, v)| Vsn::parse(&v))
                .unwrap_or_default();
            accepted
                .send(MemoryPeer {
                    url,
                    vsn,
                    from_client,
                    to_client,
                })
                .map_err(|_| Error::Transport("the memory server is gone".into()))?;
            let sink = sink::unfold(to_server, |to_server, frame: WireFrame| async move {
                to_server
                    .send(frame)
                    .map_err(|_| Error::Transport("the memory peer is gone".into()))?;
                Ok::<_, Error>(to_server)
            });
            let events = futures_util::stream::unfold(from_server, |mut rx| async move {
                rx.recv().await.map(|event| (event, rx))
            })
            .scan(false, |closed, event: TransportEvent| {
                let done = *closed;
                *closed |= matches!(event, TransportEvent::Closed { .. });
                futures_util::future::ready((!done).then_some(event))
            });
            Ok(Connection {
                sink: Box::pin(sink),
                events: Box::pin(events),
            })
        })
    }
}

/// The server end of one in-memory connection.
#[derive(Debug)]
pub struct MemoryPeer {
    /// The URL the client connected to.
    pub url: Url,
    /// The serializer from the URL's `vsn`.
    pub vsn: Vsn,
    from_client: mpsc::UnboundedReceiver<WireFrame>,
    to_client: mpsc::UnboundedSender<TransportEvent>,
}

impl MemoryPeer {
    /// The next frame from the client, decoded. `None` when the client closed.
    pub async fn recv(&mut self) -> Option<Message> {
        let frame = self.from_client.recv().await?;
        let decoded = match &frame {
            WireFrame::Text(text) => serializer::decode_from_client(self.vsn, FrameRef::Text(text)),
            WireFrame::Binary(bytes) => {
                serializer::decode_from_client(self.vsn, FrameRef::Binary(bytes))
            }
        };
        Some(decoded.expect("the client sends decodable frames"))
    }

    /// The next frame from the client, skipping heartbeats.
    pub async fn recv_skipping_heartbeats(&mut self) -> Option<Message> {
        loop {
            let message = self.recv().await?;
            if message.topic != PHOENIX_TOPIC {
                return Some(message);
            }
        }
    }

    /// Sends a message to the client with its serializer.
    pub fn send(&self, message: &Message) {
        let frame = serializer::encode(self.vsn, Direction::ToClient, message).expect("encodable");
        let _ = self.to_client.send(TransportEvent::Frame(frame));
    }

    /// Replies to `request` with `status` and `response`.
    pub fn reply(&self, request: &Message, status: &str, response: serde_json::Value) {
        self.send(&Message {
            join_ref: request.join_ref.clone(),
            msg_ref: request.msg_ref.clone(),
            topic: request.topic.clone(),
            event: PHX_REPLY.into(),
            payload: crier_protocol::Payload::Json(
                serde_json::json!({"status": status, "response": response}),
            ),
        });
    }

    /// Closes the connection from the server side.
    pub fn close(self, code: Option<u16>, reason: &str) {
        let _ = self.to_client.send(TransportEvent::Closed {
            code,
            reason: reason.to_owned(),
        });
    }
}
