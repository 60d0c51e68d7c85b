//! Catalog lookups for the postgres-changes engine, over a small pool of ordinary
//! (non-replication) connections: a table's row level security flag and primary key, a
//! publication's tables, a table's columns, roles, and the columns a role may select.
//!
//! The same pool serves the row level security checks of [`crate::rls`].
//!
//! # The pool
//!
//! [`Catalog`] holds a fixed number of connections. A call takes a free one (trying them
//! round-robin, waiting for one only when all are busy), and gives it back when it is
//! done. A connection is given back only when it is known to be fit for the next call:
//! when the server closed it, when a call failed for anything other than an error the
//! server reported, or when the caller dropped the call's future half-way (a cancelled
//! call may have left a transaction open), it is dropped instead, and the next call on
//! that slot connects again. So a lost connection costs the call in flight an error and
//! nothing more.
//!
//! Every connection starts with the same date, time and number formats as the
//! replication connection (so the key values pgoutput sent read back as the same values)
//! and with `standard_conforming_strings` on (so a backslash in a string literal is just
//! a backslash). Settings in the URL's `options` parameter (`statement_timeout`, say) are
//! kept and applied first.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::replication::SESSION_OPTIONS;

/// The `application_name` of the pool's connections when the URL does not set one (so
/// they can be told apart in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "crier-catalog";

/// Errors of catalog lookups and row level security checks.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database URL or the pool settings cannot be used.
    #[error("invalid catalog settings: {0}")]
    Config(String),
    /// A query failed, or the connection did.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The role does not exist (or is `none`, which PostgreSQL reserves: setting the role
    /// to `none` means "back to the session user", so it is never a subscriber's role).
    #[error("role {0:?} does not exist")]
    UnknownRole(String),
    /// The table does not exist.
    #[error("table {schema:?}.{table:?} does not exist")]
    UnknownTable {
        /// Its schema.
        schema: String,
        /// Its name.
        table: String,
    },
    /// An argument cannot be used: a NUL character in a name or in the claims, claims
    /// that are not JSON, rows whose width is not the key's, an empty key.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The server answered something this code does not expect.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl CatalogError {
    /// The database refused this particular question (a role or table that does not exist,
    /// input it cannot take), as opposed to failing to answer it: asking again will not
    /// help, while a failed connection may.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            CatalogError::UnknownRole(_)
                | CatalogError::UnknownTable { .. }
                | CatalogError::InvalidInput(_)
        )
    }
}

/// What the engine needs to know about a table to authorize its changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Row level security is enabled (`pg_class.relrowsecurity`). Forced or not does not
    /// matter: the checks run as the subscriber's role, never as the table's owner.
    pub rls_enabled: bool,
    /// The primary key's columns in key order; empty when the table has none. This is
    /// the `PRIMARY KEY`, which may differ from the replica identity pgoutput flags.
    pub primary_key: Vec<PrimaryKeyColumn>,
}

/// A column of a primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrimaryKeyColumn {
    /// The column's name.
    pub name: String,
    /// The column's type as `format_type(atttypid, NULL)` writes it (`bigint`,
    /// `character varying`, `app."Mood"`): without a type modifier, so a cast to it
    /// never truncates or rounds, and schema-qualified when the type is not visible on
    /// the connection's search path. It is pasted into SQL as a cast target, so it must
    /// come from [`Catalog::table_info`], never from a client.
    pub type_name: String,
}

/// A pool of ordinary connections for catalog lookups and row level security checks.
/// Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Catalog {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("connections", &self.pool.slots.len())
            .finish()
    }
}

struct Pool {
    config: Config,
    /// `None` while the slot has no usable connection (never opened, lost, or in use:
    /// a call takes the client out and puts it back only when it is fit for reuse).
    slots: Box<[Mutex<Option<Connection>>]>,
    next: AtomicUsize,
}

/// A pooled connection and the statements prepared on it.
struct Connection {
    client: Client,
    /// By SQL text. Prepared once per connection, a statement is parsed once: a batch of
    /// row level security checks runs the same few statements for every group.
    prepared: HashMap<String, Statement>,
}

/// The most statements one connection keeps prepared; past it the cache starts over
/// (each table checked has its own, so this is only reached with that many tables).
const MAX_PREPARED: usize = 256;

