//! Row level security checks: which of a batch of changed rows may a subscriber see?
//!
//! Supabase Realtime (`realtime.apply_rls`) asks the database itself. For an INSERT or
//! UPDATE on a table with row level security, for each subscriber it sets the `role`
//! setting to the subscriber's role and `request.jwt.claims` to the subscriber's claims,
//! both local to the transaction, and selects the table's current row by primary key: a
//! row found means the change is delivered. A subscriber whose check raises an error is
//! not sent the change (the error is logged); DELETEs are never checked.
//!
//! [`visible_rows`] asks the same question for many rows at once: all the rows one group
//! of subscribers (same table, role and claims) needs answered from one batch of changes,
//! in one round trip. It sends one multi-statement string over the simple query protocol:
//!
//! ```sql
//! begin;
//! set local role 'authenticated';
//! set local request.jwt.claims = '{"sub":"..."}';
//! select k.i from (values (0, '1'::bigint), (3, '7'::bigint)) as k(i, c1)
//! where exists (select 1 from "public"."todos" as t where t."id" = k.c1);
//! rollback;
//! ```
//!
//! `k.i` is the row's index in the caller's slice; the rows returned are the visible
//! ones. Key values travel as string literals cast to the key column's type, the way
//! Supabase casts the text wal2json gives it, and are matched with the type's `=`, so the
//! primary key index is used. `SET LOCAL ROLE` and `set_config('role', ..., true)` are
//! the same setting; the transaction always ends in `rollback`, which also undoes
//! anything a policy function changed, so the connection goes back to the pool as the
//! session user with no settings left over.
//!
//! # When the batch fails
//!
//! The server skips the rest of a multi-statement string at the first error, so a policy
//! that raises on one row (a bad cast of a claim, a division by zero), or a role without
//! `SELECT` privilege on the table (`permission denied`, raised before any row is read),
//! fails the whole batch. Then a second round trip ends the failed transaction and asks
//! row by row inside one `DO` block, each row in its own `BEGIN ... EXCEPTION` block (a
//! savepoint): a row whose check raises is not visible, and the others get their own
//! answers, as with Supabase's per-subscriber exception handler. So a role lacking the
//! privilege gets "nothing visible", not an error. The `DO` block also checks first that
//! the role exists, so a missing role is [`CatalogError::UnknownRole`]. Errors that are
//! about the session rather than the rows (a cancelled statement, such as one that ran
//! into `statement_timeout`; the server running out of resources) are returned as
//! errors. In every case the transaction is ended before the connection is reused.
//!
//! # Literals
//!
//! Every value is a string literal written by [`quote_literal`]: quotes doubled, and in
//! an `E'...'` literal with doubled backslashes when there is a backslash, which means
//! the same whatever `standard_conforming_strings` is. PostgreSQL text cannot contain
//! NUL, so a key value with NUL matches no row (it is answered "not visible" without
//! asking), and a role or claims with NUL is an error.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::catalog::{Catalog, CatalogError, PrimaryKeyColumn};
use crate::replication::quote_ident;

/// The SQLSTATE the `DO` block raises when the role does not exist (class `CR`, not one
/// PostgreSQL uses).
const UNKNOWN_ROLE_SQLSTATE: &str = "CR001";

/// Writes `value` as an SQL string literal: `'it''s'`, and `E'a\\b'` when it contains a
/// backslash, so it reads back as `value` whatever `standard_conforming_strings` is.
/// `None` when it contains NUL, which no PostgreSQL string can hold.
pub fn quote_literal(value: &str) -> Option<String> {
    if value.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Some(out)
}

