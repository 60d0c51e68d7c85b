//! crier-server's integration tests, one binary: each module tests one part of the server
//! from the outside, over real sockets (or in-memory pipes on paused time), with the
//! shared kit in `crier-testkit`.

mod bad_input;
mod broadcast;
mod channels;
mod connect;
mod database_broadcasts;
mod embedding;
mod flow_control;
mod http;
mod http_edge;
mod inspector;
mod jwks;
mod postgres_changes;
mod presence;
mod private_channels;
mod resume;
mod shared_history;
mod tokens;
