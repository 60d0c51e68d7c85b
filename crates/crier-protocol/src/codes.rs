//! The error-code catalogue: every way a join, push or connection can fail, with the exact
//! wire text real clients already parse, and what a client should do about it.
//!
//! Join errors and ack errors travel as `{"status":"error","response":{"reason":"<Code>: <message>"}}`;
//! channel shutdowns travel as a `system` message whose `message` is the bare text (no code),
//! followed by `phx_close`. Both spellings come from Supabase Realtime, so SDKs that show or
//! match them keep working.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// What a client should do after an error with a given code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAdvice {
    /// Retry with the usual backoff.
    Retry,
    /// A rate limit: retry, but with a longer backoff.
    RetryLater,
    /// The token is the problem: do not retry until a new token is set.
    AfterTokenChange,
    /// The request itself is wrong: retrying the same request fails the same way.
    Never,
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident => $advice:ident ),+ $(,)?) => {
        /// A failure code, spelled on the wire exactly as the variant name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, for documentation checks and exhaustive tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => stringify!($variant),)+ }
            }

            /// What a client should do when it sees this code.
            pub fn retry_advice(self) -> RetryAdvice {
                match self { $(ErrorCode::$variant => RetryAdvice::$advice,)+ }
            }
        }

        impl FromStr for ErrorCode {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $(stringify!($variant) => Ok(ErrorCode::$variant),)+ _ => Err(()) }
            }
        }
    };
}

