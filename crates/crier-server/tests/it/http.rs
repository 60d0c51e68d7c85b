//! The HTTP API: broadcast batch and single-event endpoints, health, ping, metrics, CORS.

use crier_server::auth::unix_now;
use crier_server::protocol::Vsn;
use crier_testkit::prelude::*;
use serde_json::{Value, json};

const TOPIC: &str = "realtime:news";

async fn subscriber(server: &TestServer, vsn: Vsn) -> Client {
    let mut client = server.connect(vsn).await;
    client.join_ok(TOPIC, json!({})).await;
    client
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn the_batch_endpoint_delivers_and_answers_202() {
    let server = TestServer::start().await;
    let mut listener = subscriber(&server, Vsn::V2).await;
    let response = http()
        .post(server.http("/api/broadcast"))
        .header("apikey", token(json!({"role": "service_role"})))
        .json(&json!({"messages": [
            {"topic": "news", "event": "headline", "payload": {"title": "a"}},
            {"topic": "news", "event": "headline", "payload": {"title": "b"}, "id": "m-2"},
            {"topic": "elsewhere", "event": "x", "payload": {}},
            {"topic": "news", "event": "secret", "payload": {}, "private": true}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(response.headers().contains_key("x-rate-limit"));
    assert_eq!(response.text().await.unwrap(), "");
    let first = listener.event(TOPIC, "broadcast").await;
    assert_eq!(
        without_position(json_payload(&first)),
        json!({"type": "broadcast", "event": "headline", "payload": {"title": "a"}})
    );
    let second = listener.event(TOPIC, "broadcast").await;
    assert_eq!(
        without_position(json_payload(&second))["meta"],
        json!({"id": "m-2"})
    );
    // The private message is not delivered without policies: the next thing is a later message.
    server.node.broadcast("news", "later", &json!({})).unwrap();
    let next = listener.event(TOPIC, "broadcast").await;
    assert_eq!(json_payload(&next)["event"], "later");
}

#[tokio::test]
async fn the_batch_endpoint_validates_with_supabase_shaped_errors() {
    let server = TestServer::start_with(|config| config.limits.max_payload_size_kb = 1).await;
    let post = |body: Value| {
        http()
            .post(server.http("/api/broadcast"))
            .bearer_auth(token(json!({"role": "anon"})))
            .json(&body)
            .send()
    };
    let response = post(json!({})).await.unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"errors": {"messages": ["can't be blank"]}})
    );

    let response = post(json!({"messages": [
        {"topic": "a", "event": "e", "payload": {}},
        {"topic": "a", "event": "e"},
        {"event": "e", "payload": "text"},
        {"topic": "a", "event": "e", "payload": {"big": "x".repeat(2000)}}
    ]}))
    .await
    .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"errors": {"messages": [
            {},
            {"payload": ["can't be blank"]},
            {"topic": ["can't be blank"], "payload": ["is invalid"]},
            {"payload": ["Payload size exceeds tenant limit"]}
        ]}})
    );
    let response = http()
        .post(server.http("/api/broadcast"))
        .bearer_auth(token(json!({"role": "anon"})))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("The body is not valid JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn the_api_needs_a_valid_token() {
    let server = TestServer::start().await;
    let body = json!({"messages": [{"topic": "a", "event": "e", "payload": {}}]});
    let cases = [
        (None, "API key is missing"),
        (
            Some(token(json!({"role": "anon", "exp": unix_now() - 1}))),
            "Token has expired",
        ),
        (
            Some("garbage".to_owned()),
            "The token provided is not a valid JWT",
        ),
    ];
    let bad_tokens = BadToken::ALL.map(|bad| (Some(bad.token()), bad.connect_message()));
    for (token, cause) in cases.into_iter().chain(bad_tokens) {
        let mut request = http().post(server.http("/api/broadcast")).json(&body);
        if let Some(token) = token {
            request = request.header("apikey", token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"message": "Unauthorized", "error": cause})
        );
    }
    // The bearer token wins over a bad apikey header.
    let response = http()
        .post(server.http("/api/broadcast"))
        .header("apikey", "garbage")
        .bearer_auth(token(json!({"role": "authenticated"})))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn the_single_event_endpoint_takes_json_and_binary() {
    let server = TestServer::start().await;
    let mut v1 = subscriber(&server, Vsn::V1).await;
    let mut v2 = subscriber(&server, Vsn::V2).await;
    let send = |path: &str, content_type: &str, body: Vec<u8>| {
        http()
            .post(server.http(path))
            .header("apikey", token(json!({"role": "anon"})))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = send(
        "/api/broadcast/news/events/flash",
        "application/json",
        br#"{"a":[1,2]}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 202);
    let expected = json!({"type": "broadcast", "event": "flash", "payload": {"a": [1, 2]}});
    assert_eq!(
        without_position(json_payload(&v1.event(TOPIC, "broadcast").await)),
        expected
    );
    assert_eq!(
        without_position(json_payload(&v2.event(TOPIC, "broadcast").await)),
        expected
    );

    // Through the gateway prefix, as realtime-js builds it for supabase-js URLs.
    let response = send(
        "/realtime/v1/api/broadcast/news/events/blob",
        "application/octet-stream",
        vec![1, 2, 3],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 202);
    let Received::Binary(frame) = v2.recv().await else {
        panic!("expected kind 4")
    };
    assert_eq!(frame[0], 4);
    assert!(frame.ends_with(&[1, 2, 3]));

    let response = send("/api/broadcast/news/events/x", "text/plain", b"hi".to_vec())
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = send(
        "/api/broadcast/news/events/x",
        "application/json",
        b"{".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);

    // v1 only ever saw the JSON one: the next thing it sees is a later broadcast.
    server.node.broadcast("news", "later", &json!({})).unwrap();
    assert_eq!(
        json_payload(&v1.event(TOPIC, "broadcast").await)["event"],
        "later"
    );
}

#[tokio::test]
async fn over_the_events_limit_the_api_answers_429() {
    let server = TestServer::start_with(|config| config.limits.max_events_per_second = 1).await;
    let mut saw_429 = false;
    for _ in 0..20 {
        let response = http()
            .post(server.http("/api/broadcast/news/events/e"))
            .header("apikey", token(json!({"role": "anon"})))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["message"], "You have exceeded your rate limit");
            saw_429 = true;
            break;
        }
        assert_eq!(response.status(), 202);
    }
    assert!(saw_429);
}

#[tokio::test]
async fn health_ping_metrics_and_cors() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    client.join_ok(TOPIC, json!({})).await;

    let health = http()
        .get(server.http("/healthcheck"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    let ping: Value = http()
        .get(server.http("/api/ping"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ping, json!({"message": "Success"}));

    let metrics = http()
        .get(server.http("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "crier_connections 1",
        "crier_channels 1",
        "crier_messages_in_total",
        "crier_messages_out_total",
        "crier_bytes_out_total",
        "crier_slow_consumer_disconnects_total 0",
        "crier_fanout_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }

    let preflight = http()
        .request(reqwest::Method::OPTIONS, server.http("/api/broadcast"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "apikey,content-type,authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert!(
        preflight
            .headers()
            .contains_key("access-control-allow-origin")
    );
}
