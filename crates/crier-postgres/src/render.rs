//! Row changes rendered as Supabase Realtime delivers them: the `data` object of a
//! `postgres_changes` message, for each subscriber role.
//!
//! [`RenderedChange::new`] renders a change once (every value through
//! [`TypeCatalog::render`], every field pre-serialized); [`RenderedChange::data_for`] then
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
//! - Values are written as [`TypeCatalog::render`] gives them (see its limits); numbers
//!   are written as `serde_json` writes them, which for a few is not how `jsonb` does (an
//!   integer beyond `u64` is a float, `1e20`, where `jsonb` writes every digit), so the
//!   64-byte test can differ from Supabase's for such values.
//!
//! Later Supabase versions also send `"Error 500: ..."` when a policy fails to evaluate;
//! that belongs to the row level security check, not to rendering.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::ops::Range;

use serde_json::{Map, Value};

use crate::catalog::TableInfo;
use crate::pgoutput::{self, OldTuple, Tuple};
use crate::replication::{ChangeKind, RowChange};
use crate::types::TypeCatalog;

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

/// A value rendered from one tuple.
struct Cell {
    value: Value,
    fragment: Range<usize>,
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
    /// Renders `change`, committed at `commit_time_micros` (microseconds since the Unix
    /// epoch), with the types of `types` and what `table` says of its table.
    pub fn new(
        change: &RowChange,
        commit_time_micros: i64,
        types: &TypeCatalog,
        table: &TableInfo,
    ) -> RenderedChange {
        let relation = &change.relation;
        let width = relation.columns.len();
        let columns: Vec<(String, String)> = relation
            .columns
            .iter()
            .map(|column| (column.name.clone(), types.name(column.type_oid)))
            .collect();
        let is_pk: Vec<bool> = relation
            .columns
            .iter()
            .map(|column| table.primary_key.iter().any(|key| key.name == column.name))
            .collect();

        let mut buf = String::new();
        let head = push(&mut buf, |out| {
            out.push_str("{\"schema\":");
            write_json_string(out, &relation.namespace);
            out.push_str(",\"table\":");
            write_json_string(out, &relation.name);
            out.push_str(",\"commit_timestamp\":");
        });
        let commit_timestamp = format_commit_timestamp(commit_time_micros);
        let timestamp_json = push(&mut buf, |out| write_json_string(out, &commit_timestamp));
        let type_json = push(&mut buf, |out| {
            out.push_str(",\"type\":\"");
            out.push_str(change.kind.as_str());
            out.push('"');
        });
        let column_fragments: Vec<Range<usize>> = columns
            .iter()
            .map(|(name, type_name)| {
                push(&mut buf, |out| {
                    out.push_str("{\"name\":");
                    write_json_string(out, name);
                    out.push_str(",\"type\":");
                    write_json_string(out, type_name);
                    out.push('}');
                })
            })
            .collect();

        // What each tuple says of each column: the new row as the WAL has it, and the old
        // identity row (wal2json's "identity", which Supabase reads `old_record` from).
        let has_new = change.kind != ChangeKind::Delete;
        let new_values: Vec<Option<&pgoutput::Value>> = (0..width)
            .map(|i| {
                let tuple = change.new.as_ref().filter(|_| has_new)?;
                present(tuple, i)
            })
            .collect();
        let old_values: Vec<Option<&pgoutput::Value>> = (0..width)
            .map(|i| match (change.kind, &change.old) {
                (ChangeKind::Insert, _) => None,
                (_, Some(OldTuple::Full(tuple))) => present(tuple, i),
                (_, Some(OldTuple::Key(tuple))) => {
                    present(tuple, i).filter(|_| relation.columns[i].key)
                }
                // No old key: the key did not change, so the new row has it.
                (ChangeKind::Update, None) => new_values[i].filter(|_| relation.columns[i].key),
                (ChangeKind::Delete, None) => None,
            })
            .collect();

        let mut new_cells: Vec<Option<Cell>> = Vec::with_capacity(width);
        let mut old_cells: Vec<Option<Cell>> = Vec::with_capacity(width);
        for (i, column) in relation.columns.iter().enumerate() {
            let name = &column.name;
            let new_cell =
                new_values[i].map(|value| render_cell(&mut buf, types, column, name, value));
            let old_cell = old_values[i].map(|value| match &new_cell {
                // The same text renders the same: share the rendering.
                Some(cell) if new_values[i] == Some(value) => Cell {
                    value: cell.value.clone(),
                    fragment: cell.fragment.clone(),
                    small: cell.small,
                },
                _ => render_cell(&mut buf, types, column, name, value),
            });
            new_cells.push(new_cell);
            old_cells.push(old_cell);
        }

        let cell_bytes = |cells: &[Option<Cell>]| {
            let fields: Vec<usize> = cells.iter().flatten().map(|c| c.fragment.len()).collect();
            object_bytes(&fields)
        };
        let change_bytes = cell_bytes(&new_cells) + cell_bytes(&old_cells);

        let mut order: Vec<usize> = (0..width).collect();
        order.sort_by(|&a, &b| jsonb_key_order(&columns[a].0, &columns[b].0));

        let (mut record, mut record_fields, mut filled) = (None, Vec::new(), false);
        if has_new {
            let mut map = Map::new();
            for &i in &order {
                if let Some(cell) = new_cells[i].take() {
                    map.insert(columns[i].0.clone(), cell.value);
                    record_fields.push(Field {
                        column: i,
                        fragment: cell.fragment,
                        small: cell.small,
                    });
                } else if let (ChangeKind::Update, Some(cell)) = (change.kind, &old_cells[i]) {
                    // An unchanged TOAST value, from the old row.
                    filled = true;
                    map.insert(columns[i].0.clone(), cell.value.clone());
                    record_fields.push(Field {
                        column: i,
                        fragment: cell.fragment.clone(),
                        // Supabase tests the new row's value for size; there is none.
                        small: false,
                    });
                }
            }
            record = Some(map);
        }
        let new_row = match (&record, filled) {
            (Some(record), true) => {
                let mut row = record.clone();
                for (i, value) in new_values.iter().enumerate() {
                    if value.is_none() {
                        row.remove(&columns[i].0);
                    }
                }
                Some(row)
            }
            _ => None,
        };

        let (mut old_record, mut old_fields) = (None, Vec::new());
        if change.kind != ChangeKind::Insert {
            let mut map = Map::new();
            for &i in &order {
                if let Some(cell) = old_cells[i].take() {
                    old_fields.push(Field {
                        column: i,
                        fragment: cell.fragment,
                        small: cell.small,
                    });
                    map.insert(columns[i].0.clone(), cell.value);
                }
            }
            old_record = Some(map);
        }

        let primary_key_text = (!table.primary_key.is_empty()).then(|| {
            table
                .primary_key
                .iter()
                .map(|key| {
                    let i = relation.columns.iter().position(|c| c.name == key.name)?;
                    let value = if has_new {
                        new_values[i].or(old_values[i])
                    } else {
                        old_values[i]
                    };
                    match value? {
                        pgoutput::Value::Null | pgoutput::Value::UnchangedToast => None,
                        pgoutput::Value::Text(bytes) | pgoutput::Value::Binary(bytes) => {
                            Some(String::from_utf8_lossy(bytes).into_owned())
                        }
                    }
                })
                .collect()
        });

        let lengths = |fields: &[Field]| -> Vec<usize> {
            fields.iter().map(|field| field.fragment.len()).collect()
        };
        let column_lengths: Vec<usize> = column_fragments.iter().map(Range::len).collect();
        let data_capacity = head.len()
            + timestamp_json.len()
            + type_json.len()
            + ",\"columns\":".len()
            + object_bytes(&column_lengths)
            + ",\"record\":".len()
            + object_bytes(&lengths(&record_fields))
            + ",\"old_record\":".len()
            + object_bytes(&lengths(&old_fields))
            + ",\"errors\":[\"\"]}".len()
            + ERROR_PAYLOAD_TOO_LARGE.len();

        RenderedChange {
            schema: relation.namespace.clone(),
            table: relation.name.clone(),
            kind: change.kind,
            commit_timestamp,
            columns,
            is_pk,
            rls_enabled: table.rls_enabled,
            record,
            old_record,
            new_row,
            primary_key_text,
            buf,
            head,
            timestamp_json,
            type_json,
            column_fragments,
            record_fields,
            old_fields,
            change_bytes,
            data_capacity,
        }
    }

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

