//! History and resume: every broadcast carries its place in the topic's stream, a join
//! says where the stream is, and a join that resumes gets exactly what it missed, then
//! live delivery with no gap and no duplicate, or a `system` message saying why not.

use bytes::Bytes;
use crier_server::protocol::serializer::{self, FrameRef};
use crier_server::protocol::{Message, Payload, Vsn};
use crier_testkit::prelude::*;
use serde_json::{Value, json};

const TOPIC: &str = "realtime:feed";

/// Joins [`TOPIC`] (resuming from `resume` when given) and returns the join reply's
/// `broadcast` position.
async fn join(client: &mut Client, resume: Option<Value>) -> Value {
    let mut broadcast = json!({"ack": true});
    if let Some(resume) = resume {
        broadcast["resume"] = resume;
    }
    let (_, status, response) = client
        .join(TOPIC, json!({"config": {"broadcast": broadcast}}))
        .await;
    assert_eq!(status, "ok", "{response}");
    response["broadcast"].clone()
}

/// The next message on [`TOPIC`], text or binary.
async fn next(client: &mut Client) -> Message {
    loop {
        let message = match client.recv().await {
            Received::Message(message) => message,
            Received::Binary(bytes) => {
                serializer::decode_from_server(client.vsn, FrameRef::Binary(&bytes)).unwrap()
            }
            Received::Closed(frame) => panic!("closed: {frame:?}"),
        };
        if message.topic == TOPIC {
            return message;
        }
    }
}

/// `(offset, payload.n)` of a JSON broadcast.
fn offset_and_n(message: &Message) -> (u64, i64) {
    let body = json_payload(message);
    assert_eq!(message.event, "broadcast", "{body}");
    (
        body["meta"]["offset"].as_u64().expect("meta.offset"),
        body["payload"]["n"].as_i64().expect("payload.n"),
    )
}

fn send(server: &TestServer, n: i64) {
    server
        .node
        .broadcast("feed", "e", &json!({"n": n}))
        .expect("published");
}

