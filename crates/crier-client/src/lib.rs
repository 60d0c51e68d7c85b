//! A Rust client for the Supabase Realtime protocol: broadcast, presence and postgres
//! changes over Phoenix Channels, against Crier or any Supabase Realtime server.
//!
//! What it gets right, where existing SDKs have well-known gaps:
//!
//! - **Dead connections are noticed**: a heartbeat unanswered when the next is due closes
//!   the socket and reconnects ([`HeartbeatEvent::Timeout`]); [`Client::probe`] checks at
//!   once (after a laptop wakes up, say).
//! - **Reconnects are capped and jittered** ([`Backoff`]), and a manual
//!   [`Client::disconnect`] is never followed by a reconnect.
//! - **Tokens are refreshed before they expire** ([`TokenProvider`]); every join waits for
//!   a fetch in flight, and a new token is pushed to every joined channel.
//! - **Rejoins restore everything**: filters, presence key, the last tracked presence and
//!   the current token; a [`ChannelEvent::Resumed`] tells the app to refetch what it missed.
//! - **Refusals are typed** ([`Error::JoinRefused`] carries the server's code) and only
//!   retried when retrying can help: auth errors wait for a new token.
//! - **`subscribe()` means live**: with postgres-changes filters it resolves once the
//!   server confirms they are live; changes are routed by the server's binding ids.
//! - **Presence is exact**: updates are one event, not a leave and a join; the last payload
//!   is tracked again after a rejoin.
//! - **Everything is bounded**: the offline push buffer (oldest dropped, reported) and
//!   every stream (a listener that falls behind skips its oldest events).
//!
//! ```no_run
//! # async fn run() -> Result<(), crier_client::Error> {
//! use crier_client::{Client, ChannelOptions, PresenceEvent};
//! use futures_util::StreamExt;
//!
//! let client = Client::builder("ws://127.0.0.1:4000/socket").api_key("<anon key>").build()?;
//! let room = client.channel_with("room1", ChannelOptions::default().presence_key("alice"));
//! let mut presence = room.presence_events();
//! room.subscribe().await?;
//! room.track(serde_json::json!({"status": "online"})).await?;
//! while let Some(event) = presence.next().await {
//!     if let PresenceEvent::Sync = event {
//!         println!("online: {:?}", room.presence_state().keys().collect::<Vec<_>>());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Time comes from tokio and the transport is a trait, so tests run on the paused clock
//! against [`transport::memory`]: see `tests/deterministic.rs`.

mod auth;
mod backoff;
mod channel;
mod client;
mod driver;
mod error;
mod events;
mod heartbeat;
mod http;
mod options;
mod postgres;
mod push_buffer;
mod streams;
pub mod transport;

pub use auth::{TokenError, TokenFuture, TokenProvider};
pub use backoff::Backoff;
pub use channel::Channel;
pub use client::{Client, ClientBuilder};
pub use crier_protocol::Vsn;
pub use crier_protocol::codes::{ErrorCode, RetryAdvice};
pub use crier_protocol::presence::PresenceMeta;
pub use error::Error;
pub use events::{
    Broadcast, BroadcastPayload, ChannelEvent, ChannelStatus, ConnectionStatus, PresenceEvent,
    PresenceState, RoutedChange, SystemMessage,
};
pub use heartbeat::HeartbeatEvent;
pub use http::HttpMessage;
pub use options::ChannelOptions;
pub use postgres::{
    ChangeEvent, ChangeMeta, Column, PostgresChange, PostgresChangesFilter, route_change,
};
