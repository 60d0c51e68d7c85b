//! Presence: state after join, diffs to everyone including the tracker, updates with
//! phx_ref_prev, untrack, leave on channel leave and on disconnect, and the limits.

use crier_server::protocol::Vsn;
use crier_testkit::prelude::*;
use serde_json::{Value, json};

const TOPIC: &str = "realtime:lobby";

fn presence_config(key: &str) -> Value {
    json!({"presence": {"enabled": true, "key": key}})
}

async fn track(client: &mut Client, join_ref: &str, payload: Value) -> (String, Value) {
    client
        .push(
            join_ref,
            TOPIC,
            "presence",
            json!({"type": "presence", "event": "track", "payload": payload}),
        )
        .await
}

/// A presence push with `event` (and a track payload), replied to.
async fn presence_push(client: &mut Client, join_ref: &str, event: &str) -> (String, Value) {
    client
        .push(
            join_ref,
            TOPIC,
            "presence",
            json!({"type": "presence", "event": event}),
        )
        .await
}

/// Sends a track without waiting: the answer may be a shutdown instead of a reply.
async fn send_track(client: &mut Client, join_ref: &str, payload: Value) -> String {
    let msg_ref = client.next_ref();
    let body = json!({"type": "presence", "event": "track", "payload": payload});
    client
        .send(Some(join_ref), Some(&msg_ref), TOPIC, "presence", body)
        .await;
    msg_ref
}

/// (joins, leaves) of the next presence_diff.
async fn diff(client: &mut Client) -> (Value, Value) {
    let message = client.event(TOPIC, "presence_diff").await;
    assert_eq!(message.join_ref, None, "diffs are fan-out messages");
    let body = json_payload(&message);
    (body["joins"].clone(), body["leaves"].clone())
}

#[tokio::test]
async fn state_comes_first_then_diffs_reach_everyone_including_the_tracker() {
    for vsn in [Vsn::V1, Vsn::V2] {
        let server = TestServer::start().await;
        let mut alice = server.connect(vsn).await;
        let alice_ref = alice.join_ok(TOPIC, presence_config("alice")).await;
        let state = alice.event(TOPIC, "presence_state").await;
        if vsn == Vsn::V2 {
            assert_eq!(
                state.join_ref.as_deref(),
                Some(alice_ref.as_str()),
                "a channel push"
            );
        }
        assert_eq!(json_payload(&state), &json!({}));

        let (status, _) = track(&mut alice, &alice_ref, json!({"status": "online"})).await;
        assert_eq!(status, "ok");
        let (joins, leaves) = diff(&mut alice).await;
        assert_eq!(leaves, json!({}));
        let metas = joins["alice"]["metas"].as_array().unwrap();
        assert_eq!(metas.len(), 1);
        assert_eq!(metas[0]["status"], "online");
        let alice_phx_ref = metas[0]["phx_ref"].as_str().unwrap().to_owned();

        let mut bob = server.connect(vsn).await;
        let bob_ref = bob.join_ok(TOPIC, presence_config("bob")).await;
        let state = bob.event(TOPIC, "presence_state").await;
        assert_eq!(
            json_payload(&state),
            &json!({"alice": {"metas": [{"status": "online", "phx_ref": alice_phx_ref}]}})
        );
        track(&mut bob, &bob_ref, json!({"status": "away"})).await;
        for client in [&mut alice, &mut bob] {
            let (joins, _) = diff(client).await;
            assert_eq!(joins["bob"]["metas"][0]["status"], "away");
        }
        assert_eq!(server.node.presence("lobby").0.len(), 2);
    }
}

#[tokio::test]
async fn an_update_carries_phx_ref_prev_and_an_identical_track_is_silent() {
    let server = TestServer::start().await;
    let mut alice = server.connect(Vsn::V2).await;
    let join_ref = alice.join_ok(TOPIC, presence_config("alice")).await;
    alice.event(TOPIC, "presence_state").await;
    track(&mut alice, &join_ref, json!({"v": 1})).await;
    let (joins, _) = diff(&mut alice).await;
    let first_ref = joins["alice"]["metas"][0]["phx_ref"].clone();

    // The same payload again: ok, and no diff (the next diff is the update below).
    let (status, _) = track(&mut alice, &join_ref, json!({"v": 1})).await;
    assert_eq!(status, "ok");
    track(&mut alice, &join_ref, json!({"v": 2})).await;
    let (joins, leaves) = diff(&mut alice).await;
    assert_eq!(joins["alice"]["metas"][0]["v"], 2);
    assert_eq!(joins["alice"]["metas"][0]["phx_ref_prev"], first_ref);
    assert_eq!(leaves["alice"]["metas"][0]["phx_ref"], first_ref);
    assert_eq!(leaves["alice"]["metas"][0]["v"], 1);
}

#[tokio::test]
async fn untrack_leave_and_disconnect_each_produce_a_leave() {
    let server = TestServer::start().await;
    let mut watcher = server.connect(Vsn::V2).await;
    watcher.join_ok(TOPIC, presence_config("watcher")).await;
    watcher.event(TOPIC, "presence_state").await;

    // untrack
    let mut a = server.connect(Vsn::V2).await;
    let a_ref = a.join_ok(TOPIC, presence_config("a")).await;
    track(&mut a, &a_ref, json!({})).await;
    assert!(diff(&mut watcher).await.0.get("a").is_some());
    let (status, _) = presence_push(&mut a, &a_ref, "UNTRACK").await;
    assert_eq!(status, "ok", "event names are case-insensitive");
    assert!(diff(&mut watcher).await.1.get("a").is_some());

    // channel leave
    track(&mut a, &a_ref, json!({})).await;
    diff(&mut watcher).await;
    a.push(&a_ref, TOPIC, "phx_leave", json!({})).await;
    assert!(diff(&mut watcher).await.1.get("a").is_some());

    // disconnect
    let mut b = server.connect(Vsn::V1).await;
    let b_ref = b.join_ok(TOPIC, presence_config("b")).await;
    track(&mut b, &b_ref, json!({"n": 1})).await;
    diff(&mut watcher).await;
    drop(b);
    let (_, leaves) = diff(&mut watcher).await;
    assert_eq!(leaves["b"]["metas"][0]["n"], 1);
    assert!(server.node.presence("lobby").0.is_empty());
}