    /// The serialized `data` object for a subscriber who may select `selectable` columns
    /// (None = all columns), as a JSON string ready to embed.
    ///
    /// `selectable` is what the role may read: the columns for which
    /// `has_column_privilege(role, table, column, 'SELECT')` holds. `max_record_bytes` is
    /// compared with [`RenderedChange::change_bytes`].
    pub fn data_for(
        &self,
        selectable: Option<&HashSet<String>>,
        max_record_bytes: usize,
    ) -> String {
        self.data_for_selection(selectable, None, max_record_bytes)
    }

    /// [`RenderedChange::data_for`] for a subscription that selects columns
    /// (`select:[...]`): a column is included when the role may select it and it is
    /// selected or part of the primary key. `selected` does not affect the errors: a
    /// primary key the role cannot select is still a 401.
    pub fn data_for_selection(
        &self,
        selectable: Option<&HashSet<String>>,
        selected: Option<&HashSet<String>>,
        max_record_bytes: usize,
    ) -> String {
        if self.kind != ChangeKind::Delete {
            if !self.is_pk.contains(&true) {
                return self.error_data(ERROR_NO_PRIMARY_KEY);
            }
            if let Some(selectable) = selectable {
                let key_hidden = self
                    .columns
                    .iter()
                    .zip(&self.is_pk)
                    .any(|((name, _), &pk)| pk && !selectable.contains(name));
                if key_hidden {
                    return self.error_data(ERROR_UNAUTHORIZED);
                }
            }
        }
        let included: Vec<bool> = self
            .columns
            .iter()
            .zip(&self.is_pk)
            .map(|((name, _), &pk)| {
                selectable.is_none_or(|s| s.contains(name))
                    && selected.is_none_or(|s| pk || s.contains(name))
            })
            .collect();
        let oversize = self.change_bytes > max_record_bytes;

        let mut out = String::with_capacity(self.data_capacity);
        out.push_str(&self.buf[self.head.clone()]);
        out.push_str(&self.buf[self.timestamp_json.clone()]);
        out.push_str(&self.buf[self.type_json.clone()]);
        out.push_str(",\"columns\":[");
        let mut first = true;
        for (fragment, _) in self
            .column_fragments
            .iter()
            .zip(&included)
            .filter(|(_, included)| **included)
        {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&self.buf[fragment.clone()]);
        }
        out.push(']');
        let keep = |field: &Field| included[field.column] && (!oversize || field.small);
        if self.record.is_some() {
            out.push_str(",\"record\":");
            self.write_fields(&mut out, &self.record_fields, keep);
        }
        if self.old_record.is_some() {
            // A DELETE is not checked against the policies: on a table with row level
            // security, only the key may be shown.
            let key_only = self.rls_enabled && self.kind == ChangeKind::Delete;
            out.push_str(",\"old_record\":");
            self.write_fields(&mut out, &self.old_fields, |field| {
                keep(field) && (!key_only || self.is_pk[field.column])
            });
        }
        out.push_str(",\"errors\":");
        if oversize {
            out.push('[');
            write_json_string(&mut out, ERROR_PAYLOAD_TOO_LARGE);
            out.push(']');
        } else {
            out.push_str("null");
        }
        out.push('}');
        out
    }

    /// `{...}` of the fields `keep` keeps.
    fn write_fields(&self, out: &mut String, fields: &[Field], keep: impl Fn(&Field) -> bool) {
        out.push('{');
        let mut first = true;
        for field in fields.iter().filter(|field| keep(field)) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&self.buf[field.fragment.clone()]);
        }
        out.push('}');
    }

    /// The row-less `data` of a 400 or 401, as Supabase's poller completes it: no commit
    /// time, no columns, and empty records.
    fn error_data(&self, error: &str) -> String {
        let mut out = String::with_capacity(self.head.len() + 128);
        out.push_str(&self.buf[self.head.clone()]);
        out.push_str("null");
        out.push_str(&self.buf[self.type_json.clone()]);
        out.push_str(",\"columns\":[]");
        if self.record.is_some() {
            out.push_str(",\"record\":{}");
        }
        if self.old_record.is_some() {
            out.push_str(",\"old_record\":{}");
        }
        out.push_str(",\"errors\":[");
        write_json_string(&mut out, error);
        out.push_str("]}");
        out
    }
}

