//! JWT verification, with the checks and error texts of Supabase Realtime.
//!
//! The order matters because it decides which error a client sees: the claims must parse
//! (else *malformed*), the header's algorithm must be one we hold a key for (else *signer
//! error*, which is how `alg: none` and RS256-with-an-HMAC-secret are refused), the
//! signature must verify, `exp` must be in the future and `nbf` (when present) not, and
//! finally a non-empty `role` and `exp` must be present. `exp` and `nbf` get the same
//! leeway: none. The algorithm list is pinned server-side; the header only selects among
//! HS256/384/512, never widens it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crier_protocol::{ErrorCode, Reason};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Verified claims of a client JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// The Postgres role (`anon`, `authenticated`, `service_role`, ...).
    pub role: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// The subject (user id), when present.
    pub sub: Option<String>,
    /// Every claim, as sent.
    pub all: Map<String, Value>,
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
            AuthError::UnsupportedAlgorithm => ErrorCode::JwtSignerError,
            AuthError::BadSignature => ErrorCode::JwtSignatureError,
        };
        Reason::new(code, self.to_string())
    }
}

/// Verifies tokens against one HMAC secret.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtVerifier { .. }")
    }
}

impl JwtVerifier {
    /// A verifier for tokens signed with `secret` (its UTF-8 bytes are the HMAC key).
    pub fn new(secret: &str) -> Self {
        JwtVerifier {
            key: DecodingKey::from_secret(secret.as_bytes()),
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
        let algorithm = match header.get("alg").and_then(Value::as_str) {
            Some("HS256") => Algorithm::HS256,
            Some("HS384") => Algorithm::HS384,
            Some("HS512") => Algorithm::HS512,
            _ => return Err(AuthError::UnsupportedAlgorithm),
        };

        let mut validation = Validation::new(algorithm);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &validation)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::BadSignature,
                _ => AuthError::Malformed,
            })?;
        let all = data.claims;

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
        Ok(Claims {
            role,
            exp,
            sub,
            all,
        })
    }
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

/// Signs an HS256 token with `secret`. For `crier token`, the development keys printed by
/// `crier serve`, and tests.
pub fn sign_token(secret: &str, claims: &Map<String, Value>) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing with a byte secret cannot fail")
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "test-secret-with-enough-bytes-for-hs512";

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn token(value: Value) -> String {
        sign_token(SECRET, &claims(value))
    }

    #[test]
    fn a_valid_token_verifies() {
        let now = 1_000_000;
        let verified = JwtVerifier::new(SECRET)
            .verify(
                &token(json!({"role":"anon","exp": now + 60, "sub":"u1"})),
                now,
            )
            .unwrap();
        assert_eq!(verified.role, "anon");
        assert_eq!(verified.sub.as_deref(), Some("u1"));
    }

    #[test]
    fn every_failure_has_its_supabase_text() {
        let verifier = JwtVerifier::new(SECRET);
        let now = 1_000_000;
        assert_eq!(verifier.verify("", now), Err(AuthError::Missing));
        assert_eq!(verifier.verify("abc", now), Err(AuthError::Malformed));
        assert_eq!(verifier.verify("a.b.c", now), Err(AuthError::Malformed));
        let expired = verifier
            .verify(&token(json!({"role":"anon","exp": now - 7})), now)
            .unwrap_err();
        assert_eq!(
            expired.join_reason().to_string(),
            "InvalidJWTToken: Token has expired 7 seconds ago"
        );
        assert_eq!(expired.connect_message(), "Token has expired");
        assert_eq!(
            verifier.verify(&token(json!({"exp": now + 60})), now),
            Err(AuthError::MissingClaims)
        );
        assert_eq!(
            verifier.verify(&token(json!({"role":"anon"})), now),
            Err(AuthError::MissingClaims)
        );
        let forged = sign_token(
            "another-secret",
            &claims(json!({"role":"anon","exp": now + 60})),
        );
        assert_eq!(verifier.verify(&forged, now), Err(AuthError::BadSignature));
        assert_eq!(
            verifier
                .verify(&forged, now)
                .unwrap_err()
                .join_reason()
                .to_string(),
            "JwtSignatureError: Failed to validate JWT signature"
        );
    }

    #[test]
    fn alg_none_and_foreign_algorithms_are_refused() {
        let verifier = JwtVerifier::new(SECRET);
        let body = URL_SAFE_NO_PAD.encode(br#"{"role":"service_role","exp":9999999999}"#);
        for alg in ["none", "RS256", "ES256", "HS1024"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let forged = format!("{header}.{body}.");
            assert_eq!(
                verifier.verify(&forged, 0),
                Err(AuthError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn hs384_and_hs512_verify() {
        let verifier = JwtVerifier::new(SECRET);
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            let token = jsonwebtoken::encode(
                &Header::new(algorithm),
                &claims(json!({"role":"anon","exp": 10})),
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap();
            assert!(verifier.verify(&token, 5).is_ok());
        }
    }

    #[test]
    fn a_token_not_valid_yet_is_refused_with_the_same_leeway_as_exp() {
        let verifier = JwtVerifier::new(SECRET);
        let now = 1_000_000;
        let early = token(json!({"role":"anon","exp": now + 60, "nbf": now + 5}));
        let err = verifier.verify(&early, now).unwrap_err();
        assert_eq!(err, AuthError::NotYetValid { in_seconds: 5 });
        assert_eq!(
            err.join_reason().to_string(),
            "InvalidJWTToken: Token is not valid yet: it becomes valid in 5 seconds"
        );
        assert_eq!(err.connect_message(), "Token is not valid yet");
        assert!(
            verifier.verify(&early, now + 5).is_ok(),
            "valid from nbf on"
        );
        assert_eq!(
            verifier.verify(
                &token(json!({"role":"anon","exp": now + 60, "nbf": "soon"})),
                now
            ),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn time_claims_at_the_ends_of_the_range_do_not_overflow() {
        let verifier = JwtVerifier::new(SECRET);
        let now = 1_000_000;
        let err = verifier
            .verify(&token(json!({"role":"anon","exp": -1e19})), now)
            .unwrap_err();
        assert_eq!(
            err,
            AuthError::Expired {
                seconds_ago: i64::MAX
            }
        );
        let err = verifier
            .verify(
                &token(json!({"role":"anon","exp": 1e19, "nbf": 1e19})),
                -now,
            )
            .unwrap_err();
        assert_eq!(
            err,
            AuthError::NotYetValid {
                in_seconds: i64::MAX
            }
        );
    }

    #[test]
    fn an_empty_role_is_refused() {
        let verifier = JwtVerifier::new(SECRET);
        assert_eq!(
            verifier.verify(&token(json!({"role":"","exp": 10})), 5),
            Err(AuthError::MissingClaims)
        );
    }

    #[test]
    fn non_numeric_iat_is_malformed() {
        let verifier = JwtVerifier::new(SECRET);
        assert_eq!(
            verifier.verify(
                &token(json!({"role":"anon","exp": 10, "iat": "yesterday"})),
                5
            ),
            Err(AuthError::Malformed)
        );
    }
}
