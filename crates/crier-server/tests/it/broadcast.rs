//! Broadcast: delivery across serializers, self and ack, binary frames, limits and slow
//! consumers.

use std::time::Duration;

use bytes::Bytes;
use crier_server::protocol::serializer::{self, FrameRef};
use crier_server::protocol::{Message, Payload, PayloadEncoding, UserBroadcast, Vsn};
use crier_testkit::prelude::*;
use serde_json::json;

const TOPIC: &str = "realtime:room";

/// A kind-3 frame exactly as realtime-js writes it.
fn user_broadcast_push(
    join_ref: &str,
    msg_ref: &str,
    event: &str,
    encoding: PayloadEncoding,
    payload: &[u8],
) -> Message {
    Message {
        join_ref: Some(join_ref.into()),
        msg_ref: Some(msg_ref.into()),
        topic: TOPIC.into(),
        event: "broadcast".into(),
        payload: Payload::UserBroadcast(UserBroadcast {
            event: event.into(),
            metadata: Bytes::new(),
            encoding,
            payload: Bytes::copy_from_slice(payload),
        }),
    }
}

/// A sender with ack on, and one listener of each serializer, all joined to [`TOPIC`].
async fn sender_and_listeners(server: &TestServer) -> (Client, String, Client, Client) {
    let mut sender = server.connect(Vsn::V2).await;
    let mut v1 = server.connect(Vsn::V1).await;
    let mut v2 = server.connect(Vsn::V2).await;
    let join_ref = sender
        .join_ok(TOPIC, json!({"broadcast": {"ack": true}}))
        .await;
    v1.join_ok(TOPIC, json!({})).await;
    v2.join_ok(TOPIC, json!({})).await;
    (sender, join_ref, v1, v2)
}

#[tokio::test]
async fn broadcasts_reach_every_subscriber_in_its_own_serializer() {
    let server = TestServer::start().await;
    let (mut sender, join_ref, mut v1, mut v2) = sender_and_listeners(&server).await;

    let msg_ref = sender
        .broadcast(&join_ref, TOPIC, "cursor", json!({"x": 1, "y": [2, 3]}))
        .await;
    let (status, response) = sender.reply(&msg_ref).await;
    assert_eq!((status.as_str(), response), ("ok", json!({})));

    let expected =
        json!({"type": "broadcast", "event": "cursor", "payload": {"x": 1, "y": [2, 3]}});
    for client in [&mut v1, &mut v2] {
        let message = client.event(TOPIC, "broadcast").await;
        assert_eq!(message.join_ref, None);
        assert_eq!(message.msg_ref, None);
        assert_eq!(without_position(json_payload(&message)), expected);
        assert_eq!(
            json_payload(&message)["meta"]["offset"],
            1,
            "its place in the stream"
        );
    }
}

#[tokio::test]
async fn self_false_excludes_the_sender_and_self_true_includes_it() {
    let server = TestServer::start().await;
    let mut quiet = server.connect(Vsn::V2).await;
    let mut echo = server.connect(Vsn::V2).await;
    let mut other = server.connect(Vsn::V2).await;
    let quiet_ref = quiet
        .join_ok(TOPIC, json!({"broadcast": {"self": false, "ack": true}}))
        .await;
    let echo_ref = echo
        .join_ok(TOPIC, json!({"broadcast": {"self": true}}))
        .await;
    let other_ref = other
        .join_ok(TOPIC, json!({"broadcast": {"ack": true}}))
        .await;

    let own = quiet.broadcast(&quiet_ref, TOPIC, "mine", json!({})).await;
    quiet.reply(&own).await; // fan-out happened before the ack
    let witness = other
        .broadcast(&other_ref, TOPIC, "witness", json!({}))
        .await;
    other.reply(&witness).await;
    let first = quiet.event(TOPIC, "broadcast").await;
    assert_eq!(
        json_payload(&first)["event"],
        "witness",
        "the sender did not get its own message"
    );

    echo.broadcast(&echo_ref, TOPIC, "echo", json!({"n": 1}))
        .await;
    let mut got = echo.event(TOPIC, "broadcast").await;
    while json_payload(&got)["event"] != "echo" {
        got = echo.event(TOPIC, "broadcast").await;
    }
    assert_eq!(json_payload(&got)["payload"], json!({"n": 1}));
}