#[tokio::test]
async fn the_default_key_is_a_uuid() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    let join_ref = client
        .join_ok(TOPIC, json!({"presence": {"enabled": true, "key": ""}}))
        .await;
    client.event(TOPIC, "presence_state").await;
    track(&mut client, &join_ref, json!({})).await;
    let (joins, _) = diff(&mut client).await;
    let key = joins.as_object().unwrap().keys().next().unwrap().clone();
    assert!(uuid_like(&key), "{key}");
}

fn uuid_like(key: &str) -> bool {
    key.len() == 36 && key.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn tracking_turns_presence_on_with_the_state_before_the_diff() {
    let server = TestServer::start().await;
    let mut early = server.connect(Vsn::V2).await;
    let early_ref = early.join_ok(TOPIC, presence_config("early")).await;
    track(&mut early, &early_ref, json!({})).await;

    let mut late = server.connect(Vsn::V2).await;
    let late_ref = late
        .join_ok(TOPIC, json!({"presence": {"key": "late"}}))
        .await;
    track(&mut late, &late_ref, json!({"x": 1})).await;
    let messages = late.drain().await;
    let events: Vec<&str> = messages
        .iter()
        .filter(|m| m.topic == TOPIC)
        .map(|m| m.event.as_str())
        .filter(|e| *e != "phx_reply")
        .collect();
    assert_eq!(events, ["presence_state", "presence_diff"]);
    let state = messages
        .iter()
        .find(|m| m.event == "presence_state")
        .unwrap();
    assert!(json_payload(state).get("early").is_some());
}

#[tokio::test]
async fn bad_presence_pushes_are_answered() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::new(&server).await;
    let mut client = server.connect(Vsn::V2).await;
    let join_ref = client.join_ok(TOPIC, presence_config("k")).await;
    let (status, response) = track(&mut client, &join_ref, json!("a string")).await;
    assert_eq!(
        (status.as_str(), reason(&response)),
        ("error", "Presence track payload must be a map")
    );
    let (status, response) = presence_push(&mut client, &join_ref, "dance").await;
    assert_eq!(status, "error");
    assert!(reason(&response).contains("dance"));
    let (status, _) = client
        .push(&join_ref, TOPIC, "presence", json!([1, 2]))
        .await;
    assert_eq!(status, "error");
    bystanders.still_fine().await;
}

#[tokio::test]
async fn more_than_five_presence_pushes_in_the_window_shut_the_channel_down() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    let join_ref = client.join_ok(TOPIC, presence_config("k")).await;
    for n in 0..5 {
        let (status, _) = track(&mut client, &join_ref, json!({"n": n})).await;
        assert_eq!(status, "ok");
    }
    send_track(&mut client, &join_ref, json!({"n": 5})).await;
    let system = client.event(TOPIC, "system").await;
    assert_eq!(
        json_payload(&system)["message"],
        "Client presence rate limit exceeded"
    );
    client.event(TOPIC, "phx_close").await;
    client.heartbeat().await;
}

#[tokio::test]
async fn an_oversized_track_is_answered_then_shuts_the_channel_down() {
    let server = TestServer::start_with(|config| config.limits.max_payload_size_kb = 1).await;
    let mut bystanders = Bystanders::new(&server).await;
    let mut client = server.connect(Vsn::V2).await;
    let join_ref = client.join_ok(TOPIC, presence_config("k")).await;
    let msg_ref = send_track(&mut client, &join_ref, json!({"blob": "x".repeat(2000)})).await;
    // The push itself is answered, so a client's track() fails at once.
    let (status, response) = client.reply(&msg_ref).await;
    assert_eq!(status, "error");
    assert_eq!(response, json!({"reason": "Track message size exceeded"}));
    let system = client.event(TOPIC, "system").await;
    assert_eq!(
        json_payload(&system)["message"],
        "Track message size exceeded"
    );
    client.event(TOPIC, "phx_close").await;
    bystanders.still_fine().await;
}

#[tokio::test]
async fn over_the_presence_events_limit_channels_are_shut_down() {
    let server =
        TestServer::start_with(|config| config.limits.max_presence_events_per_second = 1).await;
    let mut clients = Vec::new();
    let mut shut_down = false;
    // Each track counts once, plus once per diff recipient; 1/s over a 5 s bucket trips fast.
    for i in 0..10 {
        let mut client = server.connect(Vsn::V2).await;
        let join_ref = client
            .join_ok(TOPIC, presence_config(&format!("u{i}")))
            .await;
        let msg_ref = send_track(&mut client, &join_ref, json!({})).await;
        let answer = client
            .until(|m| {
                (m.event == "phx_reply" && m.msg_ref.as_deref() == Some(&msg_ref))
                    || m.event == "system"
            })
            .await;
        if answer.event == "system" {
            assert_eq!(
                json_payload(&answer)["message"],
                "Too many presence messages per second"
            );
            shut_down = true;
            break;
        }
        clients.push(client);
    }
    assert!(shut_down, "the presence limit tripped");
}
