//! Token verification: every refusal with its Supabase text; HMAC secrets and JWK sets.
use futures_util::FutureExt;
use jsonwebtoken::{EncodingKey, Header};
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

mod jwks {
    use super::*;

    /// Test keys (crates/crier-testkit/keys): RSA `test-rsa` (alg RS256), EC `test-p256`
    /// (no alg), EC `test-p384` (ES384), Ed25519 `test-ed25519`, and RSA `test-rsa-next`,
    /// which only the rotated public set holds.
    const PRIVATE: &str = include_str!("../../../crier-testkit/keys/private.jwks.json");
    const PUBLIC: &str = include_str!("../../../crier-testkit/keys/public.jwks.json");

    fn private_key(kid: &str) -> String {
        let set: Value = serde_json::from_str(PRIVATE).unwrap();
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()
            .to_string()
    }

    fn signed(kid: &str, value: Value) -> String {
        sign_with_jwk(&private_key(kid), &claims(value)).unwrap()
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(SECRET).with_jwks(PUBLIC).unwrap()
    }

    fn header(token: &str) -> Value {
        let part = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn each_key_type_verifies_by_kid_with_its_algorithm() {
        let verifier = verifier();
        for (kid, alg) in [
            ("test-rsa", "RS256"),
            ("test-p256", "ES256"),
            ("test-p384", "ES384"),
            ("test-ed25519", "EdDSA"),
        ] {
            let token = signed(kid, json!({"role": "authenticated", "exp": 10, "sub": kid}));
            assert_eq!(header(&token)["alg"], alg);
            assert_eq!(header(&token)["kid"], kid);
            let claims = verifier.verify(&token, 5).unwrap();
            assert_eq!(claims.sub.as_deref(), Some(kid));
        }
        // HS tokens still verify with the secret.
        assert!(
            verifier
                .verify(&token(json!({"role": "anon", "exp": 10})), 5)
                .is_ok()
        );
    }

    #[test]
    fn the_algorithm_comes_from_the_key_never_from_the_header() {
        let verifier = verifier();
        let body = URL_SAFE_NO_PAD.encode(br#"{"role":"service_role","exp":9999999999}"#);
        // An HS256 token "signed" with the RSA key's public numbers as the secret: the
        // RSA key is not an HMAC key, so only the real secret is tried.
        let rsa: Value = serde_json::from_str(&private_key("test-rsa")).unwrap();
        let confused = jsonwebtoken::encode(
            &Header {
                kid: Some("test-rsa".into()),
                ..Header::new(Algorithm::HS256)
            },
            &claims(json!({"role": "service_role", "exp": 9_999_999_999_i64})),
            &EncodingKey::from_secret(rsa["n"].as_str().unwrap().as_bytes()),
        )
        .unwrap();
        assert_eq!(verifier.verify(&confused, 0), Err(AuthError::BadSignature));
        // An ES256 header naming the RSA key, an RS384 header naming a key pinned to RS256.
        for (alg, kid) in [
            ("ES256", "test-rsa"),
            ("RS384", "test-rsa"),
            ("ES256", "test-p384"),
        ] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#));
            let forged = format!("{header}.{body}.c2ln");
            assert_eq!(
                verifier.verify(&forged, 0),
                Err(AuthError::UnsupportedAlgorithm),
                "{alg} {kid}"
            );
        }
        // A valid signature by one key presented under another key's kid.
        let token = signed("test-p256", json!({"role": "anon", "exp": 10}));
        let (_, rest) = token.split_once('.').unwrap();
        let relabelled = format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"test-p256-other"}"#)
        );
        assert_eq!(
            verifier.verify(&relabelled, 5),
            Err(AuthError::UnknownKey("test-p256-other".into()))
        );
    }

    #[test]
    fn an_unknown_kid_is_refused_and_asks_for_a_refetch() {
        let verifier = verifier();
        let asked = verifier.unknown_kid();
        let token = signed("test-rsa-next", json!({"role": "anon", "exp": 10}));
        let err = verifier.verify(&token, 5).unwrap_err();
        assert_eq!(err, AuthError::UnknownKey("test-rsa-next".into()));
        assert_eq!(
            err.join_reason().to_string(),
            "JwtSignerError: No key in the JWKS has kid `test-rsa-next`"
        );
        // The notification is stored for the keeper.
        assert!(asked.notified().now_or_never().is_some());
        // After a rotation the same token verifies.
        let rotated = include_str!("../../../crier-testkit/keys/public-rotated.jwks.json");
        verifier.set_jwks(keys::parse_jwks(rotated).unwrap());
        assert!(verifier.verify(&token, 5).is_ok());
    }

    #[test]
    fn asymmetric_tokens_say_why_while_the_set_is_not_loaded() {
        let verifier = JwtVerifier::new(SECRET);
        verifier.set_jwks_problem(Some("http://keys.example has not answered".into()));
        let token = signed("test-rsa", json!({"role": "anon", "exp": 10}));
        assert_eq!(
            verifier
                .verify(&token, 5)
                .unwrap_err()
                .join_reason()
                .to_string(),
            "JwtSignerError: The JWKS is not available: http://keys.example has not answered"
        );
        assert!(
            verifier
                .verify(&super::token(json!({"role": "anon", "exp": 10})), 5)
                .is_ok()
        );
    }

    #[test]
    fn the_next_secret_verifies_during_a_rotation() {
        let verifier = JwtVerifier::with_secrets(&[SECRET, "the-next-secret-of-enough-length"]);
        let next = sign_token(
            "the-next-secret-of-enough-length",
            &claims(json!({"role": "anon", "exp": 10})),
        );
        assert!(verifier.verify(&next, 5).is_ok());
        let other = sign_token(
            "some-other-secret",
            &claims(json!({"role": "anon", "exp": 10})),
        );
        assert_eq!(verifier.verify(&other, 5), Err(AuthError::BadSignature));
    }

    #[test]
    fn sets_without_a_usable_key_and_bad_private_keys_are_named() {
        assert!(matches!(keys::parse_jwks("[]"), Err(JwksError::NotASet(_))));
        assert!(matches!(
            keys::parse_jwks("nope"),
            Err(JwksError::NotASet(_))
        ));
        let enc_only = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","use":"enc"},{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}]}"#;
        assert_eq!(
            keys::parse_jwks(enc_only).err(),
            Some(JwksError::NoUsableKey)
        );
        assert!(matches!(
            sign_with_jwk(r#"{"kty":"EC","crv":"P-521","d":"AA"}"#, &Map::new()),
            Err(SignError::Unsupported(_))
        ));
        assert!(matches!(
            sign_with_jwk(r#"{"kty":"OKP","crv":"Ed25519","d":"AAAA"}"#, &Map::new()),
            Err(SignError::BadKey(_))
        ));
    }
}
