//! [`RenderedChange::new`]: a change rendered once, every value through
//! [`TypeCatalog::render`] and every fragment of `data` pre-serialized into one buffer.
//!
//! The steps, in order: the column list and key flags; the fixed head of `data`; each
//! column's `{name, type}`; the values each tuple holds; each value rendered (once, when
//! the old and new rows hold the same text); the size the limit is checked against;
//! `record` and `old_record` in `jsonb` key order; the key values for the row level
//! security lookup; and the size of the largest `data`.

use std::ops::Range;

use serde_json::{Map, Value};

use super::json::{jsonb_key_order, object_bytes, write_json_string, write_value};
use super::{ERROR_PAYLOAD_TOO_LARGE, Field, RenderedChange, SMALL_FIELD_BYTES};
use crate::catalog::TableInfo;
use crate::pgoutput::{self, OldTuple, Relation, RelationColumn, Tuple};
use crate::render::format_commit_timestamp;
use crate::replication::{ChangeKind, RowChange};
use crate::types::TypeCatalog;

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
        let columns = column_names_and_types(relation, types);
        let is_pk = primary_key_flags(relation, table);
        let commit_timestamp = format_commit_timestamp(commit_time_micros);

        let mut buf = String::new();
        let head = write_head(&mut buf, change, &commit_timestamp);
        let column_fragments = write_column_fragments(&mut buf, &columns);

        let values = TupleValues::of(change);
        let (mut new_cells, mut old_cells) = render_cells(&mut buf, types, relation, &values);
        let change_bytes = cells_bytes(&new_cells) + cells_bytes(&old_cells);

        let order = jsonb_column_order(&columns);
        // `record` first: it may take values from the old row's cells before
        // `old_record` takes those cells.
        let (record, new_row) = if values.has_new {
            let (record, new_row) = new_record(
                change.kind,
                &columns,
                &order,
                &mut new_cells,
                &old_cells,
                &values.new,
            );
            (Some(record), new_row)
        } else {
            (None, None)
        };
        let old_record = (change.kind != ChangeKind::Insert)
            .then(|| old_record(&columns, &order, &mut old_cells));
        let primary_key_text = primary_key_text(table, relation, &values);
        let record_fields = record.as_ref().map_or(&[][..], |r| &r.fields);
        let old_fields = old_record.as_ref().map_or(&[][..], |r| &r.fields);
        let data_capacity = data_capacity(&head, &column_fragments, record_fields, old_fields);

        let (record, record_fields) = record.map_or((None, Vec::new()), Record::split);
        let (old_record, old_fields) = old_record.map_or((None, Vec::new()), Record::split);
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
            head: head.head,
            timestamp_json: head.timestamp_json,
            type_json: head.type_json,
            column_fragments,
            record_fields,
            old_fields,
            change_bytes,
            data_capacity,
        }
    }
}

/// A value rendered from one tuple, with its `"name":value` fragment.
struct Cell {
    value: Value,
    fragment: Range<usize>,
    /// A non-null value of at most [`SMALL_FIELD_BYTES`] as `jsonb` text.
    small: bool,
}

/// Where the fixed parts of `data` are in the buffer.
struct Head {
    /// `{"schema":...,"table":...,"commit_timestamp":`
    head: Range<usize>,
    /// `"2026-01-02T03:04:05.678Z"`
    timestamp_json: Range<usize>,
    /// `,"type":"INSERT"`
    type_json: Range<usize>,
}

/// What each tuple of a change holds for each column (`None`: nothing, as for an
/// unchanged TOAST value or a column outside the old key).
struct TupleValues<'a> {
    /// INSERT and UPDATE: there is a new row.
    has_new: bool,
    /// The new row as the WAL has it.
    new: Vec<Option<&'a pgoutput::Value>>,
    /// The old identity row (wal2json's "identity", which Supabase reads `old_record`
    /// from).
    old: Vec<Option<&'a pgoutput::Value>>,
}

/// A record's value and its fields in `jsonb` key order.
struct Record {
    map: Map<String, Value>,
    fields: Vec<Field>,
}

impl Record {
    fn split(self) -> (Option<Map<String, Value>>, Vec<Field>) {
        (Some(self.map), self.fields)
    }
}

