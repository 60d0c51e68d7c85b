//! [`Channel`]: one topic on a client, shared by every handle to it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use crier_protocol::presence::PresenceMeta;
use crier_protocol::{PayloadEncoding, UserBroadcast, Vsn};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use crate::client::Client;
use crate::driver::{Command, Outgoing, PushRequest, SubscribeRequest};
use crate::events::{Broadcast, ChannelEvent, ChannelStatus, PresenceEvent};
use crate::postgres::{PostgresChange, PostgresChangesFilter};
use crate::{Error, http};

/// The presence state of a channel: key to metas.
pub type PresenceState = BTreeMap<String, Vec<PresenceMeta>>;

/// How a channel joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Receive your own broadcasts (`self`).
    pub broadcast_self: bool,
    /// Wait for the server to acknowledge each broadcast (`ack`).
    pub broadcast_ack: bool,
    /// The presence key (the server picks a UUID when unset).
    pub presence_key: Option<String>,
    /// Receive presence. Also turned on by [`Channel::presence_events`] before subscribing,
    /// and by [`Channel::track`].
    pub presence: bool,
    /// A private channel (authorized by the server's policies).
    pub private: bool,
    /// `subscribe()` waits until the server confirms postgres changes are live (on by
    /// default, so no change made right after subscribing is missed).
    pub wait_for_postgres: bool,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            broadcast_self: false,
            broadcast_ack: false,
            presence_key: None,
            presence: false,
            private: false,
            wait_for_postgres: true,
        }
    }
}

impl ChannelOptions {
    /// Receive your own broadcasts.
    pub fn broadcast_self(mut self, on: bool) -> Self {
        self.broadcast_self = on;
        self
    }

    /// Acknowledged broadcasts.
    pub fn broadcast_ack(mut self, on: bool) -> Self {
        self.broadcast_ack = on;
        self
    }

    /// The presence key.
    pub fn presence_key(mut self, key: impl Into<String>) -> Self {
        self.presence_key = Some(key.into());
        self.presence = true;
        self
    }

    /// A private channel.
    pub fn private(mut self, on: bool) -> Self {
        self.private = on;
        self
    }

    /// Whether `subscribe()` waits for postgres changes to be live.
    pub fn wait_for_postgres(mut self, on: bool) -> Self {
        self.wait_for_postgres = on;
        self
    }
}

/// One channel (topic) of a [`Client`].
///
/// Handles are cheap clones of one shared channel; streams taken from it hold a handle
/// too. When the last handle (or stream) is dropped, the channel leaves the topic.
///
/// Register postgres-changes filters (and presence listeners) *before* `subscribe()`:
/// they are part of the join.
///
/// ```no_run
/// # async fn run(client: crier_client::Client) -> Result<(), crier_client::Error> {
/// use crier_client::{ChannelOptions, ChangeEvent, PostgresChangesFilter, PostgresChange};
/// use futures_util::StreamExt;
///
/// let room = client.channel_with("room1", ChannelOptions::default().presence_key("alice"));
/// let mut todos = room.postgres_changes::<serde_json::Value>(
///     PostgresChangesFilter::new(ChangeEvent::All, "public").table("todos"),
/// );
/// let mut presence = room.presence_events();
/// room.subscribe().await?;
/// room.track(serde_json::json!({"online_at": "now"})).await?;
/// if let Some(Ok(PostgresChange::Insert { new, .. })) = todos.next().await {
///     println!("new todo: {new}");
/// }
/// # let _ = presence.next().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Channel {
    pub(crate) shared: Arc<ChannelShared>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("topic", &self.shared.topic)
            .field("status", &self.status())
            .finish()
    }
}

pub(crate) struct ChannelShared {
    pub(crate) client: Client,
    pub(crate) name: String,
    pub(crate) topic: String,
    pub(crate) options: ChannelOptions,
    pub(crate) filters: Mutex<Vec<PostgresChangesFilter>>,
    presence_listeners: AtomicBool,
    subscribed_once: AtomicBool,
    pub(crate) events: broadcast::Sender<ChannelEvent>,
    pub(crate) status: watch::Sender<ChannelStatus>,
    pub(crate) presence: watch::Sender<PresenceState>,
}

impl Drop for ChannelShared {
    fn drop(&mut self) {
        // The last handle is gone: leave the topic (the driver ignores unknown topics).
        let _ = self.client.send(Command::Release {
            topic: self.topic.clone(),
        });
    }
}