/// Which of `rows` can `role`, with `request.jwt.claims` set to `claims_json`, see right
/// now in `schema.table`? Each row is its primary key's values as text (pgoutput's text
/// form), in the order of `key` (from [`Catalog::table_info`]); the answer has one entry
/// per row, in order.
///
/// Rows are checked in one round trip (two when a check raises: see the module docs). A
/// row with a NULL key value is never visible (`=` never matches NULL), nor is one with a
/// NUL character. A role without `SELECT` privilege sees nothing. The role is the name
/// exactly as stored (`Admin` is not `admin`).
///
/// Errors: [`CatalogError::UnknownRole`] for a role that does not exist (`none` included),
/// [`CatalogError::InvalidInput`] for an empty key, rows not as wide as the key, a NUL in
/// the role, the schema or table name or the claims, or claims that are not JSON;
/// [`CatalogError::Postgres`] when the connection fails or the server errs outside the
/// rows' checks. The table's owner, superusers and roles with `BYPASSRLS` see every row
/// that exists, as they would in Supabase.
pub async fn visible_rows(
    catalog: &Catalog,
    schema: &str,
    table: &str,
    key: &[PrimaryKeyColumn],
    role: &str,
    claims_json: &str,
    rows: &[Vec<Option<String>>],
) -> Result<Vec<bool>, CatalogError> {
    let check = Check::new(schema, table, key, role, claims_json, rows)?;
    let mut visible = vec![false; rows.len()];
    if check.candidates.is_empty() {
        return Ok(visible);
    }
    let lease = catalog.lease().await?;
    let result = check.run(lease.client()).await;
    let result = lease.finish(result);
    for index in result? {
        visible[index] = true;
    }
    Ok(visible)
}

/// One group's question, with everything quoted.
struct Check<'a> {
    /// `"schema"."table"`.
    table: String,
    /// Quoted key column names.
    columns: Vec<String>,
    /// Key column types, as cast targets.
    types: Vec<&'a str>,
    /// The role, as given (for errors).
    role: &'a str,
    role_literal: String,
    claims_literal: String,
    /// The rows worth asking about: index in the caller's slice, and the quoted key
    /// values.
    candidates: Vec<(usize, Vec<String>)>,
}