/// One call's hold on a connection. Dropping it without [`Lease::finish`] drops the
/// connection, so a call cancelled half-way can never hand a connection with an open
/// transaction (or a switched role) to the next call.
pub(crate) struct Lease<'a> {
    slot: MutexGuard<'a, Option<Connection>>,
    connection: Connection,
}

impl Lease<'_> {
    /// The connection.
    pub(crate) fn client(&self) -> &Client {
        &self.connection.client
    }

    /// `sql` prepared with parameters of `types` on this connection, once: later calls
    /// get the same statement.
    pub(crate) async fn prepared(
        &mut self,
        sql: &str,
        types: &[Type],
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.connection.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.connection.client.prepare_typed(sql, types).await?;
        if self.connection.prepared.len() >= MAX_PREPARED {
            self.connection.prepared.clear();
        }
        self.connection
            .prepared
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Drops `sql`'s prepared statement: the next [`Lease::prepared`] prepares it again.
    pub(crate) fn forget(&mut self, sql: &str) {
        self.connection.prepared.remove(sql);
    }

    /// Ends the call: the connection goes back to the pool unless the result shows it is
    /// unfit (closed, or failed without a server-reported error, which leaves the
    /// protocol state unknown). A server-reported error leaves it usable: the callers end
    /// any transaction they opened before they finish.
    pub(crate) fn finish<T>(mut self, result: Result<T, CatalogError>) -> Result<T, CatalogError> {
        let unfit = self.connection.client.is_closed()
            || matches!(&result, Err(CatalogError::Postgres(err)) if err.as_db_error().is_none());
        if !unfit {
            *self.slot = Some(self.connection);
        }
        result
    }
}

impl Connection {
    fn new(client: Client) -> Self {
        Connection {
            client,
            prepared: HashMap::new(),
        }
    }
}

/// A [`Catalog`] opened on first use and kept: a database that is down when the server
/// starts only fails the calls made while it is down (the pool reconnects its
/// connections itself once it is open).
#[derive(Debug)]
pub struct LazyCatalog {
    database_url: String,
    connections: usize,
    catalog: tokio::sync::OnceCell<Catalog>,
}

impl LazyCatalog {
    /// A pool of `connections` to `database_url`, not opened yet.
    pub fn new(database_url: &str, connections: usize) -> Self {
        LazyCatalog {
            database_url: database_url.to_owned(),
            connections,
            catalog: tokio::sync::OnceCell::new(),
        }
    }

    /// The pool, opened now if it is not yet.
    pub async fn get(&self) -> Result<&Catalog, CatalogError> {
        self.catalog
            .get_or_try_init(|| Catalog::connect(&self.database_url, self.connections))
            .await
    }
}

impl Catalog {
    /// Opens a pool of `connections` connections to `database_url` (a `postgres://`
    /// URL or a key=value string). All of them are opened now, so bad settings fail here.
    pub async fn connect(database_url: &str, connections: usize) -> Result<Catalog, CatalogError> {
        if connections == 0 {
            return Err(CatalogError::Config(
                "the pool needs at least one connection".into(),
            ));
        }
        let mut config =
            Config::from_str(database_url).map_err(|err| CatalogError::Config(err.to_string()))?;
        // The URL's own options go first; ours are the ones the code depends on, so they
        // win where both set the same thing.
        let options = match config.get_options() {
            Some(own) if !own.trim().is_empty() => {
                format!("{own} {SESSION_OPTIONS} -c standard_conforming_strings=on")
            }
            _ => format!("{SESSION_OPTIONS} -c standard_conforming_strings=on"),
        };
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        let pool = Pool {
            config,
            slots: (0..connections).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        for slot in pool.slots.iter() {
            *slot.lock().await = Some(Connection::new(open(&pool.config).await?));
        }
        Ok(Catalog {
            pool: Arc::new(pool),
        })
    }

    /// The number of connections in the pool.
    pub fn connections(&self) -> usize {
        self.pool.slots.len()
    }

    /// Takes a connection: the first free one from the round-robin position, else waits
    /// for the one at that position. Opens it when the slot has none or the server closed
    /// it.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, CatalogError> {
        let slots = &self.pool.slots;
        let start = self.pool.next.fetch_add(1, Ordering::Relaxed) % slots.len();
        let free = (0..slots.len()).find_map(|k| slots[(start + k) % slots.len()].try_lock().ok());
        let mut slot = match free {
            Some(slot) => slot,
            None => slots[start].lock().await,
        };
        let connection = match slot.take() {
            Some(connection) if !connection.client.is_closed() => connection,
            _ => Connection::new(open(&self.pool.config).await?),
        };
        Ok(Lease { slot, connection })
    }

