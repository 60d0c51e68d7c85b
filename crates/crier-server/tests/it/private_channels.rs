//! Private channels end to end: a node authorizes against a real PostgreSQL's policies on
//! `realtime.messages`, and raw protocol clients join, send and are refused exactly as
//! Supabase's clients expect.

use crier_server::Config;
use crier_server::protocol::Vsn;
use crier_testkit::TestPostgres;
use crier_testkit::prelude::{Client, TestServer, json_payload, reason, token};
use serde_json::{Value, json};

const ROLES: &str = "
    create role anon nologin;
    create role authenticated nologin;
    create role service_role nologin bypassrls;
";

/// `room-*`: authenticated users read broadcast and presence; `writer` may broadcast,
/// `writer` and `tracker` may track. `news-*`: anyone reads broadcasts (not presence).
const POLICIES: &str = "
    create policy rooms_read on realtime.messages for select to authenticated
        using (realtime.topic() like 'room-%');
    create policy news_read on realtime.messages for select to anon, authenticated
        using (realtime.topic() like 'news-%' and extension = 'broadcast');
    create policy rooms_write on realtime.messages for insert to authenticated
        with check (realtime.topic() like 'room-%' and (
            (extension = 'broadcast' and auth_sub() = 'writer')
            or (extension = 'presence' and auth_sub() in ('writer', 'tracker'))));
    create policy lobby_presence on realtime.messages for select to authenticated
        using (realtime.topic() like 'lobby-%' and extension = 'presence');
    create policy boom on realtime.messages for select to anon
        using (case when realtime.topic() = 'boom' then 1 / (length(topic) - 4) = 1 else false end);
    create policy boom_write on realtime.messages for insert to anon
        with check (case when realtime.topic() = 'boom' then 1 / (length(topic) - 4) = 1 else false end);
";

const AUTH_SUB: &str = "
    create function public.auth_sub() returns text language sql stable
        as $$ select current_setting('request.jwt.claims', true)::jsonb->>'sub' $$;
    grant execute on function public.auth_sub() to anon, authenticated;
";

struct Setup {
    _pg: TestPostgres,
    server: TestServer,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(adjust: impl FnOnce(&mut Config)) -> Setup {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql(ROLES).unwrap();
    pg.psql(AUTH_SUB).unwrap();
    crier_server::authz::prepare_database(&pg.url())
        .await
        .unwrap();
    pg.psql(POLICIES).unwrap();
    let url = pg.url();
    let server = TestServer::start_with(|config: &mut Config| {
        config.authorization.database_url = Some(url);
        adjust(config);
    })
    .await;
    Setup { _pg: pg, server }
}

fn user(sub: &str) -> String {
    token(json!({"role": "authenticated", "sub": sub}))
}

fn anon() -> String {
    token(json!({"role": "anon"}))
}

async fn connect(setup: &Setup, token: &str) -> Client {
    setup.server.connect_with_token(Vsn::V2, token).await
}

fn private(extra: Value) -> Value {
    let mut config = json!({"private": true, "broadcast": {"self": false, "ack": true}});
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            config.insert(key.clone(), value.clone());
        }
    }
    json!({"config": config})
}

/// Sends a heartbeat and returns everything the channel topics got before its reply:
/// the server handles a socket's messages in order, so whatever an earlier push caused
/// has been sent by then.
async fn until_heartbeat(client: &mut Client) -> Vec<crier_server::protocol::Message> {
    let msg_ref = client.next_ref();
    client
        .send(None, Some(&msg_ref), "phoenix", "heartbeat", json!({}))
        .await;
    let mut before = Vec::new();
    loop {
        let message = client.message().await;
        if message.topic == "phoenix" && message.msg_ref.as_deref() == Some(msg_ref.as_str()) {
            return before;
        }
        before.push(message);
    }
}

#[tokio::test]
async fn read_policies_decide_the_join() {
    let setup = setup().await;
    let mut member = connect(&setup, &user("u1")).await;
    let (_, status, response) = member.join("realtime:room-1", private(json!({}))).await;
    assert_eq!(status, "ok", "{response}");
    assert_eq!(response["postgres_changes"], json!([]));
    assert_eq!(response["broadcast"]["offset"], 0, "{response}");

    let mut stranger = connect(&setup, &anon()).await;
    let (_, status, response) = stranger.join("realtime:room-1", private(json!({}))).await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "Unauthorized: You do not have permissions to read from this Channel topic: room-1"
    );
    // A policy that raises refuses too, and the socket goes on.
    let (_, status, response) = stranger.join("realtime:boom", private(json!({}))).await;
    assert_eq!(status, "error");
    assert!(
        reason(&response).starts_with("Unauthorized: "),
        "{response}"
    );
    stranger
        .join_ok("realtime:news-1", json!({"private": true}))
        .await;
}

