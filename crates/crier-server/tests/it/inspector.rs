//! The live inspector's server side: its page and sign-in check, and the
//! `crier:inspector` channel (who may join, the overview pushes, the channel list, the
//! limits it shares with every client). The page itself is tested in a browser by
//! tests/conformance/test/16-inspector.test.js.

use crier_server::protocol::Vsn;
use crier_testkit::prelude::*;
use serde_json::{Value, json};

const INSPECTOR: &str = "crier:inspector";

async fn with_inspector() -> TestServer {
    TestServer::start_with(|config| config.inspector.enabled = true).await
}

fn service_key() -> String {
    token(json!({"role": "service_role"}))
}

async fn inspector(server: &TestServer) -> (Client, String, Value) {
    let mut client = server.connect_with_token(Vsn::V2, &service_key()).await;
    let (join_ref, status, welcome) = client.join(INSPECTOR, json!({})).await;
    assert_eq!(status, "ok", "{welcome}");
    (client, join_ref, welcome)
}

async fn sign_in(server: &TestServer, key: &str) -> Value {
    let response = reqwest::Client::new()
        .post(server.http("/inspector/sign-in"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_inspector_is_off_unless_asked_for() {
    let server = TestServer::start().await;
    let page = reqwest::get(server.http("/inspector")).await.unwrap();
    assert_eq!(page.status(), 404);
    let mut client = server.connect_with_token(Vsn::V1, &service_key()).await;
    let (_, status, response) = client.join(INSPECTOR, json!({})).await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "Unauthorized: The inspector is turned off on this server"
    );
    client.heartbeat().await;
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_a_strict_policy() {
    let server = with_inspector().await;
    let page = reqwest::get(server.http("/inspector")).await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("sign-in-form"));
    for (name, kind) in [
        ("app.js", "text/javascript"),
        ("phoenix.mjs", "text/javascript"),
        ("uPlot.iife.min.js", "text/javascript"),
        ("style.css", "text/css"),
        ("uPlot.min.css", "text/css"),
    ] {
        let file = reqwest::get(server.http(&format!("/inspector/assets/{name}")))
            .await
            .unwrap();
        assert_eq!(file.status(), 200, "{name}");
        let content_type = file.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with(kind), "{name}: {content_type}");
        assert!(!file.bytes().await.unwrap().is_empty());
    }
    let missing = reqwest::get(server.http("/inspector/assets/../Cargo.toml"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn only_an_admin_token_signs_in_or_joins() {
    let server = TestServer::start_with(|config| {
        config.inspector.enabled = true;
        config.inspector.admin_role = Some("inspector".to_owned());
    })
    .await;
    assert_eq!(sign_in(&server, &service_key()).await, json!({"ok": true}));
    let admin = token(json!({"role": "inspector"}));
    assert_eq!(sign_in(&server, &admin).await, json!({"ok": true}));
    let anon = sign_in(&server, &token(json!({"role": "anon"}))).await;
    assert_eq!(anon["ok"], false);
    assert!(
        anon["reason"].as_str().unwrap().contains("role anon"),
        "{anon}"
    );
    let garbage = sign_in(&server, "not-a-token").await;
    assert_eq!(garbage["ok"], false);
    assert!(!garbage["reason"].as_str().unwrap().is_empty());
    let expired = sign_in(&server, &token(json!({"role": "service_role", "exp": 1}))).await;
    assert_eq!(expired["ok"], false);

    // The join goes by its own access_token when it has one, else the socket's.
    let mut client = server.connect(Vsn::V1).await;
    let (_, status, response) = client.join(INSPECTOR, json!({})).await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "Unauthorized: The inspector needs the service role key (or the inspector's admin role)"
    );
    let (_, status, response) = client.join(INSPECTOR, json!({"access_token": admin})).await;
    assert_eq!(status, "ok", "{response}");
    client.heartbeat().await;
}

#[tokio::test]
async fn a_watcher_gets_the_overview_every_second() {
    let server = with_inspector().await;
    let mut subscriber = server.connect(Vsn::V1).await;
    subscriber.join_ok("realtime:room", json!({})).await;
    let (mut watcher, _, welcome) = inspector(&server).await;
    assert!(welcome["samples"].is_array(), "{welcome}");

    let overview = watcher.event(INSPECTOR, "overview").await;
    let overview = json_payload(&overview);
    assert_eq!(overview["sample"]["connections"], 2, "{overview}");
    assert_eq!(overview["channels"], 2, "the room and the inspector's own");
    assert_eq!(overview["topics"], 1);
    assert_eq!(overview["postgres_changes"], Value::Null);
    assert_eq!(overview["cluster"], Value::Null);
    assert!(overview["history"]["topics"].is_u64(), "{overview}");
    for total in ["messages_in", "slow_consumer_disconnects", "rate_limited"] {
        assert!(overview["totals"][total].is_u64(), "{total}: {overview}");
    }
    // The next one comes a second later, and sees the broadcast of that second.
    server.node.broadcast("room", "e", &json!({})).unwrap();
    subscriber.event("realtime:room", "broadcast").await;
    let next = watcher
        .until(|m| {
            m.event == "overview" && json_payload(m)["sample"]["messages_out"].as_f64() > Some(0.0)
        })
        .await;
    assert!(json_payload(&next)["uptime_seconds"].is_u64());
}

#[tokio::test]
async fn channels_lists_topics_the_busiest_first_and_searches() {
    let server = with_inspector().await;
    let mut clients = Vec::new();
    for (topic, subscribers) in [
        ("realtime:lobby", 1),
        ("realtime:game-1", 3),
        ("realtime:game-2", 2),
    ] {
        for _ in 0..subscribers {
            let mut client = server.connect(Vsn::V1).await;
            client
                .join_ok(topic, json!({"presence": {"key": "p"}}))
                .await;
            clients.push(client);
        }
    }
    let (mut watcher, join_ref, _) = inspector(&server).await;
    let (status, list) = watcher
        .push(&join_ref, INSPECTOR, "channels", json!({}))
        .await;
    assert_eq!(status, "ok", "{list}");
    assert_eq!(list["total"], 3);
    let names: Vec<&str> = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["game-1", "game-2", "lobby"]);
    assert_eq!(list["channels"][0]["subscribers"], 3);
    assert_eq!(list["channels"][0]["private"], false);

    let (_, found) = watcher
        .push(
            &join_ref,
            INSPECTOR,
            "channels",
            json!({"search": "GAME", "limit": 1}),
        )
        .await;
    assert_eq!(found["matched"], 2);
    assert_eq!(found["channels"].as_array().unwrap().len(), 1);
    assert_eq!(found["channels"][0]["name"], "game-1");

    let (status, refused) = watcher
        .push(&join_ref, INSPECTOR, "channels", json!({"limit": "many"}))
        .await;
    assert_eq!(status, "error");
    assert!(
        reason(&refused).starts_with("MalformedMessage: channels:"),
        "{refused}"
    );
    let (status, refused) = watcher.push(&join_ref, INSPECTOR, "snoop", json!({})).await;
    assert_eq!(status, "error");
    assert!(reason(&refused).starts_with("UnknownEvent:"), "{refused}");
    watcher.heartbeat().await;
}

#[tokio::test]
async fn the_inspector_socket_is_held_to_the_limits_of_any_client() {
    let server = TestServer::start_with(|config| {
        config.inspector.enabled = true;
        config.limits.max_connections = 1;
        config.limits.max_events_per_second = 1;
    })
    .await;
    let (mut watcher, join_ref, _) = inspector(&server).await;
    // The connection cap counts it like any socket.
    let (status, body) = server
        .refused(server.ws_url(Some("1.0.0"), Some(&service_key())))
        .await;
    assert_eq!(status, 429);
    assert_eq!(body["error"], "Too many connected users");
    // Its requests count towards the events limit.
    let mut limited = None;
    for _ in 0..200 {
        let (status, response) = watcher
            .push(&join_ref, INSPECTOR, "channels", json!({}))
            .await;
        if status == "error" {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the events limit trips");
    assert!(
        reason(&limited).starts_with("ChannelRateLimitReached:"),
        "{limited}"
    );
    // Leaving stops it: a request afterwards is for a topic it is not in.
    let (status, _) = watcher
        .push(&join_ref, INSPECTOR, "phx_leave", json!({}))
        .await;
    assert_eq!(status, "ok");
    watcher.event(INSPECTOR, "phx_close").await;
    let (status, response) = watcher
        .push(&join_ref, INSPECTOR, "channels", json!({}))
        .await;
    assert_eq!(status, "error");
    assert_eq!(response["reason"], "unmatched topic");
}

/// On paused time, with the node's wall clock following tokio's: the inspector's channel
/// is shut down when the token it joined with expires, as any channel is.
#[tokio::test(start_paused = true)]
async fn the_inspector_channel_closes_when_its_token_expires() {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use crier_server::auth::unix_now;
    use crier_server::clock::{Clock, TokioClock};
    use crier_server::{Config, Node};

    let start = UNIX_EPOCH + Duration::from_secs(unix_now() as u64);
    let clock = TokioClock::starting_at(start);
    let mut config = Config::new(SECRET);
    config.inspector.enabled = true;
    let node = Node::builder(config)
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let server = MemoryServer::new(node);
    let short = token(json!({"role": "service_role", "exp": clock.unix_now() + 2}));
    let mut client = server.connect(Vsn::V2, &service_key()).await;
    let joined_at = tokio::time::Instant::now();
    let (join_ref, status, _) = client.join(INSPECTOR, json!({"access_token": short})).await;
    assert_eq!(status, "ok");
    let system = client.event(INSPECTOR, "system").await;
    assert_eq!(
        tokio::time::Instant::now() - joined_at,
        Duration::from_secs(2)
    );
    let body = json_payload(&system);
    assert_eq!(body["status"], "error");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Token has expired "),
        "{body}"
    );
    let close = client.event(INSPECTOR, "phx_close").await;
    assert_eq!(close.join_ref.as_deref(), Some(join_ref.as_str()));
    let (status, response) = client
        .push(&join_ref, INSPECTOR, "channels", json!({}))
        .await;
    assert_eq!(status, "error");
    assert_eq!(response["reason"], "unmatched topic");
}

/// Against a real PostgreSQL: the overview says the slot streams, and after a commit
/// how far behind capture is (bytes of WAL, seconds from commit to delivery).
#[tokio::test]
async fn the_overview_says_where_postgres_changes_capture_stands() {
    use std::time::Duration;

    use crier_server::PostgresChangesConfig;
    use crier_testkit::TestPostgres;

    let pg = TestPostgres::start().expect("postgres");
    pg.psql(
        "create table t (id int primary key); create publication supabase_realtime for table t;",
    )
    .unwrap();
    let mut changes = PostgresChangesConfig::new(pg.url());
    changes.slot = "crier_inspected".into();
    let server = TestServer::start_with(|config| {
        config.inspector.enabled = true;
        config.postgres_changes = Some(changes);
    })
    .await;
    let (watcher, _, _) = inspector(&server).await;
    let mut watcher = watcher.with_guard(Duration::from_secs(30));
    let streaming = watcher
        .until(|m| {
            m.event == "overview" && json_payload(m)["postgres_changes"]["state"] == "streaming"
        })
        .await;
    let capture = &json_payload(&streaming)["postgres_changes"];
    assert_eq!(capture["slot"], "crier_inspected");
    assert_eq!(capture["reconnects"], 0);

    pg.psql("insert into t values (1), (2)").unwrap();
    let caught_up = watcher
        .until(|m| m.event == "overview" && json_payload(m)["postgres_changes"]["captured"] == 2)
        .await;
    let capture = &json_payload(&caught_up)["postgres_changes"];
    let lag_seconds = capture["lag_seconds"].as_f64().expect("a delivered commit");
    assert!((0.0..30.0).contains(&lag_seconds), "{capture}");
    assert!(capture["lag_bytes"].is_u64(), "{capture}");
}
