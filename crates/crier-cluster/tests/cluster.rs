//! Two Crier nodes on one private `redis-server`, each on its own loopback port: what a
//! client publishes on one reaches subscribers on the other, and presence is one state,
//! exactly as on one node.

use std::sync::Arc;
use std::time::Duration;

use crier_cluster::{ClusterError, RedisBroker};
use crier_server::authz::FnAuthorizer;
use crier_server::broker::Broker;
use crier_server::protocol::Vsn;
use crier_server::{Config, Node};
use crier_testkit::TestRedis;
use crier_testkit::prelude::{Client, SECRET, TestServer, json_payload, token, without_position};
use serde_json::json;

const TOPIC: &str = "realtime:room";

/// A node on the cluster, with its broker (to wait for its subscriptions).
async fn node(redis: &TestRedis, name: &str) -> (TestServer, Arc<RedisBroker>) {
    let mut config = Config::new(SECRET);
    config.limits.max_events_per_second = 1_000_000;
    config.limits.max_joins_per_second = 100_000;
    let broker = RedisBroker::connect(&redis.url(), name).await.unwrap();
    // Every private channel may be read and written: the separation tested is the bus's.
    let open = FnAuthorizer::new(|_, _| Ok(true));
    let node = Node::builder(config)
        .broker(broker.clone())
        .presence_store(broker.clone())
        .channel_authorizer(Arc::new(open))
        .build()
        .unwrap();
    (TestServer::start_node(node).await, broker)
}

async fn joined(server: &TestServer, vsn: Vsn, config: serde_json::Value) -> Client {
    let mut client = server.connect(vsn).await;
    client.join_ok(TOPIC, config).await;
    client
}