#[tokio::test]
async fn writes_need_the_insert_policy_and_a_denied_broadcast_is_dropped_silently() {
    let setup = setup().await;
    let mut reader = connect(&setup, &user("reader")).await;
    let reader_ref = reader
        .join_ok("realtime:room-1", json!({"private": true}))
        .await;
    let mut denied = connect(&setup, &user("reader")).await;
    let denied_ref = denied
        .join_ok(
            "realtime:room-1",
            json!({"private": true, "broadcast": {"ack": true}}),
        )
        .await;
    let mut writer = connect(&setup, &user("writer")).await;
    let writer_ref = writer
        .join_ok(
            "realtime:room-1",
            json!({"private": true, "broadcast": {"ack": true}}),
        )
        .await;

    // No reply even with ack, and nobody receives it.
    let body = json!({"type": "broadcast", "event": "e", "payload": {"from": "denied"}});
    denied
        .send(
            Some(&denied_ref),
            Some("90"),
            "realtime:room-1",
            "broadcast",
            body.clone(),
        )
        .await;
    denied
        .send(
            Some(&denied_ref),
            Some("91"),
            "realtime:room-1",
            "broadcast",
            body,
        )
        .await;
    let before = until_heartbeat(&mut denied).await;
    assert!(before.is_empty(), "a denied broadcast got {before:?}");

    let (status, _) = writer
        .push(
            &writer_ref,
            "realtime:room-1",
            "broadcast",
            json!({"type": "broadcast", "event": "e", "payload": {"from": "writer"}}),
        )
        .await;
    assert_eq!(status, "ok");
    let got = reader.event("realtime:room-1", "broadcast").await;
    assert_eq!(json_payload(&got)["payload"], json!({"from": "writer"}));
    assert_eq!(got.join_ref.as_deref(), None);
    let _ = reader_ref;
}

