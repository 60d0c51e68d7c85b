//! The life of one subscriber or virtual-user connection after it has subscribed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_tungstenite::tungstenite::Message;

use super::Shared;
use crate::client::{Conn, HEARTBEAT_EVERY, truncate};
use crate::clock::now_us;
use crate::payload::{self, Stamp};
use crate::wire::Inbound;

/// What a connection is for.
pub(super) enum Role {
    /// Reads one topic.
    Subscriber {
        /// The topic.
        topic: String,
    },
    /// A virtual user of the Supabase broadcast benchmark: an echo topic of its own and
    /// a group topic, both with self-delivery, and a message to each every period.
    VirtualUser {
        id: usize,
        group: usize,
        payload_bytes: usize,
        period_ms: u64,
    },
}

impl Role {
    /// The `(topic, echo)` subscriptions of this role.
    pub(super) fn topics(&self) -> Vec<(String, bool)> {
        match self {
            Role::Subscriber { topic } => vec![(topic.clone(), false)],
            Role::VirtualUser { id, group, .. } => {
                vec![(format!("vu-{id}"), true), (format!("group-{group}"), true)]
            }
        }
    }
}

/// Reads the connection until `stop`, recording every payload; a virtual user also
/// publishes once `go` is true.
pub(super) async fn serve(
    mut conn: Conn,
    role: Role,
    shared: Rc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut go: watch::Receiver<bool>,
    group_members: Rc<RefCell<BTreeMap<usize, u64>>>,
) {
    // Spread heartbeats and publications over their periods so that thousands of
    // connections do not fire in the same millisecond.
    let jitter = |period: Duration| period.mul_f64(rand_fraction());
    let mut heartbeat = interval_at(Instant::now() + jitter(HEARTBEAT_EVERY), HEARTBEAT_EVERY);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let publishing = match &role {
        Role::VirtualUser {
            id,
            group,
            payload_bytes,
            period_ms,
        } => {
            if go.wait_for(|go| *go).await.is_err() {
                return;
            }
            let period = Duration::from_millis((*period_ms).max(1));
            let mut timer = interval_at(Instant::now() + jitter(period), period);
            timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let members = group_members.borrow().get(group).copied().unwrap_or(1);
            Some((
                timer,
                [(format!("vu-{id}"), 1), (format!("group-{group}"), members)],
                *payload_bytes,
            ))
        }
        Role::Subscriber { .. } => None,
    };
    let (mut timer, targets, payload_bytes) = match publishing {
        Some((timer, targets, size)) => (Some(timer), Some(targets), size),
        None => (None, None, 0),
    };
    let mut seq = 0u64;

    let ended = loop {
        let mut replies: Vec<Message> = Vec::new();
        let mut problem = None;
        tokio::select! {
            // Reading first: a backlog of frames must not starve behind the timers.
            biased;
            frame = conn.ws.next() => match frame {
                Some(Ok(Message::Close(close))) => break Some(format!("server closed: {close:?}")),
                Some(Ok(frame)) => {
                    let mut recorder = shared.recorder.borrow_mut();
                    let mut receipts = 0;
                    conn.wire.decode(frame, &mut |event| match event {
                        Inbound::Payload(stamp) => {
                            recorder.received(stamp, now_us());
                            receipts += 1;
                        }
                        Inbound::Reply(reply) => replies.push(reply),
                        Inbound::Refused(why) => problem = Some(truncate(&why, 300).to_owned()),
                        Inbound::Subscribed | Inbound::Ready | Inbound::Other => {}
                    });
                    drop(recorder);
                    if receipts > 0 {
                        shared.receipts.notify_one();
                    }
                }
                Some(Err(e)) => break Some(format!("read: {e}")),
                None => break Some("connection ended".into()),
            },
            _ = stop.changed() => {
                let _ = conn.ws.close(None).await;
                break None;
            }
            _ = heartbeat.tick() => {
                if let Some(beat) = conn.wire.heartbeat() {
                    replies.push(beat);
                }
            }
            _ = tick(&mut timer) => {
                let epoch = shared.recorder.borrow().current_epoch;
                for (topic, recipients) in targets.iter().flatten() {
                    let sent_us = now_us();
                    let body = payload::encode(Stamp { sent_us, seq, epoch }, payload_bytes);
                    seq += 1;
                    replies.push(conn.wire.publish(topic, &body));
                    shared.recorder.borrow_mut().sent(epoch, *recipients, sent_us);
                }
            }
        }
        if let Some(why) = problem {
            break Some(format!("server error: {why}"));
        }
        if !replies.is_empty() {
            let write = async {
                for reply in replies {
                    conn.ws.feed(reply).await?;
                }
                conn.ws.flush().await
            };
            if let Err(e) = write.await {
                break Some(format!("write: {e}"));
            }
        }
    };
    if let Some(why) = ended {
        shared.lost.borrow_mut().record(why);
    }
}

/// Waits for the next tick of `timer`, or forever when there is none.
async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A number in [0, 1), for spreading timers over their period.
fn rand_fraction() -> f64 {
    rand::random::<f64>()
}
