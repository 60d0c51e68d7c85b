//! The WebSocket connect: version, token checks, limits, heartbeat and idle timeout.

use crier_server::protocol::Vsn;
use crier_testkit::prelude::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn both_serializers_and_both_paths_answer_heartbeats() {
    let server = TestServer::start().await;
    for vsn in [Vsn::V1, Vsn::V2] {
        let mut client = server.connect(vsn).await;
        client.heartbeat().await;
    }
    // No vsn means 1.0.0.
    let url = server.ws_url(None, Some(&token(json!({"role": "anon"}))));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    Client::new(ws, Vsn::V1).heartbeat().await;
    // The gateway path.
    let url = format!(
        "ws://{}/realtime/v1/websocket?apikey={}&vsn=2.0.0",
        server.addr,
        token(json!({"role": "anon"}))
    );
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    Client::new(ws, Vsn::V2).heartbeat().await;
}

#[tokio::test]
async fn an_unknown_version_is_forbidden() {
    let server = TestServer::start().await;
    let (status, body) = server
        .refused(server.ws_url(Some("3.0.0"), Some(&token(json!({"role": "anon"})))))
        .await;
    assert_eq!(status, 403);
    assert!(body["error"].as_str().unwrap().contains("3.0.0"), "{body}");
}

#[tokio::test]
async fn token_failures_are_401_with_supabase_texts() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::new(&server).await;
    let (status, body) = server.refused(server.ws_url(Some("2.0.0"), None)).await;
    assert_eq!(
        (status, body),
        (401, json!({"error": "API key is missing"}))
    );
    for bad in BadToken::ALL {
        let (status, body) = server
            .refused(server.ws_url(Some("2.0.0"), Some(&bad.token())))
            .await;
        assert_eq!(status, 401, "{bad:?}");
        assert_eq!(body, json!({"error": bad.connect_message()}));
        bystanders.still_fine().await;
    }
}

#[tokio::test]
async fn the_x_api_key_header_takes_precedence() {
    let server = TestServer::start().await;
    let bad_query = server.ws_url(Some("2.0.0"), Some("garbage"));
    let mut request = bad_query.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", token(json!({"role": "anon"})).parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("header token wins");
    Client::new(ws, Vsn::V2).heartbeat().await;
}

#[tokio::test]
async fn the_connection_limit_refuses_with_429_and_frees_on_close() {
    let (gone_tx, mut gone) = tokio::sync::mpsc::unbounded_channel();
    let mut config = crier_server::Config::new(SECRET);
    config.limits.max_connections = 2;
    let node = crier_server::Node::builder(config)
        .on_disconnect(move |info| gone_tx.send(info.id).unwrap())
        .build()
        .unwrap();
    let server = TestServer::start_node(node).await;
    let first = server.connect(Vsn::V2).await;
    let mut second = server.connect(Vsn::V2).await;
    second.heartbeat().await;
    let (status, body) = server
        .refused(server.ws_url(Some("2.0.0"), Some(&token(json!({"role": "anon"})))))
        .await;
    assert_eq!(
        (status, body),
        (429, json!({"error": "Too many connected users"}))
    );
    drop(first);
    // The slot is released when the session has ended.
    gone.recv().await.unwrap();
    let mut third = server.connect(Vsn::V2).await;
    third.heartbeat().await;
}

/// On paused time: the close comes exactly one idle timeout after the client's last
/// frame, and a frame before then starts the wait over.
#[tokio::test(start_paused = true)]
async fn silent_sockets_are_closed_after_the_idle_timeout() {
    let node = crier_server::Node::new(crier_server::Config::new(SECRET)).unwrap();
    let idle = node.config().socket.idle_timeout;
    let server = MemoryServer::new(node);
    let mut silent = server
        .connect(Vsn::V2, &token(json!({"role": "anon"})))
        .await;
    tokio::time::advance(idle / 2).await;
    silent.heartbeat().await;
    let last_frame = tokio::time::Instant::now();
    let frame = silent.closed().await.expect("a close frame");
    assert_eq!(tokio::time::Instant::now() - last_frame, idle);
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "idle timeout");
}

#[tokio::test]
async fn hooks_see_connects_and_disconnects() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let tx2 = tx.clone();
    let node = crier_server::Node::builder(crier_server::Config::new(SECRET))
        .on_connect(move |info| tx.send(("connect", info.id, info.role.clone())).unwrap())
        .on_disconnect(move |info| {
            tx2.send(("disconnect", info.id, info.role.clone()))
                .unwrap();
        })
        .build()
        .unwrap();
    let server = TestServer::start_node(node).await;
    let mut client = server
        .connect_with_token(
            Vsn::V2,
            &token(json!({"role": "authenticated", "sub": "u1"})),
        )
        .await;
    client.heartbeat().await;
    let (kind, id, role) = rx.recv().await.unwrap();
    assert_eq!((kind, role.as_str()), ("connect", "authenticated"));
    drop(client);
    let (kind, closed_id, _) = rx.recv().await.unwrap();
    assert_eq!((kind, closed_id), ("disconnect", id));
    assert_eq!(server.node.connection_count(), 0);
}
