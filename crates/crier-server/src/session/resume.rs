//! A join in its topic's stream: the subscription is made while the stream is locked
//! (`HistoryStore::attach`), so a resuming channel gets every broadcast it missed and
//! then every later one live, none twice. What it missed is sent right after the join
//! reply, then a `system` message says how the resume went.
//!
//! With a history the cluster shares (`broker::SharedHistory`), this node's store is a
//! copy of the stream's recent part, kept in step by the bus. A join waits until the
//! copy knows where the stream stands (for a topic new here, once the bus has
//! subscribed it); a resuming one first reads from the shared stream what the copy may
//! not reach back to, and receives no broadcast until it attaches under the copy's lock
//! with both. What it missed is then every offset from its own up to the copy's latest,
//! and the broadcasts after that reach it live.

use std::sync::Arc;

use crier_protocol::events::SYSTEM;
use crier_protocol::join::ResumeFrom;
use crier_protocol::presence::PresenceGroups;
use crier_protocol::serializer::Envelope;
use serde_json::json;

use futures_util::FutureExt;

use super::private::CheckDone;
use super::{ReplyAddress, Session};
use crate::fanout::Content;
use crate::fanout::{Outgoing, encode_one};
use crate::frame::Frame;
use crate::history::{Attached, Entry, Fetched, Position};
use crate::registry::{Receives, Topic};

/// Longest wait of a join for the bus's subscription.
const BUS_SYNC_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `system` message when this node keeps no history.
const NO_HISTORY: &str = "Resume gap: this server keeps no history";

impl Session {
    /// Subscribes the socket to the topic with key `key`; with history on, inside the
    /// topic's stream (see the module doc). Returns the topic, whether this was its first
    /// local subscription, and what the stream said.
    pub(super) fn subscribe_in_stream(
        &self,
        key: &str,
        receives: Receives,
        replayed: Option<Box<[String]>>,
        resume: Option<&ResumeFrom>,
        state_frame: impl FnOnce(&PresenceGroups) -> Frame,
    ) -> ((Arc<Topic>, bool), Option<Attached>) {
        let shared = &self.node.shared;
        let mut subscription = Some((replayed, state_frame));
        let mut subscribe = || {
            let (replayed, state_frame) = subscription.take().expect("subscribed once");
            shared
                .registry
                .subscribe(key, &self.conn, receives, replayed, state_frame)
        };
        match &shared.history {
            None => (subscribe(), None),
            Some(history) => {
                // A topic nobody here subscribed to did not hear the other nodes, so
                // this node's stream of it missed their broadcasts: its first subscriber
                // ends the epoch (under the stream's lock), and a resume from before now
                // gets a gap.
                // A copy of a shared stream always does (the bus says where it stands
                // again).
                let peers = shared.broker.has_peers() || shared.shared_history.is_some();
                let mut topic = None;
                let attached = history.attach(key, resume, None, &mut || {
                    let subscribed = subscribe();
                    let first_here = subscribed.1;
                    topic = Some(subscribed);
                    first_here && peers
                });
                (topic.expect("attach subscribes"), Some(attached))
            }
        }
    }

    /// Answers a join once the bus has subscribed to its topic on this node's behalf, so
    /// that what other nodes publish after the reply reaches it.
    pub(super) fn reply_when_bus_synced(
        &mut self,
        to: &ReplyAddress,
        response: serde_json::Value,
        after_reply: Vec<Frame>,
    ) {
        let broker = Arc::clone(&self.node.shared.broker);
        let to = to.clone();
        super::private::checks_of(&mut self.checks).push(
            async move {
                // An unreachable bus must not hold the join: after a while it is answered
                // (the bus catches up by itself, and says so with a gap message).
                if tokio::time::timeout(BUS_SYNC_LIMIT, broker.synced())
                    .await
                    .is_err()
                {
                    tracing::warn!("the cluster bus did not confirm a subscription in time; answering the join anyway");
                }
                CheckDone::BusSynced {
                    to,
                    response,
                    after_reply,
                }
            }
            .boxed(),
        );
    }