    /// Whether a snapshot taken now sees every transaction of `xids` (32-bit ids, as
    /// pgoutput's `Begin` gives them) as ended.
    ///
    /// A transaction's commit record reaches the WAL, and so logical decoding, a moment
    /// before the transaction leaves the list of running ones that snapshots are made
    /// from. In that moment a query of another session does not see its rows yet: a row
    /// level security check that looked its row up then would find nothing. So the
    /// checks of a captured transaction wait until this is true (see
    /// [`Catalog::wait_until_ended`]); once true it stays true.
    ///
    /// An id counts as ended when it precedes the snapshot's `xmax` (compared modulo
    /// 2^32, as PostgreSQL compares 32-bit ids) and is not among its running ids.
    pub async fn transactions_ended(&self, xids: &[u32]) -> Result<bool, CatalogError> {
        const SQL: &str = "
            select coalesce(pg_catalog.bool_and(
                       (m.xmax - x.xid + 4294967296) % 4294967296 between 1 and 2147483647
                       and not exists (select 1 from pg_catalog.txid_snapshot_xip(m.snap) as r(xip)
                                       where r.xip % 4294967296 = x.xid)), true)
            from (select s.snap, pg_catalog.txid_snapshot_xmax(s.snap) % 4294967296 as xmax
                  from (select pg_catalog.txid_current_snapshot() as snap) as s) as m,
                 pg_catalog.unnest($1::bigint[]) as x(xid)";
        if xids.is_empty() {
            return Ok(true);
        }
        let xids: Vec<i64> = xids.iter().map(|&xid| i64::from(xid)).collect();
        let lease = self.lease().await?;
        let result = async { Ok(lease.client().query_one(SQL, &[&xids]).await?.try_get(0)?) }.await;
        lease.finish(result)
    }

