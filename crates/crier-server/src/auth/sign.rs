//! Making tokens: HS256 with a secret, or with a private JWK (RSA, EC P-256/P-384,
//! Ed25519, oct), for `crier token`, the development keys `crier serve` prints, and tests.
//!
//! jsonwebtoken signs with keys in DER form only, so a private JWK's numbers are turned
//! into DER with the RustCrypto crates jsonwebtoken itself signs with (`rsa`, `p256`,
//! `p384`, `ed25519-dalek`): no hand-written ASN.1.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{Map, Value};

/// Signs an HS256 token with `secret`.
pub fn sign_token(secret: &str, claims: &Map<String, Value>) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing with a byte secret cannot fail")
}

/// Why a private JWK cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Not a JSON object, or a field is missing or not base64url.
    #[error("not a usable private JWK: {0}")]
    BadKey(String),
    /// A key type, curve or algorithm this server does not sign with.
    #[error("unsupported key: {0}")]
    Unsupported(String),
}

/// Signs a token with the private JWK `jwk` (JSON). The header names the key's `kid`;
/// the algorithm is the key's `alg`, or its type's usual one (RS256, ES256, ES384, EdDSA,
/// HS256).
pub fn sign_with_jwk(jwk: &str, claims: &Map<String, Value>) -> Result<String, SignError> {
    let jwk: Value = serde_json::from_str(jwk).map_err(|err| SignError::BadKey(err.to_string()))?;
    let field = |name: &str| -> Result<Vec<u8>, SignError> {
        let text = jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| SignError::BadKey(format!("no `{name}`")))?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|err| SignError::BadKey(format!("`{name}`: {err}")))
    };
    let text = |name: &str| jwk.get(name).and_then(Value::as_str).unwrap_or_default();
    let bad = |err: &dyn std::fmt::Display| SignError::BadKey(err.to_string());
    let (key, usual) = match (text("kty"), text("crv")) {
        ("RSA", _) => {
            let big = |name: &str| field(name).map(|b| rsa::BigUint::from_bytes_be(&b));
            let key = rsa::RsaPrivateKey::from_components(
                big("n")?,
                big("e")?,
                big("d")?,
                vec![big("p")?, big("q")?],
            )
            .map_err(|err| bad(&err))?;
            let der = key.to_pkcs1_der().map_err(|err| bad(&err))?;
            (EncodingKey::from_rsa_der(der.as_bytes()), Algorithm::RS256)
        }
        ("EC", "P-256") => {
            let key = p256::SecretKey::from_slice(&field("d")?).map_err(|err| bad(&err))?;
            let der = key.to_pkcs8_der().map_err(|err| bad(&err))?;
            (EncodingKey::from_ec_der(der.as_bytes()), Algorithm::ES256)
        }
        ("EC", "P-384") => {
            let key = p384::SecretKey::from_slice(&field("d")?).map_err(|err| bad(&err))?;
            let der = key.to_pkcs8_der().map_err(|err| bad(&err))?;
            (EncodingKey::from_ec_der(der.as_bytes()), Algorithm::ES384)
        }
        ("OKP", "Ed25519") => {
            let seed: [u8; 32] = field("d")?
                .try_into()
                .map_err(|_| SignError::BadKey("`d` is not 32 bytes".into()))?;
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let der = key.to_pkcs8_der().map_err(|err| bad(&err))?;
            (EncodingKey::from_ed_der(der.as_bytes()), Algorithm::EdDSA)
        }
        ("oct", _) => (EncodingKey::from_secret(&field("k")?), Algorithm::HS256),
        (kty, crv) => {
            return Err(SignError::Unsupported(format!("kty {kty:?}, crv {crv:?}")));
        }
    };
    let algorithm = match jwk.get("alg").and_then(Value::as_str) {
        None => usual,
        Some(alg) => alg
            .parse()
            .map_err(|_| SignError::Unsupported(format!("alg {alg:?}")))?,
    };
    let mut header = Header::new(algorithm);
    header.kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).map_err(|err| bad(&err))
}