    /// The bus is subscribed: answer the join, unless the channel has left or joined
    /// again meanwhile, then send its presence state, which now has other nodes' too.
    pub(super) fn on_bus_synced(
        &mut self,
        to: &ReplyAddress,
        response: &serde_json::Value,
        after_reply: Vec<Frame>,
    ) {
        let current = self
            .channels
            .get(&to.topic)
            .is_some_and(|channel| channel.join_ref == to.join_ref);
        if !current {
            return;
        }
        self.reply(to, "ok", response);
        self.out.extend(after_reply);
        let Some(channel) = self.channels.get(&to.topic) else {
            return;
        };
        let receives = channel.receives();
        if receives.presence {
            let topic = Arc::clone(&channel.topic);
            let state_frame = self.state_frame_for(&to.topic, to.join_ref.clone());
            topic.set_receives(self.conn.id, receives, state_frame);
        }
    }

    /// Answers a join once this node's copy of the shared stream follows the topic (the
    /// bus has subscribed it), and for a resuming one after reading the shared stream.
    pub(super) fn attach_when_following(&mut self, to: &ReplyAddress, join: SharedJoin) {
        let shared = Arc::clone(&self.node.shared);
        let to = to.clone();
        let limit = shared.config.history.size;
        super::private::checks_of(&mut self.checks).push(
            async move {
                let deadline = tokio::time::Instant::now() + BUS_SYNC_LIMIT;
                let synced = tokio::time::timeout_at(deadline, shared.broker.synced())
                    .await
                    .is_ok();
                if !synced {
                    tracing::warn!("the cluster bus did not confirm a subscription in time; answering the join anyway");
                }
                let fetched = match (&join.resume, &shared.shared_history) {
                    (Some(from), Some(history)) if synced => {
                        let read = history.read(&join.key, from.offset, limit);
                        match tokio::time::timeout_at(deadline, read).await {
                            Ok(Ok(read)) => Some(fetched(read)),
                            Ok(Err(err)) => {
                                tracing::warn!(error = %err, "cannot read the cluster's history for a resume");
                                None
                            }
                            Err(_) => None,
                        }
                    }
                    _ => None,
                };
                // What the client or the shared stream has seen may not have reached
                // this node's copy yet: attaching before would send it twice.
                // A shared stream behind the client went back (a Redis restored from a
                // snapshot): nothing to wait for, the resume reports the gap.
                let rewound = match (&join.resume, &fetched) {
                    (Some(from), Some(read)) => {
                        *read.latest.epoch == *from.epoch && read.latest.offset < from.offset
                    }
                    _ => false,
                };
                if let (Some(from), Some(history), false) = (&join.resume, &shared.history, rewound) {
                    let seen = fetched
                        .as_ref()
                        .filter(|read| *read.latest.epoch == *from.epoch)
                        .map_or(from.offset, |read| read.latest.offset.max(from.offset));
                    let caught_up = history.caught_up(&join.key, &from.epoch, seen);
                    let _ = tokio::time::timeout_at(deadline, caught_up).await;
                }
                CheckDone::SharedReady {
                    to,
                    join,
                    fetched,
                    trusted: synced && !rewound,
                }
            }
            .boxed(),
        );
    }

    /// The bus follows the topic and a resume has read the shared stream: attach under
    /// the copy's lock (the channel starts receiving broadcasts there), answer, send what
    /// it missed and how the resume went, then its presence state.
    pub(super) fn on_shared_ready(
        &mut self,
        to: &ReplyAddress,
        join: SharedJoin,
        fetched: Option<Fetched>,
        trusted: bool,
    ) {
        let current = self
            .channels
            .get(&to.topic)
            .is_some_and(|channel| channel.join_ref == to.join_ref);
        let Some(history) = self.node.shared.history.clone().filter(|_| current) else {
            return;
        };
        let SharedJoin {
            key,
            resume,
            subscribed,
            mut response,
        } = join;
        let channel = self.channels.get_mut(&to.topic).expect("current");
        channel.attaching = false;
        // What it may read now (a token refresh may have changed it meanwhile).
        let receives = channel.receives();
        let topic = Arc::clone(&channel.topic);
        let conn = self.conn.id;
        let mut state_frame = Some(self.state_frame_for(&to.topic, to.join_ref.clone()));
        let mut attached = history.attach(&key, resume.as_ref(), fetched.as_ref(), &mut || {
            let live = Receives {
                broadcasts: receives.broadcasts,
                ..subscribed
            };
            let state_frame = state_frame.take().expect("attached once");
            topic.set_receives(conn, live, state_frame);
            false
        });
        if !trusted && resume.is_some() {
            // This node's copy may be behind what other nodes published, or the shared
            // stream went back behind the client.
            attached.missed = Some(Err(crate::history::Gap::Unavailable));
        }
        response["broadcast"] =
            json!({"epoch": &*attached.latest.epoch, "offset": attached.latest.offset});
        let after_reply = match resume {
            Some(_) => self.resume_frames(to, Some(attached)),
            None => Vec::new(),
        };
        self.reply(to, "ok", &response);
        self.out.extend(after_reply);
        if receives.presence && !subscribed.presence {
            let state_frame = self.state_frame_for(&to.topic, to.join_ref.clone());
            topic.set_receives(conn, receives, state_frame);
        }
    }