/// The value of column `i`, unless the tuple lacks it (unchanged TOAST, or a tuple
/// shorter than its relation).
fn present(tuple: &Tuple, i: usize) -> Option<&pgoutput::Value> {
    tuple
        .0
        .get(i)
        .filter(|value| !matches!(value, pgoutput::Value::UnchangedToast))
}

/// Renders one value and writes its `"name":value` fragment.
fn render_cell(
    buf: &mut String,
    types: &TypeCatalog,
    column: &pgoutput::RelationColumn,
    name: &str,
    value: &pgoutput::Value,
) -> Cell {
    let value = match value {
        pgoutput::Value::Null | pgoutput::Value::UnchangedToast => Value::Null,
        // Crier never asks for binary values; should one come, its bytes are the best
        // text there is.
        pgoutput::Value::Text(bytes) | pgoutput::Value::Binary(bytes) => {
            types.render(column.type_oid, &String::from_utf8_lossy(bytes))
        }
    };
    let start = buf.len();
    write_json_string(buf, name);
    buf.push(':');
    let value_start = buf.len();
    let spaces = write_value(buf, &value);
    let jsonb_len = buf.len() - value_start + spaces;
    Cell {
        small: !value.is_null() && jsonb_len <= SMALL_FIELD_BYTES,
        value,
        fragment: start..buf.len(),
    }
}

/// Appends what `write` writes to `buf`, returning where it is.
fn push(buf: &mut String, write: impl FnOnce(&mut String)) -> Range<usize> {
    let start = buf.len();
    write(buf);
    start..buf.len()
}

/// The length of `{field,field,...}` for fields of these lengths.
fn object_bytes(fields: &[usize]) -> usize {
    2 + fields.iter().sum::<usize>() + fields.len().saturating_sub(1)
}

