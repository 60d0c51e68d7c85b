//! The connection state machine: connect (with a timeout per attempt), the writer task,
//! loss, reconnect with backoff, and a manual disconnect that stays down.

use crier_protocol::WireFrame;
use crier_protocol::codes::RetryAdvice;
use crier_protocol::serializer;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::tokens::unix_now;
use super::{Driver, Timer};
use crate::Error;
use crate::events::ConnectionStatus;
use crate::transport::{Connection, EventStream, TransportEvent};

/// A live connection: frames go to a writer task, so a slow socket never stalls the loop
/// (and with it, heartbeat detection).
pub(super) struct Live {
    pub(super) out: mpsc::UnboundedSender<WireFrame>,
    pub(super) events: EventStream,
}

/// The next event of the live connection; pending forever while there is none, so the
/// driver's `select!` simply waits on its other branches.
pub(super) async fn next_event(live: &mut Option<Live>) -> TransportEvent {
    match live {
        Some(live) => live.events.next().await.unwrap_or(TransportEvent::Closed {
            code: None,
            reason: "connection ended".into(),
        }),
        None => std::future::pending().await,
    }
}

impl Driver {
    /// Publishes the connection status, only when it changes.
    fn set_status(&self, status: ConnectionStatus) {
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    /// Starts a connection attempt unless one is up or under way, or the client was
    /// disconnected by hand. Without an API key the token is the credential, so one is
    /// fetched first when none is valid.
    pub(super) fn start_connect(&mut self) {
        if self.live.is_some() || self.connecting.is_some() || self.manual {
            return;
        }
        let key = self.reconnect_key.take();
        self.cancel(key);
        // Without an API key the token is the credential: get one first.
        if self.options.api_key.is_none() && self.auth.needs_fetch(unix_now()) {
            self.connect_after_token = true;
            self.fetch_token();
            return;
        }
        let mut url = self.options.socket_url.clone();
        if let Some(key) = self
            .options
            .api_key
            .clone()
            .or_else(|| self.auth.current().map(str::to_owned))
        {
            url.query_pairs_mut().append_pair("apikey", &key);
        }
        if !self.ever_connected && self.attempt == 0 {
            self.set_status(ConnectionStatus::Connecting);
        }
        // A server that accepts TCP but never finishes the handshake must not hold the
        // client forever: the attempt fails like any other and is retried with backoff.
        let attempt = self.options.transport.connect(&url);
        let limit = self.options.timeout;
        self.connecting = Some(Box::pin(async move {
            tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or(Err(Error::Timeout))
        }));
    }

    /// An attempt ended: on success start the writer, heartbeats and joins; on failure
    /// retry with backoff, or stop when the credentials were refused and no provider can
    /// replace them.
    pub(super) fn on_connect_result(&mut self, result: Result<Connection, Error>) {
        match result {
            Ok(connection) => {
                let (out, mut frames) = mpsc::unbounded_channel::<WireFrame>();
                let mut sink = connection.sink;
                // The writer ends when the driver drops `out` (closing the socket
                // cleanly) or when a write fails.
                tokio::spawn(async move {
                    while let Some(frame) = frames.recv().await {
                        if sink.send(frame).await.is_err() {
                            return;
                        }
                    }
                    let _ = sink.close().await;
                });
                self.live = Some(Live {
                    out,
                    events: connection.events,
                });
                self.attempt = 0;
                self.refused = false;
                // After a loss (sleep, network change), ask the provider again before
                // rejoining: the joins below wait for the fetch.
                if self.ever_connected {
                    self.fetch_token();
                }
                self.ever_connected = true;
                self.set_status(ConnectionStatus::Connected);
                for waiter in self.connect_waiters.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
                self.monitor.reset();
                self.heartbeat_key = Some(
                    self.timers
                        .insert(Timer::Heartbeat, self.options.heartbeat_interval),
                );
                let topics: Vec<String> = self.channels.keys().cloned().collect();
                for topic in topics {
                    self.join(&topic);
                }
            }
            Err(error) => {
                tracing::debug!(%error, "connect failed");
                for waiter in self.connect_waiters.drain(..) {
                    let _ = waiter.send(Err(error.clone()));
                }
                let credentials = error.retry_advice() == RetryAdvice::AfterTokenChange;
                if credentials && self.auth.provider().is_none() {
                    // Retrying with the same credentials fails the same way.
                    self.refused = true;
                    self.set_status(ConnectionStatus::Disconnected);
                    self.fail_all_channels(&error);
                    return;
                }
                if credentials {
                    self.fetch_token();
                }
                self.schedule_reconnect();
            }
        }
    }

    /// Arms the reconnect timer with the next backoff delay (once; never after a manual
    /// disconnect or a refusal of the credentials).
    fn schedule_reconnect(&mut self) {
        if self.manual || self.refused || self.reconnect_key.is_some() {
            return;
        }
        let retry_in = self.options.reconnect.delay(self.attempt);
        self.attempt += 1;
        self.set_status(ConnectionStatus::Reconnecting {
            attempt: self.attempt,
            retry_in,
        });
        self.reconnect_key = Some(self.timers.insert(Timer::Reconnect, retry_in));
    }

    /// A frame (decoded and routed) or the end of the connection.
    pub(super) fn on_transport_event(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Frame(frame) => {
                let decoded = match &frame {
                    WireFrame::Text(text) => serializer::decode_from_server(
                        self.options.vsn,
                        serializer::FrameRef::Text(text),
                    ),
                    WireFrame::Binary(bytes) => serializer::decode_from_server(
                        self.options.vsn,
                        serializer::FrameRef::Binary(bytes),
                    ),
                };
                match decoded {
                    Ok(message) => self.on_message(message),
                    Err(err) => tracing::warn!(error = %err, "undecodable frame from the server"),
                }
            }
            TransportEvent::Closed { code, reason } => {
                tracing::debug!(?code, reason, "connection closed");
                self.connection_lost(&reason);
            }
        }
    }

    /// The connection is gone (closed by the server, broken, or declared dead).
    pub(super) fn connection_lost(&mut self, reason: &str) {
        if self.live.take().is_none() {
            return;
        }
        let key = self.heartbeat_key.take();
        self.cancel(key);
        self.monitor.reset();
        self.fail_pending(|| Error::Transport(format!("connection lost: {reason}")));
        let now = Instant::now();
        for channel in self.channels.values_mut() {
            channel.connection_lost(now);
        }
        self.schedule_reconnect();
    }

    /// `disconnect()`: close and stay down until `connect()` or a subscribe.
    pub(super) fn disconnect(&mut self) {
        self.manual = true;
        let key = self.reconnect_key.take();
        self.cancel(key);
        self.connecting = None;
        self.connect_after_token = false;
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Err(Error::Disconnected));
        }
        // Dropping the sender makes the writer close the socket cleanly.
        self.live = None;
        let key = self.heartbeat_key.take();
        self.cancel(key);
        self.monitor.reset();
        self.fail_pending(|| Error::Disconnected);
        let now = Instant::now();
        for channel in self.channels.values_mut() {
            channel.disconnected(now);
        }
        self.set_status(ConnectionStatus::Disconnected);
    }

    fn fail_all_channels(&mut self, error: &Error) {
        for channel in self.channels.values_mut() {
            channel.fail_waiters(error);
        }
    }
}
