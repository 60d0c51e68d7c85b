//! Every timing path of the client, on tokio's paused clock against the in-memory
//! transport: the test plays the server, frame by frame. Time only moves when every task
//! is waiting, so "nothing happened within an hour" is an exact, instant assertion.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crier_client::transport::memory::{self, MemoryPeer, MemoryServer};
use crier_client::{
    BroadcastPayload, ChangeEvent, ChannelEvent, ChannelOptions, ChannelStatus, Client,
    ClientBuilder, ConnectionStatus, Error, ErrorCode, HeartbeatEvent, PostgresChange,
    PostgresChangesFilter, PresenceEvent, TokenProvider,
};
use crier_protocol::{Message, Payload};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout};

const DAY: Duration = Duration::from_secs(86_400);

/// A client on the memory transport with heartbeats far apart, so a test that is not
/// about heartbeats need not answer them.
fn builder(transport: memory::MemoryTransport) -> ClientBuilder {
    Client::builder("ws://test/socket")
        .api_key("api-key")
        .transport(transport)
        .heartbeat_interval(DAY)
}

async fn connect(client: &Client, server: &mut MemoryServer) -> MemoryPeer {
    let connecting = tokio::spawn({
        let client = client.clone();
        async move { client.connect().await }
    });
    let peer = server.accept().await.expect("a connection");
    connecting.await.unwrap().expect("connected");
    peer
}

/// A provider that answers `token-1`, `token-2`, ... one per fetch.
fn numbered_tokens() -> TokenProvider {
    let fetches = Arc::new(AtomicU32::new(0));
    TokenProvider::new(move || {
        let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(format!("token-{n}")) }
    })
}

fn json_of(message: &Message) -> &Value {
    match &message.payload {
        Payload::Json(value) => value,
        other => panic!("expected JSON, got {other:?}"),
    }
}

/// The next join from the client, answered `ok` with `response`.
async fn accept_join(peer: &mut MemoryPeer, topic: &str, response: Value) -> Message {
    let join = peer.recv_skipping_heartbeats().await.expect("a join");
    assert_eq!(
        (join.topic.as_str(), join.event.as_str()),
        (topic, "phx_join")
    );
    peer.reply(&join, "ok", response);
    join
}

fn push(topic: &str, join_ref: Option<String>, event: &str, payload: Value) -> Message {
    Message {
        join_ref,
        msg_ref: None,
        topic: topic.into(),
        event: event.into(),
        payload: Payload::Json(payload),
    }
}

#[tokio::test(start_paused = true)]
async fn a_missed_heartbeat_closes_the_socket_and_reconnects_with_backoff() {
    let (transport, mut server) = memory::transport();
    let client = Client::builder("ws://test/socket")
        .api_key("k")
        .transport(transport)
        .heartbeat_interval(Duration::from_secs(25))
        .build()
        .unwrap();
    let mut heartbeats = client.heartbeats();
    let start = Instant::now();
    let mut peer = connect(&client, &mut server).await;

    // The first heartbeat goes out after one interval; answer it.
    let beat = peer.recv().await.unwrap();
    assert_eq!(
        (beat.topic.as_str(), beat.event.as_str()),
        ("phoenix", "heartbeat")
    );
    assert_eq!(start.elapsed(), Duration::from_secs(25));
    peer.reply(&beat, "ok", json!({}));
    assert_eq!(heartbeats.next().await, Some(HeartbeatEvent::Sent));
    assert!(matches!(
        heartbeats.next().await,
        Some(HeartbeatEvent::Ok { .. })
    ));

    // The second goes unanswered: at the third tick the connection is declared dead.
    let beat = peer.recv().await.unwrap();
    assert_eq!(beat.event, "heartbeat");
    assert_eq!(heartbeats.next().await, Some(HeartbeatEvent::Sent));
    assert_eq!(heartbeats.next().await, Some(HeartbeatEvent::Timeout));
    assert_eq!(start.elapsed(), Duration::from_secs(75));
    assert!(peer.recv().await.is_none(), "the old connection was closed");
    assert!(matches!(
        client.status(),
        ConnectionStatus::Reconnecting { attempt: 1, .. }
    ));

    // The reconnect comes after the first backoff step: 1 s, up to 25 % less.
    let _peer = server.accept().await.unwrap();
    let waited = start.elapsed() - Duration::from_secs(75);
    assert!(
        waited >= Duration::from_millis(750) && waited <= Duration::from_secs(1),
        "{waited:?}"
    );
    assert_eq!(client.status(), ConnectionStatus::Connected);
}

