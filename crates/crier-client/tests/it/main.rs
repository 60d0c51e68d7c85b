//! crier-client's integration tests, one binary: `deterministic` drives the client over
//! the in-memory transport on paused time; `against_server`, `postgres_changes` and `private_channels`
//! run it against a real node (and a private PostgreSQL) from `crier-testkit`.

mod against_server;
mod deterministic;
mod postgres_changes;
mod private_channels;
mod resume;
