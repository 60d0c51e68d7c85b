//! The live inspector: what the `/inspector` page shows, pushed to it over an ordinary
//! Crier socket.
//!
//! The page joins the channel `crier:inspector` (no `realtime:` prefix, so no client
//! channel can be named like it) with a service-role token, on the same socket endpoint
//! every client uses. Being an ordinary socket is the point: the inspector is held to the
//! same connection cap, token checks, frame size, rate limits and slow-consumer rules as
//! any client, and needs no second server. Once joined it gets an `overview` push every
//! second, and may ask for the channel list (`channels`). It watches a channel's
//! broadcasts and presence by joining that channel like any client, and sends through
//! the REST API.
//!
//! One task per node ticks once a second: it takes a [`Sample`] of the node's counters
//! (kept for the last five minutes, for the page's chart), and while anyone inspects,
//! each topic's broadcast rate and the [`Overview`], encoded once and queued to every
//! watcher.

pub(crate) mod assets;
mod channels;
mod overview;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

pub(crate) use channels::{ChannelsQuery, channel_list};
pub(crate) use overview::{Overview, Sample};

use crate::auth::Claims;
use crate::config::InspectorConfig;
use crate::fanout::Outgoing;
use crate::node::Shared;
use crate::outbound::{ConnHandle, ConnId, Outbound, PushError};

/// The inspector's channel.
pub(crate) const TOPIC: &str = "crier:inspector";
/// The push that carries each second's overview.
pub(crate) const OVERVIEW: &str = "overview";
/// The request for the channel list.
pub(crate) const CHANNELS: &str = "channels";
/// How many one-second samples are kept: five minutes.
const SAMPLES_KEPT: usize = 300;
/// How often the inspector looks.
const EVERY: Duration = Duration::from_secs(1);

/// Whether `claims` may inspect: the service role, or the configured admin role.
pub(crate) fn may_inspect(config: &InspectorConfig, claims: &Claims) -> bool {
    claims.role == "service_role" || config.admin_role.as_deref() == Some(claims.role.as_str())
}

/// The node's inspector: who watches, the recent samples and each topic's rate.
#[derive(Debug, Default)]
pub(crate) struct Inspector {
    watchers: Mutex<HashMap<ConnId, Arc<ConnHandle>>>,
    samples: Mutex<VecDeque<Sample>>,
    latest: Mutex<Option<Overview>>,
    /// Broadcasts per second of each topic over the last tick, by registry key (only
    /// while someone inspects).
    rates: Mutex<HashMap<Arc<str>, TopicRate>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct TopicRate {
    /// The topic's broadcast count at the last tick.
    count: u64,
    per_second: f64,
}

/// What a watcher gets in its join reply: the samples so far and the latest overview.
#[derive(Debug, Serialize)]
pub(crate) struct Welcome {
    samples: Vec<Sample>,
    overview: Option<Overview>,
}

impl Inspector {
    /// `conn` gets every overview from now on.
    pub(crate) fn watch(&self, conn: &Arc<ConnHandle>) -> Welcome {
        self.watchers.lock().insert(conn.id, Arc::clone(conn));
        Welcome {
            samples: self.samples.lock().iter().cloned().collect(),
            overview: self.latest.lock().clone(),
        }
    }

    /// `conn` stops getting overviews.
    pub(crate) fn unwatch(&self, conn: ConnId) {
        self.watchers.lock().remove(&conn);
    }

    /// The broadcast rate of the topic with this registry key, per second.
    pub(crate) fn rate_of(&self, key: &str) -> f64 {
        self.rates
            .lock()
            .get(key)
            .map_or(0.0, |rate| rate.per_second)
    }

    fn watched(&self) -> bool {
        !self.watchers.lock().is_empty()
    }

    /// Queues the overview to every watcher; one whose socket is gone is forgotten.
    fn send(&self, overview: &Overview) {
        let message = Outgoing::json(TOPIC, OVERVIEW, overview);
        self.watchers.lock().retain(|_, conn| {
            let Some(frame) = message.frame(conn) else {
                return true;
            };
            // A watcher that does not read is a slow consumer like any other: its own
            // task disconnects it when its queue overflows.
            !matches!(
                conn.queue.push(Outbound::Frame(frame.clone())),
                Err(PushError::Closed)
            )
        });
    }

    /// Updates each topic's rate from its broadcast count.
    fn measure_topics(&self, shared: &Shared, seconds: f64) {
        let mut rates = self.rates.lock();
        let mut seen = HashMap::with_capacity(rates.len());
        for topic in shared.registry.topics() {
            let count = topic.broadcast_count();
            // The old map's key is reused: no allocation per topic per second.
            let (key, per_second) = match rates.remove_entry(topic.key()) {
                Some((key, before)) => (key, count.saturating_sub(before.count) as f64 / seconds),
                None => (Arc::from(topic.key()), 0.0),
            };
            seen.insert(key, TopicRate { count, per_second });
        }
        // Topics that went are dropped with the old map.
        *rates = seen;
    }
}

/// Ticks once a second until the node shuts down or is dropped.
pub(crate) async fn run(inspector: Arc<Inspector>, node: Weak<Shared>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut meter = overview::Meter::default();
    loop {
        let shutdown = match node.upgrade() {
            Some(shared) => shared.shutdown.clone(),
            None => return,
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(shared) = node.upgrade() else { return };
        let (sample, seconds) = meter.sample(&shared);
        {
            let mut samples = inspector.samples.lock();
            if samples.len() == SAMPLES_KEPT {
                samples.pop_front();
            }
            samples.push_back(sample.clone());
        }
        if !inspector.watched() {
            inspector.rates.lock().clear();
            *inspector.latest.lock() = None;
            continue;
        }
        inspector.measure_topics(&shared, seconds);
        let overview = Overview::of(&shared, sample);
        inspector.send(&overview);
        *inspector.latest.lock() = Some(overview);
    }
}
