//! Mid-session tokens: `access_token` refreshes move a channel's expiry; an expired or
//! bad token shuts the channel down with the reason, and nothing else.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crier_server::auth::unix_now;
use crier_server::clock::{Clock, TokioClock};
use crier_server::protocol::Vsn;
use crier_server::{Config, Node};
use crier_testkit::prelude::*;
use serde_json::json;

/// On paused time, with the node's wall clock following tokio's: the unrefreshed channel
/// is shut down exactly when its token expires.
#[tokio::test(start_paused = true)]
async fn an_expiring_channel_is_closed_and_a_refreshed_one_is_not() {
    // A whole second, so the token's `exp` (in seconds) is exactly 2 s away.
    let start = UNIX_EPOCH + Duration::from_secs(unix_now() as u64);
    let clock = TokioClock::starting_at(start);
    let node = Node::builder(Config::new(SECRET))
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let server = MemoryServer::new(node);
    let short = token(json!({"role": "anon", "exp": clock.unix_now() + 2}));
    let mut client = server.connect(Vsn::V2, &short).await;
    let joined_at = tokio::time::Instant::now();
    let (kept_ref, status, _) = client
        .join(
            "realtime:kept",
            json!({"config": {"broadcast": {"ack": true}}, "access_token": short}),
        )
        .await;
    assert_eq!(status, "ok");
    let (lost_ref, status, _) = client
        .join(
            "realtime:lost",
            json!({"config": {}, "access_token": short}),
        )
        .await;
    assert_eq!(status, "ok");
    // Refresh one channel; no reply is expected, so a heartbeat orders what follows.
    let long = token(json!({"role": "anon"}));
    client
        .send(
            Some(&kept_ref),
            None,
            "realtime:kept",
            "access_token",
            json!({"access_token": long}),
        )
        .await;

    // Both tokens expired at the same second; only the unrefreshed channel is shut down.
    let system = client.event("realtime:lost", "system").await;
    assert_eq!(
        tokio::time::Instant::now() - joined_at,
        Duration::from_secs(2)
    );
    let body = json_payload(&system);
    assert_eq!(body["extension"], "system");
    assert_eq!(body["status"], "error");
    assert_eq!(body["channel"], "lost");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("Token has expired ") && message.ends_with(" seconds ago"),
        "{message}"
    );
    let close = client.event("realtime:lost", "phx_close").await;
    assert_eq!(close.join_ref.as_deref(), Some(lost_ref.as_str()));

    let msg_ref = client
        .broadcast(&kept_ref, "realtime:kept", "still", json!({}))
        .await;
    assert_eq!(
        client.reply(&msg_ref).await.0,
        "ok",
        "the refreshed channel is still joined"
    );
}

#[tokio::test]
async fn bad_refresh_tokens_shut_the_channel_down_with_the_reason() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::new(&server).await;
    for bad in BadToken::ALL {
        let mut client = server.connect(Vsn::V2).await;
        let join_ref = client.join_ok("realtime:t", json!({})).await;
        client
            .send(
                Some(&join_ref),
                None,
                "realtime:t",
                "access_token",
                json!({"access_token": bad.token()}),
            )
            .await;
        let system = client.event("realtime:t", "system").await;
        let message = json_payload(&system)["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.starts_with(bad.message()), "{message} vs {bad:?}");
        client.event("realtime:t", "phx_close").await;
        client.heartbeat().await;
        bystanders.still_fine().await;
    }
}

#[tokio::test]
async fn null_sb_and_unchanged_tokens_are_ignored() {
    let server = TestServer::start().await;
    let connect_token = token(json!({"role": "anon"}));
    let mut client = server.connect_with_token(Vsn::V2, &connect_token).await;
    let join_ref = client
        .join_ok("realtime:t", json!({"broadcast": {"ack": true}}))
        .await;
    for payload in [
        json!({"access_token": null}),
        json!({"access_token": "sb_secret_abc"}),
        json!({"access_token": connect_token}),
        json!({}),
    ] {
        client
            .send(Some(&join_ref), None, "realtime:t", "access_token", payload)
            .await;
    }
    let msg_ref = client
        .broadcast(&join_ref, "realtime:t", "e", json!({}))
        .await;
    let messages = client
        .until(|m| m.msg_ref.as_deref() == Some(&msg_ref))
        .await;
    assert_eq!(
        json_payload(&messages)["status"],
        "ok",
        "no system message, still joined"
    );
}
