//! One topic: its subscribers and its presence.
//!
//! Lock order is presence, then subscribers; no lock is ever held across an await (there
//! are no awaits here at all: delivering is pushing into queues). Presence changes fan
//! their diff out while still holding the presence lock, so every subscriber sees diffs
//! in the order they happened and a new subscriber's snapshot lines up exactly with the
//! diffs that follow it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crier_protocol::events::PRESENCE_DIFF;
use crier_protocol::presence::{PresenceDiff, PresenceGroups};
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};

use super::Receives;
use crate::fanout::Outgoing;
use crate::frame::Frame;
use crate::outbound::{ConnHandle, ConnId, Outbound, PushError, Pushed};
use crate::presence::{PresenceStore, RemoteChange, TopicPresence};

#[derive(Debug)]
struct Subscriber {
    conn: Arc<ConnHandle>,
    /// Receives broadcasts (on a private channel, only with broadcast read).
    broadcasts: bool,
    /// Receives `presence_diff` (presence enabled at join, or by tracking; on a private
    /// channel, only with presence read).
    presence: bool,
    /// Ids of the stored messages replayed to it at its join (at most 25): their live
    /// copies are skipped.
    replayed: Option<Box<[String]>>,
}

impl Subscriber {
    fn was_replayed(&self, stored_id: &str) -> bool {
        self.replayed
            .as_ref()
            .is_some_and(|ids| ids.iter().any(|id| id == stored_id))
    }
}

/// What one delivery did.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    /// Sockets the message was queued to.
    pub(crate) recipients: u64,
    /// Sockets whose queue is now over its room mark: a publisher that can wait should
    /// let them drain before its next message (`Ledger::wait_for_room`).
    pub(crate) lagging: Vec<Arc<ConnHandle>>,
}

/// Subscribers and presence of one topic.
#[derive(Debug)]
pub(crate) struct Topic {
    /// The wire topic, `realtime:room1`.
    name: Arc<str>,
    /// The registry key (`super::topic_key`).
    key: Arc<str>,
    subscribers: RwLock<HashMap<ConnId, Subscriber>>,
    /// Also the lock that orders presence diffs (see the module doc).
    presence: Mutex<Box<dyn TopicPresence>>,
    /// Broadcasts delivered here, for the inspector's rates.
    broadcasts: AtomicU64,
}

impl Topic {
    pub(crate) fn new(key: &str, presence: &dyn PresenceStore) -> Self {
        Topic {
            name: Arc::from(super::wire_topic(key)),
            key: Arc::from(key),
            subscribers: RwLock::new(HashMap::new()),
            presence: Mutex::new(presence.open(key)),
            broadcasts: AtomicU64::new(0),
        }
    }

