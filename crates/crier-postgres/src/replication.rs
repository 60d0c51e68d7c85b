//! Change capture: the publication and persistent slot, and the stream of committed
//! row changes from PostgreSQL's streaming replication protocol.
//!
//! The slot is *persistent*: the server keeps WAL from the slot's confirmed position on,
//! so changes committed while Crier is down are still there when it comes back, and its
//! position only moves when Crier acknowledges ([`ChangeStream::ack`]) a transaction
//! whose changes it has handed to fan-out. That is the whole at-least-once guarantee:
//! anything not acknowledged is sent again after a reconnect.
//!
//! pgoutput (protocol 1) sends a transaction only once it has committed, change by change
//! between `Begin` and `Commit`, so changes are handed on as they arrive: nothing is
//! buffered per transaction, however large it is.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use tokio_postgres::config::Host;

use crate::database_broadcast::{self, PublicationState};
use crate::pgoutput::{self, Message, OldTuple, Relation, Tuple};

/// Session settings pinned on the replication connection, so the text values pgoutput
/// sends are in the formats the renderer expects, whatever the server's defaults. The
/// catalog's connections use them too, so key values read back as the same values.
pub(crate) const SESSION_OPTIONS: &str =
    "-c datestyle=ISO,MDY -c timezone=UTC -c intervalstyle=postgres -c extra_float_digits=1";

/// Errors of change capture.
#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    /// The database URL cannot be used.
    #[error("invalid database URL: {0}")]
    Config(String),
    /// A regular query failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The replication connection failed or closed.
    #[error("replication: {0}")]
    Replication(String),
    /// A pgoutput message did not decode.
    #[error("{0}")]
    Decode(#[from] pgoutput::DecodeError),
    /// A change referred to a table the stream never described.
    #[error("change for unknown relation {0}")]
    UnknownRelation(u32),
}

/// Where to capture from.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    /// The database URL (`postgres://user:pass@host:port/db`).
    pub database_url: String,
    /// The publication whose tables are captured (`supabase_realtime`).
    pub publication: String,
    /// The logical replication slot (`crier_realtime`).
    pub slot: String,
    /// Also capture broadcasts from the database (`realtime.messages`, through
    /// [`crate::database_broadcast::PUBLICATION`]).
    pub database_broadcasts: bool,
}

/// What [`prepare`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// The slot was created now (so there is no backlog from before).
    pub created: bool,
    /// Whether broadcasts from the database are captured; `None` when not asked for.
    pub broadcasts: Option<PublicationState>,
}

/// Creates the publication (empty: users add tables with `ALTER PUBLICATION ... ADD
/// TABLE`, as on Supabase) and the persistent `pgoutput` slot, when they are missing.
pub async fn prepare(
    client: &tokio_postgres::Client,
    settings: &CaptureSettings,
) -> Result<SlotState, CdcError> {
    let publication_exists = client
        .query_opt(
            "select 1 from pg_publication where pubname = $1",
            &[&settings.publication],
        )
        .await?
        .is_some();
    if !publication_exists {
        client
            .batch_execute(&format!(
                "create publication {}",
                quote_ident(&settings.publication)
            ))
            .await?;
    }
    let slot_exists = client
        .query_opt(
            "select 1 from pg_replication_slots where slot_name = $1",
            &[&settings.slot],
        )
        .await?
        .is_some();
    if !slot_exists {
        client
            .query_one(
                "select pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&settings.slot],
            )
            .await?;
    }
    let broadcasts = if settings.database_broadcasts {
        Some(database_broadcast::ensure_publication(client).await?)
    } else {
        None
    };
    Ok(SlotState {
        created: !slot_exists,
        broadcasts,
    })
}

/// A SQL identifier, quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What the stream yields.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// A committed transaction starts; its changes follow.
    Begin {
        /// The LSN of the transaction's commit record: transactions stream in its order.
        final_lsn: u64,
        /// Commit time, microseconds since the Unix epoch.
        commit_time_micros: i64,
        /// The transaction's id (32 bits, without the epoch).
        xid: u32,
    },
    /// One row change of the current transaction.
    Change(RowChange),
    /// The transaction's changes are all out; acknowledge `end_lsn` once they are handled.
    Commit {
        /// Where the slot may move to.
        end_lsn: u64,
    },
    /// A table was (re)described: its shape may have changed.
    Relation(Arc<Relation>),
    /// A non-builtin type was named.
    Type {
        /// Type OID.
        oid: u32,
        /// Type name.
        name: String,
    },
}

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChangeKind {
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl ChangeKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
        }
    }
}

/// One row change, with its table's description.
#[derive(Debug, Clone)]
pub struct RowChange {
    /// The table.
    pub relation: Arc<Relation>,
    /// What happened.
    pub kind: ChangeKind,
    /// The new row (insert, update).
    pub new: Option<Tuple>,
    /// The old row or its key (update, delete).
    pub old: Option<OldTuple>,
}