/// `jsonb`'s order of object keys: shorter first, then bytewise.
fn jsonb_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Writes `value` as compact JSON with object keys in `jsonb` order. Returns how many
/// spaces `jsonb`'s text output would add (one after each `,` and each `:`), so the
/// `jsonb` text length is the written length plus that.
fn write_value(out: &mut String, value: &Value) -> usize {
    match value {
        Value::Null => {
            out.push_str("null");
            0
        }
        Value::Bool(true) => {
            out.push_str("true");
            0
        }
        Value::Bool(false) => {
            out.push_str("false");
            0
        }
        // serde_json writes a Number with its Display (itoa, ryu).
        Value::Number(number) => {
            write!(out, "{number}").expect("writing to a String cannot fail");
            0
        }
        Value::String(text) => {
            write_json_string(out, text);
            0
        }
        Value::Array(items) => {
            out.push('[');
            let mut spaces = items.len().saturating_sub(1);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                spaces += write_value(out, item);
            }
            out.push(']');
            spaces
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| jsonb_key_order(a.0, b.0));
            out.push('{');
            let mut spaces = entries.len() + entries.len().saturating_sub(1);
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, key);
                out.push(':');
                spaces += write_value(out, item);
            }
            out.push('}');
            spaces
        }
    }
}

/// Writes a JSON string, escaping as PostgreSQL's `escape_json` (and `serde_json`) do:
/// `"`, `\`, the named control characters, and other control characters as `\u00xx`.
fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut start = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `at` is a character boundary.
        out.push_str(&text[start..at]);
        if escape.is_empty() {
            write!(out, "\\u{byte:04x}").expect("writing to a String cannot fail");
        } else {
            out.push_str(escape);
        }
        start = at + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// A commit time (microseconds since the Unix epoch) as Supabase delivers it: UTC,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, milliseconds truncated (PostgreSQL's `to_char` with
