//! Postgres changes: the filters a channel registers, and the changes it receives.
//!
//! The server echoes each registered filter in its join reply with an integer id, and
//! every delivered change carries the ids of the filters it matched. Changes are routed
//! by those ids (never by comparing tables or events on the client), which is how a
//! channel with several filters gets each change on exactly the right streams.

use crier_protocol::join::PostgresChangeBinding;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// Which row events a filter wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeEvent {
    /// Every event (`*`).
    #[serde(rename = "*")]
    All,
    /// `INSERT`.
    #[serde(rename = "INSERT")]
    Insert,
    /// `UPDATE`.
    #[serde(rename = "UPDATE")]
    Update,
    /// `DELETE`.
    #[serde(rename = "DELETE")]
    Delete,
}

impl ChangeEvent {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeEvent::All => "*",
            ChangeEvent::Insert => "INSERT",
            ChangeEvent::Update => "UPDATE",
            ChangeEvent::Delete => "DELETE",
        }
    }

    fn accepts(self, change_type: &str) -> bool {
        self == ChangeEvent::All || self.as_str().eq_ignore_ascii_case(change_type)
    }
}

/// One postgres-changes subscription: an event, a schema, optionally a table and a
/// `column=op.value` filter.
///
/// ```
/// use crier_client::{ChangeEvent, PostgresChangesFilter};
/// let todos = PostgresChangesFilter::new(ChangeEvent::Insert, "public").table("todos").filter("done=eq.false");
/// assert_eq!(todos.table.as_deref(), Some("todos"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresChangesFilter {
    /// The row events.
    pub event: ChangeEvent,
    /// The schema (`*` for all).
    pub schema: String,
    /// The table (`*` or `None` for all).
    pub table: Option<String>,
    /// A `column=op.value` filter.
    pub filter: Option<String>,
    /// Only these columns (and the primary key) in `new` and `old` (`select: [...]`);
    /// `None` for every column. Needs a named schema and table.
    pub select: Option<Vec<String>>,
}

impl PostgresChangesFilter {
    /// A filter for `event` in `schema`, every table.
    pub fn new(event: ChangeEvent, schema: impl Into<String>) -> Self {
        PostgresChangesFilter {
            event,
            schema: schema.into(),
            table: None,
            filter: None,
            select: None,
        }
    }

    /// Restricts to one table.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// Adds a `column=op.value` filter.
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Receives only `columns` (and the primary key) of each row.
    pub fn select<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.select = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    pub(crate) fn binding(&self) -> PostgresChangeBinding {
        let mut binding = PostgresChangeBinding::new(
            self.event.as_str(),
            &self.schema,
            self.table.as_deref(),
            self.filter.as_deref(),
        );
        if let Some(columns) = &self.select {
            binding.raw.insert("select".into(), columns.clone().into());
        }
        binding
    }

    /// Whether the server's echo of this filter matches it (realtime-js's strict check:
    /// a mismatch means the server subscribed to something else).
    pub(crate) fn matches_echo(&self, echo: &Value) -> bool {
        let field = |name: &str| echo.get(name).and_then(Value::as_str);
        field("event") == Some(self.event.as_str())
            && field("schema") == Some(self.schema.as_str())
            && field("table") == self.table.as_deref()
            && field("filter") == self.filter.as_deref()
    }
}

/// Which of a channel's filters (by index) a delivered change belongs to.
///
/// `ids` are the ids the change carries; `binding_ids[i]` is the id the server gave filter
/// `i` at join; the change's `type` must also be an event filter `i` wants.
pub fn route_change(
    ids: &[u32],
    change_type: &str,
    filters: &[PostgresChangesFilter],
    binding_ids: &[u32],
) -> Vec<usize> {
    filters
        .iter()
        .zip(binding_ids)
        .enumerate()
        .filter(|(_, (filter, id))| ids.contains(id) && filter.event.accepts(change_type))
        .map(|(i, _)| i)
        .collect()
}

/// A column of a changed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Type name (`int8`, `text`, ...).
    #[serde(rename = "type")]
    pub type_name: String,
}

/// What every change says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeMeta {
    /// The schema.
    pub schema: String,
    /// The table.
    pub table: String,
    /// When the transaction committed (ISO 8601).
    pub commit_timestamp: String,
    /// The table's columns.
    pub columns: Vec<Column>,
    /// Server-side problems with this change (`Error 413: Payload Too Large`, ...).
    pub errors: Option<Vec<String>>,
}

