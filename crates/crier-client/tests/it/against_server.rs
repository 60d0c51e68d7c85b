//! The client against a real Crier server (in this process, on a loopback port): the
//! same wire as any Supabase Realtime server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use crier_client::{
    BroadcastPayload, ChannelEvent, ChannelOptions, ChannelStatus, Client, Error, ErrorCode,
    HttpMessage, PresenceEvent, TokenProvider, Vsn,
};
use crier_server::auth::unix_now;
use crier_server::{Config, Node};
use crier_testkit::prelude::{TestServer, next, token};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::timeout;

/// The failure guard on every wait; tests await events, never a fixed delay.
const WAIT: Duration = Duration::from_secs(10);

/// An anon token that expires in `seconds`.
fn token_for(seconds: i64) -> String {
    token(json!({"role": "anon", "exp": unix_now() + seconds}))
}

/// A node on a loopback port, and the client URL of its socket.
async fn server(adjust: impl FnOnce(&mut Config)) -> (Node, String) {
    let server = TestServer::start_with(adjust).await;
    (server.node, format!("ws://{}/socket", server.addr))
}

fn client(url: &str, vsn: Vsn) -> Client {
    Client::builder(url)
        .api_key(token_for(3600))
        .vsn(vsn)
        .build()
        .unwrap()
}

#[tokio::test]
async fn broadcasts_flow_between_clients_of_both_serializers() {
    let (_node, url) = server(|_| {}).await;
    for (sender_vsn, receiver_vsn) in [(Vsn::V1, Vsn::V2), (Vsn::V2, Vsn::V1), (Vsn::V2, Vsn::V2)] {
        let a = client(&url, sender_vsn);
        let b = client(&url, receiver_vsn);
        let sender = a.channel_with("room", ChannelOptions::default().broadcast_ack(true));
        let receiver = b.channel("room");
        let mut messages = receiver.broadcasts_for("cursor");
        sender.subscribe().await.unwrap();
        receiver.subscribe().await.unwrap();
        sender
            .broadcast("cursor", json!({"x": 1, "y": [2, 3]}))
            .await
            .unwrap();
        let message = next(WAIT, &mut messages).await;
        assert_eq!(
            message.payload,
            BroadcastPayload::Json(json!({"x": 1, "y": [2, 3]}))
        );
    }
}

#[tokio::test]
async fn binary_broadcasts_reach_2_0_0_clients_byte_for_byte() {
    let (node, url) = server(|_| {}).await;
    let a = client(&url, Vsn::V2);
    let b = client(&url, Vsn::V2);
    let sender = a.channel_with("bin", ChannelOptions::default().broadcast_ack(true));
    let receiver = b.channel("bin");
    let mut messages = receiver.broadcasts();
    sender.subscribe().await.unwrap();
    receiver.subscribe().await.unwrap();
    let bytes = Bytes::from_static(&[0, 255, 1, 254, 7]);
    sender
        .broadcast_binary("blob", bytes.clone())
        .await
        .unwrap();
    let message = next(WAIT, &mut messages).await;
    assert_eq!(
        (message.event.as_str(), &message.payload),
        ("blob", &BroadcastPayload::Binary(bytes))
    );
    // From server-side Rust code too.
    node.broadcast_binary("bin", "thumb", Bytes::from_static(b"png"))
        .unwrap();
    let message = next(WAIT, &mut messages).await;
    assert_eq!(
        message.payload,
        BroadcastPayload::Binary(Bytes::from_static(b"png"))
    );
    // 1.0.0 cannot send bytes: a typed error, nothing sent.
    let v1 = client(&url, Vsn::V1).channel("bin");
    assert!(matches!(
        v1.broadcast_binary("blob", Bytes::new()).await,
        Err(Error::Unsupported(_))
    ));
}

#[tokio::test]
async fn presence_is_shared_and_leaves_on_disconnect() {
    let (_node, url) = server(|_| {}).await;
    let alice = client(&url, Vsn::V2);
    let bob = client(&url, Vsn::V1);
    let alice_room = alice.channel_with("lobby", ChannelOptions::default().presence_key("alice"));
    let bob_room = bob.channel_with("lobby", ChannelOptions::default().presence_key("bob"));
    let mut seen_by_alice = alice_room.presence_events();
    alice_room.subscribe().await.unwrap();
    bob_room.subscribe().await.unwrap();
    alice_room.track(json!({"status": "online"})).await.unwrap();
    bob_room.track(json!({"status": "away"})).await.unwrap();
    // One deadline for the whole wait, not per event.
    timeout(WAIT, async {
        loop {
            if let PresenceEvent::Sync = next(WAIT, &mut seen_by_alice).await {
                let state = alice_room.presence_state();
                if state.contains_key("alice") && state.contains_key("bob") {
                    assert_eq!(state["bob"][0].payload["status"], "away");
                    break;
                }
            }
        }
    })
    .await
    .expect("in time");
    // An update is one event.
    bob_room.track(json!({"status": "online"})).await.unwrap();
    // One deadline for the whole wait, not per event.
    timeout(WAIT, async {
        loop {
            match next(WAIT, &mut seen_by_alice).await {
                PresenceEvent::Update { key, new, .. } => {
                    assert_eq!(
                        (key.as_str(), &new.payload["status"]),
                        ("bob", &json!("online"))
                    );
                    break;
                }
                PresenceEvent::Leave { key, .. } => {
                    panic!("{key} left: an update must not be a leave and a join")
                }
                // Joins and syncs from before may still be queued behind the state we read.
                _ => continue,
            }
        }
    })
    .await
    .expect("in time");
    bob.disconnect().await;
    // One deadline for the whole wait, not per event.
    timeout(WAIT, async {
        loop {
            if let PresenceEvent::Leave { key, .. } = next(WAIT, &mut seen_by_alice).await {
                assert_eq!(key, "bob");
                break;
            }
        }
    })
    .await
    .expect("in time");
    assert_eq!(
        alice_room.presence_state().keys().collect::<Vec<_>>(),
        ["alice"]
    );
}