/// `MS`). Years beyond 9999 get more digits; times before year 1 are not meaningful.
pub fn format_commit_timestamp(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let millis = micros.rem_euclid(1_000_000) / 1_000;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60,
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01, counted in 400-year eras of
/// 146,097 days that start on March 1st, so the leap day falls at the end of a year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // 719,468 days from 0000-03-01 to 1970-01-01.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 153 days per five months.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::catalog::PrimaryKeyColumn;
    use crate::pgoutput::{Relation, RelationColumn};

    const INT8: u32 = 20;
    const TEXT: u32 = 25;
    const BOOL: u32 = 16;
    const JSONB: u32 = 3802;
    const INT4_ARRAY: u32 = 1007;

    fn text(value: &str) -> pgoutput::Value {
        pgoutput::Value::Text(Bytes::copy_from_slice(value.as_bytes()))
    }

    fn tuple(values: Vec<pgoutput::Value>) -> Tuple {
        Tuple(values)
    }

    /// `todos (id int8 primary key, title text, done bool, body text)`, with the key
    /// flags of `identity` (`d` or `f`).
    fn todos(identity: u8) -> Arc<Relation> {
        let column = |name: &str, type_oid, key| RelationColumn {
            key,
            name: name.to_owned(),
            type_oid,
            type_modifier: -1,
        };
        let full = identity == b'f';
        Arc::new(Relation {
            id: 16384,
            namespace: "public".into(),
            name: "todos".into(),
            replica_identity: identity,
            columns: vec![
                column("id", INT8, true),
                column("title", TEXT, full),
                column("done", BOOL, full),
                column("body", TEXT, full),
            ],
        })
    }

    fn table(rls_enabled: bool, primary_key: &[&str]) -> TableInfo {
        TableInfo {
            rls_enabled,
            primary_key: primary_key
                .iter()
                .map(|name| PrimaryKeyColumn {
                    name: (*name).to_owned(),
                    type_name: "text".to_owned(),
                })
                .collect(),
        }
    }

    fn pk_id() -> TableInfo {
        table(false, &["id"])
    }

    fn change(
        relation: Arc<Relation>,
        kind: ChangeKind,
        new: Option<Vec<pgoutput::Value>>,
        old: Option<OldTuple>,
    ) -> RowChange {
        RowChange {
            relation,
            kind,
            new: new.map(tuple),
            old,
        }
    }

    /// 2026-01-02T03:04:05.678901Z.
    const COMMIT: i64 = 1_767_323_045_678_901;
    const TS: &str = "2026-01-02T03:04:05.678Z";

    fn render(change: &RowChange, table: &TableInfo) -> RenderedChange {
        RenderedChange::new(change, COMMIT, &TypeCatalog::builtin(), table)
    }

    fn all(rendered: &RenderedChange) -> String {
        rendered.data_for(None, DEFAULT_MAX_RECORD_BYTES)
    }

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    const TODOS_COLUMNS: &str = r#""columns":[{"name":"id","type":"int8"},{"name":"title","type":"text"},{"name":"done","type":"bool"},{"name":"body","type":"text"}]"#;

    fn insert_1() -> RowChange {
        change(
            todos(b'd'),
            ChangeKind::Insert,
            Some(vec![
                text("1"),
                text("say \"hi\"\n"),
                text("f"),
                pgoutput::Value::Null,
            ]),
            None,
        )
    }

    #[test]
    fn insert_renders_every_column_in_the_documented_key_order() {
        let rendered = render(&insert_1(), &pk_id());
        assert_eq!(
            all(&rendered),
            format!(
                r#"{{"schema":"public","table":"todos","commit_timestamp":"{TS}","type":"INSERT",{TODOS_COLUMNS},"record":{{"id":1,"body":null,"done":false,"title":"say \"hi\"\n"}},"errors":null}}"#
            )
        );
        assert_eq!(rendered.commit_timestamp(), TS);
        assert_eq!(rendered.old_record(), None);
        assert_eq!(rendered.columns()[0], ("id".to_owned(), "int8".to_owned()));
        assert_eq!(rendered.filter_row(), rendered.record().unwrap());
        assert_eq!(rendered.filter_row()["done"], Value::Bool(false));
        assert_eq!(
            rendered.primary_key_text(),
            Some(vec![Some("1".to_owned())])
        );
        // The output is JSON, and the same JSON as the maps.
        let parsed: Value = serde_json::from_str(&all(&rendered)).unwrap();
        assert_eq!(
            parsed["record"],
            Value::Object(rendered.record().unwrap().clone())
        );
    }

    #[test]
    fn update_without_old_key_takes_the_key_from_the_new_row_and_omits_unchanged_toast() {
        let update = change(
            todos(b'd'),
            ChangeKind::Update,
            Some(vec![
                text("1"),
                text("b"),
                text("t"),
                pgoutput::Value::UnchangedToast,
            ]),
            None,
        );
        let rendered = render(&update, &pk_id());
        assert_eq!(
            all(&rendered),
            format!(
                r#"{{"schema":"public","table":"todos","commit_timestamp":"{TS}","type":"UPDATE",{TODOS_COLUMNS},"record":{{"id":1,"done":true,"title":"b"}},"old_record":{{"id":1}},"errors":null}}"#
            )
        );
        assert!(!rendered.filter_row().contains_key("body"));
        assert_eq!(rendered.filter_row()["title"], "b");
    }

    #[test]
    fn update_of_the_key_shows_the_old_key() {
        let update = change(
            todos(b'd'),
            ChangeKind::Update,
            Some(vec![text("2"), text("b"), text("t"), pgoutput::Value::Null]),
            Some(OldTuple::Key(tuple(vec![
                text("1"),
                pgoutput::Value::Null,
                pgoutput::Value::Null,
                pgoutput::Value::Null,
            ]))),
        );
        let rendered = render(&update, &pk_id());
        let data: Value = serde_json::from_str(&all(&rendered)).unwrap();
        assert_eq!(data["old_record"], serde_json::json!({"id": 1}));
        assert_eq!(data["record"]["id"], 2);
        assert_eq!(
            rendered.primary_key_text(),
            Some(vec![Some("2".to_owned())])
        );
    }

    fn full_update() -> RowChange {
        change(
            todos(b'f'),
            ChangeKind::Update,
            Some(vec![
                text("1"),
                text("new"),
                text("t"),
                pgoutput::Value::UnchangedToast,
            ]),
            Some(OldTuple::Full(tuple(vec![
                text("1"),
                text("old"),
                text("t"),
                text("big"),
            ]))),
        )
    }

    #[test]
    fn full_identity_fills_unchanged_toast_and_shows_the_whole_old_row() {
        let rendered = render(&full_update(), &pk_id());
        assert_eq!(
            all(&rendered),
            format!(
                r#"{{"schema":"public","table":"todos","commit_timestamp":"{TS}","type":"UPDATE",{TODOS_COLUMNS},"record":{{"id":1,"body":"big","done":true,"title":"new"}},"old_record":{{"id":1,"body":"big","done":true,"title":"old"}},"errors":null}}"#
            )
        );
        // Filters see the WAL's new row, as Supabase's do.
        assert!(!rendered.filter_row().contains_key("body"));
        assert!(rendered.record().unwrap().contains_key("body"));
        assert_eq!(rendered.filter_row()["title"], "new");
    }

    #[test]
    fn deletes_show_the_identity_and_only_the_key_on_rls_tables() {
        let key_only = change(
            todos(b'd'),
            ChangeKind::Delete,
            None,
            Some(OldTuple::Key(tuple(vec![
                text("1"),
                pgoutput::Value::Null,
                pgoutput::Value::Null,
                pgoutput::Value::Null,
            ]))),
        );
        let full_old = OldTuple::Full(tuple(vec![text("1"), text("a"), text("f"), text("b")]));
        let full = change(todos(b'f'), ChangeKind::Delete, None, Some(full_old));
        let expect = |old: &str| {
            format!(
                r#"{{"schema":"public","table":"todos","commit_timestamp":"{TS}","type":"DELETE",{TODOS_COLUMNS},"old_record":{old},"errors":null}}"#
            )
        };
        assert_eq!(all(&render(&key_only, &pk_id())), expect(r#"{"id":1}"#));
        assert_eq!(
            all(&render(&full, &pk_id())),
            expect(r#"{"id":1,"body":"b","done":false,"title":"a"}"#)
        );
        let rls = render(&full, &table(true, &["id"]));
        assert_eq!(all(&rls), expect(r#"{"id":1}"#));
        // Filters still see the whole old row; UPDATEs on RLS tables are not cut down.
        assert_eq!(rls.filter_row()["title"], "a");
        assert_eq!(rls.primary_key_text(), Some(vec![Some("1".to_owned())]));
        let data: Value =
            serde_json::from_str(&all(&render(&full_update(), &table(true, &["id"])))).unwrap();
        assert_eq!(data["old_record"]["title"], "old");
    }

    #[test]
    fn only_selectable_columns_are_shown() {
        let rendered = render(&full_update(), &pk_id());
        let data = rendered.data_for(Some(&set(&["id", "done"])), DEFAULT_MAX_RECORD_BYTES);
        assert_eq!(
            data,
            format!(
                r#"{{"schema":"public","table":"todos","commit_timestamp":"{TS}","type":"UPDATE","columns":[{{"name":"id","type":"int8"}},{{"name":"done","type":"bool"}}],"record":{{"id":1,"done":true}},"old_record":{{"id":1,"done":true}},"errors":null}}"#
            )
        );
        // A `select:[...]` list keeps the key even when it is not listed, and never shows a
        // column the role cannot select.
        let data = rendered.data_for_selection(
            Some(&set(&["id", "done", "title"])),
            Some(&set(&["done", "body"])),
            DEFAULT_MAX_RECORD_BYTES,
        );
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(data["record"], serde_json::json!({"id": 1, "done": true}));
        assert_eq!(
            data["old_record"],
            serde_json::json!({"id": 1, "done": true})
        );
        assert_eq!(data["columns"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_table_without_primary_key_is_a_400_for_inserts_and_updates_only() {
        let no_pk = table(false, &[]);
        assert_eq!(
            all(&render(&insert_1(), &no_pk)),
            r#"{"schema":"public","table":"todos","commit_timestamp":null,"type":"INSERT","columns":[],"record":{},"errors":["Error 400: Bad Request, no primary key"]}"#
        );
        assert_eq!(
            all(&render(&full_update(), &no_pk)),
            r#"{"schema":"public","table":"todos","commit_timestamp":null,"type":"UPDATE","columns":[],"record":{},"old_record":{},"errors":["Error 400: Bad Request, no primary key"]}"#
        );
        assert_eq!(render(&insert_1(), &no_pk).primary_key_text(), None);
        let delete = change(
            todos(b'f'),
            ChangeKind::Delete,
            None,
            Some(OldTuple::Full(tuple(vec![
                text("1"),
                text("a"),
                text("f"),
                text("b"),
            ]))),
        );
        let data: Value = serde_json::from_str(&all(&render(&delete, &no_pk))).unwrap();
        assert_eq!(data["errors"], Value::Null);
        assert_eq!(data["old_record"]["title"], "a");
        // On an RLS table, nothing of a key-less row may be shown.
        let data = all(&render(&delete, &table(true, &[])));
        assert!(data.contains(r#""old_record":{},"errors":null"#), "{data}");
    }

    #[test]
    fn a_primary_key_the_role_cannot_select_is_a_401_for_inserts_and_updates_only() {
        let hidden_key = set(&["title", "done", "body"]);
        assert_eq!(
            render(&insert_1(), &pk_id()).data_for(Some(&hidden_key), DEFAULT_MAX_RECORD_BYTES),
            r#"{"schema":"public","table":"todos","commit_timestamp":null,"type":"INSERT","columns":[],"record":{},"errors":["Error 401: Unauthorized"]}"#
        );
        // A composite key needs every part.
        let two_part = table(false, &["id", "title"]);
        let data = render(&insert_1(), &two_part)
            .data_for(Some(&set(&["id", "done"])), DEFAULT_MAX_RECORD_BYTES);
        assert!(
            data.ends_with(r#""errors":["Error 401: Unauthorized"]}"#),
            "{data}"
        );
        let delete = change(
            todos(b'f'),
            ChangeKind::Delete,
            None,
            Some(OldTuple::Full(tuple(vec![
                text("1"),
                text("a"),
                text("f"),
                text("b"),
            ]))),
        );
        let data = render(&delete, &pk_id()).data_for(Some(&hidden_key), DEFAULT_MAX_RECORD_BYTES);
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(data["errors"], Value::Null);
        assert_eq!(
            data["old_record"],
            serde_json::json!({"title": "a", "done": false, "body": "b"})
        );
    }

    #[test]
    fn an_oversize_change_keeps_only_small_non_null_fields() {
        let long62 = "x".repeat(62);
        let long63 = "y".repeat(63);
        let update = change(
            todos(b'f'),
            ChangeKind::Update,
            // The title's JSON is 64 bytes, the body (from the old row) 65.
            Some(vec![
                text("1"),
                text(&long62),
                pgoutput::Value::Null,
                pgoutput::Value::UnchangedToast,
            ]),
            Some(OldTuple::Full(tuple(vec![
                text("1"),
                text(&long63),
                text("t"),
                text("z"),
            ]))),
        );
        let rendered = render(&update, &pk_id());
        let size = rendered.change_bytes();
        // The WAL's new row and the old identity row, serialized.
        let new_row = format!(r#"{{"id":1,"title":"{long62}","done":null}}"#);
        let old_row = format!(r#"{{"id":1,"title":"{long63}","done":true,"body":"z"}}"#);
        assert_eq!(size, new_row.len() + old_row.len());
        let at_limit: Value = serde_json::from_str(&rendered.data_for(None, size)).unwrap();
        assert_eq!(at_limit["errors"], Value::Null);
        assert_eq!(at_limit["record"]["body"], "z");
        assert_eq!(
            rendered.data_for(None, size - 1),
            format!(
                r#"{{"schema":"public","table":"todos","commit_timestamp":"{TS}","type":"UPDATE",{TODOS_COLUMNS},"record":{{"id":1,"title":"{long62}"}},"old_record":{{"id":1,"body":"z","done":true}},"errors":["Error 413: Payload Too Large"]}}"#
            )
        );
        // Projection still applies.
        let data = rendered.data_for(Some(&set(&["id", "done"])), 10);
        assert!(
            data.contains(r#""record":{"id":1},"old_record":{"id":1,"done":true},"errors":["Error 413: Payload Too Large"]}"#),
            "{data}"
        );
    }

    #[test]
    fn field_size_is_measured_as_jsonb_text() {
        let mut out = String::new();
        let value = serde_json::json!({"bb": [1, 2], "a": {"c": null}, "ab": "x"});
        let spaces = write_value(&mut out, &value);
        assert_eq!(out, r#"{"a":{"c":null},"ab":"x","bb":[1,2]}"#);
        // PostgreSQL: select '{"bb": [1, 2], "a": {"c": null}, "ab": "x"}'::jsonb::text
        let jsonb_text = r#"{"a": {"c": null}, "ab": "x", "bb": [1, 2]}"#;
        assert_eq!(out.len() + spaces, jsonb_text.len());

        // Eight one-letter keys: 49 bytes compact, 64 as jsonb text (just small enough);
        // nine are over.
        let keys = |n: usize| -> Vec<(String, i32)> {
            (0..n)
                .map(|i| (format!("{}", (b'a' + i as u8) as char), 1))
                .collect()
        };
        let object = |n| {
            Value::Object(
                keys(n)
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect(),
            )
        };
        let mut out = String::new();
        let spaces = write_value(&mut out, &object(8));
        assert_eq!((out.len(), out.len() + spaces), (49, 64));
        let mut out = String::new();
        let spaces = write_value(&mut out, &object(9));
        assert!(out.len() + spaces > SMALL_FIELD_BYTES);
    }

    #[test]
    fn record_keys_and_nested_object_keys_are_in_jsonb_order() {
        let relation = Arc::new(Relation {
            id: 1,
            namespace: "s".into(),
            name: "t\"q".into(),
            replica_identity: b'd',
            columns: ["zz", "b", "aaa", "a"]
                .iter()
                .enumerate()
                .map(|(i, name)| RelationColumn {
                    key: i == 0,
                    name: name.to_string(),
                    type_oid: if i == 1 { JSONB } else { INT4_ARRAY },
                    type_modifier: -1,
                })
                .collect(),
        });
        let insert = change(
            relation,
            ChangeKind::Insert,
            Some(vec![
                text("{1}"),
                text(r#"{"yy": 1, "x": {"b": 1, "a": 2}, "é": 0, "z": 3}"#),
                text("{}"),
                text("{{1,NULL},{3,4}}"),
            ]),
            None,
        );
        let data = all(&render(&insert, &table(false, &["zz"])));
        assert!(
            data.starts_with(r#"{"schema":"s","table":"t\"q","#),
            "{data}"
        );
        assert!(
            data.contains(
                r#""columns":[{"name":"zz","type":"_int4"},{"name":"b","type":"jsonb"},{"name":"aaa","type":"_int4"},{"name":"a","type":"_int4"}],"record":{"a":[[1,null],[3,4]],"b":{"x":{"a":2,"b":1},"z":3,"yy":1,"é":0},"zz":[1],"aaa":[]},"errors":null}"#
            ),
            "{data}"
        );
    }

    #[test]
    fn primary_key_text_follows_key_order() {
        let update = change(
            todos(b'f'),
            ChangeKind::Update,
            Some(vec![
                text("7"),
                pgoutput::Value::UnchangedToast,
                pgoutput::Value::Null,
                text("x"),
            ]),
            Some(OldTuple::Full(tuple(vec![
                text("7"),
                text("long"),
                text("t"),
                text("x"),
            ]))),
        );
        let rendered = render(&update, &table(false, &["done", "title", "id"]));
        assert_eq!(
            rendered.primary_key_text(),
            Some(vec![None, Some("long".to_owned()), Some("7".to_owned())])
        );
        // A stale key naming a column the table no longer has finds nothing.
        let rendered = render(&update, &table(false, &["gone"]));
        assert_eq!(rendered.primary_key_text(), Some(vec![None]));
        assert!(all(&rendered).contains("Error 400"));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_and_postgres_escape_them() {
        for text in [
            "",
            "plain",
            "q\"b\\s/",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{c}\u{d}\u{1f}\u{7f}",
            "é€😀 ü\u{2028}",
        ] {
            let mut out = String::new();
            write_json_string(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap());
        }
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,4}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// The jsonb text length by the definition: pretty enough to have `jsonb`'s spaces.
    fn jsonb_text_len(value: &Value) -> usize {
        match value {
            Value::Array(items) => {
                2 + items.iter().map(jsonb_text_len).sum::<usize>()
                    + 2 * items.len().saturating_sub(1)
            }
            Value::Object(map) => {
                2 + map
                    .iter()
                    .map(|(k, v)| serde_json::to_string(k).unwrap().len() + 2 + jsonb_text_len(v))
                    .sum::<usize>()
                    + 2 * map.len().saturating_sub(1)
            }
            scalar => serde_json::to_string(scalar).unwrap().len(),
        }
    }

    proptest! {
        #[test]
        fn values_are_written_as_json_that_reads_back(value in arbitrary_json()) {
            let mut out = String::new();
            let spaces = write_value(&mut out, &value);
            let back: Value = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(&back, &value);
            prop_assert_eq!(out.len(), serde_json::to_string(&value).unwrap().len());
            prop_assert_eq!(out.len() + spaces, jsonb_text_len(&value));
        }

        #[test]
        fn commit_timestamps_match_a_day_by_day_calendar(
            micros in -62_135_596_800_000_000i64..253_402_300_800_000_000i64
        ) {
            prop_assert_eq!(format_commit_timestamp(micros), reference_timestamp(micros));
        }
    }

    /// The same timestamp counted year by year and month by month from 1970.
    fn reference_timestamp(micros: i64) -> String {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let year_days = |y: i64| if leap(y) { 366 } else { 365 };
        let mut seconds = micros.div_euclid(1_000_000);
        let millis = micros.rem_euclid(1_000_000) / 1_000;
        let mut days = seconds.div_euclid(86_400);
        seconds = seconds.rem_euclid(86_400);
        let mut year = 1970;
        while days < 0 {
            year -= 1;
            days += year_days(year);
        }
        while days >= year_days(year) {
            days -= year_days(year);
            year += 1;
        }
        let lengths = [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut month = 0;
        while days >= lengths[month] {
            days -= lengths[month];
            month += 1;
        }
        format!(
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            month + 1,
            days + 1,
            seconds / 3600,
            seconds % 3600 / 60,
            seconds % 60
        )
    }

    #[test]
    fn commit_timestamps_known_values() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (999, "1970-01-01T00:00:00.000Z"),
            (999_999, "1970-01-01T00:00:00.999Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-1_000, "1969-12-31T23:59:59.999Z"),
            (-1_001, "1969-12-31T23:59:59.998Z"),
            (-14_182_940_000_000, "1969-07-20T20:17:40.000Z"),
            (-2_203_891_200_000_000, "1900-03-01T00:00:00.000Z"),
            (-2_203_891_200_000_001, "1900-02-28T23:59:59.999Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000Z"),
            (951_868_799_999_999, "2000-02-29T23:59:59.999Z"),
            (1_709_251_199_999_999, "2024-02-29T23:59:59.999Z"),
            (1_709_251_200_000_000, "2024-03-01T00:00:00.000Z"),
            (4_107_542_400_000_000, "2100-03-01T00:00:00.000Z"),
            (COMMIT, TS),
            (253_402_300_799_999_999, "9999-12-31T23:59:59.999Z"),
            (253_402_300_800_000_000, "10000-01-01T00:00:00.000Z"),
            (-62_135_596_800_000_000, "0001-01-01T00:00:00.000Z"),
        ];
        for (micros, expected) in cases {
            assert_eq!(format_commit_timestamp(micros), expected, "{micros}");
        }
        // The extremes do not overflow.
        format_commit_timestamp(i64::MIN);
        format_commit_timestamp(i64::MAX);
    }
}
