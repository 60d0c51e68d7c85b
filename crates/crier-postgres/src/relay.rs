//! Captured events as the capturing node hands them to the other nodes of a cluster.
//!
//! One node streams the slot; the others follow it. They need the same events in the
//! same order, each self-contained: a node that starts following mid-stream has missed
//! the `Relation` messages PostgreSQL sent at the start of the stream, so every change
//! carries its table's description. A batch is encoded with `postcard` (compact serde,
//! values stay bytes) rather than JSON, whose byte arrays would be lists of numbers.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pgoutput::{OldTuple, Relation, Tuple};
use crate::replication::{ChangeKind, RowChange, StreamEvent};

/// Why a relayed batch could not be read (another program on Crier's stream, or a newer
/// Crier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable relayed capture batch: {0}")]
pub struct RelayError(String);

/// One event as it travels.
#[derive(Debug, Serialize, Deserialize)]
enum Relayed {
    Begin {
        final_lsn: u64,
        commit_time_micros: i64,
        xid: u32,
    },
    Change {
        relation: Relation,
        kind: ChangeKind,
        new: Option<Tuple>,
        old: Option<OldTuple>,
    },
    Commit {
        end_lsn: u64,
    },
    Relation(Relation),
    Type {
        oid: u32,
        name: String,
    },
}

/// The version byte in front of every batch.
const VERSION: u8 = 1;

/// Encodes a batch of events, in order.
pub fn encode(events: &[StreamEvent]) -> Vec<u8> {
    let relayed: Vec<Relayed> = events
        .iter()
        .map(|event| match event {
            StreamEvent::Begin {
                final_lsn,
                commit_time_micros,
                xid,
            } => Relayed::Begin {
                final_lsn: *final_lsn,
                commit_time_micros: *commit_time_micros,
                xid: *xid,
            },
            StreamEvent::Change(change) => Relayed::Change {
                relation: (*change.relation).clone(),
                kind: change.kind,
                new: change.new.clone(),
                old: change.old.clone(),
            },
            StreamEvent::Commit { end_lsn } => Relayed::Commit { end_lsn: *end_lsn },
            StreamEvent::Relation(relation) => Relayed::Relation((**relation).clone()),
            StreamEvent::Type { oid, name } => Relayed::Type {
                oid: *oid,
                name: name.clone(),
            },
        })
        .collect();
    let mut out = vec![VERSION];
    out.extend(postcard::to_allocvec(&relayed).expect("captured events serialize"));
    out
}

/// Decodes a batch made by [`encode`]. Changes of one table share one description.
pub fn decode(bytes: &[u8]) -> Result<Vec<StreamEvent>, RelayError> {
    let Some((&VERSION, body)) = bytes.split_first() else {
        return Err(RelayError(format!(
            "version {:?}, expected {VERSION}",
            bytes.first()
        )));
    };
    let relayed: Vec<Relayed> =
        postcard::from_bytes(body).map_err(|err| RelayError(err.to_string()))?;
    let mut tables: HashMap<u32, Arc<Relation>> = HashMap::new();
    let mut shared = |relation: Relation| match tables.get(&relation.id) {
        Some(known) if **known == relation => Arc::clone(known),
        _ => {
            let relation = Arc::new(relation);
            tables.insert(relation.id, Arc::clone(&relation));
            relation
        }
    };
    Ok(relayed
        .into_iter()
        .map(|event| match event {
            Relayed::Begin {
                final_lsn,
                commit_time_micros,
                xid,
            } => StreamEvent::Begin {
                final_lsn,
                commit_time_micros,
                xid,
            },
            Relayed::Change {
                relation,
                kind,
                new,
                old,
            } => StreamEvent::Change(RowChange {
                relation: shared(relation),
                kind,
                new,
                old,
            }),
            Relayed::Commit { end_lsn } => StreamEvent::Commit { end_lsn },
            Relayed::Relation(relation) => StreamEvent::Relation(shared(relation)),
            Relayed::Type { oid, name } => StreamEvent::Type { oid, name },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::pgoutput::{RelationColumn, Value};

    fn table() -> Arc<Relation> {
        Arc::new(Relation {
            id: 16_384,
            namespace: "public".into(),
            name: "todos".into(),
            replica_identity: b'd',
            columns: vec![RelationColumn {
                key: true,
                name: "id".into(),
                type_oid: 20,
                type_modifier: -1,
            }],
        })
    }

    #[test]
    fn a_batch_reads_back_event_for_event() {
        let relation = table();
        let row = |n: &'static [u8]| Tuple(vec![Value::Text(Bytes::from_static(n)), Value::Null]);
        let events = vec![
            StreamEvent::Relation(Arc::clone(&relation)),
            StreamEvent::Begin {
                final_lsn: 7,
                commit_time_micros: 1_700_000_000_000_000,
                xid: 42,
            },
            StreamEvent::Change(RowChange {
                relation: Arc::clone(&relation),
                kind: ChangeKind::Insert,
                new: Some(row(b"1")),
                old: None,
            }),
            StreamEvent::Change(RowChange {
                relation: Arc::clone(&relation),
                kind: ChangeKind::Delete,
                new: None,
                old: Some(OldTuple::Key(row(b"\xff binary-safe"))),
            }),
            StreamEvent::Type {
                oid: 90_000,
                name: "mood".into(),
            },
            StreamEvent::Commit { end_lsn: 9 },
        ];
        let decoded = decode(&encode(&events)).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{events:?}"));
        let (StreamEvent::Change(a), StreamEvent::Change(b)) = (&decoded[2], &decoded[3]) else {
            panic!("changes")
        };
        assert!(
            Arc::ptr_eq(&a.relation, &b.relation),
            "one description per table"
        );
    }

    #[test]
    fn foreign_bytes_are_errors_not_panics() {
        assert!(decode(b"").is_err());
        assert!(decode(b"\x02").is_err());
        assert!(decode(b"\x01\xff\xff\xff").is_err());
    }
}
