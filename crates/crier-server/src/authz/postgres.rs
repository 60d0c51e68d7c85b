//! [`PgAuthorizer`]: private channels authorized by the policies on `realtime.messages`,
//! and the schema they need ([`prepare_database`]).

use std::time::Duration;

use async_trait::async_trait;
use crier_postgres::catalog::{Catalog, CatalogError, LazyCatalog};
use crier_postgres::channel_access::{self, AccessError};
use crier_postgres::realtime_schema::{self, SchemaError};
use tokio_util::sync::CancellationToken;

use super::{
    AuthorizationError, ChannelAuthorizer, ChannelCheck, Extension, ReadAccess, StoredMessage,
};

/// Asks PostgreSQL, over a pool of `pool_size` connections opened on first use (a
/// database that is down at start only fails the checks made while it is down).
#[derive(Debug)]
pub struct PgAuthorizer {
    catalog: LazyCatalog,
}

impl PgAuthorizer {
    /// An authorizer for the database at `database_url`.
    pub fn new(database_url: &str, pool_size: usize) -> Self {
        PgAuthorizer {
            catalog: LazyCatalog::new(database_url, pool_size),
        }
    }

    async fn catalog(&self) -> Result<&Catalog, AuthorizationError> {
        self.catalog
            .get()
            .await
            .map_err(|err| AuthorizationError::Unavailable(err.to_string()))
    }

    /// Keeps the `realtime` schema and the daily partitions of `realtime.messages`
    /// (created ahead, dropped after 72 hours) until `shutdown`: now, then every hour;
    /// after a failure (logged), again in ten seconds.
    pub(crate) async fn maintain(&self, shutdown: CancellationToken) {
        const EVERY: Duration = Duration::from_secs(3600);
        const RETRY: Duration = Duration::from_secs(10);
        loop {
            let next = match self.maintain_once().await {
                Ok(created) => {
                    if !created.is_empty() {
                        tracing::info!(?created, "realtime schema maintained");
                    }
                    EVERY
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not maintain the realtime schema");
                    RETRY
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(next) => {}
            }
        }
    }

    async fn maintain_once(&self) -> Result<Vec<String>, PrepareError> {
        let catalog = self
            .catalog()
            .await
            .map_err(|err| PrepareError::Unavailable(err.to_string()))?;
        prepare_on(catalog).await
    }
}

fn to_authorization_error(err: AccessError) -> AuthorizationError {
    match err {
        AccessError::Policy(message) => AuthorizationError::Refused(message),
        AccessError::Role { role, message } => {
            AuthorizationError::Refused(format!("role {role:?}: {message}"))
        }
        AccessError::Database(err) if err.is_refusal() => {
            AuthorizationError::Refused(err.to_string())
        }
        AccessError::Database(err) => AuthorizationError::Unavailable(err.to_string()),
    }
}

#[async_trait]
impl ChannelAuthorizer for PgAuthorizer {
    async fn read(&self, check: &ChannelCheck) -> Result<ReadAccess, AuthorizationError> {
        let catalog = self.catalog().await?;
        channel_access::read_access(catalog, check)
            .await
            .map_err(to_authorization_error)
    }

    async fn write(
        &self,
        check: &ChannelCheck,
        extension: Extension,
    ) -> Result<bool, AuthorizationError> {
        let catalog = self.catalog().await?;
        channel_access::write_access(catalog, check, extension)
            .await
            .map_err(to_authorization_error)
    }

    async fn replay(
        &self,
        topic: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, AuthorizationError> {
        let catalog = self.catalog().await?;
        channel_access::replay(catalog, topic, since_ms, limit)
            .await
            .map_err(|err| AuthorizationError::Unavailable(err.to_string()))
    }
}

/// Makes the database at `database_url` ready for private channels: creates what is
/// missing of the `realtime` schema (nothing, on a Supabase database) and today's
/// partitions. Returns the objects created. `crier serve` runs it before it listens,
/// so a role without the privileges it needs is a startup error naming the grant;
/// embedders should do the same before serving.
pub async fn prepare_database(database_url: &str) -> Result<Vec<String>, PrepareError> {
    let catalog = Catalog::connect(database_url, 1).await?;
    prepare_on(&catalog).await
}

async fn prepare_on(catalog: &Catalog) -> Result<Vec<String>, PrepareError> {
    let status = realtime_schema::ensure_schema(catalog).await?;
    let partitions = realtime_schema::maintain_partitions(catalog).await?;
    let mut created = status.created;
    created.extend(
        partitions
            .created
            .into_iter()
            .map(|p| format!("partition realtime.{p}")),
    );
    Ok(created)
}

/// Why [`prepare_database`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Something is missing and may not be created; the message names the grant.
    #[error("{0}")]
    MissingPrivilege(String),
    /// The database could not be reached or failed.
    #[error("cannot prepare the realtime schema: {0}")]
    Database(#[from] CatalogError),
    /// The database could not be reached.
    #[error("cannot prepare the realtime schema: {0}")]
    Unavailable(String),
}

impl From<SchemaError> for PrepareError {
    fn from(err: SchemaError) -> Self {
        match err {
            SchemaError::MissingPrivilege(message) => PrepareError::MissingPrivilege(message),
            SchemaError::Database(err) => PrepareError::Database(err),
        }
    }
}
