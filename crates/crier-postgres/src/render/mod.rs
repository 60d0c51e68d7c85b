//! Row changes rendered as Supabase Realtime delivers them: the `data` object of a
//! `postgres_changes` message, for each subscriber role.
//!
//! [`RenderedChange::new`] renders a change once (every value through
//! [`TypeCatalog::render`](crate::types::TypeCatalog::render), every field pre-serialized); [`RenderedChange::data_for`] then
//! assembles the `data` object for one role's selectable columns by concatenating those
//! fragments, so a change fanned out to many roles is rendered only once.
//!
//! # Shape
//!
//! ```json
//! {"schema":"public","table":"todos","commit_timestamp":"2026-01-02T03:04:05.678Z",
//!  "type":"UPDATE","columns":[{"name":"id","type":"int8"},{"name":"t","type":"text"}],
//!  "record":{"id":1,"t":"new"},"old_record":{"id":1},"errors":null}
//! ```
//!
//! - `commit_timestamp`: the commit time in UTC, milliseconds truncated.
//! - `columns`: `{name, type}` (the type's `pg_type.typname`) for each column the role
//!   may see, in `attnum` order.
//! - `record` (INSERT, UPDATE): the new row. A TOASTed value an UPDATE left unchanged is
//!   not in the WAL's new row: it is taken from the old row when that has it (`REPLICA
//!   IDENTITY FULL`), and is otherwise missing from `record`.
//! - `old_record` (UPDATE, DELETE): the replica identity of the old row: its key columns
//!   under `REPLICA IDENTITY DEFAULT` or `USING INDEX` (when pgoutput sent no old key, as
//!   for an UPDATE that left the key alone, the key is read from the new row), every
//!   column under `FULL`. On a table with row level security, a DELETE's `old_record`
//!   keeps only the primary key, whatever the replica identity: a DELETE is not checked
//!   against the policies, so nothing else of the row may be disclosed.
//! - `errors`: `null`, or one message (below).
//!
//! Keys of `record` and `old_record`, and of every object inside a value, are in `jsonb`
//! order (shorter keys first, then bytewise), because Supabase builds them as `jsonb`.
//! The `data` keys are in the order above. The JSON is compact: Supabase embeds the
//! `jsonb` text of `columns`, `record` and `old_record`, with `jsonb`'s spaces
//! (`{"id": 1}`), which no JSON reader tells apart.
//!
//! # Per-role projection and errors
//!
//! These follow Supabase's `realtime.apply_rls` as of Realtime v2.129.8, and the
//! `COALESCE`s its poller wraps around the result:
//!
//! - Only columns the role may select appear in `columns`, `record` and `old_record`;
//!   with a subscription's `select:[...]` list ([`RenderedChange::data_for_selection`]),
//!   only the selected ones and the primary key.
//! - An INSERT or UPDATE on a table without a primary key gives
//!   `"Error 400: Bad Request, no primary key"`; one whose primary key the role cannot
//!   fully select gives `"Error 401: Unauthorized"`. Both carry no row: `commit_timestamp`
//!   is `null`, `columns` is `[]`, `record` (and for an UPDATE `old_record`) is `{}`. A
//!   DELETE never gets either error: it is rendered as usual, with what the role can see
//!   (Supabase checks both conditions for INSERT and UPDATE only).
//! - A change larger than `max_record_bytes` keeps, in `record` and `old_record`, only the
//!   fields whose value is a non-null JSON value of at most 64 bytes, with
//!   `"Error 413: Payload Too Large"`. The size of a change is the serialized new row (as
//!   the WAL has it, without values taken from the old row) plus the serialized old
//!   identity row, whatever the role may see; a field's size is its value's `jsonb` text
//!   (`{"a": 1}`, with `jsonb`'s spaces). As in Supabase, a value taken from the old row
//!   for an unchanged TOAST column is dropped from `record` too, and so is a SQL null.
//!   Supabase measures the whole wal2json message instead (which also carries every
//!   column's name, type name and OID), so it reaches the limit a few dozen bytes per
//!   column sooner.
//! - Filters ([`RenderedChange::filter_row`]) are tested on the new row as the WAL has
//!   it (an unchanged TOAST column is absent), and for a DELETE on the old identity row,
//!   before projection.
//!
//! # Limits
//!
//! - `columns` lists the columns pgoutput sends: generated columns are missing before
//!   PostgreSQL 18 (Supabase lists every live column of the table).
//! - Values are written as [`TypeCatalog::render`](crate::types::TypeCatalog::render) gives them (see its limits); numbers
//!   are written as `serde_json` writes them, which for a few is not how `jsonb` does (an
//!   integer beyond `u64` is a float, `1e20`, where `jsonb` writes every digit), so the
//!   64-byte test can differ from Supabase's for such values.
//!
//! Later Supabase versions also send `"Error 500: ..."` when a policy fails to evaluate;
//! that belongs to the row level security check, not to rendering.
//!
//! # Parts
//!
//! - `build`: [`RenderedChange::new`], in named steps.
//! - `data`: the `data` object for one role ([`RenderedChange::data_for`]).
//! - `json`: the JSON writer (compact, `jsonb` key order, `jsonb` text sizes).
//! - `commit_time`: [`format_commit_timestamp`], and [`parse_timestamp_micros`] back.

use std::ops::Range;

use serde_json::{Map, Value};

use crate::replication::ChangeKind;

