//! Postgres changes for Crier: row changes from PostgreSQL logical decoding, rendered the
//! way Supabase Realtime renders them, filtered, and authorized by the database's own row
//! level security.
//!
//! - [`replication`]: the publication and persistent slot, and the stream of committed
//!   changes (streaming replication protocol, `pgoutput`).
//! - [`pgoutput`]: the decoder of pgoutput messages.
//! - `types`: PostgreSQL types, and values rendered as `to_jsonb` renders them.
//! - `filter`: `column=op.value` filters.
//! - [`catalog`]: catalog lookups (RLS flag, primary key, tables, columns, privileges).
//! - [`rls`]: row level security checks, many rows per round trip.
//! - [`realtime_schema`]: the `realtime` schema private channels are authorized against,
//!   and its daily partitions.
//! - [`channel_access`]: who may read and write a private channel, asked of the
//!   policies on `realtime.messages`.
//! - [`render`]: a change rendered as the `data` of a `postgres_changes` message, per role.
//! - `pgtext` (private): readers of PostgreSQL's text formats (`numeric`, dates and
//!   timestamps, arrays, records, hstore, JSON as `jsonb`, `bool`, `uuid`) and calendar
//!   arithmetic, shared by `types`, `render` and `filter`.

pub mod catalog;
pub mod channel_access;
pub mod database_broadcast;
pub mod filter;
pub mod pgoutput;
mod pgtext;
pub mod realtime_schema;
pub mod relay;
pub mod render;
pub mod replication;
pub mod rls;
pub mod types;
