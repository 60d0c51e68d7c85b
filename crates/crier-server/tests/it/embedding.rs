//! Embedding: a Rust service mounts the router in its own axum app, publishes from its
//! own code, and reads presence.

use bytes::Bytes;
use crier_server::protocol::Vsn;
use crier_server::{Config, Node, PublishError};
use crier_testkit::prelude::*;
use serde_json::json;

/// Serves `node.router()` merged into an app with a route of its own, on axum::serve.
async fn embedded(node: &Node) -> TestServer {
    let app = axum::Router::new()
        .route(
            "/hello",
            axum::routing::get(|| async { "from the host app" }),
        )
        .merge(node.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestServer {
        node: node.clone(),
        addr,
    }
}

#[tokio::test]
async fn a_host_app_serves_the_router_and_publishes_from_rust() {
    let node = Node::new(Config::new(SECRET)).unwrap();
    let server = embedded(&node).await;
    let body = reqwest::get(server.http("/hello"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "from the host app");

    let mut v1 = server.connect(Vsn::V1).await;
    let mut v2 = server.connect(Vsn::V2).await;
    v1.join_ok("realtime:orders", json!({})).await;
    v2.join_ok("realtime:orders", json!({})).await;

    let recipients = node
        .broadcast("orders", "created", &json!({"id": 42}))
        .unwrap();
    assert_eq!(recipients, 2);
    let expected = json!({"type": "broadcast", "event": "created", "payload": {"id": 42}});
    assert_eq!(
        without_position(json_payload(
            &v1.event("realtime:orders", "broadcast").await
        )),
        expected
    );
    assert_eq!(
        without_position(json_payload(
            &v2.event("realtime:orders", "broadcast").await
        )),
        expected
    );

    let recipients = node
        .broadcast_binary("orders", "thumbnail", Bytes::from_static(b"\x89PNG"))
        .unwrap();
    assert_eq!(recipients, 1, "only the 2.0.0 socket can carry binary");
    let Received::Binary(frame) = v2.recv().await else {
        panic!("expected a binary frame")
    };
    assert!(frame.ends_with(b"\x89PNG"));

    assert_eq!(node.broadcast("nobody-here", "e", &json!({})).unwrap(), 0);
    assert_eq!(
        node.broadcast("", "e", &json!({})),
        Err(PublishError::EmptyChannel)
    );
}

#[tokio::test]
async fn payload_limits_apply_to_rust_publishers() {
    let mut config = Config::new(SECRET);
    config.limits.max_payload_size_kb = 1;
    let node = Node::new(config).unwrap();
    let err = node
        .broadcast("room", "e", &json!("x".repeat(2000)))
        .unwrap_err();
    assert!(
        matches!(err, PublishError::PayloadTooLarge { limit: 1000, .. }),
        "{err}"
    );
    let err = node
        .broadcast_binary("room", &"e".repeat(300), Bytes::from_static(b"x"))
        .unwrap_err();
    assert_eq!(err, PublishError::NameTooLong);
}

#[tokio::test]
async fn presence_is_readable_from_rust() {
    let node = Node::new(Config::new(SECRET)).unwrap();
    let server = embedded(&node).await;
    let mut client = server.connect(Vsn::V2).await;
    let join_ref = client
        .join_ok(
            "realtime:team",
            json!({"presence": {"enabled": true, "key": "ana"}}),
        )
        .await;
    client
        .push(
            &join_ref,
            "realtime:team",
            "presence",
            json!({"event": "track", "payload": {"desk": 4}}),
        )
        .await;
    let presence = node.presence("team");
    let metas = &presence.0["ana"];
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].payload["desk"], 4);
    assert!(node.presence("empty").0.is_empty());
}

