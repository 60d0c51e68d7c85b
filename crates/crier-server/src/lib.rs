//! Crier's realtime server, as a library.
//!
//! It speaks the Supabase Realtime protocol (Phoenix Channels over WebSocket, serializers
//! 1.0.0 and 2.0.0), so `@supabase/realtime-js`, `supabase-js`, phoenix.js and the other
//! SDKs connect to it unchanged: broadcast, presence, JWT auth, the broadcast REST API,
//! limits, metrics and graceful shutdown.
//!
//! The pieces, from the socket inwards:
//!
//! - [`serve`] accepts connections; [`Node::router`] routes HTTP (`http` module).
//! - `session`: one task per WebSocket, owning that socket's channels.
//! - `registry`: topics, their subscribers and their presence.
//! - `fanout`: a message encoded once per serializer, pushed into per-socket queues
//!   bounded in bytes (`outbound`), which each socket task writes in batches; `flow`:
//!   publishers wait for room, a slow consumer is one that stops taking data.
//! - `changes`: postgres changes, captured from the database's replication slot,
//!   authorized by its row level security, and fanned out like any other message.
//! - [`authz`]: private channels, authorized by the database's row level security.
//! - `auth`, `limits`, `metrics`: JWT checks, rate counters, Prometheus figures.
//! - `inspector`: the live inspector page's feed (overview, channels) and assets.
//! - [`Node`]: the composition root, and the API to publish from Rust code.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use crier_server::{Config, Node};
//! use serde_json::json;
//!
//! let node = Node::new(Config::new("a-long-random-secret")).expect("a usable config");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
//! tokio::spawn(crier_server::serve(listener, node.clone()));
//!
//! // Later, from anywhere in the application (`broadcast` never waits;
//! // `broadcast_async` waits for subscribers to have room):
//! node.broadcast("room1", "new-order", &json!({"id": 42})).ok();
//! node.broadcast_async("room1", "new-order", &json!({"id": 43})).await.ok();
//! # Ok(()) }
//! ```

pub mod auth;
pub mod authz;
pub mod broker;
pub mod changes;
pub mod clock;
mod config;
mod fanout;
mod flow;
mod frame;
mod history;
mod hooks;
mod http;
mod inspector;
pub mod limits;
mod metrics;
mod node;
mod outbound;
pub mod presence;
mod registry;
mod serve;
mod session;

pub use config::{
    AuthorizationConfig, Config, ConfigError, FlowConfig, InspectorConfig, Limits,
    PostgresChangesConfig, SocketConfig,
};
pub use history::HistoryConfig;
pub use hooks::ConnectionInfo;
pub use node::{Node, NodeBuilder, PublishError};
pub use serve::{bind, serve, serve_connection};

pub use crier_protocol as protocol;