impl<'a> Check<'a> {
    fn new(
        schema: &str,
        table: &str,
        key: &'a [PrimaryKeyColumn],
        role: &'a str,
        claims_json: &str,
        rows: &[Vec<Option<String>>],
    ) -> Result<Check<'a>, CatalogError> {
        if key.is_empty() {
            return Err(CatalogError::InvalidInput(format!(
                "{schema}.{table} has no primary key to look rows up by"
            )));
        }
        // `none` is PostgreSQL's word for "no role": setting it would switch back to the
        // session user (a superuser, typically) instead of failing, so it must never be
        // set. No role can have that name (or the empty one).
        if role == "none" || role.is_empty() {
            return Err(CatalogError::UnknownRole(role.to_owned()));
        }
        let no_nul = |what: &str, value: &str| {
            if value.contains('\0') {
                Err(CatalogError::InvalidInput(format!("NUL in the {what}")))
            } else {
                Ok(())
            }
        };
        no_nul("schema name", schema)?;
        no_nul("table name", table)?;
        no_nul("role", role)?;
        for column in key {
            no_nul("key column name", &column.name)?;
            no_nul("key column type", &column.type_name)?;
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(claims_json).is_err() {
            return Err(CatalogError::InvalidInput("the claims are not JSON".into()));
        }
        let role_literal = quote_literal(role)
            .ok_or_else(|| CatalogError::InvalidInput("NUL in the role".into()))?;
        let claims_literal = quote_literal(claims_json)
            .ok_or_else(|| CatalogError::InvalidInput("NUL in the claims".into()))?;
        let mut candidates = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            if row.len() != key.len() {
                return Err(CatalogError::InvalidInput(format!(
                    "row {index} has {} key values, the key has {} columns",
                    row.len(),
                    key.len()
                )));
            }
            // NULL never equals anything, and NUL is in no stored value: not visible,
            // without asking.
            let quoted: Option<Vec<String>> = row
                .iter()
                .map(|value| value.as_deref().and_then(quote_literal))
                .collect();
            if let Some(quoted) = quoted {
                candidates.push((index, quoted));
            }
        }
        Ok(Check {
            table: format!("{}.{}", quote_ident(schema), quote_ident(table)),
            columns: key.iter().map(|column| quote_ident(&column.name)).collect(),
            types: key.iter().map(|column| column.type_name.as_str()).collect(),
            role,
            role_literal,
            claims_literal,
            candidates,
        })
    }

    /// Asks, and returns the indexes of the visible rows.
    async fn run(&self, client: &Client) -> Result<Vec<usize>, CatalogError> {
        match client.simple_query(&self.batch_sql()).await {
            Ok(messages) => self.visible_from_batch(&messages),
            Err(err)
                if err
                    .as_db_error()
                    .is_some_and(|db| row_level(db.code().code())) =>
            {
                self.row_by_row(client).await
            }
            // Reported by the server: the connection is fine, the transaction is not.
            Err(err) if err.as_db_error().is_some() => {
                end_transaction(client).await?;
                Err(err.into())
            }
            // The connection failed: it is not reused, so there is nothing to end.
            Err(err) => Err(err.into()),
        }
    }

    /// The settings, and `k.i` of each visible row (module docs).
    fn batch_sql(&self) -> String {
        let mut sql = format!("begin;\n{}\n", self.settings_sql());
        let names: Vec<String> = (1..=self.columns.len()).map(|n| format!("c{n}")).collect();
        sql.push_str("select k.i from (values ");
        for (n, (index, values)) in self.candidates.iter().enumerate() {
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("({index}"));
            for (value, type_name) in values.iter().zip(&self.types) {
                sql.push_str(&format!(", {value}::{type_name}"));
            }
            sql.push(')');
        }
        sql.push_str(&format!(
            ") as k(i, {}) where exists (select 1 from {} as t where {});\nrollback;",
            names.join(", "),
            self.table,
            self.columns
                .iter()
                .zip(&names)
                .map(|(column, name)| format!("t.{column} = k.{name}"))
                .collect::<Vec<_>>()
                .join(" and ")
        ));
        sql
    }

    fn settings_sql(&self) -> String {
        format!(
            "set local role {};\nset local request.jwt.claims = {};",
            self.role_literal, self.claims_literal
        )
    }

    fn visible_from_batch(
        &self,
        messages: &[SimpleQueryMessage],
    ) -> Result<Vec<usize>, CatalogError> {
        // The select is the only statement that returns rows.
        let mut visible = Vec::new();
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                let index = row
                    .get(0)
                    .and_then(|text| text.parse::<usize>().ok())
                    .filter(|index| self.candidates.iter().any(|(i, _)| i == index))
                    .ok_or_else(|| CatalogError::Protocol(format!("row index {:?}", row.get(0))))?;
                visible.push(index);
            }
        }
        Ok(visible)
    }

    /// The second round trip after the batch failed: end that transaction, then check
    /// each row under its own savepoint (module docs). The answers come back through
    /// transaction-local custom settings, as a `DO` block returns no rows.
    async fn row_by_row(&self, client: &Client) -> Result<Vec<usize>, CatalogError> {
        let mut body = String::from(
            "#variable_conflict use_column\n\
             declare\n  crier_visible int[] := '{}';\n  crier_failed int[] := '{}';\n  crier_error text := '';\n\
             begin\n",
        );
        body.push_str(&format!(
            "  if not exists (select 1 from pg_catalog.pg_roles where rolname = {}) then\n    \
             raise exception using errcode = '{UNKNOWN_ROLE_SQLSTATE}', message = 'no such role';\n  end if;\n",
            self.role_literal
        ));
        body.push_str(&format!(
            "  perform pg_catalog.set_config('role', {}, true);\n  \
             perform pg_catalog.set_config('request.jwt.claims', {}, true);\n",
            self.role_literal, self.claims_literal
        ));
        for (index, values) in &self.candidates {
            let condition = self
                .columns
                .iter()
                .zip(values.iter().zip(&self.types))
                .map(|(column, (value, type_name))| format!("t.{column} = {value}::{type_name}"))
                .collect::<Vec<_>>()
                .join(" and ");
            body.push_str(&format!(
                "  begin\n    if exists (select 1 from {} as t where {condition}) then crier_visible := crier_visible || {index}; end if;\n  \
                 exception when others then\n    crier_failed := crier_failed || {index};\n    \
                 if crier_error = '' then crier_error := sqlerrm; end if;\n  end;\n",
                self.table
            ));
        }
        body.push_str(
            "  perform pg_catalog.set_config('crier.visible', pg_catalog.array_to_string(crier_visible, ','), true);\n  \
             perform pg_catalog.set_config('crier.failed', pg_catalog.array_to_string(crier_failed, ','), true);\n  \
             perform pg_catalog.set_config('crier.error', crier_error, true);\nend\n",
        );
        // A dollar quote whose tag the body (its literals) does not contain.
        let tag = (0..)
            .map(|n| format!("$crier{n}$"))
            .find(|tag| !body.contains(tag.as_str()))
            .expect("some tag is free");
        let sql = format!(
            "rollback;\nbegin;\ndo {tag}\n{body}{tag};\n\
             select pg_catalog.current_setting('crier.visible'), pg_catalog.current_setting('crier.failed'), \
             pg_catalog.current_setting('crier.error');\nrollback;"
        );
        let messages = match client.simple_query(&sql).await {
            Ok(messages) => messages,
            Err(err) => {
                let Some(db) = err.as_db_error() else {
                    return Err(err.into());
                };
                end_transaction(client).await?;
                return Err(if db.code().code() == UNKNOWN_ROLE_SQLSTATE {
                    CatalogError::UnknownRole(self.role.to_owned())
                } else {
                    err.into()
                });
            }
        };
        let row = messages
            .iter()
            .find_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .ok_or_else(|| CatalogError::Protocol("no answer from the row-by-row check".into()))?;
        let indexes = |text: Option<&str>| -> Result<Vec<usize>, CatalogError> {
            let text = text.unwrap_or_default();
            text.split(',')
                .filter(|part| !part.is_empty())
                .map(|part| {
                    part.parse::<usize>()
                        .map_err(|_| CatalogError::Protocol(format!("row index {part:?}")))
                })
                .collect()
        };
        let visible = indexes(row.get(0))?;
        let failed = indexes(row.get(1))?;
        if !failed.is_empty() {
            tracing::warn!(
                table = %self.table,
                role = self.role,
                rows = failed.len(),
                error = row.get(2).unwrap_or_default(),
                "row level security check raised; those rows are not visible"
            );
        }
        Ok(visible)
    }
}

