//! In-memory backends for postgres changes, so delivery is tested without a database:
//! a slot that keeps every unacknowledged transaction and streams it again after a
//! reconnect (what PostgreSQL's persistent slot does), and a database whose tables,
//! privileges and row level security are plain data and closures.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use crier_postgres::catalog::{CatalogError, PrimaryKeyColumn, TableInfo};
use crier_postgres::database_broadcast::PublicationState;
use crier_postgres::replication::StreamEvent;
use crier_postgres::types::TypeCatalog;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use super::capture::CaptureError;
use super::database::{RowAuthorizer, TableCatalog};
use super::source::{ChangeSource, SlotStream};

/// A replication slot in memory: committed transactions in, acknowledgements out.
#[derive(Clone, Default)]
pub(super) struct MemorySlot {
    inner: Arc<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// Every transaction not acknowledged yet, as (end LSN, its events).
    log: Mutex<Vec<(u64, Vec<StreamEvent>)>>,
    committed: Notify,
    acked: watch::Sender<u64>,
    opened: AtomicUsize,
}

impl fmt::Debug for MemorySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySlot").finish_non_exhaustive()
    }
}

impl MemorySlot {
    /// Commits a transaction of `events` (without its `Begin` and `Commit`, which this
    /// adds) ending at `end_lsn`.
    pub(super) fn commit(&self, xid: u32, end_lsn: u64, events: Vec<StreamEvent>) {
        let mut all = vec![StreamEvent::Begin {
            final_lsn: end_lsn - 1,
            commit_time_micros: 0,
            xid,
        }];
        all.extend(events);
        all.push(StreamEvent::Commit { end_lsn });
        self.inner.log.lock().push((end_lsn, all));
        self.inner.committed.notify_waiters();
    }

    /// The last acknowledged LSN.
    pub(super) fn acked(&self) -> u64 {
        *self.inner.acked.borrow()
    }

    /// Waits until everything up to `lsn` is acknowledged.
    pub(super) async fn wait_acked(&self, lsn: u64) {
        let mut acked = self.inner.acked.subscribe();
        acked
            .wait_for(|acked| *acked >= lsn)
            .await
            .expect("the slot lives");
    }

    /// How many times capture has opened the slot.
    pub(super) fn opened(&self) -> usize {
        self.inner.opened.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl ChangeSource for MemorySlot {
    async fn open(&self) -> Result<Box<dyn SlotStream>, CaptureError> {
        self.inner.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(MemoryStream {
            slot: Arc::clone(&self.inner),
            position: 0,
            pending: Vec::new().into_iter(),
            types: TypeCatalog::builtin(),
        }))
    }
}

struct MemoryStream {
    slot: Arc<SlotState>,
    /// The end LSN of the last transaction streamed.
    position: u64,
    /// The rest of the transaction being streamed.
    pending: std::vec::IntoIter<StreamEvent>,
    types: TypeCatalog,
}

#[async_trait]
impl SlotStream for MemoryStream {
    fn slot_created(&self) -> bool {
        false
    }

    async fn start(&mut self) -> Result<(), CaptureError> {
        // A new stream starts after what was acknowledged, like a real slot.
        self.position = *self.slot.acked.borrow();
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<StreamEvent>, CaptureError> {
        loop {
            if let Some(event) = self.pending.next() {
                return Ok(Some(event));
            }
            let committed = self.slot.committed.notified();
            let next = {
                let log = self.slot.log.lock();
                log.iter()
                    .find(|(end, _)| *end > self.position)
                    .map(|(end, events)| (*end, events.clone()))
            };
            match next {
                Some((end, events)) => {
                    self.position = end;
                    self.pending = events.into_iter();
                }
                None => committed.await,
            }
        }
    }

    async fn ack(&mut self, lsn: u64) {
        self.slot.log.lock().retain(|(end, _)| *end > lsn);
        self.slot
            .acked
            .send_modify(|acked| *acked = (*acked).max(lsn));
    }

    async fn learn_type(&mut self, _oid: u32) -> Result<(), CaptureError> {
        Ok(())
    }

    fn types(&self) -> &TypeCatalog {
        &self.types
    }

    fn broadcasts(&self) -> Option<&PublicationState> {
        // Whatever is committed to a memory slot streams.
        Some(&PublicationState::Ready)
    }
}

/// Who may see a row: `(role, claims, primary key values)`.
type Policy = dyn Fn(&str, &str, &[Option<String>]) -> bool + Send + Sync;

/// A database as data: published tables by OID, roles, and one row level security
/// policy for every table that has it on.
pub(super) struct MemoryDatabase {
    /// (OID, schema, table, columns, facts).
    tables: Vec<(u32, String, String, Vec<String>, TableInfo)>,
    roles: HashSet<String>,
    policy: Box<Policy>,
    /// Set: the next `visible_rows` call fails once, as a lost connection would.
    fail_visibility_once: Mutex<bool>,
    /// Calls of `visible_rows`, and the rows they asked about.
    pub(super) visibility_calls: Mutex<Vec<(String, usize)>>,
}

impl fmt::Debug for MemoryDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDatabase")
            .field("tables", &self.tables.len())
            .finish_non_exhaustive()
    }
}