#[tokio::test]
async fn an_embedded_router_refuses_connects_during_shutdown() {
    let node = Node::new(Config::new(SECRET)).unwrap();
    let server = embedded(&node).await;
    let mut client = server.connect(Vsn::V2).await;
    client.join_ok("realtime:x", json!({})).await;
    let stopping = {
        let node = node.clone();
        tokio::spawn(async move { node.shutdown().await })
    };
    assert_eq!(u16::from(client.closed().await.unwrap().code), 1012);
    assert!(stopping.await.unwrap());
    // The host app keeps serving; Crier's endpoints answer 503 from now on.
    let (status, body) = server
        .refused(server.ws_url(Some("2.0.0"), Some(&token(json!({"role": "anon"})))))
        .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "Realtime is restarting, please standby");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_async_moves_a_loop_at_its_subscribers_pace() {
    let server =
        TestServer::start_with(|config| config.limits.max_events_per_second = u32::MAX).await;
    let mut subscriber = server.connect(Vsn::V2).await;
    subscriber.join_ok("realtime:feed", json!({})).await;
    let node = server.node.clone();
    // Ten times what the old frame count let a queue hold, published as fast as the
    // awaits allow.
    let publisher = tokio::spawn(async move {
        for seq in 0..10_000 {
            let sent = node
                .broadcast_async("feed", "tick", &json!({"seq": seq}))
                .await;
            assert_eq!(sent, Ok(1));
        }
    });
    for seq in 0..10_000 {
        let message = subscriber.event("realtime:feed", "broadcast").await;
        assert_eq!(json_payload(&message)["payload"]["seq"], seq);
    }
    publisher.await.unwrap();
    assert!(
        server
            .node
            .metrics_text()
            .contains("crier_slow_consumer_disconnects_total 0\n"),
        "nobody was cut off"
    );
}

/// Two nodes in one process on one `MemoryBus`: a broadcast published on either, by a
/// client, the REST API or Rust code, reaches the other's subscribers; `self: false`
/// still keeps a client's own broadcast from it, and a node whose subscribers left
/// stops receiving the topic.
#[tokio::test]
async fn nodes_sharing_a_bus_deliver_each_others_broadcasts() {
    let bus = crier_server::broker::MemoryBus::new();
    let node = || {
        Node::builder(Config::new(SECRET))
            .broker(bus.broker())
            .build()
            .unwrap()
    };
    let (a, b) = (
        TestServer::start_node(node()).await,
        TestServer::start_node(node()).await,
    );
    let mut on_a = a.connect(Vsn::V1).await;
    let a_ref = on_a.join_ok("realtime:room", json!({})).await;
    let mut on_b = b.connect(Vsn::V2).await;
    on_b.join_ok("realtime:room", json!({})).await;

    on_a.broadcast(&a_ref, "realtime:room", "from-a", json!({"n": 1}))
        .await;
    let got = on_b.event("realtime:room", "broadcast").await;
    assert_eq!(json_payload(&got)["event"], "from-a");
    assert_eq!(json_payload(&got)["payload"], json!({"n": 1}));

    b.node
        .broadcast("room", "from-b", &json!({"n": 2}))
        .expect("published");
    let got = on_a.event("realtime:room", "broadcast").await;
    assert_eq!(
        json_payload(&got)["event"],
        "from-b",
        "a's own broadcast did not come back (self is off), b's did"
    );
    let status = reqwest::Client::new()
        .post(a.http("/api/broadcast"))
        .bearer_auth(token(json!({"role": "service_role"})))
        .json(&json!({"messages": [{"topic": "room", "event": "from-rest", "payload": {"n": 3}}]}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    let got = on_b.event("realtime:room", "broadcast").await;
    assert_eq!(
        json_payload(&got)["event"],
        "from-b",
        "b's own, delivered locally"
    );
    let got = on_b.event("realtime:room", "broadcast").await;
    assert_eq!(json_payload(&got)["event"], "from-rest");
    b.node
        .broadcast_binary("room", "bytes", Bytes::from_static(b"\x01\x02"))
        .unwrap();
    // Binary reaches 2.0.0 sockets only; a's is 1.0.0, so it sees the next one instead.
    b.node.broadcast("room", "witness", &json!({})).unwrap();
    let got = on_a.event("realtime:room", "broadcast").await;
    assert_eq!(
        json_payload(&got)["event"],
        "from-rest",
        "a's own node's REST call"
    );
    let got = on_a.event("realtime:room", "broadcast").await;
    assert_eq!(json_payload(&got)["event"], "witness");
}
