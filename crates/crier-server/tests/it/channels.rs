//! Channel lifecycle: join checks in Supabase's order, Phoenix routing rules, leave,
//! duplicate joins and stale join_refs.

use crier_server::protocol::Vsn;
use crier_testkit::prelude::*;
use serde_json::json;

#[tokio::test]
async fn a_join_replies_ok_with_an_empty_binding_list() {
    let server = TestServer::start().await;
    for vsn in [Vsn::V1, Vsn::V2] {
        let mut client = server.connect(vsn).await;
        let (_, status, mut response) = client.join("realtime:room", json!({"config": {}})).await;
        let position = response["broadcast"].take();
        assert!(
            position["epoch"].is_string() && position["offset"] == 0,
            "{position}"
        );
        response.as_object_mut().unwrap().remove("broadcast");
        assert_eq!(
            (status.as_str(), response),
            ("ok", json!({"postgres_changes": []}))
        );
    }
}

#[tokio::test]
async fn postgres_bindings_are_echoed_with_ids_and_a_no_database_notice() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    let bindings = json!([
        {"event": "INSERT", "schema": "public", "table": "todos", "filter": "id=eq.1"},
        {"event": "*", "schema": "public", "select": ["id"]}
    ]);
    let (join_ref, status, response) = client
        .join(
            "realtime:db",
            json!({"config": {"postgres_changes": bindings}}),
        )
        .await;
    assert_eq!(status, "ok");
    let echoed = response["postgres_changes"].as_array().unwrap();
    assert_eq!(echoed.len(), 2);
    for (echo, sent) in echoed.iter().zip(bindings.as_array().unwrap()) {
        let id = echo["id"].as_u64().expect("an integer id");
        let mut without_id = echo.clone();
        without_id.as_object_mut().unwrap().remove("id");
        assert_eq!(&without_id, sent, "echoed verbatim");
        assert!(id <= i32::MAX as u64);
    }
    assert_ne!(echoed[0]["id"], echoed[1]["id"]);
    let system = client.event("realtime:db", "system").await;
    assert_eq!(system.join_ref.as_deref(), Some(join_ref.as_str()));
    let body = json_payload(&system);
    assert_eq!(body["extension"], "postgres_changes");
    assert_eq!(body["status"], "error");
    assert_eq!(body["channel"], "db");
    assert!(body["message"].as_str().unwrap().contains("no database"));
}

#[tokio::test]
async fn topic_rules() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::new(&server).await;
    let mut client = server.connect(Vsn::V2).await;
    let (_, status, response) = client.join("realtime:", json!({})).await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "TopicNameRequired: You must provide a topic name"
    );

    let (_, status, response) = client.join("room:lobby", json!({})).await;
    assert_eq!(
        (status.as_str(), reason(&response)),
        ("error", "unmatched topic")
    );

    let long = format!("realtime:{}", "x".repeat(300));
    let (_, status, response) = client.join(&long, json!({})).await;
    assert_eq!(status, "error");
    assert!(
        reason(&response).starts_with("InvalidTopic: "),
        "{response}"
    );

    // A push to a topic that was never joined.
    let (status, response) = client
        .push("9", "realtime:nowhere", "broadcast", json!({}))
        .await;
    assert_eq!(
        (status.as_str(), reason(&response)),
        ("error", "unmatched topic")
    );
    // Leaving one is fine: it is already left.
    let (status, _) = client
        .push("9", "realtime:nowhere", "phx_leave", json!({}))
        .await;
    assert_eq!(status, "ok");
    // Other events on the phoenix topic.
    let (status, response) = client.push("9", "phoenix", "hello", json!({})).await;
    assert_eq!(
        (status.as_str(), reason(&response)),
        ("error", "unmatched topic")
    );
    bystanders.still_fine().await;
}

