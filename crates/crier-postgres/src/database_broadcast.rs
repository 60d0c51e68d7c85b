//! Broadcasts from the database: the rows `realtime.send`, `realtime.send_binary` and
//! `realtime.broadcast_changes` insert into `realtime.messages`, read back from the same
//! persistent slot as postgres changes.
//!
//! Supabase reads these rows through a temporary slot that exists only while its server
//! is connected, so a row committed while it is away is never pushed. Crier adds the
//! table to its own slot through a second publication, [`PUBLICATION`], so these rows
//! have the guarantee postgres changes have: the slot moves past a row only once it has
//! been queued to the topic's subscribers, and a row committed while Crier is down is
//! delivered when it is back.
//!
//! The publication publishes inserts only, through the partitioned root: every row
//! arrives as a change of `realtime.messages` whatever daily partition holds it.

use crate::channel_access::StoredMessage;
use crate::pgoutput::{Relation, Value};
use crate::replication::{ChangeKind, RowChange, quote_ident};

/// The publication that adds `realtime.messages` to the slot.
pub const PUBLICATION: &str = "crier_realtime_messages";

/// One database broadcast, as read from an inserted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseBroadcast {
    /// The channel name (`room1`, without `realtime:`).
    pub topic: String,
    /// Whether it is for the private channel of that name.
    pub private: bool,
    /// Its id, event and payload.
    pub message: StoredMessage,
}

/// Why an inserted `realtime.messages` row could not be read as a broadcast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastRowError {
    /// The row has no value for a column a broadcast needs.
    #[error("realtime.messages row without {0}")]
    Missing(&'static str),
    /// A column's value is not what the table's type promises.
    #[error("realtime.messages row with an unreadable {column}: {why}")]
    Unreadable {
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

/// Whether the change is of `realtime.messages` or one of its partitions (a partition is
/// named when another publication on the slot publishes partitions as themselves).
pub fn is_messages_table(relation: &Relation) -> bool {
    relation.namespace == "realtime"
        && (relation.name == "messages" || relation.name.starts_with("messages_"))
}

/// Reads an inserted `realtime.messages` row as a broadcast. `Ok(None)` for what is not
/// a broadcast: updates and deletes, and rows of another extension (presence rows that
/// private channels' checks write never commit, but a user could insert one).
pub fn read_row(change: &RowChange) -> Result<Option<DatabaseBroadcast>, BroadcastRowError> {
    if change.kind != ChangeKind::Insert {
        return Ok(None);
    }
    let Some(row) = &change.new else {
        return Ok(None);
    };
    let value = |name: &str| -> Option<&[u8]> {
        let index = change
            .relation
            .columns
            .iter()
            .position(|c| c.name == name)?;
        match row.0.get(index)? {
            Value::Text(bytes) | Value::Binary(bytes) => Some(bytes),
            Value::Null | Value::UnchangedToast => None,
        }
    };
    let text = |column: &'static str| -> Result<Option<String>, BroadcastRowError> {
        value(column)
            .map(|bytes| {
                String::from_utf8(bytes.to_vec()).map_err(|err| BroadcastRowError::Unreadable {
                    column,
                    why: err.to_string(),
                })
            })
            .transpose()
    };
    if text("extension")?.as_deref() != Some("broadcast") {
        return Ok(None);
    }
    let id = text("id")?.ok_or(BroadcastRowError::Missing("id"))?;
    let topic = text("topic")?.ok_or(BroadcastRowError::Missing("topic"))?;
    let private = match value("private") {
        Some(b"t") => true,
        Some(b"f") => false,
        Some(other) => {
            return Err(BroadcastRowError::Unreadable {
                column: "private",
                why: format!("{:?} is not a boolean", String::from_utf8_lossy(other)),
            });
        }
        // Supabase's column defaults to true; a null is read the same way.
        None => true,
    };
    let event = text("event")?.unwrap_or_default();
    let payload = text("payload")?.map(|json| compact_json(&json));
    let binary = match (&payload, value("binary_payload")) {
        (None, Some(hex_text)) => Some(decode_bytea(hex_text)?),
        _ => None,
    };
    if payload.is_none() && binary.is_none() {
        return Err(BroadcastRowError::Missing("payload or binary_payload"));
    }
    Ok(Some(DatabaseBroadcast {
        topic,
        private,
        message: StoredMessage {
            id,
            event,
            payload,
            binary,
        },
    }))
}

/// `jsonb`'s text output without the blanks it puts after `:` and `,`, so subscribers are
/// sent what a JSON encoder would write. The text is passed on as it is otherwise: a
/// round trip through `serde_json` would turn numbers beyond `f64` into approximations,
/// and a minifier crate would bring JavaScript and CSS minifiers along for these lines.
pub fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// `bytea` in PostgreSQL's text output (`\x` and two hex digits a byte, the default
/// `bytea_output`; the replication connection does not change it).
fn decode_bytea(text: &[u8]) -> Result<Vec<u8>, BroadcastRowError> {
    let unreadable = |why: String| BroadcastRowError::Unreadable {
        column: "binary_payload",
        why,
    };
    let digits = text
        .strip_prefix(b"\\x")
        .ok_or_else(|| unreadable("not in hex output format".to_owned()))?;
    hex::decode(digits).map_err(|err| unreadable(err.to_string()))
}

/// Whether database broadcasts can be captured, as [`ensure_publication`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicationState {
    /// The publication exists: the slot streams `realtime.messages`.
    Ready,
    /// It cannot be made; the text says why and what would fix it.
    Unavailable(String),
}