impl MemoryDatabase {
    /// A database with the roles `anon` and `authenticated` whose policy lets a role see
    /// a row when `policy` says so.
    pub(super) fn new(
        policy: impl Fn(&str, &str, &[Option<String>]) -> bool + Send + Sync + 'static,
    ) -> Self {
        MemoryDatabase {
            tables: Vec::new(),
            roles: HashSet::from(["anon".to_owned(), "authenticated".to_owned()]),
            policy: Box::new(policy),
            fail_visibility_once: Mutex::new(false),
            visibility_calls: Mutex::new(Vec::new()),
        }
    }

    /// Publishes `public.<name>` with a bigint primary key `id` and `columns`.
    pub(super) fn table(mut self, oid: u32, name: &str, columns: &[&str], rls: bool) -> Self {
        let mut all = vec!["id".to_owned()];
        all.extend(columns.iter().map(|c| (*c).to_owned()));
        let info = TableInfo {
            rls_enabled: rls,
            primary_key: vec![PrimaryKeyColumn {
                name: "id".into(),
                type_name: "bigint".into(),
            }],
        };
        self.tables
            .push((oid, "public".into(), name.into(), all, info));
        self
    }

    /// The next `visible_rows` call fails as a lost connection would.
    pub(super) fn fail_next_visibility_check(&self) {
        *self.fail_visibility_once.lock() = true;
    }

    fn named(
        &self,
        schema: &str,
        table: &str,
    ) -> Option<&(u32, String, String, Vec<String>, TableInfo)> {
        self.tables
            .iter()
            .find(|(_, s, t, _, _)| s == schema && t == table)
    }
}

#[async_trait]
impl TableCatalog for MemoryDatabase {
    async fn publication_tables(
        &self,
        _publication: &str,
    ) -> Result<Vec<(String, String)>, CatalogError> {
        Ok(self
            .tables
            .iter()
            .map(|(_, schema, table, _, _)| (schema.clone(), table.clone()))
            .collect())
    }

    async fn table_columns(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<Vec<String>>, CatalogError> {
        Ok(self
            .named(schema, table)
            .map(|(_, _, _, columns, _)| columns.clone()))
    }

    async fn table_info(&self, relation: u32) -> Result<Option<TableInfo>, CatalogError> {
        Ok(self
            .tables
            .iter()
            .find(|(oid, ..)| *oid == relation)
            .map(|(.., info)| info.clone()))
    }

    async fn wait_until_ended(
        &self,
        _xids: &[u32],
        _limit: Duration,
    ) -> Result<bool, CatalogError> {
        Ok(true)
    }
}

#[async_trait]
impl RowAuthorizer for MemoryDatabase {
    async fn role_exists(&self, role: &str) -> Result<bool, CatalogError> {
        Ok(self.roles.contains(role))
    }

    async fn selectable_columns(
        &self,
        schema: &str,
        table: &str,
        _role: &str,
    ) -> Result<HashSet<String>, CatalogError> {
        let (_, _, _, columns, _) =
            self.named(schema, table)
                .ok_or_else(|| CatalogError::UnknownTable {
                    schema: schema.into(),
                    table: table.into(),
                })?;
        Ok(columns.iter().cloned().collect())
    }

    async fn visible_rows(
        &self,
        _schema: &str,
        table: &str,
        _key: &[PrimaryKeyColumn],
        role: &str,
        claims: &str,
        keys: &[Vec<Option<String>>],
    ) -> Result<Vec<bool>, CatalogError> {
        if std::mem::take(&mut *self.fail_visibility_once.lock()) {
            return Err(CatalogError::Protocol("the connection was lost".into()));
        }
        self.visibility_calls
            .lock()
            .push((format!("{table} as {role} {claims}"), keys.len()));
        Ok(keys
            .iter()
            .map(|key| (self.policy)(role, claims, key))
            .collect())
    }
}
