//! Postgres changes for Crier: row changes from PostgreSQL logical decoding, rendered the
//! way Supabase Realtime renders them, filtered, and authorized by the database's own row
//! level security.
//!
//! - [`replication`]: the publication and persistent slot, and the stream of committed
//!   changes (streaming replication protocol, `pgoutput`).
//! - [`pgoutput`]: the decoder of pgoutput messages.
//! - `types`: PostgreSQL types, and values rendered as `to_jsonb` renders them.
//! - `filter`: `column=op.value` filters.
//! - [`render`]: a change rendered as the `data` of a `postgres_changes` message, per role.

pub mod filter;
pub mod pgoutput;
pub mod render;
pub mod replication;
pub mod types;
