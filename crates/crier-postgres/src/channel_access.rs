//! Who may read and write a private channel, asked of the database's row level security
//! policies on `realtime.messages`, the way Supabase Realtime asks.
//!
//! Every check runs in one transaction that ends in `rollback`, on one round trip
//! (the statements are pipelined, as in [`crate::rls`]): the transaction-local settings
//! policies read are set first (`realtime.topic`, `request.jwt.claims`,
//! `request.jwt.claim.sub`, `request.jwt.claim.role`, `request.headers`), then:
//!
//! - **read** ([`read_access`]): as the connection's own role, insert one probe row per
//!   extension (`broadcast`, `presence`) with the channel's topic; switch to the caller's
//!   role; select the probe rows. The extensions whose row is visible may be read.
//! - **write** ([`write_access`]): switch to the caller's role and insert a probe row for
//!   the extension. Refused with `insufficient_privilege` (a `WITH CHECK` that fails, or
//!   no `INSERT` grant) means no write.
//!
//! Nothing is left behind: the rollback removes the probes and undoes anything a policy
//! function did. A policy that raises is [`AccessError::Policy`]; a role the connection
//! may not switch to, or that does not exist, is [`AccessError::Role`]. The probe rows'
//! ids are made here, so the select finds exactly them and no message a real sender
//! stored with the same topic.

use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::catalog::{Catalog, CatalogError};

/// Who asks about which channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelCheck {
    /// The channel name (the topic without `realtime:`), what `realtime.topic()` returns.
    pub topic: String,
    /// The PostgreSQL role to check as (the token's `role`).
    pub role: String,
    /// The token's claims, as JSON.
    pub claims: String,
    /// The token's `sub`, or empty.
    pub sub: String,
    /// The connection's `x-*` headers as a JSON object.
    pub headers: String,
}

/// Which parts of a channel a role may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadAccess {
    /// Broadcasts.
    pub broadcast: bool,
    /// Presence state and diffs.
    pub presence: bool,
}

/// The two kinds of message a channel carries, as `realtime.messages.extension` names
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extension {
    /// `broadcast`.
    Broadcast,
    /// `presence`.
    Presence,
}

impl Extension {
    /// The `extension` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Extension::Broadcast => "broadcast",
            Extension::Presence => "presence",
        }
    }
}

/// Why a check has no answer.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A policy raised an error (its message).
    #[error("a row level security policy on realtime.messages failed: {0}")]
    Policy(String),
    /// The role does not exist, or the connection's role may not switch to it.
    #[error("cannot check as role {role:?}: {message}")]
    Role {
        /// The role.
        role: String,
        /// The database's words.
        message: String,
    },
    /// The database could not be asked, or failed outside the policies (a missing
    /// partition, a missing privilege of the connection's own role).
    #[error(transparent)]
    Database(#[from] CatalogError),
}

const SET_CONTEXT: &str = "select \
    pg_catalog.set_config('realtime.topic', $1, true), \
    pg_catalog.set_config('request.jwt.claims', $2, true), \
    pg_catalog.set_config('request.jwt.claim.sub', $3, true), \
    pg_catalog.set_config('request.jwt.claim.role', $4, true), \
    pg_catalog.set_config('request.headers', $5, true)";

const SET_ROLE: &str = "select pg_catalog.set_config('role', $1, true)";

const INSERT_PROBES: &str = "insert into realtime.messages (id, topic, extension, private) \
    select p.id::uuid, $1, p.extension, true \
    from rows from (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) as p(id, extension)";

const SELECT_PROBES: &str =
    "select m.extension from realtime.messages as m where m.id = any($1::text[]::uuid[])";

/// Which of broadcast and presence `check.role` may read on `check.topic` (module docs).
pub async fn read_access(
    catalog: &Catalog,
    check: &ChannelCheck,
) -> Result<ReadAccess, AccessError> {
    validate(check)?;
    let lease = catalog.lease().await?;
    let outcome = read_on(lease.client(), check).await;
    finish(lease, outcome)
}

/// Whether `check.role` may write `extension` messages on `check.topic` (module docs).
pub async fn write_access(
    catalog: &Catalog,
    check: &ChannelCheck,
    extension: Extension,
) -> Result<bool, AccessError> {
    validate(check)?;
    let lease = catalog.lease().await?;
    let outcome = write_on(lease.client(), check, extension).await;
    finish(lease, outcome)
}

