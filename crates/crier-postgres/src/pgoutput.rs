//! A decoder for `pgoutput`, PostgreSQL's built-in logical decoding output (protocol
//! version 1, text values).
//!
//! Each message is one tagged byte string: a transaction's `Begin` and `Commit`, a
//! `Relation` describing a table (sent before the first change to it, and again after it
//! changes), and `Insert`, `Update`, `Delete` carrying tuples. Values arrive as their
//! text output, or as "null", or as "unchanged TOAST" (a large value an `UPDATE` did not
//! touch, which the WAL does not repeat).
//!
//! Decoding never panics: a truncated or unknown message is an error.

use bytes::Bytes;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
pub const POSTGRES_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A transaction starts.
    Begin {
        /// The LSN of the commit record.
        final_lsn: u64,
        /// Commit time, microseconds since 2000-01-01.
        commit_time: i64,
        /// Transaction id.
        xid: u32,
    },
    /// A transaction commits.
    Commit {
        /// The LSN of the commit record.
        commit_lsn: u64,
        /// The LSN just past the commit: where to resume after this transaction.
        end_lsn: u64,
        /// Commit time, microseconds since 2000-01-01.
        commit_time: i64,
    },
    /// A table's shape.
    Relation(Relation),
    /// A non-builtin type's name.
    Type {
        /// Type OID.
        oid: u32,
        /// Schema.
        namespace: String,
        /// Type name.
        name: String,
    },
    /// A row was inserted.
    Insert {
        /// The table's OID.
        relation: u32,
        /// The new row.
        new: Tuple,
    },
    /// A row was updated.
    Update {
        /// The table's OID.
        relation: u32,
        /// The old row: its key (`REPLICA IDENTITY DEFAULT`, sent only when the key
        /// changed) or all of it (`FULL`).
        old: Option<OldTuple>,
        /// The new row.
        new: Tuple,
    },
    /// A row was deleted.
    Delete {
        /// The table's OID.
        relation: u32,
        /// The old row: its key, or all of it under `REPLICA IDENTITY FULL`.
        old: OldTuple,
    },
    /// Tables were truncated.
    Truncate {
        /// The tables' OIDs.
        relations: Vec<u32>,
    },
    /// Something this decoder skips (origin, logical messages, streaming).
    Other(u8),
}

/// A table as pgoutput describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Relation {
    /// The table's OID.
    pub id: u32,
    /// Schema.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Columns, in table order (dropped columns are not sent).
    pub columns: Vec<RelationColumn>,
}

/// A column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelationColumn {
    /// Part of the replica identity key.
    pub key: bool,
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// Type modifier (`varchar(10)`: 14).
    pub type_modifier: i32,
}

/// The old row of an update or delete.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OldTuple {
    /// The replica identity key columns (other columns are null).
    Key(Tuple),
    /// Every column (`REPLICA IDENTITY FULL`).
    Full(Tuple),
}

impl OldTuple {
    /// The tuple, whichever kind.
    pub fn tuple(&self) -> &Tuple {
        match self {
            OldTuple::Key(tuple) | OldTuple::Full(tuple) => tuple,
        }
    }
}

/// A row: one value per column of the relation.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Tuple(pub Vec<Value>);