/// Whether an error is one the row-by-row check can say something about: anything a
/// policy, a cast or a privilege check raises. Not a cancelled statement, a shutdown
/// (class 57), or the server out of resources (53), which would only fail again.
fn row_level(sqlstate: &str) -> bool {
    !(sqlstate.starts_with("57") || sqlstate.starts_with("53"))
}

/// Ends whatever transaction a failed string left open, so the connection can be reused
/// (a `rollback` outside a transaction is only a warning).
async fn end_transaction(client: &Client) -> Result<(), CatalogError> {
    client.batch_execute("rollback").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal("plain").unwrap(), "'plain'");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(quote_literal(r"a\b").unwrap(), r"E'a\\b'");
        assert_eq!(quote_literal(r"\'").unwrap(), r"E'\\'''");
        assert_eq!(quote_literal("").unwrap(), "''");
        assert_eq!(quote_literal("ünï 🎉").unwrap(), "'ünï 🎉'");
        assert_eq!(quote_literal("a\0b"), None);
    }

    #[test]
    fn only_session_level_errors_skip_the_row_by_row_check() {
        assert!(row_level("42501"));
        assert!(row_level("22012"));
        assert!(row_level("22023"));
        assert!(!row_level("57014"));
        assert!(!row_level("53200"));
    }
}
