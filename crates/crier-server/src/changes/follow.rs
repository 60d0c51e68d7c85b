//! [`ClusterSource`]: a node of a cluster streams the slot when it can, and follows the
//! node that does when it cannot (see `relay`).
//!
//! Every capture attempt opens the slot as on one node. If starting the stream fails
//! because another connection streams the slot (SQLSTATE 55006), the attempt follows the
//! relay instead, and tries the slot again every [`TRY_SLOT_EVERY`]. When that succeeds,
//! the previous holder is gone: the node first reads what it had appended to the relay
//! and not been read here, then streams the slot. Transactions that come twice (the old
//! holder appended them but had not let the slot move) are skipped by the capture loop,
//! by their commit position. While holding the slot, a node appends each batch to the
//! relay before it lets the slot move past it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use crier_postgres::database_broadcast::PublicationState;
use crier_postgres::replication::StreamEvent;
use crier_postgres::types::TypeCatalog;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::capture::CaptureError;
use super::relay::{ChangeRelay, RelayCursor};
use super::source::{ChangeSource, SlotStream, StreamGauges};

/// How often a following node tries to take the slot.
pub(crate) const TRY_SLOT_EVERY: Duration = Duration::from_secs(3);
/// Longest wait of one relay read.
const FOLLOW_WAIT: Duration = Duration::from_secs(2);

/// A slot shared by the nodes of a cluster, with a relay between them.
#[derive(Debug)]
pub(crate) struct ClusterSource {
    slot: Arc<dyn ChangeSource>,
    relay: Arc<dyn ChangeRelay>,
    /// Where this node is in the relay, kept across capture attempts.
    cursor: Arc<Mutex<RelayCursor>>,
    /// Says whether this node follows, as soon as it starts or stops.
    gauges: Arc<StreamGauges>,
}

impl ClusterSource {
    pub(crate) fn new(
        slot: Arc<dyn ChangeSource>,
        relay: Arc<dyn ChangeRelay>,
        gauges: Arc<StreamGauges>,
    ) -> Self {
        ClusterSource {
            slot,
            relay,
            cursor: Arc::default(),
            gauges,
        }
    }
}

#[async_trait]
impl ChangeSource for ClusterSource {
    async fn open(&self) -> Result<Box<dyn SlotStream>, CaptureError> {
        let slot = self.slot.open().await?;
        // Where this node starts reading the relay is fixed before the capture loop
        // confirms any subscription (it does once this returns): whatever a confirmed
        // subscriber must get is appended after it.
        // (Without the relay now, the reader fixes it when it can: the node still
        // captures if it gets the slot.)
        if self.cursor.lock().0.is_none() {
            let mut start = RelayCursor::default();
            match self.relay.read(&mut start, Duration::ZERO).await {
                Ok(_) => *self.cursor.lock() = start,
                Err(err) => tracing::warn!(error = %err, "cannot reach the change relay yet"),
            }
        }
        Ok(Box::new(ClusterStream {
            slot,
            relay: Arc::clone(&self.relay),
            cursor: Arc::clone(&self.cursor),
            role: Role::Starting,
            unsent: Vec::new(),
            followed: VecDeque::new(),
            took_over: false,
            gauges: Arc::clone(&self.gauges),
        }))
    }
}

enum Role {
    Starting,
    /// This node streams the slot.
    Holding,
    /// Another node does: its batches come from `reader`; try the slot again at
    /// `try_slot_at`.
    Following {
        try_slot_at: Instant,
        batches: mpsc::Receiver<Vec<StreamEvent>>,
        _reader: AbortOnDropHandle<()>,
    },
}

struct ClusterStream {
    slot: Box<dyn SlotStream>,
    relay: Arc<dyn ChangeRelay>,
    cursor: Arc<Mutex<RelayCursor>>,
    role: Role,
    /// Holding: events streamed since the last append to the relay.
    unsent: Vec<StreamEvent>,
    /// Following: events read from the relay, not yet handed to the capture loop.
    followed: VecDeque<StreamEvent>,
    /// Took the slot over from a node that followed: said at the first event.
    took_over: bool,
    gauges: Arc<StreamGauges>,
}

/// Whether starting the stream failed because another connection streams the slot.
fn slot_is_busy(err: &CaptureError) -> bool {
    let text = err.to_string();
    text.contains("55006") || text.contains("is active for PID")
}

/// Reads the relay from `cursor` on and sends each batch's events to `batches`, until
/// the receiver is gone. Its own task, so that the capture loop may drop a `next` call
/// at any point (it polls once for more of a batch) without leaving a read half done.
async fn read_relay(
    relay: Arc<dyn ChangeRelay>,
    cursor: Arc<Mutex<RelayCursor>>,
    batches: mpsc::Sender<Vec<StreamEvent>>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut at = cursor.lock().clone();
        match relay.read(&mut at, FOLLOW_WAIT).await {
            Ok(read) => {
                backoff = Duration::from_millis(200);
                for batch in read {
                    match crier_postgres::relay::decode(&batch) {
                        // Sent before the cursor moves: a reader stopped in between
                        // makes the next one read it again (the capture loop skips
                        // what it delivered), never skip it.
                        Ok(events) => {
                            if batches.send(events).await.is_err() {
                                return;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "skipping an unreadable batch from the change relay");
                        }
                    }
                }
                *cursor.lock() = at;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "cannot read the change relay");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        if batches.is_closed() {
            return;
        }
    }
}

