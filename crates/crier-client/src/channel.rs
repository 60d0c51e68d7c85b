//! [`Channel`]: one topic on a client, shared by every handle to it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use crier_protocol::events::{BROADCAST, PRESENCE, PRESENCE_TRACK, PRESENCE_UNTRACK, TOPIC_PREFIX};
use crier_protocol::{PayloadEncoding, UserBroadcast, Vsn};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, watch};

use crate::Error;
use crate::driver::{Command, DriverHandle, PushPayload, PushRequest, SubscribeRequest};
use crate::events::{Broadcast, ChannelEvent, ChannelStatus, PresenceEvent, PresenceState};
use crate::http::BroadcastApi;
use crate::options::ChannelOptions;
use crate::postgres::{PostgresChange, PostgresChangesFilter};
use crate::streams::broadcast_stream;

/// One channel (topic) of a [`Client`](crate::Client).
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

/// What every handle (and stream) of one channel shares. It holds the client's driver,
/// so a channel keeps the connection alive after the client handles are gone.
pub(crate) struct ChannelShared {
    driver: Arc<DriverHandle>,
    rest: BroadcastApi,
    name: String,
    topic: String,
    options: ChannelOptions,
    filters: Mutex<Vec<PostgresChangesFilter>>,
    presence_listeners: AtomicBool,
    subscribed_once: AtomicBool,
    events: broadcast::Sender<ChannelEvent>,
    status: watch::Sender<ChannelStatus>,
    presence: watch::Sender<PresenceState>,
}

impl Drop for ChannelShared {
    fn drop(&mut self) {
        // The last handle is gone: leave the topic (the driver ignores unknown topics).
        let _ = self.driver.send(Command::Release {
            topic: self.topic.clone(),
        });
    }
}

impl Channel {
    /// A new channel on the client's driver; it joins on `subscribe()`.
    pub(crate) fn new(
        driver: Arc<DriverHandle>,
        rest: BroadcastApi,
        name: &str,
        options: ChannelOptions,
    ) -> Self {
        let capacity = driver.options.stream_capacity;
        let (events, _) = broadcast::channel(capacity);
        Channel {
            shared: Arc::new(ChannelShared {
                driver,
                rest,
                name: name.to_owned(),
                topic: format!("{TOPIC_PREFIX}{name}"),
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
        self.shared.driver.request(request).await?
    }

    /// Leaves the channel and waits for the server to confirm (or the timeout). The
    /// channel can be subscribed again later.
    pub async fn unsubscribe(&self) -> Result<(), Error> {
        let topic = self.shared.topic.clone();
        self.shared
            .driver
            .request(|reply| Command::Unsubscribe { topic, reply })
            .await?
    }

    async fn push(
        &self,
        event: &'static str,
        payload: PushPayload,
        track: Option<Option<Map<String, Value>>>,
    ) -> Result<Value, Error> {
        let topic = self.shared.topic.clone();
        let wait_reply = event != BROADCAST || self.shared.options.broadcast_ack;
        self.shared
            .driver
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
        let body = json!({"type": BROADCAST, "event": event, "payload": payload});
        self.push(BROADCAST, PushPayload::Json(body), None)
            .await
            .map(drop)
    }

    /// Broadcasts bytes as `event` (serializer 2.0.0; realtime-js receives an ArrayBuffer).
    pub async fn broadcast_binary(&self, event: &str, payload: Bytes) -> Result<(), Error> {
        if self.shared.driver.options.vsn != Vsn::V2 {
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
        self.push(BROADCAST, PushPayload::Binary(body), None)
            .await
            .map(drop)
    }

    /// Broadcasts through the REST API (`POST /api/broadcast/:topic/events/:event`); the
    /// channel need not be joined.
    pub async fn http_send(&self, event: &str, payload: impl Serialize) -> Result<(), Error> {
        let payload = serde_json::to_vec(&payload).map_err(|err| Error::Decode(err.to_string()))?;
        self.http_send_raw(event, "application/json", payload).await
    }

    /// Broadcasts bytes through the REST API.
    pub async fn http_send_binary(&self, event: &str, payload: Bytes) -> Result<(), Error> {
        self.http_send_raw(event, "application/octet-stream", payload.to_vec())
            .await
    }

    async fn http_send_raw(
        &self,
        event: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), Error> {
        let private = self.shared.options.private;
        let rest = &self.shared.rest;
        rest.send_event(&self.shared.name, private, event, content_type, body)
            .await
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
        let body = json!({"type": PRESENCE, "event": PRESENCE_TRACK, "payload": payload});
        self.push(PRESENCE, PushPayload::Json(body), Some(Some(payload)))
            .await
            .map(drop)
    }

    /// Stops tracking this client's presence.
    pub async fn untrack(&self) -> Result<(), Error> {
        let body = json!({"type": PRESENCE, "event": PRESENCE_UNTRACK});
        self.push(PRESENCE, PushPayload::Json(body), Some(None))
            .await
            .map(drop)
    }
}
