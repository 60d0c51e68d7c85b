//! Whether the connection is alive: periodic heartbeats (one still unanswered when the
//! next is due means a dead connection) and on-demand probes.

use std::time::Duration;

use crier_protocol::events::{HEARTBEAT, PHOENIX_TOPIC};
use crier_protocol::{Message, Payload};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::pending::Pending;
use super::{Driver, Timer};
use crate::Error;
use crate::heartbeat::{HeartbeatEvent, Tick};

impl Driver {
    /// The heartbeat timer fired: send the next heartbeat, or declare the connection dead
    /// when the last one is still unanswered.
    pub(super) fn heartbeat_tick(&mut self) {
        if self.live.is_none() {
            return;
        }
        match self.monitor.on_tick() {
            Tick::Send => {
                let msg_ref = self.make_ref();
                let message = heartbeat(&msg_ref);
                if self.send(&message) {
                    self.monitor.sent(msg_ref, Instant::now());
                    let _ = self.heartbeats.send(HeartbeatEvent::Sent);
                }
                self.heartbeat_key = Some(
                    self.timers
                        .insert(Timer::Heartbeat, self.options.heartbeat_interval),
                );
            }
            Tick::TimedOut => {
                tracing::info!("heartbeat timeout: reconnecting");
                let _ = self.heartbeats.send(HeartbeatEvent::Timeout);
                self.connection_lost("heartbeat timeout");
            }
        }
    }

    /// A heartbeat outside the schedule, answered with its round trip or a timeout.
    pub(super) fn probe(&mut self, reply: oneshot::Sender<Result<Duration, Error>>) {
        if self.live.is_none() {
            let _ = reply.send(Err(Error::Transport("not connected".into())));
            return;
        }
        let msg_ref = self.make_ref();
        self.send(&heartbeat(&msg_ref));
        let key = self.timers.insert(
            Timer::ReplyTimeout {
                msg_ref: msg_ref.clone(),
            },
            self.options.probe_timeout,
        );
        self.pending.insert(
            msg_ref,
            (
                Pending::Probe {
                    sent: Instant::now(),
                    reply,
                },
                Some(key),
            ),
        );
    }
}

/// A heartbeat on the `phoenix` topic, matched to its reply by `msg_ref`.
fn heartbeat(msg_ref: &str) -> Message {
    Message {
        join_ref: None,
        msg_ref: Some(msg_ref.to_owned()),
        topic: PHOENIX_TOPIC.into(),
        event: HEARTBEAT.into(),
        payload: Payload::Json(json!({})),
    }
}