/// A stream over a broadcast channel, filtered and mapped by `pick`. A receiver that
/// falls more than the channel's capacity behind skips the oldest events (logged).
pub(crate) fn broadcast_stream<E: Clone + Send + 'static, T: Send + 'static>(
    rx: broadcast::Receiver<E>,
    pick: impl FnMut(E) -> Option<T> + Send + 'static,
) -> BoxStream<'static, T> {
    stream::unfold((rx, pick), |(mut rx, mut pick)| async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    if let Some(item) = pick(event) {
                        return Some((item, (rx, pick)));
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::warn!(
                        skipped,
                        "a stream fell behind and skipped its oldest events"
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

impl Channel {
    pub(crate) fn new(client: Client, name: &str, options: ChannelOptions) -> Self {
        let capacity = client.shared.options.stream_capacity;
        let (events, _) = broadcast::channel(capacity);
        Channel {
            shared: Arc::new(ChannelShared {
                client,
                name: name.to_owned(),
                topic: format!("realtime:{name}"),
                presence_listeners: AtomicBool::new(options.presence),
                options,
                filters: Mutex::new(Vec::new()),
                subscribed_once: AtomicBool::new(false),
                events,
                status: watch::Sender::new(ChannelStatus::Closed),
                presence: watch::Sender::new(PresenceState::new()),
            }),
        }
    }

    /// The channel name (without `realtime:`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The wire topic (`realtime:<name>`).
    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// The status now.
    pub fn status(&self) -> ChannelStatus {
        self.shared.status.borrow().clone()
    }

    /// The status, now and at every change.
    pub fn status_stream(&self) -> BoxStream<'static, ChannelStatus> {
        let mut rx = self.shared.status.subscribe();
        rx.mark_changed();
        let keep = self.clone();
        stream::unfold((rx, keep), |(mut rx, keep)| async move {
            rx.changed().await.ok()?;
            let status = rx.borrow_and_update().clone();
            Some((status, (rx, keep)))
        })
        .boxed()
    }

    /// Every event of this channel, in order.
    pub fn events(&self) -> BoxStream<'static, ChannelEvent> {
        let keep = self.clone();
        broadcast_stream(self.shared.events.subscribe(), move |event| {
            let _ = &keep;
            Some(event)
        })
    }

    /// Every broadcast.
    pub fn broadcasts(&self) -> BoxStream<'static, Broadcast> {
        self.broadcasts_matching(None)
    }

    /// Broadcasts with the application event `event`.
    pub fn broadcasts_for(&self, event: &str) -> BoxStream<'static, Broadcast> {
        self.broadcasts_matching(Some(event.to_owned()))
    }

    fn broadcasts_matching(&self, event: Option<String>) -> BoxStream<'static, Broadcast> {
        let keep = self.clone();
        broadcast_stream(self.shared.events.subscribe(), move |item| {
            let _ = &keep;
            match item {
                ChannelEvent::Broadcast(message)
                    if event.as_ref().is_none_or(|e| *e == message.event) =>
                {
                    Some(Arc::unwrap_or_clone(message))
                }
                _ => None,
            }
        })
    }

    /// Presence events (sync, join, leave, update). Taken before `subscribe()`, it turns
    /// presence on for the channel.
    pub fn presence_events(&self) -> BoxStream<'static, PresenceEvent> {
        self.shared
            .presence_listeners
            .store(true, Ordering::Relaxed);
        let keep = self.clone();
        broadcast_stream(self.shared.events.subscribe(), move |item| {
            let _ = &keep;
            match item {
                ChannelEvent::Presence(event) => Some(Arc::unwrap_or_clone(event)),
                _ => None,
            }
        })
    }

    /// Who is present now.
    pub fn presence_state(&self) -> PresenceState {
        self.shared.presence.borrow().clone()
    }

    /// Registers a postgres-changes filter and returns its changes, decoded into `T`
    /// (`serde_json::Value` for the raw row). Register before `subscribe()`: a filter
    /// added later yields a single [`Error::Unsupported`].
    pub fn postgres_changes<T: DeserializeOwned + Send + 'static>(
        &self,
        filter: PostgresChangesFilter,
    ) -> BoxStream<'static, Result<PostgresChange<T>, Error>> {
        if self.shared.subscribed_once.load(Ordering::Acquire) {
            let error =
                Error::Unsupported("register postgres_changes filters before subscribe()".into());
            return stream::once(async move { Err(error) }).boxed();
        }
        let index = {
            let mut filters = self.shared.filters.lock().expect("not poisoned");
            filters.push(filter);
            filters.len() - 1
        };
        let keep = self.clone();
        broadcast_stream(self.shared.events.subscribe(), move |item| {
            let _ = &keep;
            match item {
                ChannelEvent::PostgresChange(change) if change.filters.contains(&index) => {
                    Some(PostgresChange::<T>::from_data(&change.data))
                }
                _ => None,
            }
        })
    }

    /// Joins the channel (connecting first if needed). Resolves once joined and, when
    /// postgres-changes filters are registered, once the server confirms they are live
    /// (unless [`ChannelOptions::wait_for_postgres`] is off). Errors carry the server's
    /// code; a retryable refusal keeps being retried in the background. On a channel
    /// that is already joined it resolves at once, with the postgres-changes refusal (or
    /// timeout) of the join in force if there was one.
    pub async fn subscribe(&self) -> Result<(), Error> {
        self.shared.subscribed_once.store(true, Ordering::Release);
        let filters = self.shared.filters.lock().expect("not poisoned").clone();
        let presence = self.shared.presence_listeners.load(Ordering::Relaxed);
        let request = |reply| {
            Command::Subscribe(Box::new(SubscribeRequest {
                topic: self.shared.topic.clone(),
                options: self.shared.options.clone(),
                presence,
                filters,
                events: self.shared.events.clone(),
                status: self.shared.status.clone(),
                presence_state: self.shared.presence.clone(),
                reply,
            }))
        };
        self.shared.client.request(request).await?
    }

    /// Leaves the channel and waits for the server to confirm (or the timeout). The
    /// channel can be subscribed again later.
    pub async fn unsubscribe(&self) -> Result<(), Error> {
        let topic = self.shared.topic.clone();
        self.shared
            .client
            .request(|reply| Command::Unsubscribe { topic, reply })
            .await?
    }

    async fn push(
        &self,
        event: &'static str,
        payload: Outgoing,
        track: Option<Option<Map<String, Value>>>,
    ) -> Result<Value, Error> {
        let topic = self.shared.topic.clone();
        let wait_reply = event != "broadcast" || self.shared.options.broadcast_ack;
        self.shared
            .client
            .request(|reply| {
                Command::Push(PushRequest {
                    topic,
                    event,
                    payload,
                    wait_reply,
                    track,
                    reply,
                })
            })
            .await?
    }

    /// Broadcasts `payload` as `event` over the socket. With `ack` on, waits for the
    /// server's acknowledgement; otherwise resolves once the message is written. While
    /// the channel is not joined, the message waits in the bounded offline buffer.
    pub async fn broadcast(&self, event: &str, payload: impl Serialize) -> Result<(), Error> {
        let payload =
            serde_json::to_value(payload).map_err(|err| Error::Decode(err.to_string()))?;
        let body = json!({"type": "broadcast", "event": event, "payload": payload});
        self.push("broadcast", Outgoing::Json(body), None)
            .await
            .map(drop)
    }

    /// Broadcasts bytes as `event` (serializer 2.0.0; realtime-js receives an ArrayBuffer).
    pub async fn broadcast_binary(&self, event: &str, payload: Bytes) -> Result<(), Error> {
        if self.shared.client.shared.options.vsn != Vsn::V2 {
            return Err(Error::Unsupported(
                "binary broadcasts need serializer 2.0.0".into(),
            ));
        }
        if event.len() > 255 {
            return Err(Error::Unsupported(
                "binary broadcasts need an event name of at most 255 bytes".into(),
            ));
        }
        let body = UserBroadcast {
            event: event.to_owned(),
            metadata: Bytes::new(),
            encoding: PayloadEncoding::Binary,
            payload,
        };
        self.push("broadcast", Outgoing::Binary(body), None)
            .await
            .map(drop)
    }

    /// Broadcasts through the REST API (`POST /api/broadcast/:topic/events/:event`); the
    /// channel need not be joined.
    pub async fn http_send(&self, event: &str, payload: impl Serialize) -> Result<(), Error> {
        let payload = serde_json::to_vec(&payload).map_err(|err| Error::Decode(err.to_string()))?;
        http::send_event(self, event, "application/json", payload).await
    }

    /// Broadcasts bytes through the REST API.
    pub async fn http_send_binary(&self, event: &str, payload: Bytes) -> Result<(), Error> {
        http::send_event(self, event, "application/octet-stream", payload.to_vec()).await
    }

    /// Tracks `payload` as this client's presence. It is tracked again automatically
    /// after every rejoin.
    pub async fn track(&self, payload: impl Serialize) -> Result<(), Error> {
        let value = serde_json::to_value(payload).map_err(|err| Error::Decode(err.to_string()))?;
        let Value::Object(payload) = value else {
            return Err(Error::Unsupported(
                "a presence payload is a JSON object".into(),
            ));
        };
        let body = json!({"type": "presence", "event": "track", "payload": payload});
        self.push("presence", Outgoing::Json(body), Some(Some(payload)))
            .await
            .map(drop)
    }

    /// Stops tracking this client's presence.
    pub async fn untrack(&self) -> Result<(), Error> {
        let body = json!({"type": "presence", "event": "untrack"});
        self.push("presence", Outgoing::Json(body), Some(None))
            .await
            .map(drop)
    }
}