#[tokio::test]
async fn kind_3_json_is_relayed_as_json_text_to_every_serializer() {
    let server = TestServer::start().await;
    let (mut sender, join_ref, mut v1, mut v2) = sender_and_listeners(&server).await;
    sender
        .send_message(&user_broadcast_push(
            &join_ref,
            "7",
            "move",
            PayloadEncoding::Json,
            br#"{"x":1.5}"#,
        ))
        .await;
    assert_eq!(sender.reply("7").await.0, "ok");
    let expected = json!({"type": "broadcast", "event": "move", "payload": {"x": 1.5}});
    assert_eq!(
        without_position(json_payload(&v1.event(TOPIC, "broadcast").await)),
        expected
    );
    assert_eq!(
        without_position(json_payload(&v2.event(TOPIC, "broadcast").await)),
        expected
    );
}

#[tokio::test]
async fn kind_3_binary_reaches_v2_as_kind_4_and_skips_v1() {
    let server = TestServer::start().await;
    let (mut sender, join_ref, mut v1, mut v2) = sender_and_listeners(&server).await;
    let bytes = [0u8, 159, 146, 150, 255, 7];
    sender
        .send_message(&user_broadcast_push(
            &join_ref,
            "5",
            "blob",
            PayloadEncoding::Binary,
            &bytes,
        ))
        .await;
    assert_eq!(sender.reply("5").await.0, "ok");

    let Received::Binary(frame) = v2.recv().await else {
        panic!("expected a binary frame")
    };
    // The metadata is the server's: the broadcast's place in the stream.
    let Payload::UserBroadcast(received) =
        serializer::decode_from_server(Vsn::V2, FrameRef::Binary(&frame))
            .unwrap()
            .payload
    else {
        panic!("kind 4")
    };
    let metadata: serde_json::Value = serde_json::from_slice(&received.metadata).unwrap();
    assert_eq!(metadata["offset"], 1, "{metadata}");
    let mut expected = vec![4u8, TOPIC.len() as u8, 4, received.metadata.len() as u8, 0];
    expected.extend_from_slice(TOPIC.as_bytes());
    expected.extend_from_slice(b"blob");
    expected.extend_from_slice(&received.metadata);
    expected.extend_from_slice(&bytes);
    assert_eq!(
        &frame[..],
        &expected[..],
        "kind 4: topic, event, the server's metadata, binary encoding"
    );

    // v1 cannot carry binary: the next thing it sees is a later JSON broadcast.
    sender.broadcast(&join_ref, TOPIC, "after", json!({})).await;
    let next = v1.event(TOPIC, "broadcast").await;
    assert_eq!(json_payload(&next)["event"], "after");
}

#[tokio::test]
async fn oversized_and_malformed_broadcasts_are_answered_and_harm_nobody() {
    let server = TestServer::start_with(|config| config.limits.max_payload_size_kb = 1).await;
    let mut sender = server.connect(Vsn::V2).await;
    let mut listener = server.connect(Vsn::V2).await;
    let join_ref = sender
        .join_ok(TOPIC, json!({"broadcast": {"ack": true}}))
        .await;
    listener.join_ok(TOPIC, json!({})).await;

    let big = sender
        .broadcast(&join_ref, TOPIC, "big", json!("x".repeat(2000)))
        .await;
    let (status, response) = sender.reply(&big).await;
    assert_eq!(
        (status.as_str(), response),
        ("error", json!("payload_size_exceeded"))
    );

    let (status, response) = sender
        .push(&join_ref, TOPIC, "broadcast", json!("not a map"))
        .await;
    assert_eq!(status, "error");
    assert!(
        reason(&response).starts_with("InvalidBroadcast: "),
        "{response}"
    );

    sender
        .send_message(&user_broadcast_push(
            &join_ref,
            "77",
            "bad",
            PayloadEncoding::Json,
            b"{not json",
        ))
        .await;
    let (status, response) = sender.reply("77").await;
    assert_eq!(status, "error");
    assert!(reason(&response).contains("not valid JSON"), "{response}");

    // Only the small, valid one arrives.
    let ok = sender.broadcast(&join_ref, TOPIC, "small", json!({})).await;
    assert_eq!(sender.reply(&ok).await.0, "ok");
    let message = listener.event(TOPIC, "broadcast").await;
    assert_eq!(json_payload(&message)["event"], "small");
}

