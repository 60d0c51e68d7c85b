//! crier-postgres's integration tests, in one test binary. Each test starts its own
//! PostgreSQL server with crier-testkit. A module per part of the crate:
//!
//! - `authorization`: `catalog` (table info, publications, columns, roles, privileges,
//!   the pool) and `rls::visible_rows`.
//! - `channel_access`: the `realtime` schema (`realtime_schema`) and private-channel
//!   read and write checks (`channel_access`) under real policies.
//! - `capture`: `replication` (publication, slot, streaming, acknowledgement) and the
//!   `pgoutput` messages it decodes.
//! - `render`: `types::TypeCatalog::render` against PostgreSQL's `to_jsonb`.
//! - `render_changes`: `render::RenderedChange` on changes captured from a server.
//! - `filter_vs_postgres`: `filter::Filter` against PostgreSQL's operators on the same
//!   values.

mod authorization;
mod capture;
mod channel_access;
mod filter_vs_postgres;
mod render;
mod render_changes;