/// Gives the connection back (or drops it, when the failure left it unfit) and turns
/// the outcome into the answer.
fn finish<T>(
    lease: crate::catalog::Lease<'_>,
    outcome: Result<Result<T, AccessError>, tokio_postgres::Error>,
) -> Result<T, AccessError> {
    match outcome {
        Ok(answer) => {
            lease.finish(Ok(()))?;
            answer
        }
        Err(err) => Err(lease.finish::<()>(Err(err.into())).unwrap_err().into()),
    }
}

fn validate(check: &ChannelCheck) -> Result<(), AccessError> {
    // `none` would switch back to the session user instead of failing (see `rls`).
    if check.role.is_empty() || check.role == "none" {
        return Err(AccessError::Role {
            role: check.role.clone(),
            message: "not a role a token may name".into(),
        });
    }
    let fields = [
        &check.topic,
        &check.role,
        &check.claims,
        &check.sub,
        &check.headers,
    ];
    if fields.iter().any(|f| f.contains('\0')) {
        return Err(CatalogError::InvalidInput("NUL in a channel check".into()).into());
    }
    Ok(())
}

fn context_params(check: &ChannelCheck) -> [(&(dyn ToSql + Sync), Type); 5] {
    [
        (&check.topic, Type::TEXT),
        (&check.claims, Type::TEXT),
        (&check.sub, Type::TEXT),
        (&check.role, Type::TEXT),
        (&check.headers, Type::TEXT),
    ]
}

/// The outer error is a failure outside the checks (the connection, the statements
/// Crier runs as itself); the inner one is the check's own answer.
async fn read_on(
    client: &Client,
    check: &ChannelCheck,
) -> Result<Result<ReadAccess, AccessError>, tokio_postgres::Error> {
    let ids: Vec<String> = (0..2).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let extensions = vec![
        Extension::Broadcast.as_str().to_owned(),
        Extension::Presence.as_str().to_owned(),
    ];
    let probe_params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&check.topic, Type::TEXT),
        (&ids, Type::TEXT_ARRAY),
        (&extensions, Type::TEXT_ARRAY),
    ];
    let role_params: [(&(dyn ToSql + Sync), Type); 1] = [(&check.role, Type::TEXT)];
    let select_params: [(&(dyn ToSql + Sync), Type); 1] = [(&ids, Type::TEXT_ARRAY)];
    let context = context_params(check);
    // One round trip: sent together, answered in order; the rollback runs whatever
    // failed before it.
    let (begun, set, probed, switched, selected, ended) = tokio::join!(
        biased;
        client.batch_execute("begin"),
        client.query_typed(SET_CONTEXT, &context),
        client.query_typed(INSERT_PROBES, &probe_params),
        client.query_typed(SET_ROLE, &role_params),
        client.query_typed(SELECT_PROBES, &select_params),
        client.batch_execute("rollback"),
    );
    begun?;
    set?;
    probed?;
    if let Err(err) = switched {
        return role_refusal(err, &check.role);
    }
    let rows = match selected {
        Ok(rows) => rows,
        Err(err) => return policy_refusal(err, ended).map(|r| r.map(|()| ReadAccess::default())),
    };
    ended?;
    let mut access = ReadAccess::default();
    for row in rows {
        match row.try_get::<_, String>(0)?.as_str() {
            "broadcast" => access.broadcast = true,
            "presence" => access.presence = true,
            _ => {}
        }
    }
    Ok(Ok(access))
}

async fn write_on(
    client: &Client,
    check: &ChannelCheck,
    extension: Extension,
) -> Result<Result<bool, AccessError>, tokio_postgres::Error> {
    let id = vec![uuid::Uuid::new_v4().to_string()];
    let extensions = vec![extension.as_str().to_owned()];
    let probe_params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&check.topic, Type::TEXT),
        (&id, Type::TEXT_ARRAY),
        (&extensions, Type::TEXT_ARRAY),
    ];
    let role_params: [(&(dyn ToSql + Sync), Type); 1] = [(&check.role, Type::TEXT)];
    let context = context_params(check);
    let (begun, set, switched, inserted, ended) = tokio::join!(
        biased;
        client.batch_execute("begin"),
        client.query_typed(SET_CONTEXT, &context),
        client.query_typed(SET_ROLE, &role_params),
        client.query_typed(INSERT_PROBES, &probe_params),
        client.batch_execute("rollback"),
    );
    begun?;
    set?;
    if let Err(err) = switched {
        return role_refusal(err, &check.role);
    }
    match inserted {
        Ok(_) => {
            ended?;
            Ok(Ok(true))
        }
        Err(err) => policy_refusal(err, ended).map(|r| r.map(|()| false)),
    }
}

