//! Private channels: who may read and write them.
//!
//! **Seam** [`ChannelAuthorizer`]: answers "may this role, with these claims and headers,
//! read channel X (broadcast, presence)?" and "may it write X?". [`PgAuthorizer`] asks
//! the row level security policies on `realtime.messages`, as Supabase does;
//! [`FnAuthorizer`] answers from a Rust closure (for embedders without a database, and
//! for the tests of everything above the seam).
//!
//! Above the seam, [`Checks`] is what sessions and the REST API call: identical checks in
//! flight share one answer, at most `max_concurrent_checks` run at once (the others wait
//! their turn), and each is bounded by `check_timeout`. A reconnect storm of clients with
//! the same token therefore costs the database a few queries, not one per join, and
//! never more transactions than the pool holds.

mod checks;
mod postgres;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
pub use crier_postgres::channel_access::{ChannelCheck, Extension, ReadAccess, StoredMessage};

pub(crate) use checks::CheckMetrics;
pub(crate) use checks::Checks;
pub use postgres::{PgAuthorizer, PrepareError, prepare_database};

/// Why a check has no yes-or-no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    /// The policy could not answer for this caller (a policy raised, the role does not
    /// exist): the caller is refused, and the reason is logged, never sent.
    #[error("refused: {0}")]
    Refused(String),
    /// The database could not be asked.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// No answer in time (waiting for a free connection included).
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

/// Answers whether a caller may read or write a private channel.
///
/// An `async_trait` because the node holds it as a trait object.
#[async_trait]
pub trait ChannelAuthorizer: Send + Sync + fmt::Debug {
    /// Which parts of the channel the caller may read. The join succeeds with broadcast
    /// read, or with presence read when presence is enabled.
    async fn read(&self, check: &ChannelCheck) -> Result<ReadAccess, AuthorizationError>;

    /// Whether the caller may send `extension` messages on the channel.
    async fn write(
        &self,
        check: &ChannelCheck,
        extension: Extension,
    ) -> Result<bool, AuthorizationError>;

    /// The newest `limit` broadcasts stored for private channel `topic` since `since_ms`
    /// (Unix milliseconds), oldest first: what a join's `replay` sends. An authorizer
    /// with no store of messages has none (the default).
    async fn replay(
        &self,
        topic: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, AuthorizationError> {
        let _ = (topic, since_ms, limit);
        Ok(Vec::new())
    }
}

/// The question about channel `name` (the topic without `realtime:`) for a token's
/// `claims`, from a connection or request whose `x-*` headers are `headers` (JSON).
pub(crate) fn channel_check(
    name: &str,
    claims: &crate::auth::Claims,
    headers: &str,
) -> ChannelCheck {
    ChannelCheck {
        topic: name.to_owned(),
        role: claims.role.clone(),
        claims: claims.all.to_string(),
        sub: claims.sub.clone().unwrap_or_default(),
        headers: headers.to_owned(),
    }
}

/// The `x-*` headers of a request as the JSON object policies read from
/// `request.headers` (names in lower case; values that are not text are left out).
pub(crate) fn request_headers(headers: &axum::http::HeaderMap) -> String {
    let mut object = serde_json::Map::new();
    for (name, value) in headers {
        if name.as_str().starts_with("x-")
            && let Ok(value) = value.to_str()
        {
            object.insert(name.as_str().to_owned(), value.into());
        }
    }
    serde_json::Value::Object(object).to_string()
}

/// What a [`FnAuthorizer`] is asked: read, or write of one extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read the extension.
    Read(Extension),
    /// Write the extension.
    Write(Extension),
}

type Policy = dyn Fn(&ChannelCheck, Access) -> Result<bool, AuthorizationError> + Send + Sync;

/// An authorizer that asks a Rust function, once per extension and access.
///
/// ```
/// use crier_server::authz::{Access, Extension, FnAuthorizer};
///
/// // Anyone may read `room-*`; only `authenticated` may write.
/// let policy = FnAuthorizer::new(|check, access| {
///     Ok(check.topic.starts_with("room-")
///         && (matches!(access, Access::Read(_)) || check.role == "authenticated"))
/// });
/// # let _ = policy;
/// ```
pub struct FnAuthorizer {
    policy: Box<Policy>,
}

impl FnAuthorizer {
    /// An authorizer that calls `policy`.
    pub fn new(
        policy: impl Fn(&ChannelCheck, Access) -> Result<bool, AuthorizationError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        FnAuthorizer {
            policy: Box::new(policy),
        }
    }
}

impl fmt::Debug for FnAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnAuthorizer { .. }")
    }
}

#[async_trait]
impl ChannelAuthorizer for FnAuthorizer {
    async fn read(&self, check: &ChannelCheck) -> Result<ReadAccess, AuthorizationError> {
        Ok(ReadAccess {
            broadcast: (self.policy)(check, Access::Read(Extension::Broadcast))?,
            presence: (self.policy)(check, Access::Read(Extension::Presence))?,
        })
    }

    async fn write(
        &self,
        check: &ChannelCheck,
        extension: Extension,
    ) -> Result<bool, AuthorizationError> {
        (self.policy)(check, Access::Write(extension))
    }
}