mod build;
mod commit_time;
mod data;
mod json;
#[cfg(test)]
mod tests;

pub use commit_time::{format_commit_timestamp, parse_timestamp_micros};

/// Supabase's default limit on a change's size before its fields are cut down
/// (`max_record_bytes`, 1 MiB).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_048_576;

/// The largest field (its value's `jsonb` text) kept when a change is over the limit.
pub const SMALL_FIELD_BYTES: usize = 64;

/// The error of an INSERT or UPDATE on a table without a primary key.
pub const ERROR_NO_PRIMARY_KEY: &str = "Error 400: Bad Request, no primary key";
/// The error of an INSERT or UPDATE whose primary key the role cannot select.
pub const ERROR_UNAUTHORIZED: &str = "Error 401: Unauthorized";
/// The error of a change over `max_record_bytes`.
pub const ERROR_PAYLOAD_TOO_LARGE: &str = "Error 413: Payload Too Large";

/// One field of `record` or `old_record`, pre-serialized.
#[derive(Debug, Clone)]
struct Field {
    /// Index of the column in the relation.
    column: usize,
    /// `"name":value` in [`RenderedChange::buf`].
    fragment: Range<usize>,
    /// Kept when the change is over the limit: a non-null value of at most
    /// [`SMALL_FIELD_BYTES`] as `jsonb` text, from the tuple the record is made of.
    small: bool,
}

/// One change rendered for every column (before per-role projection).
///
/// Built once per change by [`RenderedChange::new`]; [`RenderedChange::data_for`] gives
/// each role's `data` object from it without rendering anything again.
#[derive(Debug, Clone)]
pub struct RenderedChange {
    schema: String,
    table: String,
    kind: ChangeKind,
    commit_timestamp: String,
    /// `(name, type name)` in `attnum` order.
    columns: Vec<(String, String)>,
    /// Whether each column is part of the primary key.
    is_pk: Vec<bool>,
    rls_enabled: bool,
    /// INSERT and UPDATE: the new row, TOAST values filled from the old row.
    record: Option<Map<String, Value>>,
    /// UPDATE and DELETE: the old identity row.
    old_record: Option<Map<String, Value>>,
    /// The new row as the WAL has it, kept only when it differs from `record` (a TOAST
    /// value was filled in).
    new_row: Option<Map<String, Value>>,
    primary_key_text: Option<Vec<Option<String>>>,
    /// Every pre-serialized fragment, back to back; the ranges below point into it.
    buf: String,
    /// `{"schema":...,"table":...,"commit_timestamp":`
    head: Range<usize>,
    /// `"2026-01-02T03:04:05.678Z"`
    timestamp_json: Range<usize>,
    /// `,"type":"INSERT"`
    type_json: Range<usize>,
    /// `{"name":...,"type":...}` per column.
    column_fragments: Vec<Range<usize>>,
    /// `record`'s fields in `jsonb` key order.
    record_fields: Vec<Field>,
    /// `old_record`'s fields in `jsonb` key order.
    old_fields: Vec<Field>,
    /// The size the limit is checked against (see the module documentation).
    change_bytes: usize,
    /// The length of the largest `data` (every column, no error but 413), to allocate it
    /// at once.
    data_capacity: usize,
}

impl RenderedChange {
    /// The table's schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// What happened to the row.
    pub fn kind(&self) -> ChangeKind {
        self.kind
    }

    /// The commit time as delivered: `2026-01-02T03:04:05.678Z`.
    pub fn commit_timestamp(&self) -> &str {
        &self.commit_timestamp
    }

    /// Every column as `(name, type name)`, in `attnum` order.
    pub fn columns(&self) -> &[(String, String)] {
        &self.columns
    }

    /// The new row, TOAST values filled in from the old row (INSERT and UPDATE).
    pub fn record(&self) -> Option<&Map<String, Value>> {
        self.record.as_ref()
    }

    /// The old identity row (UPDATE and DELETE), every column of it.
    pub fn old_record(&self) -> Option<&Map<String, Value>> {
        self.old_record.as_ref()
    }

    /// The size compared with `max_record_bytes`: the serialized new row as the WAL has it
    /// plus the serialized old identity row.
    pub fn change_bytes(&self) -> usize {
        self.change_bytes
    }

    /// The row filters are tested on: the new row (INSERT/UPDATE), the old row for DELETE.
    ///
    /// The new row is the WAL's: a TOAST value the UPDATE left unchanged is absent, as it
    /// is from the row Supabase tests filters on, even when `record` has it from the old
    /// row. The old row is the whole identity row, including on tables with row level
    /// security.
    pub fn filter_row(&self) -> &Map<String, Value> {
        let row = match self.kind {
            ChangeKind::Delete => self.old_record.as_ref(),
            ChangeKind::Insert | ChangeKind::Update => {
                self.new_row.as_ref().or(self.record.as_ref())
            }
        };
        row.expect("new() renders a record for INSERT/UPDATE and an old record for DELETE")
    }

    /// Primary-key values of the row as pgoutput text (None for SQL null), for an RLS lookup
    /// of the current row by key; None when there is no primary key.
    ///
    /// The values are the new row's (INSERT, UPDATE; an unchanged TOAST key value is taken
    /// from the old row) or the old row's (DELETE), in key order. A key column the row
    /// does not carry is `None` too, so a lookup by it finds nothing.
    pub fn primary_key_text(&self) -> Option<Vec<Option<String>>> {
        self.primary_key_text.clone()
    }
}
