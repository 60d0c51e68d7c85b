//! The fan-out publisher: one connection that publishes stamped payloads to one topic,
//! either on a fixed schedule or as fast as the subscribers receive them.

use std::rc::Rc;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{PublishPlan, Shared};
use crate::client::{Dialer, HEARTBEAT_EVERY, Ws};
use crate::clock::now_us;
use crate::payload::{self, Stamp};
use crate::wire::{Inbound, Wire};

/// At most this many messages are written per flush in max-rate mode, so a large window
/// still gets re-checked against receipts often.
const MAX_BATCH: u64 = 64;
/// In max-rate mode, with no receipt for this long the messages still counted as in
/// flight are written off as lost, so the publisher does not stall forever.
const STALL: Duration = Duration::from_secs(1);

/// Opens the publisher's connection; it publishes whatever plan is sent to the returned
/// channel (starting paused) until `stop`.
pub(super) async fn open(
    dialer: &Dialer,
    topic: String,
    shared: Rc<Shared>,
    stop: watch::Receiver<bool>,
) -> Result<watch::Sender<PublishPlan>, String> {
    let mut wire = dialer.target.wire();
    let topics = if wire.publisher_subscribes() {
        vec![(topic.clone(), false)]
    } else {
        Vec::new()
    };
    let conn = dialer.open(&topics).await?;
    wire = conn.wire;
    let (sink, mut stream) = conn.ws.split();
    let (plan_tx, plan_rx) = watch::channel(PublishPlan::PAUSED);

    // The publisher receives nothing of its own, but servers ping it and it must answer.
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let mut reader_wire = dialer.target.wire();
    let reader_shared = shared.clone();
    tokio::task::spawn_local(async move {
        while let Some(Ok(frame)) = stream.next().await {
            reader_wire.decode(frame, &mut |event| match event {
                Inbound::Reply(reply) => {
                    let _ = reply_tx.send(reply);
                }
                Inbound::Refused(why) => reader_shared
                    .lost
                    .borrow_mut()
                    .record(format!("publisher: {why}")),
                _ => {}
            });
        }
    });
    tokio::task::spawn_local(async move {
        if let Err(e) = run(sink, wire, topic, shared.clone(), plan_rx, reply_rx, stop).await {
            shared.lost.borrow_mut().record(format!("publisher: {e}"));
        }
    });
    Ok(plan_tx)
}

async fn run(
    mut sink: SplitSink<Ws, Message>,
    mut wire: Box<dyn Wire>,
    topic: String,
    shared: Rc<Shared>,
    mut plans: watch::Receiver<PublishPlan>,
    mut replies: mpsc::UnboundedReceiver<Message>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut plan = *plans.borrow_and_update();
    let mut plan_started = Instant::now();
    let mut sent_in_plan = 0u64;
    let mut received_base = shared.recorder.borrow().received_total;
    let mut last_progress = (Instant::now(), received_base);
    let mut last_beat = Instant::now();
    let mut seq = 0u64;
    // Set when the wait below saw a new plan (which marks it seen).
    let mut plan_changed = false;
    loop {
        // A new plan applies at once, even while a max-rate plan never runs out of room.
        let has_changed = plans
            .has_changed()
            .map_err(|_| "coordinator gone".to_owned())?;
        if std::mem::take(&mut plan_changed) || has_changed {
            plan = *plans.borrow_and_update();
            plan_started = Instant::now();
            sent_in_plan = 0;
            received_base = shared.recorder.borrow().received_total;
            last_progress = (Instant::now(), received_base);
        }
        // How many messages may go now, and if none, what to wait for.
        let allowed = match plan.rate {
            Some(rate) if rate <= 0.0 => 0,
            Some(rate) => {
                let due = (plan_started.elapsed().as_secs_f64() * rate) as u64 + 1;
                due.saturating_sub(sent_in_plan)
            }
            None => {
                let received_total = shared.recorder.borrow().received_total;
                if received_total != last_progress.1 {
                    last_progress = (Instant::now(), received_total);
                } else if last_progress.0.elapsed() >= STALL {
                    // Deliveries stopped: forget what is in flight and start again.
                    received_base = received_total;
                    sent_in_plan = 0;
                    last_progress.0 = Instant::now();
                }
                let local = (*shared.subscribers.borrow()).max(1);
                let in_flight =
                    (sent_in_plan * local).saturating_sub(received_total - received_base);
                let room = (plan.window * local).saturating_sub(in_flight) / local;
                room.min(MAX_BATCH)
            }
        };
        if allowed > 0 {
            let epoch = shared.recorder.borrow().current_epoch;
            for _ in 0..allowed {
                let sent_us = now_us();
                let body = payload::encode(
                    Stamp {
                        sent_us,
                        seq,
                        epoch,
                    },
                    plan.payload_bytes,
                );
                seq += 1;
                sink.feed(wire.publish(&topic, &body))
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                shared
                    .recorder
                    .borrow_mut()
                    .sent(epoch, plan.recipients, sent_us);
            }
            sent_in_plan += allowed;
        }
        if last_beat.elapsed() >= HEARTBEAT_EVERY {
            last_beat = Instant::now();
            if let Some(beat) = wire.heartbeat() {
                sink.feed(beat).await.map_err(|e| format!("write: {e}"))?;
            }
        }
        while let Ok(reply) = replies.try_recv() {
            sink.feed(reply).await.map_err(|e| format!("write: {e}"))?;
        }
        sink.flush().await.map_err(|e| format!("write: {e}"))?;

        // Wait for the next reason to publish.
        let next_due = match plan.rate {
            Some(rate) if rate > 0.0 => {
                Some(plan_started + Duration::from_secs_f64(sent_in_plan as f64 / rate))
            }
            Some(_) => Some(Instant::now() + HEARTBEAT_EVERY),
            None if allowed > 0 => None, // room may be left: go round again at once
            None => Some(Instant::now() + STALL),
        };
        let Some(next_due) = next_due else {
            tokio::task::yield_now().await;
            continue;
        };
        let receipts = async {
            if plan.rate.is_none() {
                shared.receipts.notified().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            changed = plans.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                plan_changed = true;
            }
            reply = replies.recv() => {
                if let Some(reply) = reply {
                    sink.send(reply).await.map_err(|e| format!("write: {e}"))?;
                }
            }
            () = receipts => {}
            () = tokio::time::sleep_until(next_due) => {}
        }
    }
}
