//! The keys tokens verify against: HMAC secrets, and a JWK set whose keys each say which
//! algorithms they verify.
//!
//! The algorithm always comes from the key: a key's `alg` when it has one, else its type
//! and curve (RSA: RS256/384/512 and PS256/384/512; EC P-256: ES256; P-384: ES384;
//! Ed25519: EdDSA; `oct`: HS256/384/512). A token's header only picks among what its key
//! allows, so an RSA public key can never be used as an HMAC secret (the RS/HS
//! confusion), and `alg: none` has no key at all.

use std::collections::HashMap;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// One verifying key of a JWK set.
#[derive(Clone)]
pub(crate) struct JwkKey {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
}

/// Why a JWK set cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or not `{"keys": [...]}`.
    #[error("not a JWK set (`{{\"keys\": [...]}}`): {0}")]
    NotASet(String),
    /// No key in it can verify a signature.
    #[error(
        "the JWK set has no key that verifies signatures (RSA, EC P-256/P-384, Ed25519 or oct)"
    )]
    NoUsableKey,
    /// The source could not be read.
    #[error("cannot read the JWK set from {source_name}: {message}")]
    Unreadable {
        /// The file or URL.
        source_name: String,
        /// What went wrong.
        message: String,
    },
}

/// Parses a JWK set. Keys this server cannot use (encryption keys, unknown types and
/// curves) are skipped with a warning; a set with no usable key at all is an error.
pub(crate) fn parse_jwks(text: &str) -> Result<Vec<JwkKey>, JwksError> {
    let value: Value =
        serde_json::from_str(text).map_err(|err| JwksError::NotASet(err.to_string()))?;
    let Some(keys) = value.get("keys").and_then(Value::as_array) else {
        return Err(JwksError::NotASet("no `keys` array".into()));
    };
    let mut usable = Vec::new();
    for (index, raw) in keys.iter().enumerate() {
        match key_of(raw) {
            Ok(key) => usable.push(key),
            Err(why) => {
                let kid = raw.get("kid").and_then(Value::as_str).unwrap_or("");
                tracing::warn!(index, kid, why, "JWK skipped");
            }
        }
    }
    if usable.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(usable)
}

fn key_of(raw: &Value) -> Result<JwkKey, String> {
    let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|err| err.to_string())?;
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return Err("not a signature key (`use`)".into());
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Err("unsupported curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return Err("unsupported curve".into()),
        },
        AlgorithmParameters::OctetKey(_) => {
            vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
        }
        _ => return Err("unsupported key type".into()),
    };
    let algorithms = match &jwk.common.key_algorithm {
        None => by_type,
        Some(named) => {
            let named = Algorithm::from_str(&named.to_string())
                .map_err(|_| format!("unsupported alg {named}"))?;
            if !by_type.contains(&named) {
                return Err(format!("alg {named:?} does not fit the key's type"));
            }
            vec![named]
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|err| err.to_string())?;
    Ok(JwkKey {
        kid: jwk.common.key_id.clone(),
        key,
        algorithms,
    })
}

/// Every key a verifier holds.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    /// HMAC secrets, tried in order (the current one, then the next during a rotation).
    pub(crate) secrets: Vec<DecodingKey>,
    /// JWK set keys by `kid` (keys without one under the empty string).
    pub(crate) jwks: HashMap<String, Vec<JwkKey>>,
}

/// Why no key fits a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoKey {
    /// Nothing can verify this algorithm.
    Algorithm,
    /// The token names a `kid` the JWK set does not have.
    UnknownKid(String),
}

impl KeySet {
    pub(crate) fn with_jwks(mut self, keys: Vec<JwkKey>) -> Self {
        self.jwks.clear();
        for key in keys {
            self.jwks
                .entry(key.kid.clone().unwrap_or_default())
                .or_default()
                .push(key);
        }
        self
    }

    /// The keys to try for a token signed with `algorithm`, naming `kid`.
    ///
    /// HS tokens: the JWK set's `oct` key with that `kid` if there is one, else the
    /// secrets. Others: the JWK set keys with that `kid` that allow the algorithm; a
    /// token without `kid` tries every key that allows it.
    pub(crate) fn candidates(
        &self,
        algorithm: Algorithm,
        kid: Option<&str>,
    ) -> Result<Vec<&DecodingKey>, NoKey> {
        let allows = |key: &&JwkKey| key.algorithms.contains(&algorithm);
        let hmac = matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        );
        let named = kid.and_then(|kid| self.jwks.get(kid));
        if hmac {
            if let Some(keys) = named {
                let fitting: Vec<&DecodingKey> =
                    keys.iter().filter(allows).map(|k| &k.key).collect();
                if !fitting.is_empty() {
                    return Ok(fitting);
                }
            }
            if self.secrets.is_empty() {
                return Err(NoKey::Algorithm);
            }
            return Ok(self.secrets.iter().collect());
        }
        let fitting: Vec<&DecodingKey> = match (kid, named) {
            (Some(_), Some(keys)) => keys.iter().filter(allows).map(|k| &k.key).collect(),
            (Some(kid), None) if !self.jwks.is_empty() => {
                return Err(NoKey::UnknownKid(kid.to_owned()));
            }
            (Some(_), None) => Vec::new(),
            (None, _) => self
                .jwks
                .values()
                .flatten()
                .filter(allows)
                .map(|k| &k.key)
                .collect(),
        };
        if fitting.is_empty() {
            return Err(NoKey::Algorithm);
        }
        Ok(fitting)
    }
}
