//! Broadcasts from the database end to end: `realtime.send`, `realtime.send_binary` and
//! `realtime.broadcast_changes` run in a real PostgreSQL, the node captures the rows from
//! its persistent slot, and raw 1.0.0 and 2.0.0 clients receive them on private and
//! public channels with the frames Supabase's clients read.

use crier_server::protocol::serializer::{self, FrameRef};
use crier_server::protocol::{Message, Payload, PayloadEncoding, Vsn};
use crier_server::{Config, PostgresChangesConfig};
use crier_testkit::TestPostgres;
use crier_testkit::prelude::{Client, Received, TestServer, json_payload, token, without_position};
use serde_json::{Value, json};

const SETUP_SQL: &str = "
    create role anon nologin;
    create role authenticated nologin;
    create role service_role nologin bypassrls;
";

/// Authenticated users read the broadcasts of `room-*` and only the presence of `lobby-*`.
const POLICIES: &str = "
    create policy rooms_read on realtime.messages for select to authenticated
        using (realtime.topic() like 'room-%');
    create policy lobby_presence on realtime.messages for select to authenticated
        using (realtime.topic() like 'lobby-%' and extension = 'presence');
";

struct Setup {
    pg: TestPostgres,
    server: TestServer,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(adjust: impl FnOnce(&mut Config)) -> Setup {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql(SETUP_SQL).unwrap();
    crier_server::authz::prepare_database(&pg.url())
        .await
        .unwrap();
    pg.psql(POLICIES).unwrap();
    let server = start_node(&pg, adjust).await;
    Setup { pg, server }
}

async fn start_node(pg: &TestPostgres, adjust: impl FnOnce(&mut Config)) -> TestServer {
    let url = pg.url();
    TestServer::start_with(|config: &mut Config| {
        config.authorization.database_url = Some(url.clone());
        let mut changes = PostgresChangesConfig::new(url);
        changes.resume_grace = std::time::Duration::ZERO;
        config.postgres_changes = Some(changes);
        adjust(config);
    })
    .await
}

fn user() -> String {
    token(json!({"role": "authenticated", "sub": "u1"}))
}

async fn connect(server: &TestServer, vsn: Vsn) -> Client {
    server.connect_with_token(vsn, &user()).await
}

/// Joins `topic` and waits until database broadcasts are live for it
/// (`broadcast.replication_ready`).
async fn join_live(client: &mut Client, topic: &str, private: bool) {
    let config = json!({"config": {"private": private,
                                   "broadcast": {"replication_ready": true}}});
    let (_, status, response) = client.join(topic, config).await;
    assert_eq!(status, "ok", "{response}");
    let ready = client.event(topic, "system").await;
    assert_eq!(
        json_payload(&ready),
        &json!({"extension": "system", "status": "ok",
                "message": "Replication connection established"})
    );
}

/// The next broadcast to `topic`, as text (JSON) or as a kind-4 frame.
async fn next_broadcast(client: &mut Client, topic: &str) -> Message {
    loop {
        let message = match client.recv().await {
            Received::Message(message) => message,
            Received::Binary(bytes) => {
                serializer::decode_from_server(client.vsn, FrameRef::Binary(&bytes))
                    .expect("a decodable binary frame")
            }
            Received::Closed(frame) => panic!("closed: {frame:?}"),
        };
        if message.topic == topic && message.event == "broadcast" {
            return message;
        }
    }
}

/// Sends a heartbeat and returns the broadcasts that arrived before its reply.
async fn broadcasts_until_heartbeat(client: &mut Client) -> Vec<Value> {
    let msg_ref = client.next_ref();
    client
        .send(None, Some(&msg_ref), "phoenix", "heartbeat", json!({}))
        .await;
    let mut broadcasts = Vec::new();
    loop {
        let message = client.message().await;
        if message.topic == "phoenix" && message.msg_ref.as_deref() == Some(msg_ref.as_str()) {
            return broadcasts;
        }
        if message.event == "broadcast" {
            broadcasts.push(json_payload(&message).clone());
        }
    }
}

#[tokio::test]
async fn realtime_send_reaches_v1_and_v2_subscribers_of_its_private_or_public_topic() {
    let setup = setup().await;
    let mut v2 = connect(&setup.server, Vsn::V2).await;
    let mut v1 = connect(&setup.server, Vsn::V1).await;
    let mut public = connect(&setup.server, Vsn::V2).await;
    join_live(&mut v2, "realtime:room-1", true).await;
    join_live(&mut v1, "realtime:room-1", true).await;
    join_live(&mut public, "realtime:room-1", false).await;

    setup
        .pg
        .psql("select realtime.send('{\"text\": \"hi\"}', 'shout', 'room-1')")
        .unwrap();
    for client in [&mut v2, &mut v1] {
        let message = next_broadcast(client, "realtime:room-1").await;
        let body = json_payload(&message);
        assert_eq!(body["type"], "broadcast", "{body}");
        assert_eq!(body["event"], "shout", "{body}");
        assert_eq!(body["payload"]["text"], "hi", "{body}");
        let id = body["meta"]["id"].as_str().expect("meta.id");
        assert_eq!(body["payload"]["id"], id, "send adds the row's id: {body}");
        assert_eq!(
            without_position(body)["meta"],
            json!({"id": id}),
            "meta: the id and the stream position"
        );
    }

    // A public one reaches the public channel of that name only.
    setup
        .pg
        .psql("select realtime.send('{\"n\": 2}', 'shout', 'room-1', false)")
        .unwrap();
    let message = next_broadcast(&mut public, "realtime:room-1").await;
    assert_eq!(json_payload(&message)["payload"]["n"], 2);
    for client in [&mut v2, &mut v1] {
        assert!(broadcasts_until_heartbeat(client).await.is_empty());
    }
    assert!(
        broadcasts_until_heartbeat(&mut public).await.is_empty(),
        "the private one never reached the public channel"
    );
}

#[tokio::test]
async fn send_binary_reaches_v2_as_a_kind_4_frame_with_the_id_in_its_metadata() {
    let setup = setup().await;
    let mut v2 = connect(&setup.server, Vsn::V2).await;
    let mut v1 = connect(&setup.server, Vsn::V1).await;
    join_live(&mut v2, "realtime:room-1", true).await;
    join_live(&mut v1, "realtime:room-1", true).await;

    setup
        .pg
        .psql("select realtime.send_binary('\\x00ff7f'::bytea, 'blob', 'room-1')")
        .unwrap();
    let message = next_broadcast(&mut v2, "realtime:room-1").await;
    let Payload::UserBroadcast(broadcast) = &message.payload else {
        panic!("a kind-4 frame, got {message:?}");
    };
    assert_eq!(broadcast.event, "blob");
    assert_eq!(broadcast.encoding, PayloadEncoding::Binary);
    assert_eq!(&broadcast.payload[..], &[0x00, 0xff, 0x7f]);
    let metadata: Value = serde_json::from_slice(&broadcast.metadata).unwrap();
    let id = metadata["id"].as_str().expect("metadata.id");
    let stored = setup
        .pg
        .psql("select id from realtime.messages where event = 'blob'")
        .unwrap();
    assert!(stored.contains(id), "{stored} holds {id}");

    // 1.0.0 cannot carry binary payloads: nothing reaches it.
    assert!(broadcasts_until_heartbeat(&mut v1).await.is_empty());
}

#[tokio::test]
async fn broadcast_changes_from_a_trigger_sends_the_row_as_realtime_js_types_it() {
    let setup = setup().await;
    setup
        .pg
        .psql(
            "create table notes (id int primary key, body text);
             create function notes_changed() returns trigger language plpgsql as $$
             begin
                 perform realtime.broadcast_changes('room-notes', TG_OP, TG_OP, TG_TABLE_NAME,
                                                    TG_TABLE_SCHEMA, NEW, OLD);
                 return null;
             end $$;
             create trigger notes_changed after insert or update or delete on notes
                 for each row execute function notes_changed();",
        )
        .unwrap();
    let mut client = connect(&setup.server, Vsn::V2).await;
    join_live(&mut client, "realtime:room-notes", true).await;

    setup
        .pg
        .psql("insert into notes values (1, 'a'); update notes set body = 'b' where id = 1")
        .unwrap();
    let insert = next_broadcast(&mut client, "realtime:room-notes").await;
    let body = json_payload(&insert);
    assert_eq!(body["event"], "INSERT", "{body}");
    let payload = &body["payload"];
    assert_eq!(payload["operation"], "INSERT", "{body}");
    assert_eq!(payload["schema"], "public");
    assert_eq!(payload["table"], "notes");
    assert_eq!(payload["record"], json!({"id": 1, "body": "a"}));
    assert_eq!(payload["old_record"], Value::Null);
    assert_eq!(payload["id"], body["meta"]["id"], "{body}");

    let update = next_broadcast(&mut client, "realtime:room-notes").await;
    let payload = &json_payload(&update)["payload"];
    assert_eq!(payload["operation"], "UPDATE");
    assert_eq!(payload["record"], json!({"id": 1, "body": "b"}));
    assert_eq!(payload["old_record"], json!({"id": 1, "body": "a"}));
}

#[tokio::test]
async fn only_subscribers_with_broadcast_read_receive_and_rows_keep_commit_order() {
    let setup = setup().await;
    let mut reader = connect(&setup.server, Vsn::V2).await;
    join_live(&mut reader, "realtime:room-1", true).await;
    // Presence read only: the join is allowed with presence, broadcasts are not for it.
    let mut presence_only = connect(&setup.server, Vsn::V2).await;
    let (_, status, response) = presence_only
        .join(
            "realtime:lobby-1",
            json!({"config": {"private": true, "presence": {"enabled": true}}}),
        )
        .await;
    assert_eq!(status, "ok", "{response}");

    setup
        .pg
        .psql(
            "select realtime.send('{\"n\": 1}', 'e', 'lobby-1');
             begin;
             select realtime.send(jsonb_build_object('n', g), 'e', 'room-1') from generate_series(1, 50) g;
             commit;",
        )
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let message = next_broadcast(&mut reader, "realtime:room-1").await;
        seen.push(json_payload(&message)["payload"]["n"].as_i64().unwrap());
    }
    assert_eq!(seen, (1..=50).collect::<Vec<_>>(), "in commit order");
    assert!(
        broadcasts_until_heartbeat(&mut presence_only)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_row_over_the_payload_limit_is_skipped_and_the_stream_goes_on() {
    let setup = setup_with(|config| config.limits.max_payload_size_kb = 1).await;
    let mut client = connect(&setup.server, Vsn::V2).await;
    join_live(&mut client, "realtime:room-1", true).await;
    setup
        .pg
        .psql(
            "select realtime.send(jsonb_build_object('big', repeat('x', 2000)), 'e', 'room-1');
             select realtime.send('{\"small\": true}', 'e', 'room-1');",
        )
        .unwrap();
    let message = next_broadcast(&mut client, "realtime:room-1").await;
    assert_eq!(json_payload(&message)["payload"]["small"], true);
    let metrics = setup.server.node.metrics_text();
    assert!(
        metrics.contains("crier_database_broadcasts_skipped_total 1"),
        "{metrics}"
    );
    // Nobody joined this one: it is captured, published to no one, and nothing breaks.
    setup
        .pg
        .psql("select realtime.send('{}', 'e', 'nobody-here')")
        .unwrap();
    setup
        .pg
        .psql("select realtime.send('{\"after\": 1}', 'e', 'room-1')")
        .unwrap();
    let message = next_broadcast(&mut client, "realtime:room-1").await;
    assert_eq!(json_payload(&message)["payload"]["after"], 1);
}

#[tokio::test]
async fn rows_committed_while_no_node_streams_are_delivered_and_a_replayed_one_only_once() {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql(SETUP_SQL).unwrap();
    crier_server::authz::prepare_database(&pg.url())
        .await
        .unwrap();
    pg.psql(POLICIES).unwrap();
    // The first node makes the slot, then goes away.
    let first = start_node(&pg, |_| {}).await;
    let mut client = connect(&first, Vsn::V2).await;
    join_live(&mut client, "realtime:room-1", true).await;
    assert!(first.node.shutdown().await);
    drop(client);

    pg.psql("select realtime.send('{\"n\": 1}', 'e', 'room-1')")
        .unwrap();
    // The next one finds the slot with that row in it, and waits out a grace period
    // before streaming: a subscriber that joins meanwhile with a replay gets the row
    // replayed, and its live copy is then not delivered again.
    let second = start_node(&pg, |config| {
        config.postgres_changes.as_mut().unwrap().resume_grace = std::time::Duration::from_secs(2);
    })
    .await;
    let mut client = connect(&second, Vsn::V2).await;
    let replay = json!({"config": {"private": true,
                                   "broadcast": {"replay": {"since": 0},
                                                 "replication_ready": true}}});
    let (_, status, response) = client.join("realtime:room-1", replay).await;
    assert_eq!(status, "ok", "{response}");
    let replayed = next_broadcast(&mut client, "realtime:room-1").await;
    let body = json_payload(&replayed).clone();
    assert_eq!(body["meta"]["replayed"], true, "{body}");
    assert_eq!(body["payload"]["n"], 1);
    client.event("realtime:room-1", "system").await;

    pg.psql("select realtime.send('{\"n\": 2}', 'e', 'room-1')")
        .unwrap();
    // Row 1 committed first, so its live copy would come before row 2.
    let next = next_broadcast(&mut client, "realtime:room-1").await;
    assert_eq!(
        json_payload(&next)["payload"]["n"],
        2,
        "the replayed row was not delivered again"
    );
    assert_eq!(json_payload(&next)["meta"].get("replayed"), None);
}

#[tokio::test]
async fn replication_ready_without_a_database_shuts_the_channel_down() {
    let server = TestServer::start().await;
    let mut client = server.connect_with_token(Vsn::V2, &user()).await;
    let config = json!({"config": {"broadcast": {"replication_ready": true}}});
    let (_, status, _) = client.join("realtime:room-1", config).await;
    assert_eq!(status, "ok");
    let system = client.event("realtime:room-1", "system").await;
    let body = json_payload(&system);
    assert_eq!(body["extension"], "system", "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(
        body["message"], "Replication connection was not established in time",
        "{body}"
    );
    client.event("realtime:room-1", "phx_close").await;
}
