//! The server is killed (SIGKILL, no goodbye) and restarted mid-session: the Rust client
//! reconnects, rejoins with its presence, says it resumed, and receives again.

use std::time::Duration;

use crate::support::{WAIT, free_port, serve_on, token};
use crier_client::{
    Backoff, BroadcastPayload, ChannelEvent, ChannelOptions, Client, ConnectionStatus,
    PresenceEvent,
};
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::timeout;

const SECRET: &str = "restart-test-secret-0123456789abcdef";

/// `crier serve` on `port`, ready once it says where it listens; killed when dropped. The
/// rest of its output keeps being drained, so the server never writes into a closed pipe.
fn start_server(port: u16) -> crate::support::Running {
    serve_on(Some(port), &["--jwt-secret", SECRET, "--log-level", "warn"]).0
}

/// Waits for the first item `pick` accepts, with one deadline for the whole wait (a
/// stream that keeps yielding other items must not keep the test alive).
async fn until<T, R>(
    stream: &mut (impl futures_util::Stream<Item = T> + Unpin),
    mut pick: impl FnMut(T) -> Option<R>,
) -> R {
    timeout(WAIT, async {
        while let Some(item) = stream.next().await {
            if let Some(found) = pick(item) {
                return found;
            }
        }
        panic!("the stream ended first")
    })
    .await
    .expect("in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_rejoins_and_receives_after_a_server_kill() {
    let port = free_port();
    let server = start_server(port);
    let url = format!("ws://127.0.0.1:{port}/socket");
    let fast = Backoff {
        initial: Duration::from_millis(100),
        multiplier: 2.0,
        max: Duration::from_millis(800),
        jitter: 0.25,
    };
    let client = Client::builder(&url)
        .api_key(token(SECRET))
        .reconnect_policy(fast)
        .build()
        .unwrap();
    let room = client.channel_with("room", ChannelOptions::default().presence_key("alice"));
    let mut messages = room.broadcasts();
    let mut events = room.events();
    let mut statuses = client.status_stream();
    room.subscribe().await.unwrap();
    room.track(json!({"status": "online"})).await.unwrap();

    let sender = Client::builder(&url)
        .api_key(token(SECRET))
        .build()
        .unwrap();
    sender
        .channel("room")
        .http_send("before", json!({"n": 1}))
        .await
        .unwrap();
    let message = timeout(WAIT, messages.next()).await.unwrap().unwrap();
    assert_eq!(message.event, "before");

    server.kill(); // SIGKILL: no close frames, no drain
    until(&mut statuses, |status| {
        matches!(status, ConnectionStatus::Reconnecting { .. }).then_some(())
    })
    .await;
    let _server = start_server(port);
    let gap = until(&mut events, |event| match event {
        ChannelEvent::Resumed { gap, .. } => Some(gap),
        _ => None,
    })
    .await;
    assert!(gap > Duration::ZERO);

    // Delivery works again...
    sender
        .channel("room")
        .http_send("after", json!({"n": 2}))
        .await
        .unwrap();
    let message = timeout(WAIT, messages.next()).await.unwrap().unwrap();
    assert_eq!(
        (message.event.as_str(), message.payload),
        ("after", BroadcastPayload::Json(json!({"n": 2})))
    );

    // ...and the presence was tracked again on the new server, without asking.
    let watcher = Client::builder(&url)
        .api_key(token(SECRET))
        .build()
        .unwrap();
    let watch = watcher.channel_with("room", ChannelOptions::default().presence_key("watcher"));
    let mut presence = watch.presence_events();
    watch.subscribe().await.unwrap();
    let metas = until(&mut presence, |event| match event {
        PresenceEvent::Sync => watch.presence_state().get("alice").cloned(),
        _ => None,
    })
    .await;
    assert_eq!(metas[0].payload["status"], "online");
}
