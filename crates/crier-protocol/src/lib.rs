//! The Supabase Realtime wire protocol (Phoenix Channels over WebSocket), as data.
//!
//! This crate is pure: no sockets, no clocks, no async. The server, the Rust client, the
//! CLI and the load generator all speak the protocol through it, so a frame that one side
//! encodes is, by construction and by property test, a frame the other side decodes.
//!
//! - [`message`]: the decoded shape of one frame ([`Message`], [`Payload`]).
//! - [`serializer`]: the 1.0.0 (JSON object) and 2.0.0 (JSON array plus binary kinds 0-4)
//!   serializers, in both directions.
//! - [`join`]: the typed `phx_join` payload, validated the way the Elixir server casts it.
//! - [`presence`]: presence state and `presence_diff` maths (track, update, untrack, leave).
//! - [`codes`]: the error-code catalogue and the exact `"<Code>: <message>"` reasons.
//! - [`events`]: event and topic names that have meaning on the wire.
//! - [`json`]: JSON from clients, nested up to 1,000 levels.
//! - [`rest`]: the broadcast REST API's batch body.

pub mod codes;
pub mod events;
pub mod join;
pub mod json;
pub mod message;
pub mod presence;
pub mod rest;
pub mod serializer;

pub use codes::{CloseCode, ErrorCode, Reason};
pub use join::{JoinConfig, JoinError, JoinRequest, PostgresChangeBinding};
pub use message::{Message, Payload, PayloadEncoding, UserBroadcast};
pub use presence::{PresenceChange, PresenceDiff, PresenceMeta, PresenceView, Presences};
pub use serializer::{DecodeError, Vsn, WireFrame};