/// The stream of committed changes of one slot.
pub struct ChangeStream {
    client: ReplicationClient,
    relations: HashMap<u32, Arc<Relation>>,
    /// The server's end of WAL as its last message said (0 before the first).
    server_wal_end: Arc<AtomicU64>,
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("relations", &self.relations.len())
            .finish()
    }
}

impl ChangeStream {
    /// Connects and starts streaming from the slot's confirmed position: the changes of
    /// the settings' publication, and with `broadcasts` those of
    /// [`database_broadcast::PUBLICATION`] too (which must exist, see [`prepare`]).
    pub async fn connect(
        settings: &CaptureSettings,
        broadcasts: bool,
    ) -> Result<ChangeStream, CdcError> {
        let config = tokio_postgres::Config::from_str(&settings.database_url)
            .map_err(|err| CdcError::Config(err.to_string()))?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres").to_owned();
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let database = config.get_dbname().unwrap_or(&user).to_owned();
        let mut publications = vec![settings.publication.clone()];
        if broadcasts {
            publications.push(database_broadcast::PUBLICATION.to_owned());
        }
        let mut replication = ReplicationConfig::new(
            host,
            user,
            password,
            database,
            settings.slot.clone(),
            publications,
        );
        replication.port = port;
        replication.start_lsn = Lsn(0);
        replication.options = Some(SESSION_OPTIONS.to_owned());
        // Report progress promptly: the slot may move as soon as fan-out is done.
        replication.status_interval = Duration::from_secs(1);
        replication.idle_wakeup_interval = Duration::from_secs(5);
        let client = ReplicationClient::connect(replication)
            .await
            .map_err(|err| CdcError::Replication(err.to_string()))?;
        Ok(ChangeStream {
            client,
            relations: HashMap::new(),
            server_wal_end: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, CdcError> {
        loop {
            let event = self
                .client
                .recv()
                .await
                .map_err(|err| CdcError::Replication(err.to_string()))?;
            let Some(event) = event else {
                return Ok(None);
            };
            match event {
                ReplicationEvent::Begin {
                    final_lsn,
                    commit_time_micros,
                    xid,
                } => {
                    return Ok(Some(StreamEvent::Begin {
                        final_lsn: final_lsn.0,
                        commit_time_micros: commit_time_micros
                            + pgoutput::POSTGRES_EPOCH_OFFSET_MICROS,
                        xid,
                    }));
                }
                ReplicationEvent::Commit { end_lsn, .. } => {
                    return Ok(Some(StreamEvent::Commit { end_lsn: end_lsn.0 }));
                }
                ReplicationEvent::XLogData { data, wal_end, .. } => {
                    self.server_wal_end.fetch_max(wal_end.0, Ordering::Relaxed);
                    if let Some(event) = self.on_data(&data)? {
                        return Ok(Some(event));
                    }
                }
                ReplicationEvent::StoppedAt { .. } => return Ok(None),
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    self.server_wal_end.fetch_max(wal_end.0, Ordering::Relaxed);
                }
                ReplicationEvent::Message { .. } => {}
            }
        }
    }

    fn on_data(&mut self, data: &bytes::Bytes) -> Result<Option<StreamEvent>, CdcError> {
        let relation = |relations: &HashMap<u32, Arc<Relation>>, id| {
            relations
                .get(&id)
                .cloned()
                .ok_or(CdcError::UnknownRelation(id))
        };
        Ok(match pgoutput::decode(data)? {
            Message::Relation(described) => {
                let described = Arc::new(described);
                self.relations.insert(described.id, Arc::clone(&described));
                Some(StreamEvent::Relation(described))
            }
            Message::Type { oid, name, .. } => Some(StreamEvent::Type { oid, name }),
            Message::Insert { relation: id, new } => Some(StreamEvent::Change(RowChange {
                relation: relation(&self.relations, id)?,
                kind: ChangeKind::Insert,
                new: Some(new),
                old: None,
            })),
            Message::Update {
                relation: id,
                old,
                new,
            } => Some(StreamEvent::Change(RowChange {
                relation: relation(&self.relations, id)?,
                kind: ChangeKind::Update,
                new: Some(new),
                old,
            })),
            Message::Delete { relation: id, old } => Some(StreamEvent::Change(RowChange {
                relation: relation(&self.relations, id)?,
                kind: ChangeKind::Delete,
                new: None,
                old: Some(old),
            })),
            // Begin and Commit come as their own events; truncates are not row changes.
            Message::Begin { .. }
            | Message::Commit { .. }
            | Message::Truncate { .. }
            | Message::Other(_) => None,
        })
    }

    /// Makes the stream keep `gauge` at the server's end of WAL as its messages say
    /// (keepalives and data both carry it): how far the slot is behind is that less its
    /// acknowledged position.
    pub fn report_wal_end_to(&mut self, gauge: Arc<AtomicU64>) {
        self.server_wal_end = gauge;
    }

    /// Lets the slot move past `lsn`: every change before it has been handed to fan-out.
    pub fn ack(&self, lsn: u64) {
        self.client.update_applied_lsn(Lsn(lsn));
    }
}
