//! Event and topic names that carry meaning on the wire.
//!
//! Phoenix reserves the `phx_*` events and the `phoenix` topic; Supabase Realtime adds
//! `broadcast`, `presence`, `postgres_changes`, `system` and `access_token` on topics that
//! start with `realtime:`.

/// Topic of the socket-level heartbeat.
pub const PHOENIX_TOPIC: &str = "phoenix";
/// Prefix every channel topic must carry.
pub const TOPIC_PREFIX: &str = "realtime:";

/// Client → server: join a channel.
pub const PHX_JOIN: &str = "phx_join";
/// Client → server: leave a channel.
pub const PHX_LEAVE: &str = "phx_leave";
/// Server → client: a reply to a push, matched by `ref`.
pub const PHX_REPLY: &str = "phx_reply";
/// Server → client: the channel is closed (normal stop, leave, duplicate join).
pub const PHX_CLOSE: &str = "phx_close";
/// Server → client: the channel crashed.
pub const PHX_ERROR: &str = "phx_error";
/// Client → server on [`PHOENIX_TOPIC`]: keep-alive.
pub const HEARTBEAT: &str = "heartbeat";

/// A broadcast message, in both directions.
pub const BROADCAST: &str = "broadcast";
/// Client → server: presence track / untrack.
pub const PRESENCE: &str = "presence";
/// Server → client: the full presence state of a channel.
pub const PRESENCE_STATE: &str = "presence_state";
/// Server → client: presence joins and leaves.
pub const PRESENCE_DIFF: &str = "presence_diff";
/// Server → client: a database row change.
pub const POSTGRES_CHANGES: &str = "postgres_changes";
/// Server → client: status and shutdown notices for a channel.
pub const SYSTEM: &str = "system";
/// Client → server: a refreshed JWT for a joined channel.
pub const ACCESS_TOKEN: &str = "access_token";

/// `system` message extension for server/channel lifecycle notices.
pub const EXTENSION_SYSTEM: &str = "system";
/// `system` message extension for postgres-changes status.
pub const EXTENSION_POSTGRES_CHANGES: &str = "postgres_changes";