#[tokio::test]
async fn presence_needs_its_own_read_and_write() {
    let setup = setup().await;
    // news-*: broadcast read only. The join works, presence stays silent.
    let mut reader = connect(&setup, &anon()).await;
    let reader_ref = reader
        .join_ok(
            "realtime:news-1",
            json!({"private": true, "presence": {"enabled": true}}),
        )
        .await;
    let (status, response) = reader
        .push(
            &reader_ref,
            "realtime:news-1",
            "presence",
            json!({"type": "presence", "event": "track", "payload": {"a": 1}}),
        )
        .await;
    assert_eq!(status, "error");
    assert!(
        reason(&response).starts_with("Unauthorized: "),
        "{response}"
    );

    // room-*: the tracker may track, and a member sees its presence.
    let mut member = connect(&setup, &user("member")).await;
    let member_ref = member
        .join_ok(
            "realtime:room-1",
            json!({"private": true, "presence": {"enabled": true}}),
        )
        .await;
    let state = member.event("realtime:room-1", "presence_state").await;
    assert_eq!(json_payload(&state), &json!({}));
    let mut tracker = connect(&setup, &user("tracker")).await;
    let tracker_ref = tracker
        .join_ok(
            "realtime:room-1",
            json!({"private": true, "presence": {"key": "t"}}),
        )
        .await;
    let (status, _) = tracker
        .push(
            &tracker_ref,
            "realtime:room-1",
            "presence",
            json!({"type": "presence", "event": "track", "payload": {"online": true}}),
        )
        .await;
    assert_eq!(status, "ok");
    let diff = member.event("realtime:room-1", "presence_diff").await;
    assert!(json_payload(&diff)["joins"]["t"].is_object(), "{diff:?}");
    // The member may not track (no presence write).
    let (status, _) = member
        .push(
            &member_ref,
            "realtime:room-1",
            "presence",
            json!({"type": "presence", "event": "track", "payload": {}}),
        )
        .await;
    assert_eq!(status, "error");
    // The news reader never saw any presence.
    let seen = until_heartbeat(&mut reader).await;
    assert!(
        seen.iter().all(|m| !m.event.starts_with("presence")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn private_and_public_channels_of_one_name_never_meet() {
    let setup = setup().await;
    let mut private_reader = connect(&setup, &user("u1")).await;
    private_reader
        .join_ok("realtime:room-1", json!({"private": true}))
        .await;
    let mut public_reader = connect(&setup, &user("u1")).await;
    public_reader.join_ok("realtime:room-1", json!({})).await;
    let mut public_writer = connect(&setup, &anon()).await;
    let writer_ref = public_writer
        .join_ok("realtime:room-1", json!({"broadcast": {"ack": true}}))
        .await;
    public_writer
        .push(
            &writer_ref,
            "realtime:room-1",
            "broadcast",
            json!({"type": "broadcast", "event": "e", "payload": {"n": 1}}),
        )
        .await;
    let got = public_reader.event("realtime:room-1", "broadcast").await;
    assert_eq!(json_payload(&got)["payload"], json!({"n": 1}));
    let seen = until_heartbeat(&mut private_reader).await;
    assert!(seen.is_empty(), "the private channel got {seen:?}");
    // And the REST API keeps them apart the same way.
    let response = reqwest::Client::new()
        .post(setup.server.http("/api/broadcast"))
        .bearer_auth(user("writer"))
        .json(&json!({"messages": [{"topic": "room-1", "event": "p", "payload": {"n": 2}, "private": true}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let got = private_reader.event("realtime:room-1", "broadcast").await;
    assert_eq!(json_payload(&got)["payload"], json!({"n": 2}));
    let seen = until_heartbeat(&mut public_reader).await;
    assert!(seen.is_empty(), "the public channel got {seen:?}");
}

#[tokio::test]
async fn a_refreshed_token_that_loses_read_closes_the_channel() {
    let setup = setup().await;
    let mut member = connect(&setup, &user("u1")).await;
    let join_ref = member
        .join_ok("realtime:room-1", json!({"private": true}))
        .await;
    // A new token of the same user: still allowed, nothing happens.
    member
        .send(
            Some(&join_ref),
            None,
            "realtime:room-1",
            "access_token",
            json!({"access_token": user("u1b")}),
        )
        .await;
    assert!(until_heartbeat(&mut member).await.is_empty());
    // An anon token: no read on room-*.
    member
        .send(
            Some(&join_ref),
            None,
            "realtime:room-1",
            "access_token",
            json!({"access_token": anon()}),
        )
        .await;
    let system = member.event("realtime:room-1", "system").await;
    assert_eq!(
        json_payload(&system),
        &json!({"extension": "system", "status": "error", "channel": "room-1",
                "message": "You no longer have permission to read from this Channel topic: room-1"})
    );
    member.event("realtime:room-1", "phx_close").await;
}

#[tokio::test]
async fn rest_private_messages_are_checked_per_topic() {
    let setup = setup().await;
    let mut reader = connect(&setup, &user("u1")).await;
    reader
        .join_ok("realtime:room-1", json!({"private": true}))
        .await;
    let http = reqwest::Client::new();
    let batch = json!({"messages": [
        {"topic": "room-1", "event": "e", "payload": {"n": 1}, "private": true},
        {"topic": "room-1", "event": "e", "payload": {"n": 2}, "private": true},
    ]});
    // Denied writer: 202, nothing delivered.
    let response = http
        .post(setup.server.http("/api/broadcast"))
        .bearer_auth(user("reader"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(until_heartbeat(&mut reader).await.is_empty());
    // Allowed writer, and service_role (which bypasses row level security).
    for token in [user("writer"), token(json!({"role": "service_role"}))] {
        let response = http
            .post(setup.server.http("/api/broadcast"))
            .bearer_auth(token)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        for n in [1, 2] {
            let got = reader.event("realtime:room-1", "broadcast").await;
            assert_eq!(json_payload(&got)["payload"], json!({"n": n}));
        }
    }
    // The per-event route: 403 when denied, 202 when allowed, 422 on a policy error.
    let single = |token: String, topic: &str| {
        http.post(
            setup
                .server
                .http(&format!("/api/broadcast/{topic}/events/e?private=true")),
        )
        .bearer_auth(token)
        .json(&json!({"n": 3}))
        .send()
    };
    let denied = single(user("reader"), "room-1").await.unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(
        denied.json::<Value>().await.unwrap()["message"],
        "Unauthorized"
    );
    assert_eq!(
        single(user("writer"), "room-1").await.unwrap().status(),
        202
    );
    let got = reader.event("realtime:room-1", "broadcast").await;
    assert_eq!(json_payload(&got)["payload"], json!({"n": 3}));
    let failed = single(anon(), "boom").await.unwrap();
    assert_eq!(failed.status(), 422);
    assert_eq!(
        failed.json::<Value>().await.unwrap()["message"],
        "The write policy of this private channel failed"
    );
}

#[tokio::test]
async fn private_only_refuses_public_joins() {
    let setup = setup_with(|config| config.authorization.private_only = true).await;
    let mut client = connect(&setup, &user("u1")).await;
    let (_, status, response) = client.join("realtime:room-1", json!({"config": {}})).await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "PrivateOnly: This project only allows private channels"
    );
    client
        .join_ok("realtime:room-1", json!({"private": true}))
        .await;
}

#[tokio::test]
async fn identical_joins_at_once_share_their_checks() {
    // One connection: the checks queue behind each other, and identical ones share.
    let setup = setup_with(|config| config.authorization.pool_size = 1).await;
    let token = user("u1");
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(connect(&setup, &token).await);
    }
    // Every client's join goes out before any reply is read.
    for (n, client) in clients.iter_mut().enumerate() {
        for k in 0..10 {
            let join_ref = format!("{n}-{k}");
            client
                .send(
                    Some(&join_ref),
                    Some(&join_ref),
                    &format!("realtime:room-{k}"),
                    "phx_join",
                    private(json!({})),
                )
                .await;
        }
    }
    for (n, client) in clients.iter_mut().enumerate() {
        for k in 0..10 {
            let (status, response) = client.reply(&format!("{n}-{k}")).await;
            assert_eq!(status, "ok", "{response}");
        }
    }
    let metrics = reqwest::get(setup.server.http("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
    };
    assert_eq!(figure("crier_authorization_checks_total"), 200.0);
    let queries = figure("crier_authorization_queries_total");
    assert!(
        (10.0..200.0).contains(&queries),
        "{queries} queries for 200 joins"
    );
}

#[tokio::test]
async fn a_database_that_is_down_refuses_private_joins_and_nothing_else() {
    let setup = setup_with(|config| {
        config.authorization.check_timeout = std::time::Duration::from_secs(2);
    })
    .await;
    setup._pg.stop().unwrap();
    let mut client = connect(&setup, &user("u1")).await;
    let public_ref = client
        .join_ok("realtime:lobby", json!({"broadcast": {"ack": true}}))
        .await;
    let (_, status, response) = client.join("realtime:room-1", private(json!({}))).await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "UnableToConnectToProject: Realtime was unable to connect to the project database"
    );
    let (status, _) = client
        .push(
            &public_ref,
            "realtime:lobby",
            "broadcast",
            json!({"type": "broadcast", "event": "e", "payload": {}}),
        )
        .await;
    assert_eq!(status, "ok", "the public channel still works");
}

#[tokio::test]
async fn without_a_database_private_joins_are_refused() {
    let server = TestServer::start().await;
    let mut client = server.connect(Vsn::V2).await;
    let (_, status, response) = client.join("realtime:room-1", private(json!({}))).await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "Unauthorized: You do not have permissions to read from this Channel topic: room-1"
    );
}

/// Stores broadcasts for `topic` the way a trigger would, one transaction per string.
fn send_from_the_database(pg: &TestPostgres, statements: &[&str]) {
    for sql in statements {
        pg.psql(sql).unwrap();
    }
}

#[tokio::test]
async fn a_private_join_replays_the_newest_stored_messages_oldest_first() {
    let setup = setup().await;
    send_from_the_database(
        &setup._pg,
        &[
            "select realtime.send('{\"n\": 1}', 'e', 'room-1')",
            "select realtime.send('{\"n\": 2}', 'e', 'room-1')",
            // One transaction: they replay in the order they were sent.
            "begin; select realtime.send('{\"n\": 3}', 'e', 'room-1');
                    select realtime.send('{\"n\": 4}', 'e', 'room-1'); commit;",
            "select realtime.send('{\"n\": 9}', 'e', 'room-2')",
            "select realtime.send('{\"n\": 10}', 'e', 'room-1', false)",
        ],
    );
    let mut member = connect(&setup, &user("u1")).await;
    let replay = |since: Value, limit: Value| json!({"config": {"private": true, "broadcast": {"replay": {"since": since, "limit": limit}}}});
    let (_, status, response) = member
        .join("realtime:room-1", replay(json!(0), json!(3)))
        .await;
    assert_eq!(status, "ok", "{response}");
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let message = member.event("realtime:room-1", "broadcast").await;
        let body = json_payload(&message).clone();
        assert_eq!(body["meta"]["replayed"], true, "{body}");
        assert_eq!(body["meta"]["id"], body["payload"]["id"], "{body}");
        replayed.push(body["payload"]["n"].as_i64().unwrap());
    }
    assert_eq!(
        replayed,
        [2, 3, 4],
        "the newest 3 of room-1's private messages, oldest first"
    );
    assert!(
        until_heartbeat(&mut member).await.is_empty(),
        "nothing else"
    );

    // Since in the future: nothing. limit 0 and 26 are clamped to 1 and 25.
    let future = crier_server::auth::unix_now() * 1000 + 60_000;
    let (_, status, _) = member
        .join("realtime:room-1", replay(json!(future), json!(5)))
        .await;
    assert_eq!(status, "ok");
    assert!(
        until_heartbeat(&mut member)
            .await
            .iter()
            .all(|m| m.event != "broadcast")
    );
    let (_, status, _) = member
        .join("realtime:room-1", replay(json!(0), json!(0)))
        .await;
    assert_eq!(status, "ok");
    let only = member.event("realtime:room-1", "broadcast").await;
    assert_eq!(json_payload(&only)["payload"]["n"], 4);
    assert!(
        until_heartbeat(&mut member)
            .await
            .iter()
            .all(|m| m.event != "broadcast")
    );
}

#[tokio::test]
async fn replay_params_are_checked_and_need_broadcast_read() {
    let setup = setup().await;
    let mut member = connect(&setup, &user("u1")).await;
    for (config, expected) in [
        (
            json!({"private": true, "broadcast": {"replay": {"limit": 5}}}),
            "UnableToReplayMessages: Replay params are not valid",
        ),
        (
            json!({"private": true, "broadcast": {"replay": {"since": -1}}}),
            "UnableToReplayMessages: Replay params are not valid",
        ),
        (
            json!({"private": true, "broadcast": {"replay": {"since": "yesterday"}}}),
            "UnableToReplayMessages: Replay params are not valid",
        ),
        (
            json!({"private": true, "broadcast": {"replay": {"since": 0, "limit": "5"}}}),
            "UnableToReplayMessages: Replay params are not valid",
        ),
        (
            json!({"broadcast": {"replay": {"since": 0}}}),
            "UnableToReplayMessages: Replay is not allowed for public channels",
        ),
    ] {
        let (_, status, response) = member
            .join("realtime:room-1", json!({"config": config}))
            .await;
        assert_eq!(status, "error", "{config}");
        assert_eq!(reason(&response), expected, "{config}");
    }
    // Presence read only: the join would pass, its replay may not.
    let (_, status, response) = member
        .join(
            "realtime:lobby-1",
            json!({"config": {"private": true, "presence": {"enabled": true},
                              "broadcast": {"replay": {"since": 0}}}}),
        )
        .await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "Unauthorized: You do not have permissions to read from this Channel topic: lobby-1"
    );
    member
        .join_ok(
            "realtime:lobby-1",
            json!({"private": true, "presence": {"enabled": true}}),
        )
        .await;
}

#[tokio::test]
async fn a_binary_message_replays_as_a_binary_frame() {
    let setup = setup().await;
    send_from_the_database(
        &setup._pg,
        &["select realtime.send_binary('\\x00ff10', 'bytes', 'room-1')"],
    );
    let mut member = connect(&setup, &user("u1")).await;
    let (_, status, _) = member
        .join(
            "realtime:room-1",
            json!({"config": {"private": true, "broadcast": {"replay": {"since": 0}}}}),
        )
        .await;
    assert_eq!(status, "ok");
    let frame = loop {
        match member.recv().await {
            crier_testkit::prelude::Received::Binary(bytes) => break bytes,
            crier_testkit::prelude::Received::Message(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    let decoded = crier_server::protocol::serializer::decode_from_server(
        Vsn::V2,
        crier_server::protocol::serializer::FrameRef::Binary(&frame),
    )
    .unwrap();
    let crier_server::protocol::Payload::UserBroadcast(broadcast) = decoded.payload else {
        panic!("{decoded:?}");
    };
    assert_eq!(broadcast.event, "bytes");
    assert_eq!(&broadcast.payload[..], [0x00, 0xff, 0x10]);
    let meta: Value = serde_json::from_slice(&broadcast.metadata).unwrap();
    assert_eq!(meta["replayed"], true);
}