#[tokio::test]
async fn over_the_events_limit_channels_are_shut_down() {
    let server = TestServer::start_with(|config| config.limits.max_events_per_second = 1).await;
    let mut sender = server.connect(Vsn::V2).await;
    let mut listener = server.connect(Vsn::V2).await;
    let join_ref = sender.join_ok(TOPIC, json!({})).await;
    let listener_ref = listener.join_ok(TOPIC, json!({})).await;
    // 1 event/s over a 5 s bucket: a few messages and their deliveries trip it.
    for i in 0..20 {
        sender
            .broadcast(&join_ref, TOPIC, "flood", json!({"i": i}))
            .await;
    }
    let system = listener.event(TOPIC, "system").await;
    let body = json_payload(&system);
    assert_eq!(body["status"], "error");
    assert_eq!(body["message"], "Too many messages per second");
    assert_eq!(system.join_ref.as_deref(), Some(listener_ref.as_str()));
    let close = listener.event(TOPIC, "phx_close").await;
    assert_eq!(close.join_ref.as_deref(), Some(listener_ref.as_str()));
    // The flooding channel is shut down too; both sockets stay up.
    let system = sender.event(TOPIC, "system").await;
    assert_eq!(
        json_payload(&system)["message"],
        "Too many messages per second"
    );
    sender.event(TOPIC, "phx_close").await;
    listener.heartbeat().await;
    sender.heartbeat().await;
}

#[tokio::test]
async fn many_subscribers_each_get_every_message_in_order() {
    let server = TestServer::start().await;
    let mut subscribers = Vec::new();
    for i in 0..50 {
        let vsn = if i % 2 == 0 { Vsn::V1 } else { Vsn::V2 };
        let mut client = server.connect(vsn).await;
        client.join_ok(TOPIC, json!({})).await;
        subscribers.push(client);
    }
    let mut sender = server.connect(Vsn::V2).await;
    let join_ref = sender.join_ok(TOPIC, json!({})).await;
    for n in 0..20 {
        sender
            .broadcast(&join_ref, TOPIC, "seq", json!({"n": n}))
            .await;
    }
    for client in &mut subscribers {
        for n in 0..20 {
            let message = client.event(TOPIC, "broadcast").await;
            assert_eq!(json_payload(&message)["payload"]["n"], n);
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_without_slowing_the_others() {
    let server = TestServer::start_with(|config| {
        config.flow.slow_consumer_bytes = 256 << 10;
        config.limits.max_frame_bytes = 64 << 10;
    })
    .await;
    let mut stalled = server.connect(Vsn::V2).await;
    let mut healthy = server.connect(Vsn::V2).await;
    let mut sender = server.connect(Vsn::V2).await;
    stalled.join_ok(TOPIC, json!({})).await;
    healthy.join_ok(TOPIC, json!({})).await;
    let join_ref = sender
        .join_ok(TOPIC, json!({"broadcast": {"ack": true}}))
        .await;

    // ~20 MB in 32 KB messages: far more than the stalled client's kernel buffers and
    // queue hold. `stalled` never reads.
    let pad = "p".repeat(32 << 10);
    let count = 640;
    for n in 0..count {
        let msg_ref = sender
            .broadcast(&join_ref, TOPIC, "load", json!({"n": n, "pad": pad}))
            .await;
        assert_eq!(sender.reply(&msg_ref).await.0, "ok");
        // The healthy client keeps up, message by message.
        let message = healthy.event(TOPIC, "broadcast").await;
        assert_eq!(json_payload(&message)["payload"]["n"], n);
    }
    let metrics = server.node.metrics_text();
    let slow: f64 = metric(&metrics, "crier_slow_consumer_disconnects_total");
    assert!(slow >= 1.0, "the stalled client was counted: {metrics}");
    // The stalled client finds its connection closed once it reads again.
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        match stalled.recv().await {
            Received::Closed(_) => {
                closed = true;
                break;
            }
            _ => continue,
        }
    }
    assert!(closed, "the stalled socket was closed by the server");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics"))
}

#[tokio::test]
async fn binary_pushes_that_are_not_user_broadcasts_are_refused() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    let join_ref = client.join_ok(TOPIC, json!({})).await;
    let push = Message {
        join_ref: Some(join_ref.clone()),
        msg_ref: Some("3".into()),
        topic: TOPIC.into(),
        event: "broadcast".into(),
        payload: Payload::Binary(Bytes::from_static(b"raw")),
    };
    client.send_message(&push).await;
    let (status, response) = client.reply("3").await;
    assert_eq!(status, "error");
    assert!(
        reason(&response).starts_with("InvalidBroadcast"),
        "{response}"
    );
}
