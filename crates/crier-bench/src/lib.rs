//! The load generator behind `crier bench`.
//!
//! One tool drives every server under comparison: Crier (Phoenix Channels v1/v2 JSON), the
//! bare Rust WebSocket broadcast server that marks the transport ceiling, the Node `ws`
//! server, socket.io rooms and nats-server's WebSocket listener. Each protocol is a
//! [`wire::Wire`]; the workloads only subscribe, publish and read stamped payloads.
//!
//! Layout:
//! * [`wire`]: the protocols.
//! * [`client`]: dialling, handshake, subscribing.
//! * [`worker`]: a share of a run's connections on one thread (in this process or a
//!   process of its own, so runs can exceed one process's file limit).
//! * [`workload`]: the coordinators: single-topic fan-out (B1), virtual users (B2), idle
//!   memory, and postgres changes (B3: rows written to PostgreSQL, delivered by Crier).
//! * [`report`]: result rows, the human table and the JSON file.
//!
//! Latency is the difference between a payload's send stamp and its receipt, both read
//! from the system's monotonic clock ([`clock`]), so it is exact across worker processes
//! on one machine. It includes the load generator's own scheduling delay: when its core
//! saturates, latency grows for reasons that are not the server's, which is why reports
//! carry the tool's CPU use.

pub mod client;
pub mod clock;
mod failures;
pub mod payload;
pub mod procfs;
mod progress;
pub mod report;
pub mod stats;
pub mod wire;
pub mod worker;
pub mod workload;

pub use report::{Rate, Run};
pub use wire::{ServerKind, Target, Vsn};
pub use worker::link::run_worker_process;
pub use workload::Options;

/// What can stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A worker could not start, failed, or exited.
    #[error("bench worker failed: {0}")]
    Worker(String),
    /// Nothing could connect, so there is nothing to measure.
    #[error("no connection could join: {0}")]
    NoneJoined(String),
    /// Some subscribers could not subscribe: a partial run would not measure what was
    /// asked.
    #[error("only {joined} of {wanted} subscribers subscribed: {samples}")]
    NotAllJoined {
        /// Subscribers that did.
        joined: usize,
        /// Subscribers asked for.
        wanted: usize,
        /// The first few failure messages, with counts.
        samples: String,
    },
    /// The database could not be reached or set up.
    #[error("database: {0}")]
    Database(String),
    /// The settings contradict each other.
    #[error("{0}")]
    Settings(String),
    /// Writing results failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}
