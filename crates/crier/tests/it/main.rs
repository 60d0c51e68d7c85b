//! The `crier` binary's integration tests, one test binary: each module runs the real
//! binary as a user would (`support` spawns it and reads its output with deadlines).

mod bench;
mod cli;
mod client_cli;
mod cluster;
mod flow;
mod jwks;
mod postgres_restart;
mod private_channels;
mod restart;
mod support;
