//! The client's errors. Server refusals carry the server's code, parsed from its
//! `"<Code>: <message>"` reason, so an application can match on what went wrong instead
//! of on text.

use crier_protocol::codes::{ErrorCode, Reason, RetryAdvice};
use serde_json::Value;

/// Everything that can go wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The WebSocket could not be opened or broke.
    #[error("transport: {0}")]
    Transport(String),
    /// The server refused the connection at the HTTP handshake.
    #[error("connection refused with HTTP {status}: {message}")]
    ConnectRefused {
        /// The HTTP status (401 bad token, 403 bad version, 429 limits).
        status: u16,
        /// The server's `{"error": ...}` text.
        message: String,
    },
    /// The server refused a join.
    #[error("join refused: {reason}")]
    JoinRefused {
        /// The parsed code, when the reason had a known one.
        code: Option<ErrorCode>,
        /// The server's full reason text.
        reason: String,
    },
    /// The server shut the channel down (expired token, rate limit, shutdown...).
    #[error("channel closed by the server: {reason}")]
    ChannelClosed {
        /// The `system` message that preceded the close, if any.
        reason: String,
    },
    /// The channel joined, but the server said postgres changes are not available.
    #[error("postgres changes unavailable: {message}")]
    PostgresChangesUnavailable {
        /// The server's `system` message.
        message: String,
    },
    /// The server's bindings did not match the ones this channel registered.
    #[error("the server's postgres_changes bindings do not match the channel's")]
    BindingMismatch,
    /// The server answered a push with an error.
    #[error("push refused: {response}")]
    PushRefused {
        /// The `response` of the error reply (an object or a string).
        response: Value,
    },
    /// No reply within the timeout.
    #[error("timed out waiting for the server")]
    Timeout,
    /// A push was dropped from the full offline buffer before it could be sent.
    #[error("the push was dropped: the offline buffer was full")]
    Dropped,
    /// The channel is not subscribed (or was unsubscribed) and the operation needs it.
    #[error("the channel is not subscribed")]
    NotSubscribed,
    /// The token provider failed.
    #[error("the token provider failed: {0}")]
    TokenProvider(String),
    /// An HTTP API call failed.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The status, 0 when the request never got an answer.
        status: u16,
        /// The server's message, or the transport error.
        message: String,
    },
    /// A value could not be decoded (a postgres change into a user type, say).
    #[error("decode: {0}")]
    Decode(String),
    /// The operation needs something the configuration does not allow (binary payloads
    /// over serializer 1.0.0, say).
    #[error("{0}")]
    Unsupported(String),
    /// The client was shut down (every handle dropped, or its task ended).
    #[error("the client is shut down")]
    ClientClosed,
    /// `disconnect()` was called while this was waiting.
    #[error("disconnected by the application")]
    Disconnected,
}

impl Error {
    /// A join refusal from the server's reason text.
    pub(crate) fn join_refused(reason: &str) -> Self {
        Error::JoinRefused {
            code: Reason::parse(reason).map(|r| r.code),
            reason: reason.to_owned(),
        }
    }

    /// What the client should do about this error.
    pub fn retry_advice(&self) -> RetryAdvice {
        match self {
            Error::JoinRefused {
                code: Some(code), ..
            } => code.retry_advice(),
            Error::JoinRefused { code: None, reason } if reason == "unmatched topic" => {
                RetryAdvice::Never
            }
            Error::ConnectRefused {
                status: 401 | 403, ..
            } => RetryAdvice::AfterTokenChange,
            Error::ConnectRefused { status: 429, .. } => RetryAdvice::RetryLater,
            Error::BindingMismatch | Error::Unsupported(_) | Error::Decode(_) => RetryAdvice::Never,
            _ => RetryAdvice::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_refusals_carry_the_server_code() {
        let err = Error::join_refused("ChannelRateLimitReached: Too many channels");
        assert_eq!(
            err,
            Error::JoinRefused {
                code: Some(ErrorCode::ChannelRateLimitReached),
                reason: "ChannelRateLimitReached: Too many channels".into()
            }
        );
        assert_eq!(err.retry_advice(), RetryAdvice::RetryLater);
        let err = Error::join_refused("JwtSignatureError: Failed to validate JWT signature");
        assert_eq!(err.retry_advice(), RetryAdvice::AfterTokenChange);
        let err = Error::join_refused("Something new: from a newer server");
        assert!(matches!(err, Error::JoinRefused { code: None, .. }));
        assert_eq!(err.retry_advice(), RetryAdvice::Retry);
    }
}
