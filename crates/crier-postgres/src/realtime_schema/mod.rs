//! The `realtime` schema that private channels are authorized against, as Supabase lays
//! it out: the table `realtime.messages`, partitioned by day on `inserted_at`, and the
//! function `realtime.topic()` that policies read the channel name from.
//!
//! A Supabase database (or one restored from it) already has these objects, owned by
//! Supabase's roles: [`ensure_schema`] then creates nothing and changes nothing. On any
//! other database it creates what is missing, idempotently, owned by the role Crier
//! connects as. docs/PRIVATE_CHANNELS.md lists the statements, for operators who would
//! rather run them themselves.
//!
//! [`maintain_partitions`] keeps one partition per day, from yesterday to three days
//! ahead, and drops the partitions whose day ended more than 72 hours ago (Supabase
//! keeps messages that long). The node runs it at start and then every hour.

mod objects;

use crate::catalog::{Catalog, CatalogError};

/// What [`ensure_schema`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Objects created by this call (`realtime.messages`, ...); empty when everything
    /// was there already.
    pub created: Vec<String>,
}

/// Why the schema could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Something is missing and the role may not create it; the message names the grant.
    #[error("{0}")]
    MissingPrivilege(String),
    /// The database could not be asked.
    #[error(transparent)]
    Database(#[from] CatalogError),
}

/// Creates what is missing of the `realtime` schema (module docs). Safe to run on every
/// start and from several nodes at once: each object is created in its own transaction,
/// and one that another node created meanwhile counts as present.
pub async fn ensure_schema(catalog: &Catalog) -> Result<SchemaStatus, SchemaError> {
    let lease = catalog.lease().await?;
    let result = ensure_on(lease.client()).await;
    lease.finish(result)?.map_err(SchemaError::MissingPrivilege)
}

/// The outer error is the database's; the inner one names a missing privilege.
async fn ensure_on(
    client: &tokio_postgres::Client,
) -> Result<Result<SchemaStatus, String>, CatalogError> {
    let row = client.query_one(&objects::presence_query(), &[]).await?;
    let (user, database): (String, String) = (row.get(0), row.get(1));
    let mut created = Vec::new();
    for (index, object) in objects::OBJECTS.iter().enumerate() {
        let present: bool = row.get(index + 2);
        if present {
            continue;
        }
        let outcome = client
            .batch_execute(&format!("begin;{}commit;", object.create()))
            .await;
        match outcome {
            Ok(()) => created.push(object.name.to_owned()),
            Err(err) => {
                let _ = client.batch_execute("rollback").await;
                let code = err.as_db_error().map(|db| db.code().code().to_owned());
                match code.as_deref() {
                    // Created by another node meanwhile.
                    Some("42P06" | "42P07" | "42723") => {}
                    Some("42501") => {
                        let grant = object.needs.grant(&user, &database);
                        return Ok(Err(format!(
                            "{} is missing and role \"{user}\" may not create it: \
                             {grant}, or create it as described in docs/PRIVATE_CHANNELS.md",
                            object.name
                        )));
                    }
                    _ => return Err(err.into()),
                }
            }
        }
    }
    Ok(Ok(SchemaStatus { created }))
}

/// What [`maintain_partitions`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionReport {
    /// Partitions created, by name.
    pub created: Vec<String>,
    /// Partitions dropped, by name.
    pub dropped: Vec<String>,
}

/// Creates the daily partitions from yesterday to today + 3 that are missing and drops
/// those whose day ended more than 72 hours ago. "Today" is the database's date in UTC
/// (the pool's time zone), which is also the clock `inserted_at` defaults to on these
/// connections.
pub async fn maintain_partitions(catalog: &Catalog) -> Result<PartitionReport, CatalogError> {
    // The names come back as settings, since a DO block returns no rows.
    const SQL: &str = "
do $maintain$
declare
    d date;
    name text;
    made text[] := '{}';
    gone text[] := '{}';
begin
    for d in select g::date from pg_catalog.generate_series(current_date - 1, current_date + 3, interval '1 day') g loop
        name := 'messages_' || pg_catalog.to_char(d, 'YYYY_MM_DD');
        if pg_catalog.to_regclass(pg_catalog.format('realtime.%I', name)) is null then
            begin
                execute pg_catalog.format(
                    'create table realtime.%I partition of realtime.messages for values from (%L) to (%L)',
                    name, d, d + 1);
                made := made || name;
            exception when duplicate_table or invalid_object_definition then
                -- Another node made it, or a partition of another name covers the day.
                null;
            end;
        end if;
    end loop;
    for name in
        select c.relname from pg_catalog.pg_inherits i
        join pg_catalog.pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'realtime.messages'::regclass
          and c.relname ~ '^messages_[0-9]{4}_[0-9]{2}_[0-9]{2}$'
          and pg_catalog.to_date(pg_catalog.substr(c.relname, 10), 'YYYY_MM_DD') + 1 < current_date - 2
    loop
        execute pg_catalog.format('drop table if exists realtime.%I', name);
        gone := gone || name;
    end loop;
    perform pg_catalog.set_config('crier.partitions_made', pg_catalog.array_to_string(made, ','), false),
            pg_catalog.set_config('crier.partitions_gone', pg_catalog.array_to_string(gone, ','), false);
end
$maintain$;";
    const REPORT: &str = "select pg_catalog.current_setting('crier.partitions_made', true), \
                          pg_catalog.current_setting('crier.partitions_gone', true)";
    let lease = catalog.lease().await?;
    let result = async {
        lease.client().batch_execute(SQL).await?;
        let row = lease.client().query_one(REPORT, &[]).await?;
        let split = |text: Option<String>| -> Vec<String> {
            text.unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Ok(PartitionReport {
            created: split(row.get(0)),
            dropped: split(row.get(1)),
        })
    }
    .await;
    lease.finish(result)
}
