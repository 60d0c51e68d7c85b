//! JWT verification, with the checks and error texts of Supabase Realtime.
//!
//! The order matters because it decides which error a client sees: the claims must parse
//! (else *malformed*), the header's algorithm must be one we hold a key for (else *signer
//! error*, which is how `alg: none` and RS256-with-an-HMAC-secret are refused), the
//! signature must verify, `exp` must be in the future and `nbf` (when present) not, and
//! finally a non-empty `role` and `exp` must be present. `exp` and `nbf` get the same
//! leeway: none. Which algorithms verify is decided by the keys (`keys`): the header
//! only selects among them, never widens them.
//!
//! - `keys`: HMAC secrets and JWK sets, and which key may verify which token.
//! - `jwks`: where a JWK set comes from (a file, re-read on demand; a URL, re-fetched on
//!   an unknown `kid`).
//! - `sign`: making tokens (HS256 with a secret, or with a private JWK).

mod jwks;
mod keys;
mod sign;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crier_protocol::{ErrorCode, Reason};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde_json::{Map, Value};

pub use jwks::JwksSource;
pub(crate) use jwks::{keep_jwks_fresh, load as load_jwks, read_file};
pub use keys::JwksError;
use keys::{KeySet, NoKey};
pub use sign::{SignError, sign_token, sign_with_jwk};

/// Verified claims of a client JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// The Postgres role (`anon`, `authenticated`, `service_role`, ...).
    pub role: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// The subject (user id), when present.
    pub sub: Option<String>,
    /// Every claim, as one compact JSON object (keys in sorted order): what policies
    /// read as `request.jwt.claims`. Kept as text, not a map, because every channel
    /// holds its claims for as long as it is joined and only ever hands them on as
    /// text; shared, because a refresh or a second channel often has the same.
    pub all: std::sync::Arc<str>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token at all.
    #[error("API key is missing")]
    Missing,
    /// Not three base64url JSON parts, or claims of the wrong type.
    #[error("The token provided is not a valid JWT")]
    Malformed,
    /// The header names an algorithm with no key (`none`, `RS256`, ...).
    #[error("Failed to generate JWT signer, check your JWT secret or JWKS configuration")]
    UnsupportedAlgorithm,
    /// The signature does not verify with the secret.
    #[error("Failed to validate JWT signature")]
    BadSignature,
    /// `exp` is not in the future.
    #[error("Token has expired {seconds_ago} seconds ago")]
    Expired {
        /// How long ago it expired.
        seconds_ago: i64,
    },
    /// `nbf` (not before) is in the future.
    #[error("Token is not valid yet: it becomes valid in {in_seconds} seconds")]
    NotYetValid {
        /// How long until it becomes valid.
        in_seconds: i64,
    },
    /// `role` or `exp` is missing, or `role` is empty.
    #[error("Fields `role` and `exp` are required in JWT")]
    MissingClaims,
    /// The token names a `kid` the JWK set does not have.
    #[error("No key in the JWKS has kid `{0}`")]
    UnknownKey(String),
    /// The JWK set that would verify the token could not be loaded.
    #[error("The JWKS is not available: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// The message of the HTTP 401 answer to a WebSocket connect, `{"error": "<this>"}`.
    /// At connect an expired token says only "Token has expired", as Supabase does.
    pub fn connect_message(&self) -> String {
        match self {
            AuthError::Expired { .. } => "Token has expired".to_owned(),
            AuthError::NotYetValid { .. } => "Token is not valid yet".to_owned(),
            other => other.to_string(),
        }
    }

    /// The coded reason of a refused join.
    pub fn join_reason(&self) -> Reason {
        let code = match self {
            AuthError::Missing
            | AuthError::Expired { .. }
            | AuthError::NotYetValid { .. }
            | AuthError::MissingClaims => ErrorCode::InvalidJWTToken,
            AuthError::Malformed => ErrorCode::MalformedJWT,
            AuthError::UnsupportedAlgorithm
            | AuthError::UnknownKey(_)
            | AuthError::KeysUnavailable(_) => ErrorCode::JwtSignerError,
            AuthError::BadSignature => ErrorCode::JwtSignatureError,
        };
        Reason::new(code, self.to_string())
    }
}

/// Verifies tokens: HS256/384/512 against the HMAC secrets, and RS*, PS*, ES256/384 and
/// EdDSA (and HS* tokens naming an `oct` key) against a JWK set (see `keys`).
///
/// Cheap to clone; clones share the keys, so a JWK set re-read or re-fetched (the `jwks`
/// module) is seen by every clone at once.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Arc<RwLock<Arc<KeySet>>>,
    /// Why the configured JWK set is not loaded, while it is not: asymmetric tokens are
    /// refused with it.
    jwks_problem: Arc<RwLock<Option<String>>>,
    /// Bumped whenever the JWK set changes; a token with an unknown `kid` asks for a
    /// re-fetch through `unknown_kid`, and may wait here for it.
    generation: tokio::sync::watch::Sender<u64>,
    unknown_kid: Arc<tokio::sync::Notify>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtVerifier { .. }")
    }
}

impl JwtVerifier {
    /// A verifier for tokens signed with `secret` (its UTF-8 bytes are the HMAC key).
    pub fn new(secret: &str) -> Self {
        Self::with_secrets(&[secret])
    }

