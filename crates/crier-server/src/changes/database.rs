//! What postgres changes ask the database, behind two seams: the [`TableCatalog`] (which
//! tables are published, their columns, keys and row level security, whether a
//! transaction has ended) and the [`RowAuthorizer`] (what a role with its claims may
//! see). [`PgDatabase`] asks PostgreSQL through `crier-postgres`; the tests use an
//! in-memory database (`memory`), so delivery is tested without a server.
//!
//! The traits are `async_trait`s because the node holds them as trait objects, which
//! native `async fn` in traits cannot be yet.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use crier_postgres::catalog::{Catalog, CatalogError, LazyCatalog, PrimaryKeyColumn, TableInfo};
use crier_postgres::rls::{self, GroupQuestion};

/// Facts about tables, and the moment a transaction counts as ended.
#[async_trait]
pub(crate) trait TableCatalog: Send + Sync + fmt::Debug {
    /// The `(schema, table)` pairs of the publication.
    async fn publication_tables(
        &self,
        publication: &str,
    ) -> Result<Vec<(String, String)>, CatalogError>;

    /// The table's column names; `None` when there is no such table.
    async fn table_columns(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<Vec<String>>, CatalogError>;

    /// Row level security and primary key of the table with this OID; `None` when it
    /// no longer exists.
    async fn table_info(&self, relation: u32) -> Result<Option<TableInfo>, CatalogError>;

    /// Waits until other sessions see every transaction of `xids` as ended, up to
    /// `limit`; false when they still do not.
    async fn wait_until_ended(&self, xids: &[u32], limit: Duration) -> Result<bool, CatalogError>;
}

/// Who may see what, answered as the subscriber's role with its claims.
#[async_trait]
pub(crate) trait RowAuthorizer: Send + Sync + fmt::Debug {
    /// Whether the role exists.
    async fn role_exists(&self, role: &str) -> Result<bool, CatalogError>;

    /// The columns of the table `role` may select.
    async fn selectable_columns(
        &self,
        schema: &str,
        table: &str,
        role: &str,
    ) -> Result<HashSet<String>, CatalogError>;

    /// For each primary key in `keys` (text values, in `key` column order), whether the
    /// row it names is visible to `role` with `claims` under row level security. One
    /// call answers a whole group of rows.
    #[allow(clippy::too_many_arguments)]
    async fn visible_rows(
        &self,
        schema: &str,
        table: &str,
        key: &[PrimaryKeyColumn],
        role: &str,
        claims: &str,
        keys: &[Vec<Option<String>>],
    ) -> Result<Vec<bool>, CatalogError>;

    /// [`RowAuthorizer::visible_rows`] for many groups, each answer as that gives it; the
    /// call fails as a whole only when the database cannot be asked. By default one group
    /// after the other; PostgreSQL asks them together (`rls::visible_rows_by_group`).
    async fn visible_rows_by_group(
        &self,
        questions: &[GroupQuestion<'_>],
    ) -> Result<Vec<Result<Vec<bool>, CatalogError>>, CatalogError> {
        let mut answers = Vec::with_capacity(questions.len());
        for question in questions {
            answers.push(
                self.visible_rows(
                    question.schema,
                    question.table,
                    question.key,
                    question.role,
                    question.claims,
                    question.rows,
                )
                .await,
            );
        }
        Ok(answers)
    }
}

/// Both seams: what the capture loop and the subscription checks are given.
pub(crate) trait ChangeDatabase: TableCatalog + RowAuthorizer {}

impl<T: TableCatalog + RowAuthorizer> ChangeDatabase for T {}

/// PostgreSQL, through a pool connected on first use and kept.
#[derive(Debug)]
pub(crate) struct PgDatabase {
    catalog: LazyCatalog,
}

impl PgDatabase {
    pub(crate) fn new(database_url: &str, pool_size: usize) -> Self {
        PgDatabase {
            catalog: LazyCatalog::new(database_url, pool_size),
        }
    }

    async fn catalog(&self) -> Result<&Catalog, CatalogError> {
        self.catalog.get().await
    }
}

#[async_trait]
impl TableCatalog for PgDatabase {
    async fn publication_tables(
        &self,
        publication: &str,
    ) -> Result<Vec<(String, String)>, CatalogError> {
        self.catalog().await?.publication_tables(publication).await
    }

    async fn table_columns(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<Vec<String>>, CatalogError> {
        self.catalog().await?.table_columns(schema, table).await
    }

    async fn table_info(&self, relation: u32) -> Result<Option<TableInfo>, CatalogError> {
        self.catalog().await?.table_info(relation).await
    }

    async fn wait_until_ended(&self, xids: &[u32], limit: Duration) -> Result<bool, CatalogError> {
        self.catalog().await?.wait_until_ended(xids, limit).await
    }
}

#[async_trait]
impl RowAuthorizer for PgDatabase {
    async fn role_exists(&self, role: &str) -> Result<bool, CatalogError> {
        self.catalog().await?.role_exists(role).await
    }

    async fn selectable_columns(
        &self,
        schema: &str,
        table: &str,
        role: &str,
    ) -> Result<HashSet<String>, CatalogError> {
        self.catalog()
            .await?
            .selectable_columns(schema, table, role)
            .await
    }

    async fn visible_rows(
        &self,
        schema: &str,
        table: &str,
        key: &[PrimaryKeyColumn],
        role: &str,
        claims: &str,
        keys: &[Vec<Option<String>>],
    ) -> Result<Vec<bool>, CatalogError> {
        let catalog = self.catalog().await?;
        rls::visible_rows(catalog, schema, table, key, role, claims, keys).await
    }

    async fn visible_rows_by_group(
        &self,
        questions: &[GroupQuestion<'_>],
    ) -> Result<Vec<Result<Vec<bool>, CatalogError>>, CatalogError> {
        let catalog = self.catalog().await?;
        rls::visible_rows_by_group(catalog, questions).await
    }
}
