//! Asymmetric JWT keys end to end: a JWK set from a file or a URL, tokens of every key
//! type connecting and joining, a key rotation picked up by an unknown `kid`, and a key
//! server that does not answer.

use std::sync::Arc;

use axum::routing::get;
use crier_server::auth::JwksSource;
use crier_server::protocol::Vsn;
use crier_testkit::prelude::{
    PUBLIC_JWKS, PUBLIC_JWKS_ROTATED, TestServer, jwk_token, keys_file, token,
};
use parking_lot::Mutex;
use serde_json::json;

/// A key server on a loopback port serving whatever `body` holds.
async fn key_server(body: Arc<Mutex<String>>) -> String {
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let body = body.lock().clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/.well-known/jwks.json")
}

#[tokio::test]
async fn tokens_of_every_key_type_in_a_jwks_file_connect_and_join() {
    let server = TestServer::start_with(|config| {
        config.jwks = Some(JwksSource::File(keys_file("public.jwks.json")));
    })
    .await;
    for kid in ["test-rsa", "test-p256", "test-p384", "test-ed25519"] {
        let token = jwk_token(kid, json!({"role": "authenticated", "sub": kid}));
        let mut client = server.connect_with_token(Vsn::V2, &token).await;
        client.join_ok("realtime:room", json!({})).await;
    }
    // The HMAC secret still verifies.
    let mut client = server
        .connect_with_token(Vsn::V2, &token(json!({"role": "anon"})))
        .await;
    client.join_ok("realtime:room", json!({})).await;
    // A key the set does not hold: refused with the reason.
    let unknown = jwk_token("test-rsa-next", json!({"role": "anon"}));
    let (status, body) = server
        .refused(server.ws_url(Some("2.0.0"), Some(&unknown)))
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "No key in the JWKS has kid `test-rsa-next`");
    // And at join, with a coded reason.
    let (_, status, response) = client
        .join(
            "realtime:other",
            json!({"config": {}, "access_token": unknown}),
        )
        .await;
    assert_eq!(status, "error");
    assert_eq!(
        response["reason"],
        "JwtSignerError: No key in the JWKS has kid `test-rsa-next`"
    );
}

#[tokio::test]
async fn a_jwks_url_is_fetched_and_fetched_again_for_a_rotated_key() {
    let body = Arc::new(Mutex::new(PUBLIC_JWKS.to_owned()));
    let url = key_server(Arc::clone(&body)).await;
    let server = TestServer::start_with(|config| {
        config.jwks = Some(JwksSource::Url(url));
    })
    .await;
    // The first connect may arrive before the first fetch: it waits for it.
    let token = jwk_token("test-p256", json!({"role": "authenticated"}));
    let mut client = server.connect_with_token(Vsn::V2, &token).await;
    client.join_ok("realtime:room", json!({})).await;
    // The key server starts handing out tokens of a new key.
    *body.lock() = PUBLIC_JWKS_ROTATED.to_owned();
    let rotated = jwk_token("test-rsa-next", json!({"role": "authenticated"}));
    let mut client = server.connect_with_token(Vsn::V2, &rotated).await;
    client.join_ok("realtime:room", json!({})).await;
}

#[tokio::test]
async fn a_key_server_that_does_not_answer_leaves_hmac_tokens_working() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let server = TestServer::start_with(|config| {
        config.jwks = Some(JwksSource::Url(url.clone()));
    })
    .await;
    let mut client = server
        .connect_with_token(Vsn::V2, &token(json!({"role": "anon"})))
        .await;
    client.join_ok("realtime:room", json!({})).await;
    let asymmetric = jwk_token("test-rsa", json!({"role": "anon"}));
    let (status, body) = server
        .refused(server.ws_url(Some("2.0.0"), Some(&asymmetric)))
        .await;
    assert_eq!(status, 401);
    let message = body["error"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "The JWKS is not available: cannot read the JWK set from {url}"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn a_jwks_file_that_does_not_parse_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\"keys\": 5}").unwrap();
    let mut config = crier_server::Config::new("secret");
    config.jwks = Some(JwksSource::File(path));
    let err = crier_server::Node::new(config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a JWK set (`{\"keys\": [...]}`): no `keys` array"
    );
}
