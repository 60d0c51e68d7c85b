//! Tokens for tests: good ones signed with the test secret, and every kind of bad one
//! with the text Supabase answers it with.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crier_server::auth::{sign_token, unix_now};
use serde_json::{Map, Value, json};

/// The secret every test node is configured with.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// A token signed with [`SECRET`]: `claims` plus `exp` one hour ahead unless given.
pub fn token(claims: Value) -> String {
    let mut claims: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
    claims.entry("exp").or_insert(json!(unix_now() + 3600));
    sign_token(SECRET, &claims)
}

/// Tokens the server must refuse, with the texts Supabase answers each with.
#[derive(Debug, Clone, Copy)]
pub enum BadToken {
    /// `exp` in the past.
    Expired,
    /// `nbf` in the future.
    NotYetValid,
    /// No `role` claim.
    MissingClaims,
    /// An empty `role`.
    EmptyRole,
    /// Not a JWT at all.
    Malformed,
    /// Signed with another secret.
    Forged,
    /// `alg: none`, unsigned.
    AlgNone,
}

impl BadToken {
    /// Every kind.
    pub const ALL: [BadToken; 7] = [
        BadToken::Expired,
        BadToken::NotYetValid,
        BadToken::MissingClaims,
        BadToken::EmptyRole,
        BadToken::Malformed,
        BadToken::Forged,
        BadToken::AlgNone,
    ];

    /// The token itself.
    pub fn token(self) -> String {
        let now = unix_now();
        match self {
            BadToken::Expired => token(json!({"role": "anon", "exp": now - 30})),
            BadToken::NotYetValid => token(json!({"role": "anon", "nbf": now + 600})),
            BadToken::MissingClaims => token(json!({"sub": "no-role"})),
            BadToken::EmptyRole => token(json!({"role": ""})),
            BadToken::Malformed => "not.a.jwt".to_owned(),
            BadToken::Forged => sign_token(
                "not-the-secret",
                json!({"role": "anon", "exp": now + 60})
                    .as_object()
                    .unwrap(),
            ),
            BadToken::AlgNone => format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(format!(r#"{{"role":"service_role","exp":{}}}"#, now + 60))
            ),
        }
    }

    /// The message (a prefix for `Expired` and `NotYetValid`, which name the seconds).
    pub fn message(self) -> &'static str {
        match self {
            BadToken::Expired => "Token has expired ",
            BadToken::NotYetValid => "Token is not valid yet: it becomes valid in ",
            BadToken::MissingClaims | BadToken::EmptyRole => {
                "Fields `role` and `exp` are required in JWT"
            }
            BadToken::Malformed => "The token provided is not a valid JWT",
            BadToken::Forged => "Failed to validate JWT signature",
            BadToken::AlgNone => {
                "Failed to generate JWT signer, check your JWT secret or JWKS configuration"
            }
        }
    }

    /// The 401 body's text at connect, where an expired token says only "Token has expired"
    /// and an early one "Token is not valid yet".
    pub fn connect_message(self) -> &'static str {
        match self {
            BadToken::Expired => "Token has expired",
            BadToken::NotYetValid => "Token is not valid yet",
            other => other.message(),
        }
    }

    /// The coded join reason (a prefix for `Expired`).
    pub fn join_reason(self) -> String {
        let code = match self {
            BadToken::Expired
            | BadToken::NotYetValid
            | BadToken::MissingClaims
            | BadToken::EmptyRole => "InvalidJWTToken",
            BadToken::Malformed => "MalformedJWT",
            BadToken::Forged => "JwtSignatureError",
            BadToken::AlgNone => "JwtSignerError",
        };
        format!("{code}: {}", self.message())
    }
}

/// The test keys' private JWK set (`keys/private.jwks.json`): RSA `test-rsa` (RS256), EC
/// `test-p256` (ES256), EC `test-p384` (ES384), Ed25519 `test-ed25519`, and RSA
/// `test-rsa-next`, which only [`PUBLIC_JWKS_ROTATED`] holds (a key rotated in later).
pub const PRIVATE_JWKS: &str = include_str!("../keys/private.jwks.json");
/// The public set a server verifies with: every test key but `test-rsa-next`.
pub const PUBLIC_JWKS: &str = include_str!("../keys/public.jwks.json");
/// The public set after a rotation: [`PUBLIC_JWKS`] plus `test-rsa-next`.
pub const PUBLIC_JWKS_ROTATED: &str = include_str!("../keys/public-rotated.jwks.json");

/// The path of `keys/<name>` (a JWK set file, for `--jwt-jwks`).
pub fn keys_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("keys")
        .join(name)
}

/// A token signed with the test key `kid`: `claims` plus `exp` one hour ahead unless given.
pub fn jwk_token(kid: &str, claims: Value) -> String {
    let mut claims: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
    claims.entry("exp").or_insert(json!(unix_now() + 3600));
    let set: Value = serde_json::from_str(PRIVATE_JWKS).expect("the test keys are JSON");
    let key = set["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["kid"] == kid))
        .unwrap_or_else(|| panic!("no test key {kid}"));
    crier_server::auth::sign_with_jwk(&key.to_string(), &claims).expect("the test keys sign")
}