impl ClusterStream {
    fn follow(&mut self) {
        let (sender, batches) = mpsc::channel(16);
        let reader = tokio::spawn(read_relay(
            Arc::clone(&self.relay),
            Arc::clone(&self.cursor),
            sender,
        ));
        self.role = Role::Following {
            try_slot_at: Instant::now() + TRY_SLOT_EVERY,
            batches,
            _reader: AbortOnDropHandle::new(reader),
        };
        self.gauges.following.store(true, Ordering::Relaxed);
    }

    /// This node streams the slot now (until a first read says it is busy after all).
    fn hold(&mut self) -> Role {
        self.gauges.following.store(false, Ordering::Relaxed);
        std::mem::replace(&mut self.role, Role::Holding)
    }

    /// Tries to take the slot; on success, first takes in what the relay still has.
    async fn try_slot(&mut self) -> Result<(), CaptureError> {
        let Role::Following { try_slot_at, .. } = &mut self.role else {
            return Ok(());
        };
        *try_slot_at = Instant::now() + TRY_SLOT_EVERY;
        match self.slot.start().await {
            Ok(()) => {}
            Err(err) if slot_is_busy(&err) => return Ok(()),
            Err(err) => {
                tracing::debug!(error = %err, "could not take the replication slot");
                return Ok(());
            }
        }
        // The previous holder is gone: what it appended before it went comes first.
        if let Role::Following { mut batches, .. } = self.hold() {
            while let Ok(events) = batches.try_recv() {
                self.followed.extend(events);
            }
        }
        let mut at = self.cursor.lock().clone();
        let rest = self
            .relay
            .read(&mut at, Duration::ZERO)
            .await
            .map_err(|err| CaptureError::Relay(err.to_string()))?;
        *self.cursor.lock() = at;
        for batch in rest {
            if let Ok(events) = crier_postgres::relay::decode(&batch) {
                self.followed.extend(events);
            }
        }
        self.took_over = true;
        Ok(())
    }
}

#[async_trait]
impl SlotStream for ClusterStream {
    fn slot_created(&self) -> bool {
        self.slot.slot_created()
    }

    async fn start(&mut self) -> Result<(), CaptureError> {
        match self.slot.start().await {
            Ok(()) => {
                self.hold();
                Ok(())
            }
            Err(err) if slot_is_busy(&err) => {
                tracing::info!("another node streams the replication slot: following it");
                self.follow();
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    async fn next(&mut self) -> Result<Option<StreamEvent>, CaptureError> {
        loop {
            if let Some(event) = self.followed.pop_front() {
                return Ok(Some(event));
            }
            match &mut self.role {
                Role::Starting => return Err(CaptureError::NotStarted),
                Role::Holding => {
                    // The replication client reports a busy slot at its first read,
                    // not when it starts.
                    let event = match self.slot.next().await {
                        Err(err) if slot_is_busy(&err) => {
                            tracing::info!(
                                "another node streams the replication slot: following it"
                            );
                            self.follow();
                            continue;
                        }
                        other => other?,
                    };
                    if let Some(event) = &event {
                        if std::mem::take(&mut self.took_over) {
                            tracing::info!(
                                "this node took the replication slot over: it streams it now"
                            );
                        }
                        self.unsent.push(event.clone());
                    }
                    return Ok(event);
                }
                Role::Following {
                    try_slot_at,
                    batches,
                    ..
                } => {
                    let at = *try_slot_at;
                    tokio::select! {
                        events = batches.recv() => match events {
                            Some(events) => self.followed.extend(events),
                            None => return Err(CaptureError::Relay("the relay reader stopped".into())),
                        },
                        () = tokio::time::sleep_until(at) => self.try_slot().await?,
                    }
                }
            }
        }
    }

    async fn ack(&mut self, lsn: u64) {
        if !matches!(self.role, Role::Holding) {
            return; // the holder moves the slot
        }
        // Only what ends with a whole transaction is appended: a follower then never
        // sees half of one, whichever node streams next.
        let Some(end) = self
            .unsent
            .iter()
            .rposition(|event| matches!(event, StreamEvent::Commit { end_lsn } if *end_lsn == lsn))
        else {
            self.slot.ack(lsn).await;
            return;
        };
        let batch: Vec<StreamEvent> = self.unsent.drain(..=end).collect();
        if let Err(err) = self
            .relay
            .append(crier_postgres::relay::encode(&batch))
            .await
        {
            // Local delivery goes on; the other nodes miss this batch.
            tracing::warn!(error = %err, "captured changes did not reach the other nodes: the change relay failed");
        }
        self.slot.ack(lsn).await;
    }

    async fn learn_type(&mut self, oid: u32) -> Result<(), CaptureError> {
        self.slot.learn_type(oid).await
    }

    fn types(&self) -> &TypeCatalog {
        self.slot.types()
    }

    fn broadcasts(&self) -> Option<&PublicationState> {
        self.slot.broadcasts()
    }
}
