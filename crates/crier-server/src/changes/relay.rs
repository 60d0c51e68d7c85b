//! Capture once in a cluster: the seam between the node that streams the slot and the
//! nodes that follow it.
//!
//! PostgreSQL lets one connection stream a slot at a time (a second `START_REPLICATION`
//! fails with SQLSTATE 55006), so the slot is the leader lock: every node of a cluster
//! tries it, one holds it, and it frees itself when that node dies. The holder appends
//! what it captures to a [`ChangeRelay`] before it lets the slot move; the others read
//! the relay and deliver to their own subscribers exactly as the holder does (match,
//! row level security, queues). See `follow` for the switching.
//!
//! [`MemoryRelay`] serves nodes in one process (tests); `crier-cluster` implements the
//! seam on a Redis stream. The conformance suite in `relay_tests` runs against both.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Where the capturing node hands captured events to the other nodes.
#[async_trait]
pub trait ChangeRelay: Send + Sync + fmt::Debug {
    /// Appends a batch (bytes made by `crier_postgres::relay::encode`).
    async fn append(&self, batch: Vec<u8>) -> Result<(), RelayError>;

    /// The batches appended after `cursor`, oldest first, waiting up to `wait` for the
    /// first one; moves `cursor` past what it returns. A new cursor starts at the end:
    /// what was appended before its first read is not returned.
    async fn read(
        &self,
        cursor: &mut RelayCursor,
        wait: Duration,
    ) -> Result<Vec<Vec<u8>>, RelayError>;
}

/// Where a reader is in a relay (opaque; the default starts at the end).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayCursor(pub Option<String>);

/// Why the relay could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("change relay: {0}")]
pub struct RelayError(pub String);

/// A relay in this process, for several nodes in one process (tests).
#[derive(Debug, Default)]
pub struct MemoryRelay {
    batches: Mutex<Vec<Vec<u8>>>,
    appended: Notify,
}

impl MemoryRelay {
    /// An empty relay.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ChangeRelay for MemoryRelay {
    async fn append(&self, batch: Vec<u8>) -> Result<(), RelayError> {
        self.batches.lock().push(batch);
        self.appended.notify_waiters();
        Ok(())
    }

    async fn read(
        &self,
        cursor: &mut RelayCursor,
        wait: Duration,
    ) -> Result<Vec<Vec<u8>>, RelayError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so an append in between is not missed.
            let appended = self.appended.notified();
            {
                let batches = self.batches.lock();
                let from = match &cursor.0 {
                    Some(at) => at.parse::<usize>().map_err(|_| RelayError(at.clone()))?,
                    None => batches.len(),
                };
                cursor.0 = Some(batches.len().to_string());
                if from < batches.len() {
                    return Ok(batches[from..].to_vec());
                }
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }
}

/// The relay conformance suite: what every [`ChangeRelay`] does.
#[cfg(any(test, feature = "conformance"))]
pub mod conformance {
    use std::time::Duration;

    use super::{ChangeRelay, RelayCursor};

    /// Readers get what was appended after they started, in order, once.
    pub async fn readers_get_later_batches_in_order_once(relay: &dyn ChangeRelay) {
        relay.append(b"before".to_vec()).await.unwrap();
        let mut cursor = RelayCursor::default();
        assert!(
            relay
                .read(&mut cursor, Duration::from_millis(10))
                .await
                .unwrap()
                .is_empty(),
            "a new cursor starts at the end"
        );
        for n in 0..3u8 {
            relay.append(vec![n]).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 3 {
            got.extend(
                relay
                    .read(&mut cursor, Duration::from_secs(5))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(got, [vec![0], vec![1], vec![2]]);
        assert!(
            relay
                .read(&mut cursor, Duration::from_millis(10))
                .await
                .unwrap()
                .is_empty(),
            "nothing twice"
        );
    }

    /// A read that waits returns as soon as a batch is appended.
    pub async fn a_waiting_read_wakes_on_append(relay: std::sync::Arc<dyn ChangeRelay>) {
        let mut cursor = RelayCursor::default();
        relay
            .read(&mut cursor, Duration::from_millis(1))
            .await
            .unwrap();
        let writer = std::sync::Arc::clone(&relay);
        let append = tokio::spawn(async move {
            tokio::task::yield_now().await;
            writer.append(b"late".to_vec()).await.unwrap();
        });
        let mut got = Vec::new();
        while got.is_empty() {
            got = relay
                .read(&mut cursor, Duration::from_secs(5))
                .await
                .unwrap();
        }
        assert_eq!(got, [b"late".to_vec()]);
        append.await.unwrap();
    }

    /// Runs the suite against `$relay` (an `Arc<dyn ChangeRelay>` expression, evaluated
    /// once per test inside a tokio runtime) in a module named `$name`.
    #[macro_export]
    macro_rules! relay_conformance {
        ($name:ident, $relay:expr) => {
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                use $crate::changes::relay::conformance as suite;

                #[tokio::test]
                async fn readers_get_later_batches_in_order_once() {
                    let relay: std::sync::Arc<dyn $crate::changes::ChangeRelay> = $relay;
                    suite::readers_get_later_batches_in_order_once(&*relay).await;
                }

                #[tokio::test]
                async fn a_waiting_read_wakes_on_append() {
                    let relay: std::sync::Arc<dyn $crate::changes::ChangeRelay> = $relay;
                    suite::a_waiting_read_wakes_on_append(relay).await;
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    crate::relay_conformance!(
        memory,
        std::sync::Arc::new(crate::changes::MemoryRelay::new())
    );
}
