//! Event and topic names that carry meaning on the wire.
//!
//! Phoenix reserves the `phx_*` events and the `phoenix` topic; Supabase Realtime adds
//! `broadcast`, `presence`, `postgres_changes`, `system` and `access_token` on topics that
//! start with `realtime:`.

/// Topic of the socket-level heartbeat.
pub const PHOENIX_TOPIC: &str = "phoenix";
/// Prefix every channel topic must carry.
pub const TOPIC_PREFIX: &str = "realtime:";
/// Longest topic accepted, prefix included: binary frames describe a topic with one
/// length byte.
pub const MAX_TOPIC_BYTES: usize = 255;

/// Whether `topic` (with its prefix) may name a channel: at most [`MAX_TOPIC_BYTES`]
/// bytes, and no control characters (NUL among them) anywhere in it. Every way in (a
/// join, the REST API) refuses the same topics, with
/// [`Reason::invalid_topic`](crate::Reason::invalid_topic).
pub fn is_valid_topic(topic: &str) -> bool {
    topic.len() <= MAX_TOPIC_BYTES && !topic.chars().any(char::is_control)
}

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
/// The `event` inside a [`PRESENCE`] push that sets this socket's presence on a channel.
pub const PRESENCE_TRACK: &str = "track";
/// The `event` inside a [`PRESENCE`] push that removes this socket's presence.
pub const PRESENCE_UNTRACK: &str = "untrack";
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_bounded_and_free_of_control_characters() {
        let longest = format!(
            "{TOPIC_PREFIX}{}",
            "x".repeat(MAX_TOPIC_BYTES - TOPIC_PREFIX.len())
        );
        assert!(is_valid_topic(&longest));
        assert!(!is_valid_topic(&format!("{longest}x")));
        assert!(is_valid_topic("realtime:room-1 ü"));
        for bad in [
            "realtime:a\0b",
            "realtime:a\nb",
            "realtime:\u{7f}",
            "realtime:\u{85}",
        ] {
            assert!(!is_valid_topic(bad), "{bad:?}");
        }
    }
}