    /// Waits until [`Catalog::transactions_ended`] is true of `xids`, asking again every
    /// millisecond or so (the wait is the few microseconds between a commit's WAL record
    /// and its end, so one or two asks). Gives up after `limit`, returning false, so that
    /// an id that can never count as ended (one from before a wraparound of the 32-bit
    /// counter) cannot hold delivery up for good.
    pub async fn wait_until_ended(
        &self,
        xids: &[u32],
        limit: std::time::Duration,
    ) -> Result<bool, CatalogError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.transactions_ended(xids).await? {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Whether row level security is enabled on the table with this OID, and its
    /// `PRIMARY KEY` (from `pg_index.indisprimary`, in key order: not pgoutput's key
    /// flags, which mark the replica identity). `None` when there is no such relation.
    pub async fn table_info(&self, relation_oid: u32) -> Result<Option<TableInfo>, CatalogError> {
        // indkey is an int2vector; ordinality gives the key order. Expression columns
        // (attnum 0) cannot be in a primary key.
        const SQL: &str = "
            select c.relrowsecurity,
                   coalesce(array(
                       select a.attname::text
                       from pg_catalog.pg_index i
                       cross join lateral unnest(i.indkey) with ordinality as k(attnum, n)
                       join pg_catalog.pg_attribute a
                         on a.attrelid = i.indrelid and a.attnum = k.attnum
                       where i.indrelid = c.oid and i.indisprimary
                       order by k.n), '{}') as names,
                   coalesce(array(
                       select pg_catalog.format_type(a.atttypid, null)
                       from pg_catalog.pg_index i
                       cross join lateral unnest(i.indkey) with ordinality as k(attnum, n)
                       join pg_catalog.pg_attribute a
                         on a.attrelid = i.indrelid and a.attnum = k.attnum
                       where i.indrelid = c.oid and i.indisprimary
                       order by k.n), '{}') as types
            from pg_catalog.pg_class c
            where c.oid = $1";
        let lease = self.lease().await?;
        let result = async {
            let Some(row) = lease.client().query_opt(SQL, &[&relation_oid]).await? else {
                return Ok(None);
            };
            let names: Vec<String> = row.try_get(1)?;
            let types: Vec<String> = row.try_get(2)?;
            if names.len() != types.len() {
                return Err(CatalogError::Protocol(
                    "primary key names and types differ in number".into(),
                ));
            }
            Ok(Some(TableInfo {
                rls_enabled: row.try_get(0)?,
                primary_key: names
                    .into_iter()
                    .zip(types)
                    .map(|(name, type_name)| PrimaryKeyColumn { name, type_name })
                    .collect(),
            }))
        }
        .await;
        lease.finish(result)
    }

    /// The tables a publication publishes, as `(schema, table)` sorted; `pg_publication_tables`
    /// resolves `FOR ALL TABLES` and `FOR TABLES IN SCHEMA` publications to their tables.
    /// Empty when the publication does not exist.
    pub async fn publication_tables(
        &self,
        publication: &str,
    ) -> Result<Vec<(String, String)>, CatalogError> {
        const SQL: &str = "
            select schemaname::text, tablename::text
            from pg_catalog.pg_publication_tables
            where pubname = $1
            order by 1, 2";
        let lease = self.lease().await?;
        let result = async {
            let rows = lease.client().query(SQL, &[&publication]).await?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect()
        }
        .await;
        lease.finish(result)
    }

    /// The names of a table's columns in column order (user columns that were not
    /// dropped); `None` when there is no table, view, materialized view or foreign table
    /// of that name. The names are exact, not identifiers to fold: `"Todos"` is `Todos`.
    pub async fn table_columns(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<Vec<String>>, CatalogError> {
        const SQL: &str = "
            select array(
                       select a.attname::text
                       from pg_catalog.pg_attribute a
                       where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                       order by a.attnum)
            from pg_catalog.pg_class c
            join pg_catalog.pg_namespace n on n.oid = c.relnamespace
            where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p', 'v', 'm', 'f')";
        let lease = self.lease().await?;
        let result = async {
            let row = lease.client().query_opt(SQL, &[&schema, &table]).await?;
            row.map(|row| row.try_get(0))
                .transpose()
                .map_err(CatalogError::from)
        }
        .await;
        lease.finish(result)
    }

    /// Whether a role of exactly this name exists.
    pub async fn role_exists(&self, role: &str) -> Result<bool, CatalogError> {
        const SQL: &str = "select exists (select 1 from pg_catalog.pg_roles where rolname = $1)";
        let lease = self.lease().await?;
        let result = async { Ok(lease.client().query_one(SQL, &[&role]).await?.try_get(0)?) }.await;
        lease.finish(result)
    }

    /// The columns of `schema.table` that `role` may select: `has_column_privilege(role,
    /// table, column, 'SELECT')`, which counts table-level and column-level grants, also
    /// those the role has through membership in another role. Errors when the role or
    /// the table does not exist.
    pub async fn selectable_columns(
        &self,
        schema: &str,
        table: &str,
        role: &str,
    ) -> Result<HashSet<String>, CatalogError> {
        // One round trip answers all three questions; by role OID so that a missing role
        // is an answer, not an error.
        const SQL: &str = "
            with r as (select oid from pg_catalog.pg_roles where rolname = $3),
                 t as (select c.oid
                       from pg_catalog.pg_class c
                       join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                       where n.nspname = $1 and c.relname = $2
                         and c.relkind in ('r', 'p', 'v', 'm', 'f'))
            select exists (select 1 from r),
                   exists (select 1 from t),
                   array(select a.attname::text
                         from r, t, pg_catalog.pg_attribute a
                         where a.attrelid = t.oid and a.attnum > 0 and not a.attisdropped
                           and pg_catalog.has_column_privilege(r.oid, t.oid, a.attnum, 'SELECT'))";
        let lease = self.lease().await?;
        let result = async {
            let row = lease
                .client()
                .query_one(SQL, &[&schema, &table, &role])
                .await?;
            if !row.try_get::<_, bool>(0)? {
                return Err(CatalogError::UnknownRole(role.to_owned()));
            }
            if !row.try_get::<_, bool>(1)? {
                return Err(CatalogError::UnknownTable {
                    schema: schema.to_owned(),
                    table: table.to_owned(),
                });
            }
            Ok(row.try_get::<_, Vec<String>>(2)?.into_iter().collect())
        }
        .await;
        lease.finish(result)
    }
}

/// Opens one connection and drives it on its own task.
async fn open(config: &Config) -> Result<Client, CatalogError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        // Its end is seen by the next call (`is_closed`); this is for the logs.
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "catalog connection ended");
        }
    });
    Ok(client)
}
