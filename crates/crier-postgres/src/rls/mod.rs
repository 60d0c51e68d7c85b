//! Row level security checks: which of a batch of changed rows may a subscriber see?
//!
//! Supabase Realtime (`realtime.apply_rls`) asks the database itself. For an INSERT or
//! UPDATE on a table with row level security, for each subscriber it sets the `role`
//! setting to the subscriber's role and `request.jwt.claims` to the subscriber's claims,
//! both local to the transaction, and selects the table's current row by primary key: a
//! row found means the change is delivered. A subscriber whose check raises an error is
//! not sent the change (the error is logged); DELETEs are never checked.
//!
//! [`visible_rows_by_group`] asks many groups' questions at once (`groups`).
//!
//! [`visible_rows`] asks the same question for many rows at once: all the rows one group
//! of subscribers (same table, role and claims) needs answered from one batch of changes,
//! in one round trip. It sends four statements without waiting between them (tokio-postgres
//! pipelines requests sent together), the values as query parameters:
//!
//! ```sql
//! begin;
//! select pg_catalog.set_config('request.jwt.claims', $2, true),
//!        pg_catalog.set_config('role', $1, true);           -- $1 role, $2 claims
//! select k.n from rows from (pg_catalog.unnest($1::text[])) with ordinality as k(c1, n)
//! where exists (select 1 from "public"."todos" as t where t."id" = k.c1::bigint);
//! rollback;
//! ```
//!
//! Each `$n::text[]` holds one key column's values (a composite key unnests several
//! arrays side by side); `k.n` is the row's place among them, and the rows returned are
//! the visible ones. Key values travel as text cast to the key column's type, the way
//! Supabase casts the text wal2json gives it, and are matched with the type's `=`, so the
//! primary key index is used. `set_config('role', ..., true)` is `SET LOCAL ROLE`; the
//! claims are set first, while the session user is still the role. The transaction
//! always ends in `rollback`, which also undoes anything a policy function changed, so
//! the connection goes back to the pool as the session user with no settings left over.
//!
//! # When the batch fails
//!
//! A statement that fails leaves the transaction aborted, so the next ones fail too until
//! the `rollback`. A policy that raises on one row (a bad cast of a claim, a division by
//! zero), or a role without `SELECT` privilege on the table (`permission denied`, raised
//! before any row is read), fails the whole batch. Then a second round trip asks row by
//! row inside one `DO` block, each row in its own `BEGIN ... EXCEPTION` block (a
//! savepoint): a row whose check raises is not visible, and the others get their own
//! answers, as with Supabase's per-subscriber exception handler. So a role lacking the
//! privilege gets "nothing visible", not an error. A `DO` block takes no parameters, so
//! its inputs (role, claims, key values) are set first as transaction-local settings
//! (`crier.role`, `crier.claims`, `crier.key_1`, ...) by a parameterized `set_config`,
//! in the same round trip, and it leaves its answers in settings too. The `DO` block
//! checks first that the role exists, so a missing role is [`CatalogError::UnknownRole`].
//! Errors that are about the session rather than the rows (a cancelled statement, such
//! as one that ran into `statement_timeout`; the server running out of resources) are
//! returned as errors. In every case the transaction is ended before the connection is
//! reused.
//!
//! # Values
//!
//! No value is written into SQL: the role, the claims and the key values are parameters
//! (only the table's and key columns' quoted names and the key types from
//! [`Catalog::table_info`] are). PostgreSQL text cannot contain NUL, so a key value with
//! NUL matches no row (it is answered "not visible" without asking), and a role or claims
//! with NUL is an error. A key value reaches its type by a cast from `text`, which for
//! every type is its input function except where a type has its own cast from `text`;
//! among the built-in types only `regclass` has one that reads differently (a number is
//! a relation's name to it, not an OID).

mod groups;

pub use groups::{GroupQuestion, visible_rows_by_group};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage};

use crate::catalog::{Catalog, CatalogError, PrimaryKeyColumn};
use crate::replication::quote_ident;

/// The SQLSTATE the `DO` block raises when the role does not exist (class `CR`, not one
/// PostgreSQL uses).
const UNKNOWN_ROLE_SQLSTATE: &str = "CR001";