    /// A verifier for HS tokens signed with any of `secrets` (the current secret and the
    /// next, during a rotation). Empty secrets are left out: HS tokens then verify only
    /// against `oct` keys of a JWK set.
    pub fn with_secrets(secrets: &[&str]) -> Self {
        let keys = KeySet {
            secrets: secrets
                .iter()
                .filter(|secret| !secret.is_empty())
                .map(|secret| DecodingKey::from_secret(secret.as_bytes()))
                .collect(),
            jwks: Default::default(),
        };
        JwtVerifier {
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            jwks_problem: Arc::new(RwLock::new(None)),
            generation: tokio::sync::watch::Sender::new(0),
            unknown_kid: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Also verifies against the JWK set in `jwks` (`{"keys": [...]}`).
    pub fn with_jwks(self, jwks: &str) -> Result<Self, JwksError> {
        self.set_jwks(keys::parse_jwks(jwks)?);
        Ok(self)
    }

    /// Replaces the JWK set's keys.
    pub(crate) fn set_jwks(&self, jwks: Vec<keys::JwkKey>) {
        let mut current = self.keys.write();
        *current = Arc::new((**current).clone().with_jwks(jwks));
        drop(current);
        *self.jwks_problem.write() = None;
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Says why the configured JWK set is not loaded (`None`: it is). Connects waiting
    /// for the set (`verify_fresh`) hear of it at once.
    pub(crate) fn set_jwks_problem(&self, problem: Option<String>) {
        *self.jwks_problem.write() = problem;
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Notified when a token names a `kid` the JWK set does not have.
    pub(crate) fn unknown_kid(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.unknown_kid)
    }

    /// [`JwtVerifier::verify`], but a token that needs the JWK set while it is being
    /// fetched (at start), or that names an unknown `kid` (a key rotation: it asks for a
    /// re-fetch), waits up to `patience` for the set to change and is verified again.
    pub(crate) async fn verify_fresh(
        &self,
        token: &str,
        now: impl Fn() -> i64,
        patience: std::time::Duration,
    ) -> Result<Claims, AuthError> {
        let mut changed = self.generation.subscribe();
        changed.mark_unchanged();
        match self.verify(token, now()) {
            Err(AuthError::UnknownKey(_) | AuthError::KeysUnavailable(_))
                if tokio::time::timeout(patience, changed.changed())
                    .await
                    .is_ok() =>
            {
                self.verify(token, now())
            }
            other => other,
        }
    }

    /// Verifies `token` as of `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        // Peek first, so a garbage token is "malformed" whatever its header says.
        decode_json_part(claims).ok_or(AuthError::Malformed)?;
        let header = decode_json_part(header).ok_or(AuthError::Malformed)?;
        let algorithm = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|alg| Algorithm::from_str(alg).ok())
            .ok_or(AuthError::UnsupportedAlgorithm)?;
        let kid = header.get("kid").and_then(Value::as_str);

        let keys = Arc::clone(&self.keys.read());
        let candidates = match keys.candidates(algorithm, kid) {
            Ok(candidates) => candidates,
            Err(NoKey::UnknownKid(kid)) => {
                self.unknown_kid.notify_one();
                return Err(AuthError::UnknownKey(kid));
            }
            Err(NoKey::Algorithm) => {
                return Err(match &*self.jwks_problem.read() {
                    Some(problem) if !is_hmac(algorithm) => {
                        AuthError::KeysUnavailable(problem.clone())
                    }
                    _ => AuthError::UnsupportedAlgorithm,
                });
            }
        };

        let mut validation = Validation::new(algorithm);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        let mut verified = None;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
                Ok(data) => {
                    verified = Some(data.claims);
                    break;
                }
                Err(err) if *err.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {}
                Err(_) => return Err(AuthError::Malformed),
            }
        }
        let all = verified.ok_or(AuthError::BadSignature)?;

        let exp = numeric_claim(&all, "exp")?;
        if let Some(exp) = exp
            && exp <= now
        {
            return Err(AuthError::Expired {
                seconds_ago: now.saturating_sub(exp),
            });
        }
        if let Some(nbf) = numeric_claim(&all, "nbf")?
            && nbf > now
        {
            return Err(AuthError::NotYetValid {
                in_seconds: nbf.saturating_sub(now),
            });
        }
        if all.get("iat").is_some_and(|iat| !iat.is_number()) {
            return Err(AuthError::Malformed);
        }
        let role = all
            .get("role")
            .and_then(Value::as_str)
            .filter(|role| !role.is_empty())
            .map(str::to_owned);
        let (Some(role), Some(exp)) = (role, exp) else {
            return Err(AuthError::MissingClaims);
        };
        let sub = all.get("sub").and_then(Value::as_str).map(str::to_owned);
        let all = serde_json::to_string(&all).expect("claims are JSON").into();
        Ok(Claims {
            role,
            exp,
            sub,
            all,
        })
    }
}

fn is_hmac(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

/// A time claim in Unix seconds (fractions rounded), `None` when absent.
fn numeric_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(|f| Some(f.round() as i64))
            .ok_or(AuthError::Malformed),
        Some(_) => Err(AuthError::Malformed),
    }
}

fn decode_json_part(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