#[tokio::test]
async fn a_broadcast_on_one_node_reaches_the_subscribers_of_every_node() {
    let redis = TestRedis::start().unwrap();
    let (a, _) = node(&redis, "a").await;
    let (b, broker_b) = node(&redis, "b").await;
    let mut sender = a.connect(Vsn::V2).await;
    let sender_ref = sender
        .join_ok(TOPIC, json!({"broadcast": {"ack": true, "self": false}}))
        .await;
    let mut on_a = joined(&a, Vsn::V1, json!({})).await;
    let mut on_b = joined(&b, Vsn::V2, json!({})).await;
    let mut private_on_b = b.connect(Vsn::V2).await;
    private_on_b.join_ok(TOPIC, json!({"private": true})).await;
    broker_b.synced().await;

    let msg_ref = sender
        .broadcast(&sender_ref, TOPIC, "hello", json!({"n": 1}))
        .await;
    assert_eq!(sender.reply(&msg_ref).await.0, "ok");
    let expected = json!({"type": "broadcast", "event": "hello", "payload": {"n": 1}});
    for client in [&mut on_a, &mut on_b] {
        let message = client.event(TOPIC, "broadcast").await;
        assert_eq!(without_position(json_payload(&message)), expected);
    }

    // The REST API and Node::broadcast work on any node.
    let http = reqwest::Client::new();
    let response = http
        .post(b.http("/api/broadcast"))
        .bearer_auth(token(json!({"role": "service_role"})))
        .json(&json!({"messages": [{"topic": "room", "event": "rest", "payload": {"n": 2}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    b.node.broadcast("room", "rust", &json!({"n": 3})).unwrap();
    for client in [&mut on_a, &mut sender] {
        let rest = client.event(TOPIC, "broadcast").await;
        assert_eq!(
            json_payload(&rest)["event"],
            "rest",
            "self: false was about its own only"
        );
        let rust = client.event(TOPIC, "broadcast").await;
        assert_eq!(json_payload(&rust)["event"], "rust");
    }

    // The private channel of that name is another topic, on every node: none of the
    // public broadcasts above reached it, and a private one from node A does, first.
    let response = http
        .post(a.http("/api/broadcast"))
        .bearer_auth(token(json!({"role": "service_role"})))
        .json(&json!({"messages": [{"topic": "room", "event": "secret", "payload": {}, "private": true}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let first = private_on_b.event(TOPIC, "broadcast").await;
    assert_eq!(json_payload(&first)["event"], "secret");
}

/// A broadcast's `(meta.offset, meta.epoch, payload.n)`.
fn position_of(message: &crier_server::protocol::Message) -> (u64, String, u64) {
    let body = json_payload(message);
    (
        body["meta"]["offset"].as_u64().unwrap(),
        body["meta"]["epoch"].as_str().unwrap().to_owned(),
        body["payload"]["n"].as_u64().unwrap(),
    )
}

/// The `system` report of a resuming join on `server` from `(offset, epoch)`.
async fn resume_on(server: &TestServer, offset: u64, epoch: &str) -> (Client, serde_json::Value) {
    let mut client = server.connect(Vsn::V2).await;
    client
        .join_ok(
            TOPIC,
            json!({"broadcast": {"resume": {"epoch": epoch, "offset": offset}}}),
        )
        .await;
    let report = client.event(TOPIC, "system").await;
    (client, json_payload(&report)["resume"].clone())
}

#[tokio::test]
async fn a_subscriber_gets_one_stream_whichever_node_publishes_and_resumes_on_any_node() {
    let redis = TestRedis::start().unwrap();
    let (a, _) = node(&redis, "a").await;
    let (b, _) = node(&redis, "b").await;
    // Keeps node B subscribed to the topic throughout.
    let mut keeper = joined(&b, Vsn::V2, json!({})).await;
    let mut sub = joined(&b, Vsn::V2, json!({})).await;
    let mut seen = Vec::new();
    for (n, on) in [(1, &a), (2, &b), (3, &a)] {
        on.node.broadcast("room", "e", &json!({"n": n})).unwrap();
        let got = position_of(&sub.event(TOPIC, "broadcast").await);
        assert_eq!(got.2, n, "in publish order");
        seen.push(got);
        position_of(&keeper.event(TOPIC, "broadcast").await);
    }
    // One stream for the cluster: offsets follow each other in one epoch, whoever
    // published, from the first broadcast of the topic.
    let epoch = seen[0].1.clone();
    let expected: Vec<_> = (1..=3).map(|n| (n, epoch.clone(), n)).collect();
    assert_eq!(seen, expected);
    drop(sub);
    a.node.broadcast("room", "e", &json!({"n": 4})).unwrap();
    b.node.broadcast("room", "e", &json!({"n": 5})).unwrap();
    for n in [4, 5] {
        assert_eq!(
            position_of(&keeper.event(TOPIC, "broadcast").await),
            (n, epoch.clone(), n)
        );
    }

    // On node A, where nobody subscribes: what it missed comes from Redis, in order,
    // then live broadcasts follow without a gap or a duplicate.
    let mut on_a = a.connect(Vsn::V2).await;
    on_a.join_ok(
        TOPIC,
        json!({"broadcast": {"resume": {"epoch": epoch, "offset": 1}}}),
    )
    .await;
    for n in 2..=5 {
        let missed = on_a.until(|m| m.event == "broadcast").await;
        assert_eq!(position_of(&missed), (n, epoch.clone(), n));
    }
    let report = on_a.event(TOPIC, "system").await;
    let report = json_payload(&report);
    assert_eq!(report["resume"]["recovered"], true, "{report}");
    assert_eq!(report["resume"]["missed"], 4, "{report}");
    assert_eq!(report["resume"]["offset"], 5, "{report}");
    b.node.broadcast("room", "e", &json!({"n": 6})).unwrap();
    assert_eq!(
        position_of(&on_a.event(TOPIC, "broadcast").await),
        (6, epoch.clone(), 6)
    );

    // On node B, from its own copy of the stream.
    let (mut back, report) = resume_on(&b, 3, &epoch).await;
    assert_eq!(report["recovered"], true, "{report}");
    assert_eq!(report["missed"], 3, "{report}");
    let _ = &mut back;
    // A position of another stream cannot be resumed, on either node.
    for on in [&a, &b] {
        let (_, report) = resume_on(on, 3, "another").await;
        assert_eq!(report["recovered"], false, "{report}");
    }
}

#[tokio::test]
async fn after_redis_restarts_local_delivery_went_on_and_cross_node_delivery_comes_back() {
    let mut redis = TestRedis::start().unwrap();
    let (a, _) = node(&redis, "a").await;
    let (b, broker_b) = node(&redis, "b").await;
    let mut on_a = joined(&a, Vsn::V2, json!({})).await;
    let mut on_b = joined(&b, Vsn::V2, json!({})).await;
    broker_b.synced().await;
    a.node.broadcast("room", "before", &json!({})).unwrap();
    let before = on_b.event(TOPIC, "broadcast").await;
    assert_eq!(json_payload(&before)["event"], "before");
    let meta = &json_payload(&before)["meta"];
    let position = json!({"epoch": meta["epoch"], "offset": meta["offset"]});
    assert_eq!(
        json_payload(&on_a.event(TOPIC, "broadcast").await)["event"],
        "before"
    );

    redis.stop();
    // Redis is gone: the node says it is degraded, and its own subscribers still get
    // what is published here.
    until(|| a.node.health().is_err()).await;
    let health = reqwest::get(a.http("/healthcheck")).await.unwrap();
    assert_eq!(health.status(), 200);
    let body = health.text().await.unwrap();
    assert!(
        body.starts_with("degraded: the cluster bus (Redis) is unreachable"),
        "{body}"
    );
    a.node.broadcast("room", "during", &json!({})).unwrap();
    assert_eq!(
        json_payload(&on_a.event(TOPIC, "broadcast").await)["event"],
        "during"
    );

    redis.start_again().unwrap();
    until(|| a.node.health().is_ok()).await;
    // Node B's bus reconnects and subscribes again; node A's retries its publications.
    broker_b.synced().await;
    a.node.broadcast("room", "after", &json!({})).unwrap();
    // Node B's subscriber is told broadcasts from other nodes may have been lost, before
    // anything published after it reconnected ("during" may come too: node A retries what
    // Redis did not take for a few seconds).
    let mut told = false;
    loop {
        let message = on_b
            .until(|m| m.event == "system" || m.event == "broadcast")
            .await;
        let body = json_payload(&message);
        if message.event == "system" {
            assert_eq!(
                body["message"],
                crier_server::protocol::codes::BROADCASTS_LOST,
                "{body}"
            );
            assert_eq!(body["resume"]["recovered"], false);
            told = true;
        } else if body["event"] == "after" {
            break;
        } else {
            assert_eq!(body["event"], "during", "{body}");
        }
    }
    assert!(told, "no gap was signalled");
    // A resume on node B from before the outage reports the gap.
    let mut resumed = b.connect(Vsn::V2).await;
    resumed
        .join_ok(TOPIC, json!({"broadcast": {"resume": position}}))
        .await;
    let report = resumed.event(TOPIC, "system").await;
    assert_eq!(
        json_payload(&report)["resume"]["recovered"],
        false,
        "{report:?}"
    );
    assert_eq!(
        json_payload(&report)["message"],
        "Resume gap: epoch changed"
    );
}

#[tokio::test]
async fn a_name_two_live_nodes_ask_for_goes_to_the_first() {
    let redis = TestRedis::start().unwrap();
    let first = RedisBroker::connect(&redis.url(), "twin").await.unwrap();
    let second = RedisBroker::connect(&redis.url(), "twin").await;
    assert!(
        matches!(second, Err(ClusterError::NameTaken(ref name)) if name == "twin"),
        "{second:?}"
    );
    assert_eq!(first.node(), "twin");
    assert!(RedisBroker::connect(&redis.url(), "other").await.is_ok());
    for bad in ["", "a|b", &"n".repeat(201)] {
        let refused = RedisBroker::connect(&redis.url(), bad).await.unwrap_err();
        assert!(
            matches!(refused, ClusterError::InvalidName(_)),
            "{bad:?}: {refused}"
        );
    }
}

#[tokio::test]
async fn a_node_whose_name_another_takes_says_it_is_degraded() {
    let redis = TestRedis::start().unwrap();
    let (a, _) = node(&redis, "a").await;
    until(|| a.node.health().is_ok()).await;
    // Another process writes over node A's lease (an operator's mistake, or a twin
    // started while node A was cut off long enough for its lease to lapse).
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg("crier:node:a")
        .arg("someone-else")
        .arg("PX")
        .arg(60_000)
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    until(|| a.node.health().is_err()).await;
}

#[tokio::test]
async fn an_unusable_url_or_an_unreachable_redis_is_a_clear_error() {
    let bad = RedisBroker::connect("http://nope", "n").await.unwrap_err();
    assert!(matches!(bad, ClusterError::Url(_)), "{bad}");
    let mut redis = TestRedis::start().unwrap();
    let url = redis.url();
    redis.stop();
    let down = RedisBroker::connect(&url, "n").await.unwrap_err();
    assert!(matches!(down, ClusterError::Redis(_)), "{down}");
}

#[tokio::test]
async fn a_redis_that_refuses_the_credentials_is_an_auth_error() {
    let redis = TestRedis::start_with(&["--requirepass", "s3cret"]).unwrap();
    let port = redis.port();
    for url in [
        format!("redis://127.0.0.1:{port}"),
        format!("redis://:wrong@127.0.0.1:{port}"),
    ] {
        let refused = RedisBroker::connect(&url, "n").await.unwrap_err();
        assert!(matches!(refused, ClusterError::Auth(_)), "{url}: {refused}");
    }
    let url = format!("redis://:s3cret@127.0.0.1:{port}");
    assert!(RedisBroker::connect(&url, "n").await.is_ok());
}

/// Waits (a few seconds at most) until `done` holds: for what a node's background tasks
/// notice on their own.
async fn until(done: impl Fn() -> bool) {
    crier_testkit::wait::within(Duration::from_secs(15), "the condition", async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The keys of a `presence_state` body, or of a diff's joins or leaves.
fn keys(groups: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = groups
        .as_object()
        .map(|groups| groups.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

async fn track(client: &mut Client, join_ref: &str, payload: serde_json::Value) {
    let (status, reply) = client
        .push(
            join_ref,
            TOPIC,
            "presence",
            json!({"type": "presence", "event": "track", "payload": payload}),
        )
        .await;
    assert_eq!(status, "ok", "{reply}");
}

/// The next `presence_diff` with these joins and leaves.
async fn diff(client: &mut Client, joins: &[&str], leaves: &[&str]) -> serde_json::Value {
    let message = client
        .until(|m| {
            m.event == "presence_diff"
                && keys(&json_payload(m)["joins"]) == joins
                && keys(&json_payload(m)["leaves"]) == leaves
        })
        .await;
    json_payload(&message).clone()
}

#[tokio::test]
async fn presence_is_one_state_across_nodes() {
    let redis = TestRedis::start().unwrap();
    let (a, _) = node(&redis, "a").await;
    let (b, _) = node(&redis, "b").await;
    let with_key = |key: &str| json!({"presence": {"enabled": true, "key": key}});

    let mut ana = a.connect(Vsn::V2).await;
    let ana_ref = ana.join_ok(TOPIC, with_key("ana")).await;
    track(&mut ana, &ana_ref, json!({"n": 1})).await;

    // The topic's first join on node B: its state holds node A's presence already.
    let mut bo = b.connect(Vsn::V1).await;
    let bo_ref = bo.join_ok(TOPIC, with_key("bo")).await;
    let state = bo.event(TOPIC, "presence_state").await;
    assert_eq!(keys(json_payload(&state)), ["ana"], "{state:?}");
    assert_eq!(json_payload(&state)["ana"]["metas"][0]["n"], 1);

    track(&mut bo, &bo_ref, json!({"n": 1})).await;
    diff(&mut ana, &["bo"], &[]).await;

    // An update on node A: a leave and a join that points at the meta it replaced.
    track(&mut ana, &ana_ref, json!({"n": 2})).await;
    let update = diff(&mut bo, &["ana"], &["ana"]).await;
    let old_ref = &update["leaves"]["ana"]["metas"][0]["phx_ref"];
    assert_eq!(&update["joins"]["ana"]["metas"][0]["phx_ref_prev"], old_ref);
    assert_eq!(update["joins"]["ana"]["metas"][0]["n"], 2);

    // A second join on node B (not the topic's first) sees both nodes at once.
    let mut cy = b.connect(Vsn::V2).await;
    cy.join_ok(TOPIC, with_key("cy")).await;
    let state = cy.event(TOPIC, "presence_state").await;
    assert_eq!(keys(json_payload(&state)), ["ana", "bo"]);

    // Each node reports the cluster: two nodes, and who tracks how many.
    until(|| {
        let text = b.node.metrics_text();
        text.contains("crier_cluster_nodes 2")
            && text.contains(r#"crier_cluster_presence_entries{node="a"} 1"#)
            && text.contains(r#"crier_cluster_presence_entries{node="b"} 1"#)
    })
    .await;

    // A socket that goes away leaves on every node.
    drop(bo);
    diff(&mut ana, &[], &["bo"]).await;
    diff(&mut cy, &[], &["bo"]).await;
}

#[tokio::test]
async fn after_redis_restarts_empty_each_node_pushes_its_presences_again() {
    let mut redis = TestRedis::start().unwrap();
    let (a, _) = node(&redis, "a").await;
    let mut ana = a.connect(Vsn::V2).await;
    let ana_ref = ana
        .join_ok(TOPIC, json!({"presence": {"enabled": true, "key": "ana"}}))
        .await;
    track(&mut ana, &ana_ref, json!({})).await;

    redis.stop();
    redis.start_again().unwrap();
    // A node that joins the restarted Redis learns of node A's presence, from its
    // snapshot or from node A's push, whichever comes first.
    let (c, _) = node(&redis, "c").await;
    let mut cy = c.connect(Vsn::V2).await;
    cy.join_ok(TOPIC, json!({"presence": {"enabled": true, "key": "cy"}}))
        .await;
    let state = cy.event(TOPIC, "presence_state").await;
    if keys(json_payload(&state)) != ["ana"] {
        diff(&mut cy, &["ana"], &[]).await;
    }
}

#[allow(dead_code)]
fn brokers_are_brokers(broker: Arc<RedisBroker>) -> Arc<dyn Broker> {
    broker
}
