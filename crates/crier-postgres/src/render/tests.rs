//! Unit tests of rendering: shapes, projection, errors, key order, sizes, times.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::json::write_value;
use super::*;
use crate::catalog::{PrimaryKeyColumn, TableInfo};
use crate::pgoutput::{self, OldTuple, Relation, RelationColumn, Tuple};
use crate::replication::RowChange;
use crate::types::TypeCatalog;

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
        Some(&["done", "body"].map(String::from).into()),
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
