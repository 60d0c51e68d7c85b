//! The HTTP edge: bodies that stall, bodies too large, requests hyper cannot parse,
//! routes that do not exist, topics no join would accept, and a node whose queues are
//! full. Every answer is an error status with a JSON body, and nobody else notices.

use std::net::SocketAddr;
use std::time::Duration;

use crier_server::protocol::Vsn;
use crier_server::{Config, Node, PublishError};
use crier_testkit::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Value,
    /// The server closed the connection after it (only looked at when asked).
    closed: bool,
}

/// Writes `request` as is and reads one answer.
async fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    exchange(addr, request, false).await
}

/// As [`raw`], then waits for the server to close the connection.
async fn raw_then_closed(addr: SocketAddr, request: &[u8]) -> Answer {
    exchange(addr, request, true).await
}

async fn exchange(addr: SocketAddr, request: &[u8], await_close: bool) -> Answer {
    let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
    // Written alongside the read: the server may answer (and close) before it has read
    // all of an oversized request.
    let request = request.to_vec();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let answer = read_answer(&mut reader, await_close).await;
    drop(writing);
    answer
}

async fn read_answer(stream: &mut OwnedReadHalf, await_close: bool) -> Answer {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    let closed = await_close
        && matches!(
            tokio::time::timeout(WAIT, stream.read(&mut chunk)).await,
            Ok(Ok(0) | Err(_))
        );
    Answer {
        status,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        head,
        closed,
    }
}

/// Asserts the answer is `status` with a JSON body holding `key`.
fn assert_json_error(answer: &Answer, status: u16, key: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer:?}"
    );
    assert!(answer.body[key].is_string(), "{answer:?}");
}

fn post_head(path: &str, content_type: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\napikey: {}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n\r\n",
        token(json!({"role": "service_role"}))
    )
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_and_closed() {
    let server = TestServer::start_with(|config| {
        config.socket.body_read_timeout = Duration::from_millis(300);
    })
    .await;
    let mut bystanders = Bystanders::new(&server).await;
    for path in ["/api/broadcast", "/api/broadcast/room/events/e"] {
        let request = post_head(path, "application/json", 1000) + "{\"messages";
        let answer = raw_then_closed(server.addr, request.as_bytes()).await;
        assert_json_error(&answer, 408, "message");
        assert!(answer.closed, "the connection was closed: {answer:?}");
        bystanders.still_fine().await;
    }
}

#[tokio::test]
async fn the_batch_route_answers_415_for_a_body_that_is_not_json() {
    let server = TestServer::start().await;
    let body = r#"{"messages":[{"topic":"a","event":"e","payload":{}}]}"#;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let request = post_head("/api/broadcast", content_type, body.len()) + body;
        let answer = raw(server.addr, request.as_bytes()).await;
        assert_json_error(&answer, 415, "message");
    }
}

#[tokio::test]
async fn every_error_on_every_route_has_a_json_body() {
    let server = TestServer::start_with(|config| config.limits.max_frame_bytes = 4096).await;
    let mut bystanders = Bystanders::new(&server).await;
    let long_query = format!(
        "GET /api/ping?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "x".repeat(70_000)
    );
    let huge_header = format!(
        "GET /api/ping HTTP/1.1\r\nHost: x\r\nx-pad: {}\r\n\r\n",
        "x".repeat(2_000_000)
    );
    let chunked_over = format!(
        "POST /api/broadcast HTTP/1.1\r\nHost: x\r\napikey: {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n2000\r\n{}\r\n0\r\n\r\n",
        token(json!({"role": "anon"})),
        "x".repeat(0x2000)
    );
    let cases: Vec<(String, u16, &str)> = vec![
        // Too large, by Content-Length and by what arrives.
        (
            post_head("/api/broadcast", "application/json", 10_000),
            413,
            "message",
        ),
        (chunked_over, 413, "message"),
        // hyper's own answers.
        (long_query, 414, "message"),
        (huge_header, 431, "message"),
        ("NOT HTTP AT ALL\r\n\r\n".to_owned(), 400, "message"),
        // The router's.
        (
            "GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            404,
            "message",
        ),
        (
            "GET /api/broadcast HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            405,
            "message",
        ),
        (
            "POST /api/broadcast/%FF/events/e HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n"
                .to_owned(),
            401,
            "message",
        ),
        (
            format!(
                "POST /api/broadcast/%FF/events/e HTTP/1.1\r\nHost: x\r\napikey: {}\r\ncontent-length: 0\r\n\r\n",
                token(json!({"role": "anon"}))
            ),
            400,
            "message",
        ),
        // Not a WebSocket upgrade at the WebSocket endpoint: Supabase's `error` shape.
        (
            "GET /socket/websocket HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            400,
            "error",
        ),
    ];
    for (request, status, key) in cases {
        let answer = raw(server.addr, request.as_bytes()).await;
        assert_json_error(&answer, status, key);
        bystanders.still_fine().await;
    }
}

