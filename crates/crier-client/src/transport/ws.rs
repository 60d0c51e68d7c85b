//! The default transport: tokio-tungstenite, with rustls for `wss://`.

use crier_protocol::WireFrame;
use futures_util::{SinkExt, StreamExt, future, stream};
use tokio_tungstenite::tungstenite::{self, Message};
use url::Url;

use super::{ConnectFuture, Connection, Transport, TransportEvent};
use crate::Error;

/// WebSocket over TCP (`ws://`) or TLS (`wss://`, rustls with the webpki roots).
#[derive(Debug, Clone, Copy, Default)]
pub struct WsTransport;

impl Transport for WsTransport {
    fn connect(&self, url: &Url) -> ConnectFuture {
        let url = url.to_string();
        Box::pin(async move {
            let (socket, _) = tokio_tungstenite::connect_async(url)
                .await
                .map_err(connect_error)?;
            let (sink, source) = socket.split();
            let sink = sink
                .sink_map_err(|err| Error::Transport(err.to_string()))
                .with(|frame: WireFrame| {
                    future::ready(Ok::<_, Error>(match frame {
                        WireFrame::Text(text) => Message::Text(text.into()),
                        WireFrame::Binary(bytes) => Message::Binary(bytes),
                    }))
                });
            // Frames until the close, then one Closed event, then the end.
            let events = source
                .map(Some)
                .chain(stream::once(future::ready(None)))
                .scan(false, |closed, item| {
                    if *closed {
                        return future::ready(None);
                    }
                    let event = match item {
                        Some(Ok(Message::Text(text))) => {
                            Some(TransportEvent::Frame(WireFrame::Text(text.to_string())))
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            Some(TransportEvent::Frame(WireFrame::Binary(bytes)))
                        }
                        Some(Ok(Message::Close(frame))) => {
                            *closed = true;
                            Some(TransportEvent::Closed {
                                code: frame.as_ref().map(|f| u16::from(f.code)),
                                reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                            })
                        }
                        Some(Ok(_)) => None, // ping/pong: tungstenite answers pings itself
                        Some(Err(err)) => {
                            *closed = true;
                            Some(TransportEvent::Closed {
                                code: None,
                                reason: err.to_string(),
                            })
                        }
                        None => {
                            *closed = true;
                            Some(TransportEvent::Closed {
                                code: None,
                                reason: "connection closed".into(),
                            })
                        }
                    };
                    future::ready(Some(event))
                })
                .filter_map(future::ready);
            Ok(Connection {
                sink: Box::pin(sink),
                events: Box::pin(events),
            })
        })
    }
}

/// A refused handshake keeps the server's status and `{"error": ...}` text.
fn connect_error(err: tungstenite::Error) -> Error {
    match err {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            Error::ConnectRefused { status, message }
        }
        other => Error::Transport(other.to_string()),
    }
}