#[tokio::test]
async fn a_subscriber_that_comes_back_gets_exactly_what_it_missed_then_live_ones() {
    let server = TestServer::start().await;
    for vsn in [Vsn::V1, Vsn::V2] {
        let mut first = server.connect(vsn).await;
        let start = join(&mut first, None).await;
        let epoch = start["epoch"].as_str().expect("an epoch").to_owned();
        let base = start["offset"].as_u64().unwrap();
        for n in 1..=10 {
            send(&server, n);
        }
        let mut last = 0;
        for n in 1..=10 {
            let message = next(&mut first).await;
            let body = json_payload(&message);
            assert_eq!(body["meta"]["epoch"], epoch.as_str(), "{body}");
            (last, _) = offset_and_n(&message);
            assert_eq!(last, base + n as u64);
        }
        drop(first);

        for n in 11..=60 {
            send(&server, n);
        }
        let mut back = server.connect(vsn).await;
        let position = join(&mut back, Some(json!({"epoch": epoch, "offset": last}))).await;
        assert_eq!(
            position["offset"],
            base + 60,
            "the join says where the stream is"
        );
        for n in 11..=60 {
            let message = next(&mut back).await;
            assert_eq!(offset_and_n(&message), (base + n as u64, n), "{vsn:?}");
        }
        let system = next(&mut back).await;
        assert_eq!(system.event, "system");
        assert_eq!(
            json_payload(&system),
            &json!({"extension": "broadcast", "status": "ok",
                    "message": "Resumed: 50 missed messages",
                    "resume": {"recovered": true, "epoch": epoch, "offset": base + 60,
                               "missed": 50}})
        );
        send(&server, 61);
        assert_eq!(offset_and_n(&next(&mut back).await), (base + 61, 61));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_sent_while_a_resume_is_served_arrive_once_in_order() {
    let server = TestServer::start_with(|config| config.history.size = 10_000).await;
    let mut first = server.connect(Vsn::V2).await;
    let start = join(&mut first, None).await;
    let epoch = start["epoch"].as_str().unwrap().to_owned();
    for n in 1..=20 {
        send(&server, n);
    }
    drop(first);
    // A publisher keeps going while the subscriber comes back.
    let node = server.node.clone();
    let publisher = tokio::spawn(async move {
        for n in 21..=2000 {
            node.broadcast_async("feed", "e", &json!({"n": n}))
                .await
                .unwrap();
            if n % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut back = server.connect(Vsn::V2).await;
    join(&mut back, Some(json!({"epoch": epoch, "offset": 5}))).await;
    publisher.await.unwrap();
    let mut expected = 6;
    let mut resumed = false;
    while expected <= 2000 {
        let message = next(&mut back).await;
        if message.event == "system" {
            assert_eq!(json_payload(&message)["resume"]["recovered"], true);
            resumed = true;
            continue;
        }
        assert_eq!(offset_and_n(&message), (expected as u64, expected));
        expected += 1;
    }
    if !resumed {
        // The publisher finished before the join attached: all of it was missed, and the
        // report follows the last.
        let report = next(&mut back).await;
        assert_eq!(report.event, "system");
        assert_eq!(json_payload(&report)["resume"]["recovered"], true);
    }
    back.heartbeat().await;
}

#[tokio::test]
async fn a_resume_the_history_cannot_serve_says_why_and_the_channel_stays() {
    let server = TestServer::start_with(|config| config.history.size = 5).await;
    let mut watcher = server.connect(Vsn::V2).await;
    let epoch = join(&mut watcher, None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=10 {
        send(&server, n);
    }
    for (round, (resume, message)) in [
        (
            json!({"epoch": epoch, "offset": 2}),
            "Resume gap: history no longer reaches offset 3",
        ),
        (
            json!({"epoch": "not-this-one", "offset": 9}),
            "Resume gap: epoch changed",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let latest = 10 + round as u64;
        let mut client = server.connect(Vsn::V2).await;
        join(&mut client, Some(resume)).await;
        let system = next(&mut client).await;
        assert_eq!(
            json_payload(&system),
            &json!({"extension": "broadcast", "status": "error", "message": message,
                    "resume": {"recovered": false, "epoch": epoch, "offset": latest}})
        );
        // Still joined: live broadcasts come, from where the stream is.
        send(&server, 11);
        assert_eq!(offset_and_n(&next(&mut client).await).1, 11);
    }
    // 12 published, 5 kept: the figures say so.
    let metrics = server.node.metrics_text();
    for line in [
        "crier_history_topics 1",
        "crier_history_messages 5",
        "crier_history_evictions_total 7",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn a_malformed_resume_is_refused_with_the_field() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    for (resume, reason_text) in [
        (
            json!({"offset": 1}),
            "InvalidJoinPayload: config.broadcast.resume.epoch",
        ),
        (
            json!({"epoch": "e", "offset": -1}),
            "InvalidJoinPayload: config.broadcast.resume.offset",
        ),
        (
            json!({"epoch": "e", "offset": 1.5}),
            "InvalidJoinPayload: config.broadcast.resume.offset",
        ),
    ] {
        let (_, status, response) = client
            .join(TOPIC, json!({"config": {"broadcast": {"resume": resume}}}))
            .await;
        assert_eq!(status, "error");
        assert!(reason(&response).starts_with(reason_text), "{response}");
    }
    client.heartbeat().await;
}

#[tokio::test]
async fn binary_broadcasts_carry_their_position_in_the_metadata_and_resume_too() {
    let server = TestServer::start().await;
    let mut first = server.connect(Vsn::V2).await;
    let epoch = join(&mut first, None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .node
        .broadcast_binary("feed", "blob", Bytes::from_static(b"\x01\x02"))
        .unwrap();
    let message = next(&mut first).await;
    let Payload::UserBroadcast(live) = &message.payload else {
        panic!("kind 4: {message:?}")
    };
    let metadata: Value = serde_json::from_slice(&live.metadata).unwrap();
    assert_eq!(metadata, json!({"offset": 1, "epoch": epoch}));
    drop(first);

    let mut back = server.connect(Vsn::V2).await;
    join(&mut back, Some(json!({"epoch": epoch, "offset": 0}))).await;
    let message = next(&mut back).await;
    let Payload::UserBroadcast(again) = &message.payload else {
        panic!("kind 4: {message:?}")
    };
    assert_eq!(
        (&again.payload[..], &again.metadata),
        (&b"\x01\x02"[..], &live.metadata)
    );
}

#[tokio::test]
async fn the_history_api_reads_a_topic_for_the_service_role_only() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    let epoch = join(&mut client, None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=3 {
        send(&server, n);
    }
    let http = reqwest::Client::new();
    let get = |token: String| {
        http.get(server.http("/api/broadcast/feed/history?after=1"))
            .bearer_auth(token)
            .send()
    };
    let response = get(token(json!({"role": "service_role"}))).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["epoch"], epoch.as_str());
    assert_eq!(body["offset"], 3);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0],
        json!({"type": "broadcast", "event": "e", "payload": {"n": 2},
               "meta": {"offset": 2, "epoch": epoch}})
    );
    let refused = get(token(json!({"role": "anon"}))).await.unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn without_history_there_are_no_positions_and_a_resume_is_told_so() {
    let server = TestServer::start_with(|config| config.history.size = 0).await;
    let mut client = server.connect(Vsn::V2).await;
    assert_eq!(join(&mut client, None).await, Value::Null);
    send(&server, 1);
    let message = next(&mut client).await;
    assert_eq!(
        json_payload(&message),
        &json!({"type": "broadcast", "event": "e", "payload": {"n": 1}})
    );
    let mut back = server.connect(Vsn::V2).await;
    join(&mut back, Some(json!({"epoch": "x", "offset": 1}))).await;
    let system = next(&mut back).await;
    assert_eq!(
        json_payload(&system),
        &json!({"extension": "broadcast", "status": "error",
                "message": "Resume gap: this server keeps no history",
                "resume": {"recovered": false}})
    );
}

#[tokio::test]
async fn a_private_topics_history_is_read_with_broadcast_read_and_resumed_like_any_other() {
    use crier_server::authz::{Access, FnAuthorizer};
    use crier_server::{Config, Node};
    use std::sync::Arc;

    // `reader` may read `vault`; the service role may write it; nobody else may do either.
    let policy = FnAuthorizer::new(|check, access| {
        Ok(check.topic == "vault"
            && match access {
                Access::Read(_) => check.sub == "reader",
                Access::Write(_) => check.role == "service_role",
            })
    });
    let mut config = Config::new(SECRET);
    config.limits.max_events_per_second = 1_000_000;
    let node = Node::builder(config)
        .channel_authorizer(Arc::new(policy))
        .build()
        .unwrap();
    let server = TestServer::start_node(node).await;
    let reader = token(json!({"role": "authenticated", "sub": "reader"}));
    let mut client = server.connect_with_token(Vsn::V2, &reader).await;
    let (_, status, response) = client
        .join("realtime:vault", json!({"config": {"private": true}}))
        .await;
    assert_eq!(status, "ok", "{response}");
    let epoch = response["broadcast"]["epoch"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let post = http
        .post(server.http("/api/broadcast"))
        .bearer_auth(token(json!({"role": "service_role"})))
        .json(&json!({"messages": [{"topic": "vault", "event": "e", "payload": {"n": 1}, "private": true}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 202);
    let live = client.event("realtime:vault", "broadcast").await;
    assert_eq!(json_payload(&live)["meta"]["offset"], 1);

    let read = |token: String| {
        http.get(server.http("/api/broadcast/vault/history?private=true"))
            .bearer_auth(token)
            .send()
    };
    let body: Value = read(reader.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(body["epoch"], epoch.as_str());
    assert_eq!(body["messages"][0]["payload"], json!({"n": 1}));
    let stranger = token(json!({"role": "authenticated", "sub": "someone"}));
    assert_eq!(read(stranger).await.unwrap().status(), 403);
    // The public topic of that name is another stream, empty.
    let public = http
        .get(server.http("/api/broadcast/vault/history"))
        .bearer_auth(token(json!({"role": "service_role"})))
        .send()
        .await
        .unwrap();
    let public: Value = public.json().await.unwrap();
    assert_eq!(public["messages"], json!([]));
}