/// One column value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    /// SQL null.
    Null,
    /// A TOASTed value the update did not change; the WAL does not carry it.
    UnchangedToast,
    /// The value's text output.
    Text(Bytes),
    /// The value's binary output (only with the `binary` option, which Crier does not use).
    Binary(Bytes),
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message ended inside a field.
    #[error("pgoutput message truncated in {0}")]
    Truncated(&'static str),
    /// A string field is not UTF-8.
    #[error("pgoutput string in {0} is not UTF-8")]
    InvalidUtf8(&'static str),
    /// A byte that should be a known marker is not.
    #[error("unexpected byte {byte:#04x} in {field}")]
    Unexpected {
        /// What was being read.
        field: &'static str,
        /// The byte.
        byte: u8,
    },
    /// An empty message.
    #[error("empty pgoutput message")]
    Empty,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    source: &'a Bytes,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError::Truncated(field))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(
            self.take(2, field)?.try_into().expect("2 bytes"),
        ))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(
            self.take(4, field)?.try_into().expect("4 bytes"),
        ))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4, field)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8, field)?.try_into().expect("8 bytes"),
        ))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(
            self.take(8, field)?.try_into().expect("8 bytes"),
        ))
    }

    /// A NUL-terminated string.
    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let rest = &self.bytes[self.pos..];
        let len = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or(DecodeError::Truncated(field))?;
        let text =
            std::str::from_utf8(&rest[..len]).map_err(|_| DecodeError::InvalidUtf8(field))?;
        self.pos += len + 1;
        Ok(text.to_owned())
    }

    /// `n` bytes shared with the message buffer (no copy).
    fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(n, field)?;
        Ok(self.source.slice(start..start + n))
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let count = self.i16("tuple column count")?;
        let mut values = Vec::with_capacity(count.max(0) as usize);
        for _ in 0..count.max(0) {
            values.push(match self.u8("tuple value kind")? {
                b'n' => Value::Null,
                b'u' => Value::UnchangedToast,
                kind @ (b't' | b'b') => {
                    let len = self.i32("tuple value length")?;
                    let len = usize::try_from(len)
                        .map_err(|_| DecodeError::Truncated("tuple value length"))?;
                    let bytes = self.bytes(len, "tuple value")?;
                    if kind == b't' {
                        Value::Text(bytes)
                    } else {
                        Value::Binary(bytes)
                    }
                }
                byte => {
                    return Err(DecodeError::Unexpected {
                        field: "tuple value kind",
                        byte,
                    });
                }
            });
        }
        Ok(Tuple(values))
    }
}