#[tokio::test]
async fn a_provider_refreshes_a_short_token_before_the_channel_expires() {
    let (_node, url) = server(|_| {}).await;
    let (fetched_tx, mut fetched) = tokio::sync::mpsc::unbounded_channel();
    let calls = Arc::new(AtomicU32::new(0));
    let provider = TokenProvider::new({
        let calls = Arc::clone(&calls);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let _ = fetched_tx.send(());
            async move { Ok(token_for(3)) }
        }
    });
    let client = Client::builder(&url)
        .api_key(token_for(3600))
        .token_provider(provider)
        .token_refresh_skew(Duration::from_secs(2))
        .build()
        .unwrap();
    let room = client.channel_with(
        "short",
        ChannelOptions::default()
            .broadcast_self(true)
            .broadcast_ack(true),
    );
    let mut events = room.events();
    room.subscribe().await.unwrap();
    // Each 3 s token is replaced about 1.5 s in; the fourth fetch happens well after the
    // first token's expiry, which the server would have enforced.
    for _ in 0..4 {
        timeout(WAIT, fetched.recv())
            .await
            .expect("a refresh")
            .unwrap();
    }
    room.broadcast("still", json!({}))
        .await
        .expect("the channel is still joined");
    // One deadline for the whole wait, not per event.
    timeout(WAIT, async {
        loop {
            match timeout(WAIT, events.next())
                .await
                .expect("an event")
                .unwrap()
            {
                ChannelEvent::Broadcast(message) if message.event == "still" => break,
                ChannelEvent::System(system) => panic!("the channel was told {system:?}"),
                ChannelEvent::Status(
                    status @ (ChannelStatus::Closed | ChannelStatus::Errored { .. }),
                ) => {
                    panic!("status {status:?}")
                }
                _ => {}
            }
        }
    })
    .await
    .expect("in time");
    assert!(calls.load(Ordering::SeqCst) >= 4);
}

#[tokio::test]
async fn the_101st_channel_is_refused_with_a_typed_error() {
    let (_node, url) = server(|_| {}).await;
    let client = client(&url, Vsn::V2);
    let mut channels = Vec::new();
    for i in 0..100 {
        let channel = client.channel(&format!("c{i}"));
        channel.subscribe().await.unwrap();
        channels.push(channel);
    }
    let extra = client.channel("c100");
    let error = extra.subscribe().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::JoinRefused {
                code: Some(ErrorCode::ChannelRateLimitReached),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.retry_advice(), crier_client::RetryAdvice::RetryLater);
}

#[tokio::test]
async fn http_send_and_batch_broadcast_reach_subscribers() {
    let (_node, url) = server(|_| {}).await;
    let listener = client(&url, Vsn::V2);
    let room = listener.channel("news");
    let mut messages = room.broadcasts();
    room.subscribe().await.unwrap();
    let sender = client(&url, Vsn::V2);
    sender
        .channel("news")
        .http_send("flash", json!({"n": 1}))
        .await
        .unwrap();
    sender
        .http_broadcast(&[HttpMessage::new("news", "batch", json!({"n": 2}))])
        .await
        .unwrap();
    sender
        .channel("news")
        .http_send_binary("blob", Bytes::from_static(&[5]))
        .await
        .unwrap();
    assert_eq!(
        next(WAIT, &mut messages).await.payload,
        BroadcastPayload::Json(json!({"n": 1}))
    );
    assert_eq!(
        next(WAIT, &mut messages).await.payload,
        BroadcastPayload::Json(json!({"n": 2}))
    );
    assert_eq!(
        next(WAIT, &mut messages).await.payload,
        BroadcastPayload::Binary(Bytes::from_static(&[5]))
    );
    // A refusal carries the server's message.
    let stranger = Client::builder(&url).api_key("not-a-jwt").build().unwrap();
    let error = stranger
        .channel("news")
        .http_send("x", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::Http {
            status: 401,
            message: "The token provided is not a valid JWT".into()
        }
    );
}

#[tokio::test]
async fn a_bad_api_key_is_refused_once_and_not_retried() {
    let (_node, url) = server(|_| {}).await;
    let client = Client::builder(&url)
        .api_key(token_for(-10))
        .build()
        .unwrap();
    let error = client.connect().await.unwrap_err();
    assert_eq!(
        error,
        Error::ConnectRefused {
            status: 401,
            message: "Token has expired".into()
        }
    );
    assert_eq!(
        client.status(),
        crier_client::ConnectionStatus::Disconnected
    );
}

#[tokio::test]
async fn postgres_filters_without_a_database_fail_subscribe_with_the_servers_message() {
    let (_node, url) = server(|_| {}).await;
    let client = client(&url, Vsn::V2);
    let room = client.channel("db");
    let _todos = room.postgres_changes::<Value>(crier_client::PostgresChangesFilter::new(
        crier_client::ChangeEvent::All,
        "public",
    ));
    let error = room.subscribe().await.unwrap_err();
    assert!(
        matches!(error, Error::PostgresChangesUnavailable { .. }),
        "{error:?}"
    );
    // The channel itself joined; broadcast still works on it.
    assert_eq!(room.status(), ChannelStatus::Joined);
}