/// A row change, with the new row decoded into `T`.
#[derive(Debug, Clone, PartialEq)]
pub enum PostgresChange<T = Value> {
    /// A row was inserted.
    Insert {
        /// The new row.
        new: T,
        /// About the change.
        meta: ChangeMeta,
    },
    /// A row was updated. `old` holds the primary key, or every column under
    /// `REPLICA IDENTITY FULL`.
    Update {
        /// The row after the update.
        new: T,
        /// What the server knows of the row before.
        old: Value,
        /// About the change.
        meta: ChangeMeta,
    },
    /// A row was deleted. `old` holds the primary key, or every column under
    /// `REPLICA IDENTITY FULL`.
    Delete {
        /// What the server knows of the deleted row.
        old: Value,
        /// About the change.
        meta: ChangeMeta,
    },
}

#[derive(Deserialize)]
struct Data {
    schema: String,
    table: String,
    #[serde(default)]
    commit_timestamp: String,
    #[serde(rename = "type")]
    change_type: String,
    #[serde(default)]
    columns: Vec<Column>,
    #[serde(default)]
    record: Value,
    #[serde(default)]
    old_record: Value,
    #[serde(default)]
    errors: Option<Vec<String>>,
}

impl<T: DeserializeOwned> PostgresChange<T> {
    /// Decodes the `data` object of a `postgres_changes` message.
    pub fn from_data(data: &Value) -> Result<Self, Error> {
        let data = Data::deserialize(data).map_err(|err| Error::Decode(err.to_string()))?;
        let meta = ChangeMeta {
            schema: data.schema,
            table: data.table,
            commit_timestamp: data.commit_timestamp,
            columns: data.columns,
            errors: data.errors,
        };
        let decode =
            |record: Value| T::deserialize(record).map_err(|err| Error::Decode(err.to_string()));
        match data.change_type.to_ascii_uppercase().as_str() {
            "INSERT" => Ok(PostgresChange::Insert {
                new: decode(data.record)?,
                meta,
            }),
            "UPDATE" => Ok(PostgresChange::Update {
                new: decode(data.record)?,
                old: data.old_record,
                meta,
            }),
            "DELETE" => Ok(PostgresChange::Delete {
                old: data.old_record,
                meta,
            }),
            other => Err(Error::Decode(format!("unknown change type `{other}`"))),
        }
    }

    /// About the change.
    pub fn meta(&self) -> &ChangeMeta {
        match self {
            PostgresChange::Insert { meta, .. }
            | PostgresChange::Update { meta, .. }
            | PostgresChange::Delete { meta, .. } => meta,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn changes_are_routed_by_the_ids_they_carry() {
        let filters = [
            PostgresChangesFilter::new(ChangeEvent::Insert, "public").table("todos"),
            PostgresChangesFilter::new(ChangeEvent::All, "public").table("todos"),
            PostgresChangesFilter::new(ChangeEvent::Delete, "public").table("users"),
        ];
        let ids = [11, 22, 33];
        assert_eq!(
            route_change(&[11, 22], "INSERT", &filters, &ids),
            vec![0, 1]
        );
        assert_eq!(route_change(&[22], "UPDATE", &filters, &ids), vec![1]);
        // An id that matched, but an event the filter does not want (the server sends both).
        assert_eq!(
            route_change(&[11], "UPDATE", &filters, &ids),
            Vec::<usize>::new()
        );
        assert_eq!(route_change(&[33], "delete", &filters, &ids), vec![2]);
        assert_eq!(
            route_change(&[99], "INSERT", &filters, &ids),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn changes_decode_into_user_types() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Todo {
            id: i64,
            title: String,
        }
        let data = json!({"schema": "public", "table": "todos", "commit_timestamp": "2026-01-02T03:04:05Z",
            "type": "UPDATE", "columns": [{"name": "id", "type": "int8"}],
            "record": {"id": 1, "title": "new"}, "old_record": {"id": 1}, "errors": null});
        let change = PostgresChange::<Todo>::from_data(&data).unwrap();
        match change {
            PostgresChange::Update { new, old, meta } => {
                assert_eq!(
                    new,
                    Todo {
                        id: 1,
                        title: "new".into()
                    }
                );
                assert_eq!(old, json!({"id": 1}));
                assert_eq!(meta.columns[0].type_name, "int8");
            }
            other => panic!("expected an update, got {other:?}"),
        }
        let bad = PostgresChange::<Todo>::from_data(&json!({"schema": "public", "table": "todos",
            "type": "INSERT", "record": {"id": "not a number"}}));
        assert!(matches!(bad, Err(Error::Decode(_))));
    }

    #[test]
    fn echoes_must_match_field_for_field() {
        let filter = PostgresChangesFilter::new(ChangeEvent::Insert, "public").table("todos");
        assert!(filter.matches_echo(
            &json!({"event": "INSERT", "schema": "public", "table": "todos", "id": 1})
        ));
        assert!(
            !filter.matches_echo(
                &json!({"event": "*", "schema": "public", "table": "todos", "id": 1})
            )
        );
        assert!(!filter.matches_echo(&json!({"event": "INSERT", "schema": "public", "id": 1})));
    }
}
