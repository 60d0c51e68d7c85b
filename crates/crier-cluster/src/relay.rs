//! [`RedisRelay`]: the capturing node's changes for the other nodes, on a Redis stream.
//!
//! `crier:changes` holds the batches the node that streams the replication slot appends
//! (`XADD`, trimmed to about 100,000 entries), in order; every other node reads it from
//! where it last stopped (`XREAD BLOCK`), so a node that lost Redis for a moment reads
//! what it missed when it is back, as long as the stream still holds it.

use std::time::Duration;

use async_trait::async_trait;
use crier_server::changes::{ChangeRelay, RelayCursor, RelayError};
use redis::aio::ConnectionManager;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::{Mutex, OnceCell};

/// The stream's key.
const STREAM: &str = "crier:changes";
/// Entries kept (approximately: Redis trims whole nodes of its radix tree).
const KEEP: usize = 100_000;
/// Most batches returned by one read.
const READ_COUNT: usize = 256;

/// The change relay of a cluster, on one Redis.
#[derive(Debug)]
pub struct RedisRelay {
    client: redis::Client,
    writer: OnceCell<ConnectionManager>,
    /// Reads block their connection, so they have one of their own.
    reader: Mutex<Option<ConnectionManager>>,
}

impl RedisRelay {
    pub(crate) fn new(client: redis::Client) -> Self {
        RedisRelay {
            client,
            writer: OnceCell::new(),
            reader: Mutex::new(None),
        }
    }

    async fn connect(&self, timeout: Duration) -> Result<ConnectionManager, RelayError> {
        let config = redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(timeout));
        self.client
            .get_connection_manager_with_config(config)
            .await
            .map_err(failed)
    }
}

fn failed(err: redis::RedisError) -> RelayError {
    RelayError(err.to_string())
}

#[async_trait]
impl ChangeRelay for RedisRelay {
    async fn append(&self, batch: Vec<u8>) -> Result<(), RelayError> {
        let writer = self
            .writer
            .get_or_try_init(|| self.connect(crate::broker::COMMAND_TIMEOUT))
            .await?;
        let mut writer = writer.clone();
        redis::cmd("XADD")
            .arg(STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(KEEP)
            .arg("*")
            .arg("b")
            .arg(batch)
            .query_async::<String>(&mut writer)
            .await
            .map(drop)
            .map_err(failed)
    }

    async fn read(
        &self,
        cursor: &mut RelayCursor,
        wait: Duration,
    ) -> Result<Vec<Vec<u8>>, RelayError> {
        let mut reader = self.reader.lock().await;
        if reader.is_none() {
            *reader = Some(self.connect(wait + crate::broker::COMMAND_TIMEOUT).await?);
        }
        let connection = reader.as_mut().expect("connected above");
        let from = match &cursor.0 {
            Some(id) => id.clone(),
            None => {
                // From the end: the newest entry's id, or the start of an empty stream.
                let newest: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
                    .arg(STREAM)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(connection)
                    .await
                    .map_err(failed)?;
                let id = newest
                    .ids
                    .first()
                    .map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone());
                cursor.0 = Some(id.clone());
                id
            }
        };
        let mut options = StreamReadOptions::default().count(READ_COUNT);
        if !wait.is_zero() {
            options = options.block(wait.as_millis().max(1) as usize);
        }
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg(&options)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(&from)
            .query_async(connection)
            .await
            .map_err(failed)?;
        let mut batches = Vec::new();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            cursor.0 = Some(entry.id.clone());
            match entry.get::<Vec<u8>>("b") {
                Some(batch) => batches.push(batch),
                None => tracing::warn!(
                    id = entry.id,
                    "ignoring a change relay entry without a batch"
                ),
            }
        }
        Ok(batches)
    }
}
