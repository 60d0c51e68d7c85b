//! The transport seam: how the client gets a WebSocket-like connection.
//!
//! [`WsTransport`] (tokio-tungstenite with rustls) is the default. [`memory::transport`]
//! gives an in-memory pair whose server end a test drives by hand; with tokio's paused
//! clock it makes every timing path of the client (heartbeats, backoff, join timeouts)
//! deterministic.

pub mod memory;
mod ws;

use std::future::Future;
use std::pin::Pin;

use crier_protocol::WireFrame;
use futures_util::{Sink, Stream};
use url::Url;

pub use ws::WsTransport;

use crate::Error;

/// What a connection delivers to the client.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportEvent {
    /// A data frame.
    Frame(WireFrame),
    /// The connection closed; the close frame's code and reason when there was one.
    Closed {
        /// The WebSocket close code (1000, 1012, ...), if the peer sent one.
        code: Option<u16>,
        /// The close reason, or what went wrong.
        reason: String,
    },
}

/// The sending half of a connection. Closing it closes the connection cleanly.
pub type FrameSink = Pin<Box<dyn Sink<WireFrame, Error = Error> + Send>>;
/// The receiving half of a connection. It ends after a [`TransportEvent::Closed`].
pub type EventStream = Pin<Box<dyn Stream<Item = TransportEvent> + Send>>;

/// An open connection.
pub struct Connection {
    /// Frames to the server.
    pub sink: FrameSink,
    /// Frames and the close from the server.
    pub events: EventStream,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection { .. }")
    }
}

/// The future [`Transport::connect`] returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<Connection, Error>> + Send>>;

/// Opens connections. One attempt per call; the client decides when to retry.
pub trait Transport: Send + Sync + 'static {
    /// Connects to `url` (the full WebSocket URL, with `apikey` and `vsn`).
    fn connect(&self, url: &Url) -> ConnectFuture;
}
