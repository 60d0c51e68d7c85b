//! Test support for Crier, shared by every crate's tests:
//!
//! - [`TestPostgres`]: a private PostgreSQL started from the system's binaries.
//! - [`TestRedis`]: a private `redis-server`, which can be restarted mid-test.
//! - `server` (feature `server`): a real node on a loopback port or in-memory pipes.
//! - `tokens` (feature `server`): test tokens, good and bad.
//! - `raw` (feature `server`): a raw protocol client for both serializers.
//! - [`wait`]: failure guards for awaits; no test waits a fixed delay.
//!
//! The server parts are behind a feature so that `crier-postgres`, which the server
//! depends on, can test with the PostgreSQL harness alone.

mod postgres;
#[cfg(feature = "server")]
pub mod raw;
mod redis;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod tokens;
pub mod wait;

pub use postgres::{HarnessError, TestPostgres};
pub use redis::TestRedis;

/// Everything a server test uses, in one import.
#[cfg(feature = "server")]
pub mod prelude {
    pub use crate::raw::{Bystanders, Client, Received, json_payload, reason, without_position};
    pub use crate::server::{MemoryServer, TestServer};
    pub use crate::tokens::{
        BadToken, PUBLIC_JWKS, PUBLIC_JWKS_ROTATED, SECRET, jwk_token, keys_file, token,
    };
    pub use crate::wait::{WAIT, next, within};
}