#[tokio::test]
async fn leave_replies_then_closes_and_unsubscribes() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    let join_ref = client.join_ok("realtime:room", json!({})).await;
    assert_eq!(server.node.subscriber_count("room"), 1);
    let leave_ref = client.next_ref();
    client
        .send(
            Some(&join_ref),
            Some(&leave_ref),
            "realtime:room",
            "phx_leave",
            json!({}),
        )
        .await;
    let reply = client.message().await;
    assert_eq!(
        (reply.event.as_str(), reply.msg_ref.as_deref()),
        ("phx_reply", Some(leave_ref.as_str()))
    );
    let close = client.message().await;
    assert_eq!(close.event, "phx_close");
    assert_eq!(close.join_ref.as_deref(), Some(join_ref.as_str()));
    assert_eq!(
        close.msg_ref.as_deref(),
        Some(join_ref.as_str()),
        "phx_close carries ref = join_ref"
    );
    assert_eq!(server.node.subscriber_count("room"), 0);
    let (status, response) = client
        .push(&join_ref, "realtime:room", "broadcast", json!({}))
        .await;
    assert_eq!(
        (status.as_str(), reason(&response)),
        ("error", "unmatched topic")
    );
}

#[tokio::test]
async fn a_duplicate_join_closes_the_first_and_stale_join_refs_are_ignored() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    let first = client
        .join_ok("realtime:room", json!({"broadcast": {"ack": true}}))
        .await;
    let second_ref = client.next_ref();
    client
        .send(
            Some(&second_ref),
            Some(&second_ref),
            "realtime:room",
            "phx_join",
            json!({"config": {"broadcast": {"ack": true}}}),
        )
        .await;
    let close = client.message().await;
    assert_eq!(close.event, "phx_close");
    assert_eq!(close.join_ref.as_deref(), Some(first.as_str()));
    let (status, _) = client.reply(&second_ref).await;
    assert_eq!(status, "ok");
    assert_eq!(server.node.subscriber_count("room"), 1);

    // A push with the old join_ref is ignored (no ack); one with the new join_ref is acked.
    let stale = client
        .broadcast(&first, "realtime:room", "e", json!({}))
        .await;
    let fresh = client
        .broadcast(&second_ref, "realtime:room", "e", json!({}))
        .await;
    let reply = client.until(|m| m.event == "phx_reply").await;
    assert_eq!(
        reply.msg_ref.as_deref(),
        Some(fresh.as_str()),
        "the stale push {stale} got no reply"
    );
}

#[tokio::test]
async fn private_channels_and_replay_are_refused_without_a_database() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    let (_, status, response) = client
        .join("realtime:secret", json!({"config": {"private": true}}))
        .await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "Unauthorized: You do not have permissions to read from this Channel topic: secret"
    );
    let (_, status, response) = client
        .join(
            "realtime:r",
            json!({"config": {"broadcast": {"replay": {"since": 0}}}}),
        )
        .await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "UnableToReplayMessages: Replay is not allowed for public channels"
    );
}

#[tokio::test]
async fn invalid_join_payloads_name_the_field() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    let (_, status, response) = client
        .join(
            "realtime:r",
            json!({"config": {"broadcast": {"self": "sometimes"}}}),
        )
        .await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "InvalidJoinPayload: config.broadcast.self: unable to parse, expected boolean"
    );
    // String booleans, as some SDKs send them, are fine.
    client
        .join_ok(
            "realtime:r",
            json!({"broadcast": {"self": "true"}, "private": "false"}),
        )
        .await;
}

#[tokio::test]
async fn the_channel_limit_refuses_with_channel_rate_limit_reached() {
    let server = TestServer::start_with(|config| config.limits.max_channels_per_client = 3).await;
    let mut bystanders = Bystanders::new(&server).await;
    let mut client = server.connect(Vsn::V2).await;
    for i in 0..3 {
        client.join_ok(&format!("realtime:c{i}"), json!({})).await;
    }
    let (_, status, response) = client.join("realtime:c3", json!({})).await;
    assert_eq!(
        (status.as_str(), reason(&response)),
        ("error", "ChannelRateLimitReached: Too many channels")
    );
    // The socket and its channels are unaffected.
    client.heartbeat().await;
    assert_eq!(server.node.subscriber_count("c0"), 1);
    bystanders.still_fine().await;
}

