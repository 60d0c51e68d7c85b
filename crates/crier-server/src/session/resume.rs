//! A join in its topic's stream: the subscription is made while the stream is locked
//! (`HistoryStore::attach`), so a resuming channel gets every broadcast it missed and
//! then every later one live, none twice. What it missed is sent right after the join
//! reply, then a `system` message says how the resume went.

use std::sync::Arc;

use crier_protocol::events::SYSTEM;
use crier_protocol::join::ResumeFrom;
use crier_protocol::presence::PresenceGroups;
use crier_protocol::serializer::Envelope;
use serde_json::json;

use futures_util::FutureExt;

use super::private::CheckDone;
use super::{ReplyAddress, Session};
use crate::fanout::{Outgoing, encode_one};
use crate::frame::Frame;
use crate::history::{Attached, Position};
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
                let peers = shared.broker.has_peers();
                let mut topic = None;
                let attached = history.attach(key, resume, &mut || {
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
        super::checks_of(&mut self.checks).push(
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