#[tokio::test(start_paused = true)]
async fn failed_connects_back_off_on_a_capped_jittered_schedule() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    for _ in 0..7 {
        server.refuse_next(Error::Transport("connection refused".into()));
    }
    let start = Instant::now();
    let first = client.connect().await;
    assert_eq!(first, Err(Error::Transport("connection refused".into())));
    let mut statuses = client.status_stream();
    // Six more refusals, then a connection; each wait is announced before it starts.
    let mut announced = Vec::new();
    let waiter = tokio::spawn(async move {
        while let Some(status) = statuses.next().await {
            match status {
                ConnectionStatus::Reconnecting { retry_in, .. } => announced.push(retry_in),
                ConnectionStatus::Connected => return announced,
                _ => {}
            }
        }
        announced
    });
    let _peer = server.accept().await.unwrap();
    let announced = waiter.await.unwrap();
    let bases = [1, 2, 4, 8, 16, 30, 30];
    assert_eq!(announced.len(), bases.len(), "{announced:?}");
    for (delay, base) in announced.iter().zip(bases) {
        let base = Duration::from_secs(base);
        assert!(
            *delay <= base && *delay >= base.mul_f64(0.75),
            "{delay:?} vs {base:?}"
        );
    }
    // The waits were really waited: 1 + 2 + 4 + 8 + 16 + 30 + 30 = 91 s at most.
    // (Timers round each wait up to the next millisecond.)
    let total = start.elapsed();
    let announced_total: Duration = announced.iter().sum();
    assert!(
        total >= announced_total && total - announced_total < Duration::from_millis(10),
        "{total:?}"
    );
    assert_eq!(client.status(), ConnectionStatus::Connected);
}

#[tokio::test(start_paused = true)]
async fn concurrent_connects_share_one_socket() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let attempts: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.connect().await })
        })
        .collect();
    let _peer = server.accept().await.unwrap();
    for attempt in attempts {
        assert_eq!(attempt.await.unwrap(), Ok(()));
    }
    assert!(
        timeout(Duration::from_secs(3600), server.accept())
            .await
            .is_err(),
        "no second socket within an hour"
    );
}

#[tokio::test(start_paused = true)]
async fn a_manual_disconnect_is_never_followed_by_a_reconnect() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let mut peer = connect(&client, &mut server).await;
    client.disconnect().await;
    assert!(peer.recv().await.is_none(), "the socket was closed");
    assert_eq!(client.status(), ConnectionStatus::Disconnected);
    assert!(
        timeout(DAY, server.accept()).await.is_err(),
        "no reconnect within a day"
    );
    // connect() brings it back.
    let _peer = connect(&client, &mut server).await;
    assert_eq!(client.status(), ConnectionStatus::Connected);
}