/// Creates [`PUBLICATION`] for `realtime.messages` when it is missing. Safe from several
/// nodes at once. When the table does not exist, or the role may not publish it (a
/// publication needs the table's owner), capture goes on without database broadcasts and
/// the state says what to do.
pub async fn ensure_publication(
    client: &tokio_postgres::Client,
) -> Result<PublicationState, tokio_postgres::Error> {
    let row = client
        .query_one(
            "select pg_catalog.to_regclass('realtime.messages') is not null,
                    exists (select 1 from pg_catalog.pg_publication where pubname = $1)",
            &[&PUBLICATION],
        )
        .await?;
    let (table_exists, publication_exists): (bool, bool) = (row.get(0), row.get(1));
    if publication_exists {
        return Ok(PublicationState::Ready);
    }
    if !table_exists {
        return Ok(PublicationState::Unavailable(
            "realtime.messages does not exist (it is created with private channels' schema)"
                .to_owned(),
        ));
    }
    let create = create_statement();
    match client.batch_execute(&create).await {
        Ok(()) => Ok(PublicationState::Ready),
        Err(err) => match err.as_db_error().map(|db| db.code().code()) {
            // Created by another node meanwhile.
            Some("42710") => Ok(PublicationState::Ready),
            Some("42501") => Ok(PublicationState::Unavailable(format!(
                "the role may not publish realtime.messages ({}); run as its owner: {create}",
                err.as_db_error().map_or("", |db| db.message())
            ))),
            _ => Err(err),
        },
    }
}