    /// The frames a resuming join gets after its reply: the broadcasts it missed, oldest
    /// first, then the `system` message (`status` ok with how many, or error with why).
    pub(super) fn resume_frames(
        &self,
        to: &ReplyAddress,
        attached: Option<Attached>,
    ) -> Vec<Frame> {
        let mut frames = Vec::new();
        let report = match attached {
            None => json!({"extension": "broadcast", "status": "error", "message": NO_HISTORY,
                           "resume": {"recovered": false}}),
            Some(Attached { latest, missed }) => {
                let position = json!({"epoch": &*latest.epoch, "offset": latest.offset});
                match missed.expect("a resuming join reads its stream") {
                    Ok(entries) => {
                        let missed = entries.len();
                        for entry in entries {
                            let at = Position {
                                epoch: Arc::clone(&latest.epoch),
                                offset: entry.offset,
                            };
                            let outgoing = Outgoing::at(&to.topic, entry.content, Some(at));
                            frames.extend(outgoing.frame(&self.conn).cloned());
                        }
                        json!({"extension": "broadcast", "status": "ok",
                               "message": format!("Resumed: {missed} missed messages"),
                               "resume": {"recovered": true, "epoch": position["epoch"],
                                          "offset": position["offset"], "missed": missed}})
                    }
                    Err(gap) => json!({"extension": "broadcast", "status": "error",
                                       "message": gap.to_string(),
                                       "resume": {"recovered": false, "epoch": position["epoch"],
                                                  "offset": position["offset"]}}),
                }
            }
        };
        let envelope = Envelope {
            join_ref: to.join_ref.as_deref(),
            msg_ref: None,
            topic: &to.topic,
            event: SYSTEM,
        };
        frames.push(encode_one(self.vsn, &envelope, &report));
        frames
    }
}

/// A join waiting for this node's copy of the shared stream (see the module doc).
pub(crate) struct SharedJoin {
    /// The topic's key.
    pub(crate) key: String,
    /// Where a resuming join's subscriber left off.
    pub(crate) resume: Option<ResumeFrom>,
    /// What the channel receives until it attaches.
    pub(crate) subscribed: Receives,
    /// The join's reply, without its stream position yet.
    pub(crate) response: serde_json::Value,
}

/// A read of the shared stream, as this node keeps broadcasts (an entry that does not
/// read is left out, and reported as a gap where it was needed).
fn fetched(read: crate::broker::SharedRead) -> Fetched {
    let (latest, entries) = shared_entries(read);
    Fetched { latest, entries }
}

/// A read of the shared stream: its latest position, and its entries as this node
/// keeps broadcasts (one that does not read is left out).
pub(crate) fn shared_entries(read: crate::broker::SharedRead) -> (Position, Vec<Entry>) {
    let entries = read
        .entries
        .iter()
        .filter_map(|entry| {
            let content = match entry.publication.publication() {
                crate::broker::Publication::Json(body) => Content::from_body(body)?,
                crate::broker::Publication::Binary(broadcast) => {
                    Content::from_user_broadcast(broadcast)?
                }
            };
            Some(Entry {
                offset: entry.offset,
                content: Arc::new(content),
            })
        })
        .collect();
    let latest = Position {
        epoch: Arc::from(read.epoch),
        offset: read.latest,
    };
    (latest, entries)
}