    /// The full topic as on the wire, e.g. `realtime:room1` (private or not).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The key in the registry, presence store and broker.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn add(
        &self,
        conn: &Arc<ConnHandle>,
        receives: Receives,
        replayed: Option<Box<[String]>>,
        state_frame: impl FnOnce(&PresenceGroups) -> Frame,
    ) {
        let presences = self.presence.lock();
        self.subscribers.write().insert(
            conn.id,
            Subscriber {
                conn: Arc::clone(conn),
                broadcasts: receives.broadcasts,
                presence: receives.presence,
                replayed,
            },
        );
        if receives.presence {
            conn.queue
                .push_own(Outbound::Frame(state_frame(&presences.state())));
        }
    }

    /// Removes `conn` and its presence; returns the number of sockets the leave diff
    /// reached (for presence rate accounting).
    pub(crate) fn remove(&self, conn: ConnId) -> u64 {
        let mut presences = self.presence.lock();
        self.subscribers.write().remove(&conn);
        match presences.untrack(conn) {
            Some(diff) => self.deliver_diff(&diff).recipients,
            None => 0,
        }
    }

    /// Tracks `payload` for `conn` under `key`. When `enable` is given, the socket starts
    /// receiving presence: its state frame is queued first, then the diff reaches it like
    /// everyone else. Returns the delivery of the diff, `None` if nothing changed.
    pub(crate) fn track(
        &self,
        conn: ConnId,
        key: &str,
        payload: Map<String, Value>,
        new_ref: &dyn Fn() -> String,
        enable: Option<impl FnOnce(&PresenceGroups) -> Frame>,
    ) -> Option<Delivery> {
        let mut presences = self.presence.lock();
        if let Some(state_frame) = enable
            && let Some(subscriber) = self.subscribers.write().get_mut(&conn)
        {
            subscriber.presence = true;
            subscriber
                .conn
                .queue
                .push_own(Outbound::Frame(state_frame(&presences.state())));
        }
        let diff = presences.track(conn, key, payload, new_ref)?;
        Some(self.deliver_diff(&diff))
    }

    /// Changes what `conn` receives (a refreshed token changed its read access). A
    /// subscriber that starts receiving presence is sent the state first, as at a join.
    pub(crate) fn set_receives(
        &self,
        conn: ConnId,
        receives: Receives,
        state_frame: impl FnOnce(&PresenceGroups) -> Frame,
    ) {
        let presences = self.presence.lock();
        let mut subscribers = self.subscribers.write();
        let Some(subscriber) = subscribers.get_mut(&conn) else {
            return;
        };
        subscriber.broadcasts = receives.broadcasts;
        if receives.presence && !subscriber.presence {
            subscriber
                .conn
                .queue
                .push_own(Outbound::Frame(state_frame(&presences.state())));
        }
        subscriber.presence = receives.presence;
    }

    /// Untracks `conn`'s presence. `None` if it had none.
    pub(crate) fn untrack(&self, conn: ConnId) -> Option<Delivery> {
        let mut presences = self.presence.lock();
        let diff = presences.untrack(conn)?;
        Some(self.deliver_diff(&diff))
    }

    /// Applies a presence change from other nodes and sends its diff to the subscribers
    /// that receive presence.
    pub(crate) fn merge_presence(&self, change: RemoteChange) {
        let mut presences = self.presence.lock();
        if let Some(diff) = presences.merge(change) {
            self.deliver_diff(&diff);
        }
    }

    /// Has the presence store push this node's entries of the topic again.
    pub(crate) fn republish_presence(&self) {
        self.presence.lock().republish();
    }

    /// The current presence state.
    pub(crate) fn presence_state(&self) -> PresenceGroups {
        self.presence.lock().state()
    }

    /// Queues `message` to every subscriber but `exclude`. With `then_shutdown`, each
    /// receiving channel is also told to shut down with that `system` message (the
    /// events-per-second limit has tripped).
    pub(crate) fn deliver(
        &self,
        message: &Outgoing,
        exclude: Option<ConnId>,
        then_shutdown: Option<&'static str>,
    ) -> Delivery {
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
        let stored_id = message.stored_id();
        let subscribers = self.subscribers.read();
        let mut delivery = Delivery::default();
        for (id, subscriber) in subscribers.iter() {
            if exclude == Some(*id) || !subscriber.broadcasts {
                continue;
            }
            if let Some(stored_id) = stored_id
                && subscriber.was_replayed(stored_id)
            {
                continue;
            }
            let Some(frame) = message.frame(&subscriber.conn) else {
                continue;
            };
            self.push(&mut delivery, subscriber, Outbound::Frame(frame.clone()));
            if let Some(text) = then_shutdown {
                let _ = subscriber.conn.queue.push(Outbound::ShutdownChannel {
                    topic: Arc::clone(&self.name),
                    message: text,
                });
            }
        }
        delivery
    }

    fn deliver_diff(&self, diff: &PresenceDiff) -> Delivery {
        let message = Outgoing::json(&self.name, PRESENCE_DIFF, diff);
        let subscribers = self.subscribers.read();
        let mut delivery = Delivery::default();
        for subscriber in subscribers.values().filter(|s| s.presence) {
            if let Some(frame) = message.frame(&subscriber.conn) {
                self.push(&mut delivery, subscriber, Outbound::Frame(frame.clone()));
            }
        }
        delivery
    }

    fn push(&self, delivery: &mut Delivery, subscriber: &Subscriber, item: Outbound) {
        match subscriber.conn.queue.push(item) {
            Ok(Pushed::Room) => delivery.recipients += 1,
            Ok(Pushed::Lagging) => {
                delivery.recipients += 1;
                delivery.lagging.push(Arc::clone(&subscriber.conn));
            }
            Err(PushError::Overflow) => {
                // The socket's own task counts and logs the disconnect, once.
                tracing::debug!(conn = subscriber.conn.id, topic = %self.name, "outbound queue overflowed");
            }
            Err(PushError::Closed) => {}
        }
    }

    /// True when no socket subscribes and nobody is tracked.
    pub(crate) fn is_empty(&self) -> bool {
        let presences = self.presence.lock();
        presences.is_empty() && self.subscribers.read().is_empty()
    }

    /// Number of subscribers.
    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.read().len()
    }

    /// Presence entries tracked in this topic (on every node).
    pub(crate) fn presence_count(&self) -> usize {
        self.presence.lock().len()
    }

    /// Broadcasts delivered to this topic's subscribers since it was created.
    pub(crate) fn broadcast_count(&self) -> u64 {
        self.broadcasts.load(Ordering::Relaxed)
    }
}