/// `(name, type name)` of each column, in `attnum` order.
fn column_names_and_types(relation: &Relation, types: &TypeCatalog) -> Vec<(String, String)> {
    relation
        .columns
        .iter()
        .map(|column| (column.name.clone(), types.name(column.type_oid)))
        .collect()
}

/// Whether each column is part of the table's primary key.
fn primary_key_flags(relation: &Relation, table: &TableInfo) -> Vec<bool> {
    relation
        .columns
        .iter()
        .map(|column| table.primary_key.iter().any(|key| key.name == column.name))
        .collect()
}

/// Writes `{"schema":…,"table":…,"commit_timestamp":`, the timestamp and `,"type":…`.
fn write_head(buf: &mut String, change: &RowChange, commit_timestamp: &str) -> Head {
    let relation = &change.relation;
    let head = push(buf, |out| {
        out.push_str("{\"schema\":");
        write_json_string(out, &relation.namespace);
        out.push_str(",\"table\":");
        write_json_string(out, &relation.name);
        out.push_str(",\"commit_timestamp\":");
    });
    let timestamp_json = push(buf, |out| write_json_string(out, commit_timestamp));
    let type_json = push(buf, |out| {
        out.push_str(",\"type\":\"");
        out.push_str(change.kind.as_str());
        out.push('"');
    });
    Head {
        head,
        timestamp_json,
        type_json,
    }
}

/// Writes `{"name":…,"type":…}` for each column.
fn write_column_fragments(buf: &mut String, columns: &[(String, String)]) -> Vec<Range<usize>> {
    columns
        .iter()
        .map(|(name, type_name)| {
            push(buf, |out| {
                out.push_str("{\"name\":");
                write_json_string(out, name);
                out.push_str(",\"type\":");
                write_json_string(out, type_name);
                out.push('}');
            })
        })
        .collect()
}

impl TupleValues<'_> {
    fn of(change: &RowChange) -> TupleValues<'_> {
        let relation = &change.relation;
        let width = relation.columns.len();
        let has_new = change.kind != ChangeKind::Delete;
        let new: Vec<Option<&pgoutput::Value>> = (0..width)
            .map(|i| {
                let tuple = change.new.as_ref().filter(|_| has_new)?;
                present(tuple, i)
            })
            .collect();
        let old = (0..width)
            .map(|i| match (change.kind, &change.old) {
                (ChangeKind::Insert, _) => None,
                (_, Some(OldTuple::Full(tuple))) => present(tuple, i),
                (_, Some(OldTuple::Key(tuple))) => {
                    present(tuple, i).filter(|_| relation.columns[i].key)
                }
                // No old key: the key did not change, so the new row has it.
                (ChangeKind::Update, None) => new[i].filter(|_| relation.columns[i].key),
                (ChangeKind::Delete, None) => None,
            })
            .collect();
        TupleValues { has_new, new, old }
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

/// Renders every value of both tuples, each column's new and old cell. A value the old
/// row holds with the same text as the new row is rendered once.
fn render_cells(
    buf: &mut String,
    types: &TypeCatalog,
    relation: &Relation,
    values: &TupleValues<'_>,
) -> (Vec<Option<Cell>>, Vec<Option<Cell>>) {
    let width = relation.columns.len();
    let mut new_cells: Vec<Option<Cell>> = Vec::with_capacity(width);
    let mut old_cells: Vec<Option<Cell>> = Vec::with_capacity(width);
    for (i, column) in relation.columns.iter().enumerate() {
        let new_cell = values.new[i].map(|value| render_cell(buf, types, column, value));
        let old_cell = values.old[i].map(|value| match &new_cell {
            Some(cell) if values.new[i] == Some(value) => Cell {
                value: cell.value.clone(),
                fragment: cell.fragment.clone(),
                small: cell.small,
            },
            _ => render_cell(buf, types, column, value),
        });
        new_cells.push(new_cell);
        old_cells.push(old_cell);
    }
    (new_cells, old_cells)
}

