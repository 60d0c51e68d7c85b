//! Where captured changes come from, behind a seam: [`PgSource`] streams them from
//! PostgreSQL's persistent replication slot; the tests use an in-memory slot (`memory`)
//! that keeps what is not acknowledged and streams it again after a reconnect, as the
//! real slot does.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use async_trait::async_trait;
use crier_postgres::database_broadcast::PublicationState;
use crier_postgres::replication::{self, CaptureSettings, ChangeStream, StreamEvent};
use crier_postgres::types::TypeCatalog;
use tokio_util::task::AbortOnDropHandle;

use super::capture::CaptureError;

/// Opens the stream of committed changes, once per capture attempt.
#[async_trait]
pub(crate) trait ChangeSource: Send + Sync + fmt::Debug {
    /// Connects and makes sure the slot exists. Nothing streams until
    /// [`SlotStream::start`], so the capture loop can first say the slot is ready and
    /// wait out the resume grace period.
    async fn open(&self) -> Result<Box<dyn SlotStream>, CaptureError>;
}

/// One capture attempt's stream of committed changes.
#[async_trait]
pub(crate) trait SlotStream: Send {
    /// Whether [`ChangeSource::open`] created the slot, rather than finding it with what
    /// was committed while nobody streamed from it.
    fn slot_created(&self) -> bool;

    /// Starts streaming from the slot's acknowledged position.
    async fn start(&mut self) -> Result<(), CaptureError>;

    /// The next event; `None` when the stream has ended. Cancel-safe: a call dropped
    /// before it completes loses nothing.
    async fn next(&mut self) -> Result<Option<StreamEvent>, CaptureError>;

    /// Everything up to `lsn` is handled: the slot may let it go.
    async fn ack(&mut self, lsn: u64);

    /// Learns a type the catalog does not know yet (one created after capture started).
    async fn learn_type(&mut self, oid: u32) -> Result<(), CaptureError>;

    /// The types known so far, to render values with.
    fn types(&self) -> &TypeCatalog;

    /// Whether the stream carries broadcasts from the database; `None` when they were
    /// not asked for.
    fn broadcasts(&self) -> Option<&PublicationState>;
}

/// What the streams say of themselves as they go, read live by the capture status.
#[derive(Debug, Default)]
pub(crate) struct StreamGauges {
    /// The database's end of WAL as the replication stream last said (0 before it has).
    pub(crate) server_wal_end: Arc<AtomicU64>,
    /// Another node of the cluster streams the slot, and this one follows it.
    pub(crate) following: AtomicBool,
}

/// PostgreSQL's persistent slot over the streaming replication protocol.
#[derive(Debug)]
pub(crate) struct PgSource {
    settings: CaptureSettings,
    gauges: Arc<StreamGauges>,
}

impl PgSource {
    pub(crate) fn new(settings: CaptureSettings, gauges: Arc<StreamGauges>) -> Self {
        PgSource { settings, gauges }
    }
}

#[async_trait]
impl ChangeSource for PgSource {
    async fn open(&self) -> Result<Box<dyn SlotStream>, CaptureError> {
        if self.settings.database_broadcasts {
            // Database broadcasts need realtime.messages and today's partition, also on a
            // node without private channels; creating them is idempotent.
            if let Err(err) = crate::authz::prepare_database(&self.settings.database_url).await {
                tracing::warn!(error = %err, "the realtime schema is not ready for database broadcasts");
            }
        }
        let (client, connection) =
            tokio_postgres::connect(&self.settings.database_url, tokio_postgres::NoTls).await?;
        // Stops the catalog connection's task with the capture attempt that made it.
        let connection = AbortOnDropHandle::new(tokio::spawn(connection));
        let state = replication::prepare(&client, &self.settings).await?;
        let types = TypeCatalog::load(&client).await?;
        Ok(Box::new(PgSlotStream {
            settings: self.settings.clone(),
            client,
            _connection: connection,
            created: state.created,
            broadcasts: state.broadcasts,
            types,
            stream: None,
            gauges: Arc::clone(&self.gauges),
        }))
    }
}

struct PgSlotStream {
    settings: CaptureSettings,
    /// An ordinary connection, for type lookups.
    client: tokio_postgres::Client,
    _connection: AbortOnDropHandle<Result<(), tokio_postgres::Error>>,
    created: bool,
    broadcasts: Option<PublicationState>,
    types: TypeCatalog,
    stream: Option<ChangeStream>,
    gauges: Arc<StreamGauges>,
}

#[async_trait]
impl SlotStream for PgSlotStream {
    fn slot_created(&self) -> bool {
        self.created
    }

    async fn start(&mut self) -> Result<(), CaptureError> {
        let broadcasts = self.broadcasts == Some(PublicationState::Ready);
        let mut stream = ChangeStream::connect(&self.settings, broadcasts).await?;
        stream.report_wal_end_to(Arc::clone(&self.gauges.server_wal_end));
        self.stream = Some(stream);
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<StreamEvent>, CaptureError> {
        let stream = self.stream.as_mut().ok_or(CaptureError::NotStarted)?;
        Ok(stream.next().await?)
    }

    async fn ack(&mut self, lsn: u64) {
        if let Some(stream) = &self.stream {
            stream.ack(lsn);
        }
    }

    async fn learn_type(&mut self, oid: u32) -> Result<(), CaptureError> {
        if self.types.get(oid).is_none() {
            self.types.load_type(&self.client, oid).await?;
        }
        Ok(())
    }

    fn types(&self) -> &TypeCatalog {
        &self.types
    }

    fn broadcasts(&self) -> Option<&PublicationState> {
        self.broadcasts.as_ref()
    }
}