error_codes! {
    /// The join topic was `realtime:` with nothing after it.
    TopicNameRequired => Never,
    /// Crier: the topic is too long or contains control characters.
    InvalidTopic => Never,
    /// Crier: the `phx_join` payload has a field of the wrong type.
    InvalidJoinPayload => Never,
    /// The socket already has the maximum number of channels.
    ChannelRateLimitReached => RetryLater,
    /// The server has the maximum number of connections.
    ConnectionRateLimitReached => RetryLater,
    /// Joins per second are over the limit; the socket is closed too.
    ClientJoinRateLimitReached => RetryLater,
    /// The tenant does not exist.
    TenantNotFound => Never,
    /// Realtime is disabled for this tenant.
    RealtimeDisabledForTenant => Never,
    /// Only private channels are allowed.
    PrivateOnly => Never,
    /// The server is shutting down.
    RealtimeRestarting => Retry,
    /// The JWT is expired, not valid yet (`nbf`), or lacks `role`/`exp`.
    InvalidJWTToken => AfterTokenChange,
    /// The JWT cannot be parsed.
    MalformedJWT => AfterTokenChange,
    /// The JWT signature does not verify.
    JwtSignatureError => AfterTokenChange,
    /// No key can verify the JWT's algorithm (including `alg: none`).
    JwtSignerError => AfterTokenChange,
    /// The role may not read this private channel.
    Unauthorized => AfterTokenChange,
    /// The database behind private channels or postgres changes is unreachable.
    UnableToConnectToProject => Retry,
    /// Replay was requested but cannot be served.
    UnableToReplayMessages => Never,
    /// Crier: a frame that could not be decoded.
    MalformedMessage => Never,
    /// Crier: an event the channel does not handle.
    UnknownEvent => Never,
    /// Crier: a `broadcast` push whose payload is not a JSON object.
    InvalidBroadcast => Never,
    /// An internal error.
    UnknownErrorOnChannel => Retry,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A coded failure reason, written on the wire as `"<Code>: <message>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The code.
    pub code: ErrorCode,
    /// The human-readable message.
    pub message: Cow<'static, str>,
}

impl Reason {
    /// A reason with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Reason {
            code,
            message: message.into(),
        }
    }

    /// Parses `"<Code>: <message>"`. `None` when the prefix is not a known code, which is
    /// how clients should treat reasons from newer servers: show the text, retry normally.
    pub fn parse(text: &str) -> Option<Reason> {
        let (code, message) = text.split_once(": ")?;
        let code = code.parse().ok()?;
        Some(Reason::new(code, message.to_owned()))
    }

    /// `TopicNameRequired: You must provide a topic name`.
    pub fn topic_name_required() -> Self {
        Reason::new(
            ErrorCode::TopicNameRequired,
            "You must provide a topic name",
        )
    }

    /// `InvalidTopic: a topic is at most 255 bytes with no control characters`.
    pub fn invalid_topic() -> Self {
        Reason::new(
            ErrorCode::InvalidTopic,
            "a topic is at most 255 bytes with no control characters",
        )
    }

    /// `ChannelRateLimitReached: Too many channels`.
    pub fn too_many_channels() -> Self {
        Reason::new(ErrorCode::ChannelRateLimitReached, "Too many channels")
    }

    /// `ConnectionRateLimitReached: Too many connected users`.
    pub fn too_many_connections() -> Self {
        Reason::new(
            ErrorCode::ConnectionRateLimitReached,
            "Too many connected users",
        )
    }

    /// `ClientJoinRateLimitReached: Too many joins per second`.
    pub fn too_many_joins() -> Self {
        Reason::new(
            ErrorCode::ClientJoinRateLimitReached,
            "Too many joins per second",
        )
    }

    /// `RealtimeRestarting: Realtime is restarting, please standby`.
    pub fn restarting() -> Self {
        Reason::new(
            ErrorCode::RealtimeRestarting,
            "Realtime is restarting, please standby",
        )
    }

    /// `Unauthorized: You do not have permissions to read from this Channel topic: <name>`.
    pub fn unauthorized_read(channel: &str) -> Self {
        Reason::new(
            ErrorCode::Unauthorized,
            format!("You do not have permissions to read from this Channel topic: {channel}"),
        )
    }

    /// `UnableToReplayMessages: Replay is not allowed for public channels`.
    pub fn replay_on_public_channel() -> Self {
        Reason::new(
            ErrorCode::UnableToReplayMessages,
            "Replay is not allowed for public channels",
        )
    }

    /// `PrivateOnly: This project only allows private channels`.
    pub fn private_only() -> Self {
        Reason::new(
            ErrorCode::PrivateOnly,
            "This project only allows private channels",
        )
    }

    /// `UnableToConnectToProject: Realtime was unable to connect to the project database`.
    pub fn unable_to_connect() -> Self {
        Reason::new(
            ErrorCode::UnableToConnectToProject,
            shutdown::UNABLE_TO_CONNECT,
        )
    }

    /// `UnableToReplayMessages: Replay params are not valid`.
    pub fn invalid_replay_params() -> Self {
        Reason::new(
            ErrorCode::UnableToReplayMessages,
            "Replay params are not valid",
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The texts of `system` shutdown messages (sent with `status: "error"`, then `phx_close`).
pub mod shutdown {
    /// The tenant's events-per-second limit tripped.
    pub const TOO_MANY_MESSAGES: &str = "Too many messages per second";
    /// The tenant's presence-events-per-second limit tripped.
    pub const TOO_MANY_PRESENCE_MESSAGES: &str = "Too many presence messages per second";
    /// The channel sent more presence pushes than its window allows.
    pub const CLIENT_PRESENCE_RATE_LIMIT: &str = "Client presence rate limit exceeded";
    /// A presence track payload over the payload size limit.
    pub const TRACK_MESSAGE_SIZE_EXCEEDED: &str = "Track message size exceeded";
    /// A refreshed token without `role` or `exp`.
    pub const MISSING_CLAIMS: &str = "Fields `role` and `exp` are required in JWT";
    /// A private channel's authorization could not be checked.
    pub const UNABLE_TO_CONNECT: &str = "Realtime was unable to connect to the project database";
    /// A join asked for `broadcast.replication_ready` and broadcasts from the database
    /// did not start streaming within 60 s.
    pub const REPLICATION_NOT_ESTABLISHED: &str =
        "Replication connection was not established in time";

    /// A refreshed token may no longer read the private channel `channel`.
    pub fn read_revoked(channel: &str) -> String {
        format!("You no longer have permission to read from this Channel topic: {channel}")
    }

    /// `Token has expired <n> seconds ago`.
    pub fn token_expired(seconds_ago: i64) -> String {
        format!("Token has expired {seconds_ago} seconds ago")
    }
}

/// The `system` message (`extension: "system"`, `status: "ok"`) a join that asked for
/// `broadcast.replication_ready` gets once broadcasts from the database are streaming.
pub const REPLICATION_ESTABLISHED: &str = "Replication connection established";

/// The `system` message (`extension: "broadcast"`, `status: "error"`, `resume:
/// {"recovered": false}`) a channel gets when broadcasts from other nodes of a cluster
/// may have been lost on their way (the bus between nodes was cut); a resume from
/// before it reports a gap too.
pub const BROADCASTS_LOST: &str =
    "Gap: broadcasts from other nodes may have been lost while the cluster bus was unreachable";

/// The `system` message sent to every channel before a graceful shutdown closes the socket.
pub const SERVER_REQUESTED_DISCONNECT: &str = "Server requested disconnect";

/// WebSocket close codes the server uses, and what each tells a client to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: closed on request (leave everything, or a join-rate disconnect). Reconnect.
    Normal,
    /// 1001: the server closed an idle socket (no frame for the idle timeout). Reconnect.
    GoingAway,
    /// 1002: the client broke the WebSocket protocol (e.g. an unmasked frame).
    ProtocolError,
    /// 1007: a text frame that is not UTF-8.
    InvalidPayload,
    /// 1008: policy violation. Reconnect with backoff.
    Policy,
    /// 1009: a frame over the frame size limit. Reconnecting and resending fails again.
    TooBig,
    /// 1011: internal error. Reconnect with backoff.
    InternalError,
    /// 1012: graceful restart. Reconnect after a short pause.
    ServiceRestart,
    /// 1013: a slow consumer: its socket took no data for the slow-consumer timeout, or its
    /// queue went over its byte budget. Reconnect, then refetch state.
    TryAgainLater,
}

impl CloseCode {
    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::TryAgainLater => 1013,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_their_wire_text() {
        for code in ErrorCode::ALL {
            let reason = Reason::new(*code, "something: with a colon");
            let text = reason.to_string();
            assert!(text.starts_with(code.as_str()));
            assert_eq!(Reason::parse(&text), Some(reason));
        }
    }

    #[test]
    fn exact_supabase_texts() {
        assert_eq!(
            Reason::too_many_channels().to_string(),
            "ChannelRateLimitReached: Too many channels"
        );
        assert_eq!(
            Reason::too_many_joins().to_string(),
            "ClientJoinRateLimitReached: Too many joins per second"
        );
        assert_eq!(
            Reason::topic_name_required().to_string(),
            "TopicNameRequired: You must provide a topic name"
        );
        assert_eq!(
            shutdown::token_expired(3),
            "Token has expired 3 seconds ago"
        );
    }

    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../../docs/ERROR_CODES.md");
        for code in ErrorCode::ALL {
            assert!(
                doc.contains(&format!("| `{code}` |")),
                "{code} is missing from docs/ERROR_CODES.md"
            );
        }
    }

    #[test]
    fn unknown_prefixes_do_not_parse() {
        assert_eq!(Reason::parse("unmatched topic"), None);
        assert_eq!(Reason::parse("SomethingNew: text"), None);
    }
}
