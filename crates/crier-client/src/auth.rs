//! The auth token manager: where the channel token comes from and when to refresh it.
//!
//! A token is either set by hand ([`crate::ClientBuilder::access_token`],
//! [`crate::Client::set_auth`]) or fetched from an async provider (a sign-in SDK's
//! "current session" call). A provided token is refreshed *before* it expires, so the
//! server never gets the chance to close a channel for an expired token; every join and
//! rejoin waits for a fetch in flight, so no join goes out with a stale token.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The error a token provider may return.
pub type TokenError = Box<dyn std::error::Error + Send + Sync>;

/// What a token provider returns.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send>>;

/// An async function that returns the current access token.
///
/// The client asks it before the first join, after every reconnect, and before each
/// token it returned expires; joins wait for the answer.
///
/// ```
/// use crier_client::{Client, TokenProvider};
///
/// # async fn current_session_token() -> Result<String, std::io::Error> { Ok("jwt".into()) }
/// # fn build() -> Result<Client, crier_client::Error> {
/// let client = Client::builder("ws://127.0.0.1:4000/socket")
///     .api_key("<anon key>")
///     .token_provider(TokenProvider::new(|| async { Ok(current_session_token().await?) }))
///     .build()?;
/// # Ok(client) }
/// ```
#[derive(Clone)]
pub struct TokenProvider(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl TokenProvider {
    /// Wraps an async closure: `TokenProvider::new(|| async { Ok(fetch().await?) })`.
    pub fn new<F, Fut>(provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, TokenError>> + Send + 'static,
    {
        TokenProvider(Arc::new(move || Box::pin(provider())))
    }

    pub(crate) fn fetch(&self) -> TokenFuture {
        (self.0)()
    }
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenProvider(..)")
    }
}

/// The `exp` claim of a JWT, read without verifying it (the server verifies).
pub(crate) fn jwt_exp(token: &str) -> Option<i64> {
    let claims = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_f64().map(|exp| exp as i64)
}

/// Holds the current token and decides when a new one is needed.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthTokenManager {
    provider: Option<TokenProvider>,
    manual: Option<String>,
    fetched: Option<String>,
    skew: Duration,
}

impl AuthTokenManager {
    pub(crate) fn new(
        provider: Option<TokenProvider>,
        manual: Option<String>,
        skew: Duration,
    ) -> Self {
        AuthTokenManager {
            provider,
            manual,
            fetched: None,
            skew,
        }
    }

    /// The token joins should carry now, if any.
    pub(crate) fn current(&self) -> Option<&str> {
        self.manual.as_deref().or(self.fetched.as_deref())
    }

    /// The provider, when the token comes from one (and was not set by hand).
    pub(crate) fn provider(&self) -> Option<&TokenProvider> {
        match self.manual {
            Some(_) => None,
            None => self.provider.as_ref(),
        }
    }

    /// True when the provider must be asked before the next join: no token yet, or the
    /// one we have has expired. (Refreshing *before* expiry is the refresh timer's job,
    /// scheduled with [`Self::refresh_in`]; asking here too would make a join with a
    /// short-lived token fetch forever.)
    pub(crate) fn needs_fetch(&self, now_unix: i64) -> bool {
        if self.provider().is_none() {
            return false;
        }
        match self.fetched.as_deref() {
            None => true,
            Some(token) => jwt_exp(token).is_some_and(|exp| exp <= now_unix),
        }
    }

    /// How long until the provided token should be refreshed: the later of `exp - skew`
    /// and halfway to `exp`, so short-lived tokens are not refreshed in a loop. `None`
    /// when there is no provided token or it carries no `exp`.
    pub(crate) fn refresh_in(&self, now_unix: i64) -> Option<Duration> {
        self.provider()?;
        let exp = jwt_exp(self.fetched.as_deref()?)?;
        let left = (exp - now_unix).max(0) as f64;
        let at = (left - self.skew.as_secs_f64()).max(left / 2.0);
        Some(Duration::from_secs_f64(at.max(0.0)))
    }

    /// Sets (or with `None`, clears) the hand-set token. Returns whether the token joins
    /// carry changed.
    pub(crate) fn set_manual(&mut self, token: Option<String>) -> bool {
        let before = self.current().map(str::to_owned);
        self.manual = token.filter(|t| !t.is_empty());
        before.as_deref() != self.current()
    }

    /// Stores a token the provider returned. Returns whether the current token changed.
    pub(crate) fn accept_fetched(&mut self, token: String) -> bool {
        let before = self.current().map(str::to_owned);
        self.fetched = Some(token);
        before.as_deref() != self.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: i64) -> String {
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"role":"authenticated","exp":{exp}}}"#));
        format!("eyJhbGciOiJIUzI1NiJ9.{claims}.sig")
    }

    #[test]
    fn exp_is_read_from_the_claims() {
        assert_eq!(jwt_exp(&jwt(1234)), Some(1234));
        assert_eq!(jwt_exp("not-a-jwt"), None);
    }

    #[test]
    fn provided_tokens_refresh_before_expiry_but_never_in_a_loop() {
        let provider = TokenProvider::new(|| async { Ok("t".to_owned()) });
        let mut auth = AuthTokenManager::new(Some(provider), None, Duration::from_secs(60));
        assert!(auth.needs_fetch(0), "no token yet");
        auth.accept_fetched(jwt(3600));
        assert_eq!(auth.refresh_in(0), Some(Duration::from_secs(3540)));
        assert!(!auth.needs_fetch(0));
        assert!(
            !auth.needs_fetch(3599),
            "not expired: the refresh timer handles it"
        );
        assert!(auth.needs_fetch(3600), "expired");
        // A 10 s token with a 60 s skew refreshes at its half-life, not at once.
        auth.accept_fetched(jwt(10));
        assert_eq!(auth.refresh_in(0), Some(Duration::from_secs(5)));
    }

    #[test]
    fn a_hand_set_token_wins_over_the_provider() {
        let provider = TokenProvider::new(|| async { Ok("t".to_owned()) });
        let mut auth = AuthTokenManager::new(Some(provider), None, Duration::from_secs(60));
        auth.accept_fetched(jwt(100));
        assert!(auth.set_manual(Some("manual".into())));
        assert_eq!(auth.current(), Some("manual"));
        assert!(
            !auth.needs_fetch(1_000_000),
            "no provider while a token is set by hand"
        );
        assert!(!auth.set_manual(Some("manual".into())), "unchanged");
        assert!(auth.set_manual(None));
        assert_eq!(auth.current(), Some(jwt(100).as_str()));
    }
}