/// A failed `set role`: the role does not exist (22023) or may not be switched to
/// (42501). Anything else is the session's failure.
fn role_refusal<T>(
    err: tokio_postgres::Error,
    role: &str,
) -> Result<Result<T, AccessError>, tokio_postgres::Error> {
    match err.as_db_error() {
        Some(db) if matches!(db.code().code(), "22023" | "42501") => Ok(Err(AccessError::Role {
            role: role.to_owned(),
            message: db.message().to_owned(),
        })),
        _ => Err(err),
    }
}

/// A failed probe as the caller's role: `insufficient_privilege` is a plain "no"
/// (`Ok(Ok(()))`, the caller says what no means); a statement cancelled or a lost
/// connection is the session's failure; any other error was raised by a policy.
fn policy_refusal(
    err: tokio_postgres::Error,
    ended: Result<(), tokio_postgres::Error>,
) -> Result<Result<(), AccessError>, tokio_postgres::Error> {
    let Some(db) = err.as_db_error() else {
        return Err(err);
    };
    let code = db.code().code();
    if code == "42501" {
        ended?;
        return Ok(Ok(()));
    }
    // Class 57 (operator intervention: a statement timeout, a shutdown) and 53
    // (insufficient resources) are about the session, not the policy.
    if code.starts_with("57") || code.starts_with("53") || code.starts_with("08") {
        return Err(err);
    }
    ended?;
    Ok(Err(AccessError::Policy(db.message().to_owned())))
}

/// A broadcast stored in `realtime.messages` (by `realtime.send`, `send_binary` or
/// `broadcast_changes`), as a replay hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The row's id.
    pub id: String,
    /// The event name.
    pub event: String,
    /// The JSON payload, as JSON text (`None` for a binary one).
    pub payload: Option<String>,
    /// The binary payload (`send_binary`).
    pub binary: Option<Vec<u8>>,
}

/// The newest `limit` private broadcasts stored for channel `topic` at or after
/// `since_ms` (Unix milliseconds, UTC: what `inserted_at` holds on a server in UTC, as
/// Supabase's are), oldest first. Rows of one transaction share their `inserted_at`;
/// they come in the order they were inserted (their place in the table), where Supabase
/// reverses them.
pub async fn replay(
    catalog: &Catalog,
    topic: &str,
    since_ms: i64,
    limit: i64,
) -> Result<Vec<StoredMessage>, CatalogError> {
    const SQL: &str = "
        select m.id::text, coalesce(m.event, ''), m.payload::text, m.binary_payload
        from (
            select id, event, payload, binary_payload, inserted_at, ctid
            from realtime.messages
            where topic = $1 and private is true and extension = 'broadcast'
              and inserted_at >= (pg_catalog.to_timestamp($2::float8 / 1000) at time zone 'UTC')
            order by inserted_at desc, ctid desc
            limit $3
        ) as m
        order by m.inserted_at, m.ctid";
    if topic.contains('\0') {
        return Err(CatalogError::InvalidInput("NUL in a topic".into()));
    }
    let since = since_ms as f64;
    let params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&topic, Type::TEXT),
        (&since, Type::FLOAT8),
        (&limit, Type::INT8),
    ];
    let lease = catalog.lease().await?;
    let result = lease
        .client()
        .query_typed(SQL, &params)
        .await
        .map_err(CatalogError::from)
        .and_then(|rows| {
            rows.iter()
                .map(|row| {
                    Ok(StoredMessage {
                        id: row.try_get(0)?,
                        event: row.try_get(1)?,
                        payload: row
                            .try_get::<_, Option<String>>(2)?
                            .map(|json| crate::database_broadcast::compact_json(&json)),
                        binary: row.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(CatalogError::from)
        });
    lease.finish(result)
}