#[tokio::test(start_paused = true)]
async fn a_rejoin_after_a_reconnect_has_a_fresh_token_the_same_bindings_and_a_retrack() {
    let (transport, mut server) = memory::transport();
    let provider = numbered_tokens();
    let client = builder(transport).token_provider(provider).build().unwrap();
    let room = client.channel_with("room", ChannelOptions::default().presence_key("alice"));
    let mut todos = room.postgres_changes::<Value>(
        PostgresChangesFilter::new(ChangeEvent::Insert, "public").table("todos"),
    );
    let mut events = room.events();

    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let echo = json!({"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "todos", "id": 7}]});
    let join = accept_join(&mut peer, "realtime:room", echo.clone()).await;
    let first_payload = json_of(&join).clone();
    assert_eq!(first_payload["access_token"], "token-1");
    assert_eq!(first_payload["config"]["presence"]["key"], "alice");
    peer.send(&push(
        "realtime:room",
        join.join_ref.clone(),
        "system",
        json!({"extension": "postgres_changes", "status": "ok", "message": "Subscribed to PostgreSQL", "channel": "room"}),
    ));
    assert_eq!(subscribing.await.unwrap(), Ok(()));

    let tracking = tokio::spawn({
        let room = room.clone();
        async move { room.track(json!({"n": 1})).await }
    });
    let track = peer.recv_skipping_heartbeats().await.unwrap();
    assert_eq!(json_of(&track)["event"], "track");
    peer.reply(&track, "ok", json!({}));
    assert_eq!(tracking.await.unwrap(), Ok(()));

    // The connection drops.
    peer.close(Some(1006), "gone");
    let mut peer = server.accept().await.unwrap();
    let rejoin = accept_join(&mut peer, "realtime:room", echo).await;
    let payload = json_of(&rejoin);
    assert_eq!(payload["access_token"], "token-2", "a fresh token");
    assert_eq!(
        payload["config"]["postgres_changes"],
        first_payload["config"]["postgres_changes"]
    );
    assert_eq!(
        payload["config"]["presence"],
        first_payload["config"]["presence"]
    );
    let retrack = peer.recv_skipping_heartbeats().await.unwrap();
    assert_eq!(retrack.event, "presence");
    assert_eq!(
        json_of(&retrack)["payload"],
        json!({"n": 1}),
        "the last payload is tracked again"
    );

    // The app is told it resumed, and changes route to the same stream.
    let resumed = timeout(DAY, async {
        while let Some(event) = events.next().await {
            if let ChannelEvent::Resumed { .. } = event {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(resumed, Ok(true), "the channel said it resumed");
    peer.send(&push(
        "realtime:room",
        None,
        "postgres_changes",
        json!({"ids": [7], "data": {"schema": "public", "table": "todos", "type": "INSERT", "record": {"id": 1}}}),
    ));
    assert!(matches!(
        todos.next().await,
        Some(Ok(PostgresChange::Insert { .. }))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_join_waits_for_the_token_fetch_in_flight() {
    let (transport, mut server) = memory::transport();
    let (release, gate) = oneshot::channel::<String>();
    let gate = Arc::new(tokio::sync::Mutex::new(Some(gate)));
    let provider = TokenProvider::new(move || {
        let gate = Arc::clone(&gate);
        async move {
            let receiver = gate.lock().await.take().expect("asked once");
            Ok(receiver.await.expect("released"))
        }
    });
    let client = builder(transport).token_provider(provider).build().unwrap();
    let room = client.channel("room");
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    assert!(
        timeout(Duration::from_secs(60), peer.recv_skipping_heartbeats())
            .await
            .is_err(),
        "no join while the token is being fetched"
    );
    release.send("the-token".into()).unwrap();
    let join = accept_join(&mut peer, "realtime:room", json!({"postgres_changes": []})).await;
    assert_eq!(json_of(&join)["access_token"], "the-token");
    assert_eq!(subscribing.await.unwrap(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn an_auth_refusal_is_not_retried_until_the_token_changes() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).access_token("old").build().unwrap();
    let room = client.channel("room");
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let join = peer.recv_skipping_heartbeats().await.unwrap();
    peer.reply(
        &join,
        "error",
        json!({"reason": "InvalidJWTToken: Token has expired 5 seconds ago"}),
    );
    let error = subscribing.await.unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            Error::JoinRefused {
                code: Some(ErrorCode::InvalidJWTToken),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(matches!(
        room.status(),
        ChannelStatus::Errored {
            retrying: false,
            ..
        }
    ));
    assert!(
        timeout(DAY, peer.recv_skipping_heartbeats()).await.is_err(),
        "no retry within a day"
    );

    let mut status = room.status_stream();
    client.set_auth(Some("new".into())).await;
    let join = accept_join(&mut peer, "realtime:room", json!({"postgres_changes": []})).await;
    assert_eq!(json_of(&join)["access_token"], "new");
    while status.next().await != Some(ChannelStatus::Joined) {}
}

#[tokio::test(start_paused = true)]
async fn a_retryable_refusal_is_retried_with_backoff_and_a_bad_request_is_not() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let room = client.channel("room");
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let join = peer.recv_skipping_heartbeats().await.unwrap();
    let refused_at = Instant::now();
    peer.reply(
        &join,
        "error",
        json!({"reason": "ChannelRateLimitReached: Too many channels"}),
    );
    assert!(subscribing.await.unwrap().is_err());
    // A rate limit backs off longer: 5 s, up to 25 % less.
    let retry = accept_join(&mut peer, "realtime:room", json!({"postgres_changes": []})).await;
    let waited = refused_at.elapsed();
    assert!(
        waited >= Duration::from_millis(3750) && waited <= Duration::from_secs(5),
        "{waited:?}"
    );
    assert_ne!(retry.join_ref, join.join_ref);

    let other = client.channel("other");
    let subscribing = tokio::spawn(async move { other.subscribe().await });
    let join = peer.recv_skipping_heartbeats().await.unwrap();
    peer.reply(
        &join,
        "error",
        json!({"reason": "InvalidTopic: a topic is at most 255 bytes"}),
    );
    assert!(matches!(
        subscribing.await.unwrap(),
        Err(Error::JoinRefused {
            code: Some(ErrorCode::InvalidTopic),
            ..
        })
    ));
    assert!(
        timeout(DAY, peer.recv_skipping_heartbeats()).await.is_err(),
        "never retried"
    );
}

#[tokio::test(start_paused = true)]
async fn unsubscribe_waits_for_the_servers_reply() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let room = client.channel("room");
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    accept_join(&mut peer, "realtime:room", json!({"postgres_changes": []})).await;
    subscribing.await.unwrap().unwrap();

    let leaving = tokio::spawn({
        let room = room.clone();
        async move { room.unsubscribe().await }
    });
    let leave = peer.recv_skipping_heartbeats().await.unwrap();
    assert_eq!(leave.event, "phx_leave");
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!leaving.is_finished(), "still waiting for the reply");
    assert_eq!(room.status(), ChannelStatus::Leaving);
    peer.reply(&leave, "ok", json!({}));
    assert_eq!(leaving.await.unwrap(), Ok(()));
    assert_eq!(room.status(), ChannelStatus::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_offline_push_buffer_keeps_the_newest_and_reports_the_dropped() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).push_buffer(3).build().unwrap();
    let room = client.channel("room");
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let join = peer.recv_skipping_heartbeats().await.unwrap();
    // The join is not answered yet: broadcasts wait in the buffer.
    let sends: Vec<_> = (0..5)
        .map(|n| {
            let room = room.clone();
            tokio::spawn(async move { room.broadcast("tick", json!({"n": n})).await })
        })
        .collect();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    peer.reply(&join, "ok", json!({"postgres_changes": []}));
    subscribing.await.unwrap().unwrap();
    let results: Vec<_> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == Err(Error::Dropped))
            .count(),
        2
    );
    assert_eq!(client.dropped_pushes(), 2);
    let mut sent = Vec::new();
    for _ in 0..3 {
        let message = peer.recv_skipping_heartbeats().await.unwrap();
        sent.push(json_of(&message)["payload"]["n"].as_i64().unwrap());
    }
    assert_eq!(sent.len(), 3);
    assert!(sent.windows(2).all(|w| w[0] < w[1]), "in order: {sent:?}");
}

#[tokio::test(start_paused = true)]
async fn presence_events_include_updates_and_leaves() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let room = client.channel("room");
    let mut presence = room.presence_events();
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let join = accept_join(&mut peer, "realtime:room", json!({"postgres_changes": []})).await;
    assert_eq!(
        json_of(&join)["config"]["presence"]["enabled"],
        true,
        "listening turns presence on"
    );
    subscribing.await.unwrap().unwrap();
    let jr = join.join_ref.clone();

    // A diff before the state is held until the state arrives.
    peer.send(&push(
        "realtime:room",
        None,
        "presence_diff",
        json!({"joins": {"bob": {"metas": [{"phx_ref": "b1", "v": 1}]}}, "leaves": {}}),
    ));
    peer.send(&push(
        "realtime:room",
        jr.clone(),
        "presence_state",
        json!({"alice": {"metas": [{"phx_ref": "a1", "v": 1}]}}),
    ));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(presence.next().await.unwrap());
    }
    assert!(matches!(&seen[0], PresenceEvent::Join { key, .. } if key == "alice"));
    assert!(matches!(&seen[1], PresenceEvent::Join { key, .. } if key == "bob"));
    assert_eq!(seen[2], PresenceEvent::Sync);

    peer.send(&push(
        "realtime:room",
        None,
        "presence_diff",
        json!({
        "joins": {"alice": {"metas": [{"phx_ref": "a2", "phx_ref_prev": "a1", "v": 2}]}},
        "leaves": {"alice": {"metas": [{"phx_ref": "a1", "v": 1}]}}}),
    ));
    match presence.next().await.unwrap() {
        PresenceEvent::Update { key, old, new } => {
            assert_eq!(key, "alice");
            assert_eq!(
                (old.payload["v"].clone(), new.payload["v"].clone()),
                (json!(1), json!(2))
            );
        }
        other => panic!("expected an update, got {other:?}"),
    }
    assert_eq!(presence.next().await.unwrap(), PresenceEvent::Sync);

    peer.send(&push(
        "realtime:room",
        None,
        "presence_diff",
        json!({"joins": {}, "leaves": {"bob": {"metas": [{"phx_ref": "b1", "v": 1}]}}}),
    ));
    assert!(
        matches!(presence.next().await.unwrap(), PresenceEvent::Leave { key, .. } if key == "bob")
    );
    assert_eq!(presence.next().await.unwrap(), PresenceEvent::Sync);
    let state = room.presence_state();
    assert_eq!(state.keys().collect::<Vec<_>>(), ["alice"]);
    assert_eq!(state["alice"][0].phx_ref, "a2");
}

#[tokio::test(start_paused = true)]
async fn postgres_changes_are_routed_by_binding_ids() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let room = client.channel_with("db", ChannelOptions::default().wait_for_postgres(false));
    let mut inserts = room.postgres_changes::<Value>(
        PostgresChangesFilter::new(ChangeEvent::Insert, "public").table("todos"),
    );
    let mut all = room.postgres_changes::<Value>(
        PostgresChangesFilter::new(ChangeEvent::All, "public").table("todos"),
    );
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    accept_join(
        &mut peer,
        "realtime:db",
        json!({"postgres_changes": [
        {"event": "INSERT", "schema": "public", "table": "todos", "id": 11},
        {"event": "*", "schema": "public", "table": "todos", "id": 22}]}),
    )
    .await;
    subscribing.await.unwrap().unwrap();

    let change = |ids: Value, kind: &str, id: i64| {
        push(
            "realtime:db",
            None,
            "postgres_changes",
            json!({"ids": ids, "data": {
            "schema": "public", "table": "todos", "type": kind, "commit_timestamp": "t",
            "record": {"id": id}, "old_record": {"id": id}}}),
        )
    };
    peer.send(&change(json!([22]), "UPDATE", 1));
    peer.send(&change(json!([11, 22]), "INSERT", 2));
    match all.next().await.unwrap().unwrap() {
        PostgresChange::Update { new, .. } => assert_eq!(new["id"], 1),
        other => panic!("{other:?}"),
    }
    match all.next().await.unwrap().unwrap() {
        PostgresChange::Insert { new, .. } => assert_eq!(new["id"], 2),
        other => panic!("{other:?}"),
    }
    match inserts.next().await.unwrap().unwrap() {
        PostgresChange::Insert { new, .. } => {
            assert_eq!(new["id"], 2, "the update did not reach it");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn subscribe_waits_for_postgres_changes_to_be_live() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let room = client.channel("db");
    let _changes =
        room.postgres_changes::<Value>(PostgresChangesFilter::new(ChangeEvent::All, "public"));
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let join = accept_join(
        &mut peer,
        "realtime:db",
        json!({"postgres_changes": [{"event": "*", "schema": "public", "id": 5}]}),
    )
    .await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!subscribing.is_finished(), "joined, but not live yet");
    peer.send(&push(
        "realtime:db",
        join.join_ref.clone(),
        "system",
        json!({"extension": "postgres_changes", "status": "error", "message": "no database"}),
    ));
    assert_eq!(
        subscribing.await.unwrap(),
        Err(Error::PostgresChangesUnavailable {
            message: "no database".into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_later_subscribe_does_not_report_refused_postgres_changes_as_live() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport)
        .postgres_ready_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let room = client.channel("db");
    let _changes =
        room.postgres_changes::<Value>(PostgresChangesFilter::new(ChangeEvent::All, "public"));
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let echo = json!({"postgres_changes": [{"event": "*", "schema": "public", "id": 5}]});
    let join = accept_join(&mut peer, "realtime:db", echo).await;
    let refused = Error::PostgresChangesUnavailable {
        message: "Error parsing `filter` params: [\"foo\"]".into(),
    };
    peer.send(&push(
        "realtime:db",
        join.join_ref.clone(),
        "system",
        json!({"extension": "postgres_changes", "status": "error", "message": "Error parsing `filter` params: [\"foo\"]"}),
    ));
    assert_eq!(subscribing.await.unwrap(), Err(refused.clone()));
    // The channel is joined, but its postgres changes are not live: asking again says so.
    assert_eq!(room.status(), ChannelStatus::Joined);
    assert_eq!(room.subscribe().await, Err(refused));

    // No confirmation in time is a timeout, also on asking again; a late confirmation
    // makes the changes live after all.
    let room = client.channel("slow");
    let _changes =
        room.postgres_changes::<Value>(PostgresChangesFilter::new(ChangeEvent::All, "public"));
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let echo = json!({"postgres_changes": [{"event": "*", "schema": "public", "id": 6}]});
    let join = accept_join(&mut peer, "realtime:slow", echo).await;
    assert_eq!(subscribing.await.unwrap(), Err(Error::Timeout));
    assert_eq!(room.subscribe().await, Err(Error::Timeout));
    let mut events = room.events();
    peer.send(&push(
        "realtime:slow",
        join.join_ref.clone(),
        "system",
        json!({"extension": "postgres_changes", "status": "ok", "message": "Subscribed to PostgreSQL"}),
    ));
    loop {
        if let ChannelEvent::System(_) = events.next().await.expect("events") {
            break;
        }
    }
    assert_eq!(room.subscribe().await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_channel_closed_for_an_expired_token_refetches_and_rejoins() {
    let (transport, mut server) = memory::transport();
    let provider = numbered_tokens();
    let client = builder(transport).token_provider(provider).build().unwrap();
    let room = client.channel("room");
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let join = accept_join(&mut peer, "realtime:room", json!({"postgres_changes": []})).await;
    subscribing.await.unwrap().unwrap();
    peer.send(&push("realtime:room", join.join_ref.clone(), "system",
        json!({"extension": "system", "status": "error", "message": "Token has expired 0 seconds ago"})));
    let mut close = push(
        "realtime:room",
        join.join_ref.clone(),
        "phx_close",
        json!({}),
    );
    close.msg_ref = join.join_ref.clone();
    peer.send(&close);
    let rejoin = accept_join(&mut peer, "realtime:room", json!({"postgres_changes": []})).await;
    assert_eq!(json_of(&rejoin)["access_token"], "token-2");
}

#[tokio::test(start_paused = true)]
async fn binary_broadcasts_and_acks() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let room = client.channel_with("room", ChannelOptions::default().broadcast_ack(true));
    let mut messages = room.broadcasts();
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    accept_join(&mut peer, "realtime:room", json!({"postgres_changes": []})).await;
    subscribing.await.unwrap().unwrap();

    let sending = tokio::spawn({
        let room = room.clone();
        async move {
            room.broadcast_binary("blob", bytes::Bytes::from_static(&[1, 2, 3]))
                .await
        }
    });
    let push_frame = peer.recv_skipping_heartbeats().await.unwrap();
    match &push_frame.payload {
        Payload::UserBroadcast(user) => {
            assert_eq!(user.event, "blob");
            assert_eq!(&user.payload[..], &[1, 2, 3]);
        }
        other => panic!("expected a kind-3 frame, got {other:?}"),
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!sending.is_finished(), "ack on: waits for the reply");
    peer.reply(&push_frame, "ok", json!({}));
    assert_eq!(sending.await.unwrap(), Ok(()));

    // A kind-4 frame from the server arrives as bytes.
    peer.send(&Message {
        join_ref: None,
        msg_ref: None,
        topic: "realtime:room".into(),
        event: "broadcast".into(),
        payload: Payload::UserBroadcast(crier_protocol::UserBroadcast {
            event: "blob".into(),
            metadata: bytes::Bytes::new(),
            encoding: crier_protocol::PayloadEncoding::Binary,
            payload: bytes::Bytes::from_static(&[9]),
        }),
    });
    let message = messages.next().await.unwrap();
    assert_eq!(
        message.payload,
        BroadcastPayload::Binary(bytes::Bytes::from_static(&[9]))
    );
}

#[tokio::test(start_paused = true)]
async fn pushes_waiting_for_a_join_that_is_refused_for_good_are_failed_with_the_refusal() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let room = client.channel("room");
    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let join = peer.recv_skipping_heartbeats().await.unwrap();
    let waiting = tokio::spawn({
        let room = room.clone();
        async move { room.broadcast("tick", json!({})).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiting.is_finished(),
        "buffered while the join is in flight"
    );
    peer.reply(
        &join,
        "error",
        json!({"reason": "InvalidTopic: a topic is at most 255 bytes"}),
    );
    assert!(subscribing.await.unwrap().is_err());
    let result = waiting.await.unwrap();
    assert!(
        matches!(
            result,
            Err(Error::JoinRefused {
                code: Some(ErrorCode::InvalidTopic),
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn one_topic_is_one_shared_channel_and_the_last_handle_leaves() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let first = client.channel("room");
    let second = client.channel("room");
    let subscribing = tokio::spawn({
        let first = first.clone();
        async move { first.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let join = accept_join(&mut peer, "realtime:room", json!({"postgres_changes": []})).await;
    subscribing.await.unwrap().unwrap();
    assert_eq!(second.status(), ChannelStatus::Joined, "the same channel");
    // Subscribing the other handle joins nothing new.
    second.subscribe().await.unwrap();

    drop(first);
    assert!(
        timeout(Duration::from_secs(60), peer.recv_skipping_heartbeats())
            .await
            .is_err(),
        "one handle still holds it"
    );
    drop(second);
    let leave = peer.recv_skipping_heartbeats().await.unwrap();
    assert_eq!(
        (leave.event.as_str(), leave.join_ref),
        ("phx_leave", join.join_ref)
    );
}

#[tokio::test(start_paused = true)]
async fn a_handshake_that_never_completes_times_out_and_is_retried() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    server.stall_next();
    let start = Instant::now();
    assert_eq!(client.connect().await, Err(Error::Timeout));
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    // The next attempt, after the first backoff step, connects.
    let _peer = server.accept().await.unwrap();
    assert!(start.elapsed() <= Duration::from_secs(11));
}

#[tokio::test(start_paused = true)]
async fn a_probe_reports_latency_or_declares_the_connection_dead() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport)
        .probe_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut peer = connect(&client, &mut server).await;

    let probing = tokio::spawn({
        let client = client.clone();
        async move { client.probe().await }
    });
    let beat = peer.recv().await.unwrap();
    assert_eq!(
        beat.event, "heartbeat",
        "sent at once, not at the next interval"
    );
    tokio::time::advance(Duration::from_millis(40)).await;
    peer.reply(&beat, "ok", json!({}));
    assert_eq!(probing.await.unwrap(), Ok(Duration::from_millis(40)));

    // After a sleep, say: nothing answers, so the connection is dead and replaced.
    let probing = tokio::spawn({
        let client = client.clone();
        async move { client.probe().await }
    });
    assert_eq!(peer.recv().await.unwrap().event, "heartbeat");
    assert_eq!(probing.await.unwrap(), Err(Error::Timeout));
    assert!(peer.recv().await.is_none(), "closed");
    let _peer = server.accept().await.expect("reconnected");
}

#[tokio::test(start_paused = true)]
async fn a_rejoin_resumes_from_the_last_offset_and_drops_what_it_already_has() {
    let (transport, mut server) = memory::transport();
    let client = builder(transport).build().unwrap();
    let room = client.channel("room");
    let mut broadcasts = room.broadcasts();
    let mut resumes = Box::pin(room.events().filter_map(|event| async move {
        match event {
            ChannelEvent::Resumed {
                recovered, missed, ..
            } => Some((recovered, missed)),
            _ => None,
        }
    }));
    let n_of = |message: crier_client::Broadcast| match message.payload {
        BroadcastPayload::Json(payload) => payload["n"].as_i64().unwrap(),
        other => panic!("JSON, got {other:?}"),
    };
    let broadcast = |n: i64, epoch: &str| {
        push(
            "realtime:room",
            None,
            "broadcast",
            json!({"type": "broadcast", "event": "n", "payload": {"n": n},
                   "meta": {"offset": n, "epoch": epoch}}),
        )
    };

    let subscribing = tokio::spawn({
        let room = room.clone();
        async move { room.subscribe().await }
    });
    let mut peer = server.accept().await.unwrap();
    let position = json!({"postgres_changes": [], "broadcast": {"epoch": "e1", "offset": 4}});
    let join = accept_join(&mut peer, "realtime:room", position).await;
    assert_eq!(
        json_of(&join)["config"]["broadcast"].get("resume"),
        None,
        "a first join starts from where the stream is"
    );
    assert_eq!(subscribing.await.unwrap(), Ok(()));
    peer.send(&broadcast(5, "e1"));
    peer.send(&broadcast(6, "e1"));
    assert_eq!(n_of(broadcasts.next().await.unwrap()), 5);
    assert_eq!(n_of(broadcasts.next().await.unwrap()), 6);

    // The connection drops; the rejoin resumes after offset 6.
    peer.close(Some(1006), "gone");
    let mut peer = server.accept().await.unwrap();
    let latest = json!({"postgres_changes": [], "broadcast": {"epoch": "e1", "offset": 8}});
    let rejoin = accept_join(&mut peer, "realtime:room", latest).await;
    assert_eq!(
        json_of(&rejoin)["config"]["broadcast"]["resume"],
        json!({"epoch": "e1", "offset": 6})
    );
    // A catch-up that overlaps what arrived before the break: 6 is not delivered twice.
    for n in [6, 7, 8] {
        peer.send(&broadcast(n, "e1"));
    }
    peer.send(&push(
        "realtime:room",
        rejoin.join_ref.clone(),
        "system",
        json!({"extension": "broadcast", "status": "ok", "message": "Resumed: 2 missed messages",
               "resume": {"recovered": true, "epoch": "e1", "offset": 8, "missed": 2}}),
    ));
    assert_eq!(n_of(broadcasts.next().await.unwrap()), 7);
    assert_eq!(n_of(broadcasts.next().await.unwrap()), 8);
    assert_eq!(resumes.next().await, Some((true, 2)));

    // The server restarted: its stream has a new epoch. The app is told to refetch, and
    // the channel goes on from the server's position.
    peer.close(Some(1006), "gone");
    let mut peer = server.accept().await.unwrap();
    let fresh = json!({"postgres_changes": [], "broadcast": {"epoch": "e2", "offset": 0}});
    let rejoin = accept_join(&mut peer, "realtime:room", fresh).await;
    assert_eq!(
        json_of(&rejoin)["config"]["broadcast"]["resume"],
        json!({"epoch": "e1", "offset": 8})
    );
    peer.send(&push(
        "realtime:room",
        rejoin.join_ref.clone(),
        "system",
        json!({"extension": "broadcast", "status": "error", "message": "Resume gap: epoch changed",
               "resume": {"recovered": false, "epoch": "e2", "offset": 0}}),
    ));
    assert_eq!(resumes.next().await, Some((false, 0)));
    peer.send(&broadcast(1, "e2"));
    assert_eq!(
        n_of(broadcasts.next().await.unwrap()),
        1,
        "a new epoch starts again at 1"
    );
}