/// The statement that creates [`PUBLICATION`].
pub fn create_statement() -> String {
    format!(
        "create publication {} for table realtime.messages \
         with (publish = 'insert', publish_via_partition_root = true)",
        quote_ident(PUBLICATION)
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::pgoutput::{RelationColumn, Tuple};

    fn messages() -> Arc<Relation> {
        let column = |name: &str| RelationColumn {
            key: name == "id",
            name: name.to_owned(),
            type_oid: 25,
            type_modifier: -1,
        };
        Arc::new(Relation {
            id: 1,
            namespace: "realtime".into(),
            name: "messages".into(),
            replica_identity: b'd',
            columns: [
                "topic",
                "extension",
                "payload",
                "event",
                "private",
                "updated_at",
                "inserted_at",
                "id",
                "binary_payload",
            ]
            .into_iter()
            .map(column)
            .collect(),
        })
    }

    fn insert(values: [Option<&str>; 9]) -> RowChange {
        let values = values
            .into_iter()
            .map(|v| v.map_or(Value::Null, |v| Value::Text(Bytes::from(v.to_owned()))))
            .collect();
        RowChange {
            relation: messages(),
            kind: ChangeKind::Insert,
            new: Some(Tuple(values)),
            old: None,
        }
    }

    const ID: &str = "8a6c2f7e-2b8f-4a4e-9a55-0c4e1a0f8f11";
    const AT: &str = "2026-12-04 10:00:00";

    #[test]
    fn a_json_row_reads_as_a_broadcast() {
        let row = [
            Some("room1"),
            Some("broadcast"),
            Some(r#"{"a": 1}"#),
            Some("shout"),
            Some("f"),
            Some(AT),
            Some(AT),
            Some(ID),
            None,
        ];
        let broadcast = read_row(&insert(row)).unwrap().unwrap();
        assert_eq!(broadcast.topic, "room1");
        assert!(!broadcast.private);
        assert_eq!(broadcast.message.id, ID);
        assert_eq!(broadcast.message.event, "shout");
        assert_eq!(broadcast.message.payload.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(broadcast.message.binary, None);
    }

    #[test]
    fn a_binary_row_decodes_its_bytes() {
        let row = [
            Some("room1"),
            Some("broadcast"),
            None,
            Some("bytes"),
            Some("t"),
            Some(AT),
            Some(AT),
            Some(ID),
            Some("\\x00ff10"),
        ];
        let broadcast = read_row(&insert(row)).unwrap().unwrap();
        assert!(broadcast.private);
        assert_eq!(broadcast.message.binary, Some(vec![0x00, 0xff, 0x10]));
    }

    #[test]
    fn other_extensions_and_other_kinds_are_not_broadcasts() {
        let mut row = [
            Some("room1"),
            Some("presence"),
            Some("{}"),
            Some("e"),
            Some("t"),
            Some(AT),
            Some(AT),
            Some(ID),
            None,
        ];
        assert_eq!(read_row(&insert(row)).unwrap(), None);
        row[1] = Some("broadcast");
        let mut update = insert(row);
        update.kind = ChangeKind::Update;
        assert_eq!(read_row(&update).unwrap(), None);
    }

    #[test]
    fn broken_rows_say_what_is_wrong() {
        let good = [
            Some("room1"),
            Some("broadcast"),
            None,
            Some("e"),
            Some("t"),
            Some(AT),
            Some(AT),
            Some(ID),
            Some("\\x00"),
        ];
        let mut no_topic = good;
        no_topic[0] = None;
        assert_eq!(
            read_row(&insert(no_topic)),
            Err(BroadcastRowError::Missing("topic"))
        );
        let mut bad_hex = good;
        bad_hex[8] = Some("\\xzz");
        assert!(matches!(
            read_row(&insert(bad_hex)),
            Err(BroadcastRowError::Unreadable {
                column: "binary_payload",
                ..
            })
        ));
        let mut nothing = good;
        nothing[8] = None;
        assert_eq!(
            read_row(&insert(nothing)),
            Err(BroadcastRowError::Missing("payload or binary_payload"))
        );
    }

    #[test]
    fn json_loses_its_blanks_outside_strings_only() {
        assert_eq!(
            compact_json(
                r#"{"a": [1, 2.50, 123456789012345678901234567890], "b c": "x, y: \"z\" \\", "d": {"e": null}}"#
            ),
            r#"{"a":[1,2.50,123456789012345678901234567890],"b c":"x, y: \"z\" \\","d":{"e":null}}"#
        );
        assert_eq!(compact_json(r#""\\" "#), r#""\\""#);
    }

    #[test]
    fn partitions_count_as_the_table() {
        let mut relation = (*messages()).clone();
        assert!(is_messages_table(&relation));
        relation.name = "messages_2026_12_04".into();
        assert!(is_messages_table(&relation));
        relation.namespace = "public".into();
        assert!(!is_messages_table(&relation));
    }
}