#[tokio::test]
async fn the_rest_api_refuses_the_topics_a_join_refuses() {
    let server = TestServer::start().await;
    let mut listener = server.connect(Vsn::V2).await;
    listener.join_ok("realtime:ok", json!({})).await;
    let reason = "InvalidTopic: a topic is at most 255 bytes with no control characters";
    let post = |path: String, body: Value| {
        reqwest::Client::new()
            .post(server.http(&path))
            .bearer_auth(token(json!({"role": "anon"})))
            .json(&body)
            .send()
    };
    for topic in ["a\u{0}b", "line\nbreak", &"x".repeat(300)] {
        let batch = json!({"messages": [
            {"topic": "ok", "event": "e", "payload": {}},
            {"topic": topic, "event": "e", "payload": {}}
        ]});
        let response = post("/api/broadcast".into(), batch).await.unwrap();
        assert_eq!(response.status(), 422);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"errors": {"messages": [{}, {"topic": [reason]}]}})
        );
        let encoded: String = topic.bytes().map(|b| format!("%{b:02X}")).collect();
        let path = format!("/api/broadcast/{encoded}/events/e");
        let response = post(path, json!({})).await.unwrap();
        assert_eq!(response.status(), 422);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"message": reason})
        );
    }
    // Nothing of the refused batches went out: the next message is the first to arrive.
    let witness = json!({"messages": [{"topic": "ok", "event": "witness", "payload": {}}]});
    let response = post("/api/broadcast".into(), witness).await.unwrap();
    assert_eq!(response.status(), 202);
    let first = listener.event("realtime:ok", "broadcast").await;
    assert_eq!(json_payload(&first)["event"], "witness");
}

#[tokio::test]
async fn over_the_node_budget_the_rest_api_answers_503_and_drops_nothing_it_accepted() {
    let mut config = Config::new(SECRET);
    config.limits.max_events_per_second = 1_000_000;
    // Any frame left queued is over it; the stalled subscriber is never cut off here.
    config.flow.max_queued_bytes = 1;
    config.flow.slow_consumer_timeout = Duration::from_secs(60);
    let server = TestServer::start_node(Node::new(config).unwrap()).await;
    let mut stalled = server.connect_tiny_buffered().await;
    stalled.join_ok("realtime:full", json!({})).await;
    let http = reqwest::Client::new();
    let pad = "p".repeat(1000);
    let mut accepted = 0u64;
    let refusal = loop {
        let response = http
            .post(server.http("/api/broadcast/full/events/e"))
            .bearer_auth(token(json!({"role": "anon"})))
            .json(&json!({"seq": accepted, "pad": pad}))
            .send()
            .await
            .unwrap();
        if response.status() != 202 {
            break response;
        }
        accepted += 1;
        assert!(accepted < 100_000, "the node never filled up");
    };
    assert_eq!(refusal.status(), 503);
    assert_eq!(refusal.headers()["retry-after"], "1");
    let body: Value = refusal.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("Retry"),
        "{body}"
    );
    assert_eq!(
        server.node.broadcast("full", "e", &json!({})),
        Err(PublishError::Overloaded),
        "the embedding API says so too"
    );
    // Once the subscriber reads, it gets everything that was accepted, in order.
    for seq in 0..accepted {
        let message = stalled.event("realtime:full", "broadcast").await;
        assert_eq!(json_payload(&message)["payload"]["seq"], seq);
    }
    stalled.heartbeat().await;
}