/// Decodes one pgoutput message.
pub fn decode(message: &Bytes) -> Result<Message, DecodeError> {
    let mut r = Reader {
        bytes: message,
        pos: 0,
        source: message,
    };
    let tag = r.u8("message tag").map_err(|_| DecodeError::Empty)?;
    Ok(match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64("begin lsn")?,
            commit_time: r.i64("begin time")?,
            xid: r.u32("begin xid")?,
        },
        b'C' => {
            let _flags = r.u8("commit flags")?;
            Message::Commit {
                commit_lsn: r.u64("commit lsn")?,
                end_lsn: r.u64("commit end lsn")?,
                commit_time: r.i64("commit time")?,
            }
        }
        b'R' => {
            let id = r.u32("relation id")?;
            let namespace = r.string("relation namespace")?;
            let name = r.string("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let count = r.i16("relation column count")?;
            let mut columns = Vec::with_capacity(count.max(0) as usize);
            for _ in 0..count.max(0) {
                columns.push(RelationColumn {
                    key: r.u8("column flags")? & 1 == 1,
                    name: r.string("column name")?,
                    type_oid: r.u32("column type")?,
                    type_modifier: r.i32("column type modifier")?,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => Message::Type {
            oid: r.u32("type oid")?,
            namespace: r.string("type namespace")?,
            name: r.string("type name")?,
        },
        b'I' => {
            let relation = r.u32("insert relation")?;
            match r.u8("insert marker")? {
                b'N' => Message::Insert {
                    relation,
                    new: r.tuple()?,
                },
                byte => {
                    return Err(DecodeError::Unexpected {
                        field: "insert marker",
                        byte,
                    });
                }
            }
        }
        b'U' => {
            let relation = r.u32("update relation")?;
            let (old, marker) = match r.u8("update marker")? {
                b'K' => (Some(OldTuple::Key(r.tuple()?)), r.u8("update new marker")?),
                b'O' => (Some(OldTuple::Full(r.tuple()?)), r.u8("update new marker")?),
                marker => (None, marker),
            };
            if marker != b'N' {
                return Err(DecodeError::Unexpected {
                    field: "update new marker",
                    byte: marker,
                });
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32("delete relation")?;
            let old = match r.u8("delete marker")? {
                b'K' => OldTuple::Key(r.tuple()?),
                b'O' => OldTuple::Full(r.tuple()?),
                byte => {
                    return Err(DecodeError::Unexpected {
                        field: "delete marker",
                        byte,
                    });
                }
            };
            Message::Delete { relation, old }
        }
        b'T' => {
            let count = r.u32("truncate relation count")?;
            let _options = r.u8("truncate options")?;
            let mut relations = Vec::with_capacity(count.min(1024) as usize);
            for _ in 0..count {
                relations.push(r.u32("truncate relation")?);
            }
            Message::Truncate { relations }
        }
        other => Message::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn text(out: &mut Vec<u8>, value: &str) {
        out.push(b't');
        out.extend_from_slice(&(value.len() as i32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }

    #[test]
    fn relation_insert_update_delete() {
        let mut rel = vec![b'R'];
        rel.extend_from_slice(&16384u32.to_be_bytes());
        cstr(&mut rel, "public");
        cstr(&mut rel, "todos");
        rel.push(b'd');
        rel.extend_from_slice(&2i16.to_be_bytes());
        rel.push(1);
        cstr(&mut rel, "id");
        rel.extend_from_slice(&20u32.to_be_bytes());
        rel.extend_from_slice(&(-1i32).to_be_bytes());
        rel.push(0);
        cstr(&mut rel, "title");
        rel.extend_from_slice(&25u32.to_be_bytes());
        rel.extend_from_slice(&(-1i32).to_be_bytes());
        let Message::Relation(relation) = decode(&Bytes::from(rel)).unwrap() else {
            panic!("a relation")
        };
        assert_eq!(
            (relation.namespace.as_str(), relation.name.as_str()),
            ("public", "todos")
        );
        assert!(relation.columns[0].key && !relation.columns[1].key);
        assert_eq!(relation.columns[1].type_oid, 25);

        let mut insert = vec![b'I'];
        insert.extend_from_slice(&16384u32.to_be_bytes());
        insert.push(b'N');
        insert.extend_from_slice(&2i16.to_be_bytes());
        text(&mut insert, "1");
        insert.push(b'n');
        let message = decode(&Bytes::from(insert)).unwrap();
        assert_eq!(
            message,
            Message::Insert {
                relation: 16384,
                new: Tuple(vec![Value::Text(Bytes::from_static(b"1")), Value::Null]),
            }
        );

        let mut update = vec![b'U'];
        update.extend_from_slice(&16384u32.to_be_bytes());
        update.push(b'O');
        update.extend_from_slice(&2i16.to_be_bytes());
        text(&mut update, "1");
        text(&mut update, "old");
        update.push(b'N');
        update.extend_from_slice(&2i16.to_be_bytes());
        text(&mut update, "1");
        update.push(b'u');
        let Message::Update {
            old: Some(OldTuple::Full(old)),
            new,
            ..
        } = decode(&Bytes::from(update)).unwrap()
        else {
            panic!("an update with the full old row")
        };
        assert_eq!(old.0[1], Value::Text(Bytes::from_static(b"old")));
        assert_eq!(new.0[1], Value::UnchangedToast);

        let mut delete = vec![b'D'];
        delete.extend_from_slice(&16384u32.to_be_bytes());
        delete.push(b'K');
        delete.extend_from_slice(&1i16.to_be_bytes());
        text(&mut delete, "7");
        assert!(matches!(
            decode(&Bytes::from(delete)).unwrap(),
            Message::Delete {
                old: OldTuple::Key(_),
                ..
            }
        ));
    }

    #[test]
    fn truncated_and_garbage_messages_are_errors() {
        assert_eq!(decode(&Bytes::new()), Err(DecodeError::Empty));
        assert!(decode(&Bytes::from_static(b"B\x00\x00")).is_err());
        let mut insert = vec![b'I', 0, 0, 0, 1, b'N', 0, 1, b't', 0, 0, 0, 50, b'x'];
        assert_eq!(
            decode(&Bytes::from(insert.clone())),
            Err(DecodeError::Truncated("tuple value"))
        );
        insert[5] = b'Z';
        assert!(matches!(
            decode(&Bytes::from(insert)),
            Err(DecodeError::Unexpected { .. })
        ));
        // A negative length must not wrap around.
        let negative = vec![b'I', 0, 0, 0, 1, b'N', 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
        assert!(decode(&Bytes::from(negative)).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..2000 {
            let mut bytes = Vec::with_capacity(len % 64);
            for _ in 0..(len % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push(seed as u8);
            }
            if let Some(first) = bytes.first_mut() {
                *first = b"BCRYIUDTX"[len % 9];
            }
            let _ = decode(&Bytes::from(bytes));
        }
    }
}