/// Renders one value and writes its `"name":value` fragment.
fn render_cell(
    buf: &mut String,
    types: &TypeCatalog,
    column: &RelationColumn,
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
    write_json_string(buf, &column.name);
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

/// The serialized size of the row the cells make: what the limit is checked against.
fn cells_bytes(cells: &[Option<Cell>]) -> usize {
    let fields: Vec<usize> = cells.iter().flatten().map(|c| c.fragment.len()).collect();
    object_bytes(&fields)
}

/// Column indexes in `jsonb` key order, the order of a record's fields.
fn jsonb_column_order(columns: &[(String, String)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by(|&a, &b| jsonb_key_order(&columns[a].0, &columns[b].0));
    order
}

/// `record`: the new row, with an unchanged TOAST value an UPDATE's old row has filled
/// in. Also the new row as the WAL has it, which filters test, when a value was filled
/// in (otherwise it is `record` itself).
fn new_record(
    kind: ChangeKind,
    columns: &[(String, String)],
    order: &[usize],
    new_cells: &mut [Option<Cell>],
    old_cells: &[Option<Cell>],
    new_values: &[Option<&pgoutput::Value>],
) -> (Record, Option<Map<String, Value>>) {
    let mut map = Map::new();
    let mut fields = Vec::new();
    let mut filled = false;
    for &i in order {
        if let Some(cell) = new_cells[i].take() {
            map.insert(columns[i].0.clone(), cell.value);
            fields.push(Field {
                column: i,
                fragment: cell.fragment,
                small: cell.small,
            });
        } else if let (ChangeKind::Update, Some(cell)) = (kind, &old_cells[i]) {
            // An unchanged TOAST value, from the old row.
            filled = true;
            map.insert(columns[i].0.clone(), cell.value.clone());
            fields.push(Field {
                column: i,
                fragment: cell.fragment.clone(),
                // Supabase tests the new row's value for size; there is none.
                small: false,
            });
        }
    }
    let new_row = filled.then(|| {
        let mut row = map.clone();
        for (i, value) in new_values.iter().enumerate() {
            if value.is_none() {
                row.remove(&columns[i].0);
            }
        }
        row
    });
    (Record { map, fields }, new_row)
}

/// `old_record`: the old identity row.
fn old_record(
    columns: &[(String, String)],
    order: &[usize],
    old_cells: &mut [Option<Cell>],
) -> Record {
    let mut map = Map::new();
    let mut fields = Vec::new();
    for &i in order {
        if let Some(cell) = old_cells[i].take() {
            fields.push(Field {
                column: i,
                fragment: cell.fragment,
                small: cell.small,
            });
            map.insert(columns[i].0.clone(), cell.value);
        }
    }
    Record { map, fields }
}

/// The primary key's values as pgoutput text, in key order (see
/// [`RenderedChange::primary_key_text`]); `None` when the table has no primary key.
fn primary_key_text(
    table: &TableInfo,
    relation: &Relation,
    values: &TupleValues<'_>,
) -> Option<Vec<Option<String>>> {
    if table.primary_key.is_empty() {
        return None;
    }
    let key_values = table.primary_key.iter().map(|key| {
        let i = relation.columns.iter().position(|c| c.name == key.name)?;
        let value = if values.has_new {
            values.new[i].or(values.old[i])
        } else {
            values.old[i]
        };
        match value? {
            pgoutput::Value::Null | pgoutput::Value::UnchangedToast => None,
            pgoutput::Value::Text(bytes) | pgoutput::Value::Binary(bytes) => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
        }
    });
    Some(key_values.collect())
}

/// The length of the largest `data` (every column, no error but 413), to allocate it at
/// once.
fn data_capacity(
    head: &Head,
    column_fragments: &[Range<usize>],
    record_fields: &[Field],
    old_fields: &[Field],
) -> usize {
    let lengths = |fields: &[Field]| -> Vec<usize> {
        fields.iter().map(|field| field.fragment.len()).collect()
    };
    let column_lengths: Vec<usize> = column_fragments.iter().map(Range::len).collect();
    head.head.len()
        + head.timestamp_json.len()
        + head.type_json.len()
        + ",\"columns\":".len()
        + object_bytes(&column_lengths)
        + ",\"record\":".len()
        + object_bytes(&lengths(record_fields))
        + ",\"old_record\":".len()
        + object_bytes(&lengths(old_fields))
        + ",\"errors\":[\"\"]}".len()
        + ERROR_PAYLOAD_TOO_LARGE.len()
}

/// Appends what `write` writes to `buf`, returning where it is.
fn push(buf: &mut String, write: impl FnOnce(&mut String)) -> Range<usize> {
    let start = buf.len();
    write(buf);
    start..buf.len()
}