#[tokio::test]
async fn the_join_rate_limit_refuses_and_closes_the_socket() {
    let server = TestServer::start_with(|config| config.limits.max_joins_per_second = 1).await;
    let mut other = server.connect(Vsn::V2).await;
    let mut client = server.connect(Vsn::V2).await;
    // At 1 join/s over 5 s buckets, a handful of joins trips it; allow for a bucket rolling over.
    let mut refused = None;
    for i in 0..40 {
        let (_, status, response) = client.join(&format!("realtime:j{i}"), json!({})).await;
        if status == "error" {
            refused = Some(response);
            break;
        }
    }
    let response = refused.expect("the join rate limit tripped");
    assert_eq!(
        reason(&response),
        "ClientJoinRateLimitReached: Too many joins per second"
    );
    let frame = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1000);
    // Other sockets keep working, and new connects are refused while the rate is over.
    other.heartbeat().await;
    let (status, body) = server
        .refused(server.ws_url(Some("2.0.0"), Some(&token(json!({"role": "anon"})))))
        .await;
    assert_eq!(
        (status, body),
        (429, json!({"error": "Too many joins per second"}))
    );
}

#[tokio::test]
async fn join_tokens_are_checked_with_coded_reasons() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::new(&server).await;
    let mut client = server.connect(Vsn::V2).await;
    for (i, bad) in BadToken::ALL.into_iter().enumerate() {
        let (_, status, response) = client
            .join(
                &format!("realtime:t{i}"),
                json!({"config": {}, "access_token": bad.token()}),
            )
            .await;
        assert_eq!(status, "error");
        assert!(
            reason(&response).starts_with(&bad.join_reason()),
            "{response} vs {bad:?}"
        );
        bystanders.still_fine().await;
    }
    // `sb_` keys and a missing token fall back to the connect token.
    client.join_ok("realtime:ok1", json!({})).await;
    let (_, status, _) = client
        .join(
            "realtime:ok2",
            json!({"config": {}, "access_token": "sb_publishable_abc"}),
        )
        .await;
    assert_eq!(status, "ok");
    // user_token is an alias that wins over access_token.
    let (_, status, _) = client
        .join(
            "realtime:ok3",
            json!({"config": {}, "access_token": "garbage", "user_token": token(json!({"role": "anon"}))}),
        )
        .await;
    assert_eq!(status, "ok");
}

#[tokio::test]
async fn shutdown_tells_every_channel_then_closes_with_1012() {
    let server = TestServer::start().await;
    let mut v1 = server.connect(Vsn::V1).await;
    let mut v2 = server.connect(Vsn::V2).await;
    let join_ref = v2.join_ok("realtime:a", json!({})).await;
    v2.join_ok("realtime:b", json!({})).await;
    v1.join_ok("realtime:a", json!({})).await;
    let node = server.node.clone();
    let shutdown = tokio::spawn(async move { node.shutdown().await });

    let mut notified = Vec::new();
    loop {
        match v2.recv().await {
            Received::Message(message) => {
                assert_eq!(message.event, "system");
                let body = json_payload(&message);
                assert_eq!(body["status"], "ok");
                assert_eq!(body["message"], "Server requested disconnect");
                if message.topic == "realtime:a" {
                    assert_eq!(message.join_ref.as_deref(), Some(join_ref.as_str()));
                }
                notified.push(body["channel"].as_str().unwrap().to_owned());
            }
            Received::Closed(frame) => {
                assert_eq!(u16::from(frame.expect("close frame").code), 1012);
                break;
            }
            Received::Binary(_) => panic!("unexpected binary frame"),
        }
    }
    notified.sort();
    assert_eq!(notified, ["a", "b"]);
    let v1_notice = v1.event("realtime:a", "system").await;
    assert_eq!(json_payload(&v1_notice)["channel"], "a");
    assert_eq!(u16::from(v1.closed().await.unwrap().code), 1012);
    assert!(
        shutdown.await.unwrap(),
        "every socket drained within the timeout"
    );
    // The listener is gone.
    let url = server.ws_url(Some("2.0.0"), Some(&token(json!({"role": "anon"}))));
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}