/// Sets the subscriber's claims, then its role, for the rest of the transaction: `$1` the
/// role, `$2` the claims.
const SET_ROLE_AND_CLAIMS: &str = "select pg_catalog.set_config('request.jwt.claims', $2, true), \
     pg_catalog.set_config('role', $1, true)";

/// Writes `value` as an SQL string literal: `'it''s'`, and `E'a\\b'` when it contains a
/// backslash, so it reads back as `value` whatever `standard_conforming_strings` is.
/// `None` when it contains NUL, which no PostgreSQL string can hold.
///
/// [`visible_rows`] no longer writes literals (its values are query parameters); this is
/// kept for callers that build SQL text.
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

/// One group's question: the names to paste into SQL (quoted), and the values to send
/// as parameters.
struct Check<'a> {
    /// `"schema"."table"`.
    table: String,
    /// Quoted key column names.
    columns: Vec<String>,
    /// Key column types, as cast targets.
    types: Vec<&'a str>,
    role: &'a str,
    claims: &'a str,
    /// The index in the caller's slice of each row worth asking about.
    candidates: Vec<usize>,
    /// The candidates' key values, one list per key column, in candidate order.
    keys: Vec<Vec<&'a str>>,
}

impl<'a> Check<'a> {
    fn new(
        schema: &str,
        table: &str,
        key: &'a [PrimaryKeyColumn],
        role: &'a str,
        claims_json: &'a str,
        rows: &'a [Vec<Option<String>>],
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
        no_nul("claims", claims_json)?;
        let mut candidates = Vec::new();
        let mut keys: Vec<Vec<&str>> = vec![Vec::new(); key.len()];
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
            let values: Option<Vec<&str>> = row
                .iter()
                .map(|value| value.as_deref().filter(|value| !value.contains('\0')))
                .collect();
            if let Some(values) = values {
                candidates.push(index);
                for (column, value) in keys.iter_mut().zip(values) {
                    column.push(value);
                }
            }
        }
        Ok(Check {
            table: format!("{}.{}", quote_ident(schema), quote_ident(table)),
            columns: key.iter().map(|column| quote_ident(&column.name)).collect(),
            types: key.iter().map(|column| column.type_name.as_str()).collect(),
            role,
            claims: claims_json,
            candidates,
            keys,
        })
    }

    /// The key arrays as `text[]` parameters.
    fn key_params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        self.keys
            .iter()
            .map(|values| (values as &(dyn ToSql + Sync), Type::TEXT_ARRAY))
            .collect()
    }

    /// The candidate at `n` (1-based, as `with ordinality` and the `DO` block count).
    fn candidate(&self, n: i64) -> Result<usize, CatalogError> {
        usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| self.candidates.get(n).copied())
            .ok_or_else(|| CatalogError::Protocol(format!("row number {n}")))
    }

    /// Asks, and returns the indexes of the visible rows.
    async fn run(&self, client: &Client) -> Result<Vec<usize>, CatalogError> {
        let select = self.batch_select_sql();
        let settings: [(&(dyn ToSql + Sync), Type); 2] =
            [(&self.role, Type::TEXT), (&self.claims, Type::TEXT)];
        let key_params = self.key_params();
        // Sent together, in this order, before any answer is awaited: one round trip.
        // Each is its own protocol message, so the `rollback` runs even when a statement
        // before it failed, and nothing is left open.
        let (begun, set, checked, ended) = tokio::join!(
            biased;
            client.batch_execute("begin"),
            client.query_typed(SET_ROLE_AND_CLAIMS, &settings),
            client.query_typed(&select, &key_params),
            client.batch_execute("rollback"),
        );
        // The first failure is the one that matters: the statements after it fail only
        // because the transaction was aborted.
        let outcome = match (begun, set, checked, ended) {
            (Err(err), ..) | (Ok(_), Err(err), ..) => Err(err),
            (Ok(_), Ok(_), checked, ended) => checked.and_then(|rows| ended.map(|()| rows)),
        };
        match outcome {
            Ok(rows) => self.visible_from_batch(&rows),
            Err(err)
                if err
                    .as_db_error()
                    .is_some_and(|db| row_level(db.code().code())) =>
            {
                self.row_by_row(client).await
            }
            Err(err) => Err(err.into()),
        }
    }

    /// `k.n` of each visible row (module docs).
    fn batch_select_sql(&self) -> String {
        let names: Vec<String> = (1..=self.columns.len()).map(|n| format!("c{n}")).collect();
        let arrays: Vec<String> = (1..=self.columns.len())
            .map(|n| format!("pg_catalog.unnest(${n}::text[])"))
            .collect();
        let condition = self
            .columns
            .iter()
            .zip(&names)
            .zip(&self.types)
            .map(|((column, name), type_name)| format!("t.{column} = k.{name}::{type_name}"))
            .collect::<Vec<_>>()
            .join(" and ");
        format!(
            "select k.n from rows from ({}) with ordinality as k({}, n) \
             where exists (select 1 from {} as t where {condition})",
            arrays.join(", "),
            names.join(", "),
            self.table,
        )
    }

    fn visible_from_batch(&self, rows: &[Row]) -> Result<Vec<usize>, CatalogError> {
        rows.iter()
            .map(|row| self.candidate(row.try_get(0)?))
            .collect()
    }

    /// The second round trip after the batch failed: the inputs set as transaction-local
    /// settings, then each row checked under its own savepoint in a `DO` block (module
    /// docs). The answers come back through settings too, as a `DO` block returns no
    /// rows.
    async fn row_by_row(&self, client: &Client) -> Result<Vec<usize>, CatalogError> {
        let set_inputs = self.row_by_row_inputs_sql();
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> =
            vec![(&self.role, Type::TEXT), (&self.claims, Type::TEXT)];
        params.extend(self.key_params());
        let check = self.row_by_row_sql();
        // One round trip, as in `run`. The `DO` block, the answers and the `rollback`
        // are one simple query: the server skips the rest of it after an error, and the
        // transaction is then ended below.
        let (begun, set, checked) = tokio::join!(
            biased;
            client.batch_execute("begin"),
            client.query_typed(&set_inputs, &params),
            client.simple_query(&check),
        );
        let outcome = match (begun, set) {
            (Err(err), _) | (Ok(_), Err(err)) => Err(err),
            (Ok(_), Ok(_)) => checked,
        };
        let messages = match outcome {
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
        let numbers = |text: Option<&str>| -> Result<Vec<i64>, CatalogError> {
            let text = text.unwrap_or_default();
            text.split(',')
                .filter(|part| !part.is_empty())
                .map(|part| {
                    part.parse::<i64>()
                        .map_err(|_| CatalogError::Protocol(format!("row number {part:?}")))
                })
                .collect()
        };
        let visible = numbers(row.get(0))?
            .into_iter()
            .map(|n| self.candidate(n))
            .collect::<Result<Vec<usize>, _>>()?;
        let failed = numbers(row.get(1))?;
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

    /// Sets the row-by-row check's inputs for the transaction: `crier.role` (`$1`),
    /// `crier.claims` (`$2`), and `crier.key_<n>` (`$3`, ...: each key column's values,
    /// as the text of a `text[]`, which reads back exactly as it was).
    fn row_by_row_inputs_sql(&self) -> String {
        let mut sql = String::from(
            "select pg_catalog.set_config('crier.role', $1, true), \
             pg_catalog.set_config('crier.claims', $2, true)",
        );
        for n in 1..=self.columns.len() {
            sql.push_str(&format!(
                ", pg_catalog.set_config('crier.key_{n}', ${}::text[]::text, true)",
                n + 2
            ));
        }
        sql
    }

    /// The `DO` block, then the query of its answers, then `rollback`.
    fn row_by_row_sql(&self) -> String {
        let keys: Vec<String> = (1..=self.columns.len())
            .map(|n| format!("crier_key_{n}"))
            .collect();
        // Our variables are the only unqualified names in the block's queries (columns
        // are `t."..."`), so a column named like one cannot be read in its place.
        let mut body = String::from("#variable_conflict use_variable\ndeclare\n");
        body.push_str("  crier_role text := pg_catalog.current_setting('crier.role');\n");
        for (n, key) in keys.iter().enumerate() {
            body.push_str(&format!(
                "  {key} text[] := pg_catalog.current_setting('crier.key_{}')::text[];\n",
                n + 1
            ));
        }
        body.push_str(
            "  crier_visible int[] := '{}';\n  crier_failed int[] := '{}';\n  crier_error text := '';\n\
             begin\n",
        );
        body.push_str(&format!(
            "  if not exists (select 1 from pg_catalog.pg_roles where rolname = crier_role) then\n    \
             raise exception using errcode = '{UNKNOWN_ROLE_SQLSTATE}', message = 'no such role';\n  end if;\n"
        ));
        body.push_str(
            "  perform pg_catalog.set_config('request.jwt.claims', pg_catalog.current_setting('crier.claims'), true);\n  \
             perform pg_catalog.set_config('role', crier_role, true);\n",
        );
        let condition = self
            .columns
            .iter()
            .zip(&keys)
            .zip(&self.types)
            .map(|((column, key), type_name)| format!("t.{column} = {key}[crier_n]::{type_name}"))
            .collect::<Vec<_>>()
            .join(" and ");
        body.push_str(&format!(
            "  for crier_n in 1 .. pg_catalog.cardinality(crier_key_1) loop\n    \
             begin\n      if exists (select 1 from {} as t where {condition}) then crier_visible := crier_visible || crier_n; end if;\n    \
             exception when others then\n      crier_failed := crier_failed || crier_n;\n      \
             if crier_error = '' then crier_error := sqlerrm; end if;\n    end;\n  end loop;\n",
            self.table
        ));
        body.push_str(
            "  perform pg_catalog.set_config('crier.visible', pg_catalog.array_to_string(crier_visible, ','), true);\n  \
             perform pg_catalog.set_config('crier.failed', pg_catalog.array_to_string(crier_failed, ','), true);\n  \
             perform pg_catalog.set_config('crier.error', crier_error, true);\nend\n",
        );
        // A dollar quote whose tag the body (its quoted names) does not contain.
        let tag = (0..)
            .map(|n| format!("$crier{n}$"))
            .find(|tag| !body.contains(tag.as_str()))
            .expect("some tag is free");
        format!(
            "do {tag}\n{body}{tag};\n\
             select pg_catalog.current_setting('crier.visible'), pg_catalog.current_setting('crier.failed'), \
             pg_catalog.current_setting('crier.error');\nrollback;"
        )
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
    fn values_are_parameters_and_never_reach_the_sql_text() {
        let key = [
            PrimaryKeyColumn {
                name: "id".into(),
                type_name: "bigint".into(),
            },
            PrimaryKeyColumn {
                name: "na\"me".into(),
                type_name: "text".into(),
            },
        ];
        let rows = vec![
            vec![Some("it's".to_owned()), Some(r"x\y".to_owned())],
            vec![None, Some("z".to_owned())],
            vec![Some("7".to_owned()), Some("nul\0".to_owned())],
            vec![Some("8".to_owned()), Some("$crier0$".to_owned())],
        ];
        let claims = r#"{"sub":"s'ecret"}"#;
        let check = Check::new("public", "todos", &key, "o'role", claims, &rows).unwrap();
        assert_eq!(
            check.candidates,
            [0, 3],
            "NULL and NUL keys are not asked about"
        );
        assert_eq!(check.keys, [vec!["it's", "8"], vec![r"x\y", "$crier0$"]]);
        assert_eq!(
            check.batch_select_sql(),
            "select k.n from rows from (pg_catalog.unnest($1::text[]), \
             pg_catalog.unnest($2::text[])) with ordinality as k(c1, c2, n) \
             where exists (select 1 from \"public\".\"todos\" as t \
             where t.\"id\" = k.c1::bigint and t.\"na\"\"me\" = k.c2::text)"
        );
        let texts = [
            SET_ROLE_AND_CLAIMS.to_owned(),
            check.batch_select_sql(),
            check.row_by_row_inputs_sql(),
            check.row_by_row_sql(),
        ];
        for sql in &texts {
            // (`$crier0$` is there too, as the `DO` block's dollar quote.)
            for value in ["it's", r"x\y", "o'role", "s'ecret"] {
                assert!(!sql.contains(value), "{value:?} in {sql}");
            }
        }
        assert_eq!(check.candidate(1).unwrap(), 0);
        assert_eq!(check.candidate(2).unwrap(), 3);
        assert!(check.candidate(0).is_err());
        assert!(check.candidate(3).is_err());
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
