//! Postgres changes end to end against a real PostgreSQL: a node captures from its own
//! private database, and raw protocol clients subscribe, receive and are refused exactly
//! as Supabase's clients expect.

use std::collections::BTreeSet;
use std::time::Duration;

use crier_server::protocol::serializer::{self, FrameRef};
use crier_server::protocol::{Message, Vsn};
use crier_server::{Config, PostgresChangesConfig};
use crier_testkit::TestPostgres;
use crier_testkit::prelude::{Client, TestServer, json_payload, token};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The failure guard for waits on the database path (a restart takes seconds).
const DB_WAIT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
    create role anon nologin;
    create role authenticated nologin;
    create table todos (
        id bigint primary key,
        title text,
        done boolean default false,
        tags text[],
        meta jsonb,
        due timestamptz,
        owner uuid,
        price numeric
    );
    create table notes (id int primary key, body text);
    create table events (id bigserial primary key, owner text, body text);
    create table keyless (v int);
    alter table events enable row level security;
    create policy own_events on events for select to authenticated
        using (owner = current_setting('request.jwt.claims', true)::jsonb->>'sub');
    grant select on all tables in schema public to anon, authenticated;
    create publication supabase_realtime;
    alter publication supabase_realtime add table todos, notes, events, keyless;
";

struct Setup {
    pg: TestPostgres,
    server: TestServer,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(adjust: impl FnOnce(&mut PostgresChangesConfig)) -> Setup {
    setup_on(database(), adjust).await
}

/// A private database with [`SCHEMA`].
fn database() -> TestPostgres {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let pg = TestPostgres::start().expect("postgres");
    pg.psql(SCHEMA).unwrap();
    pg
}

/// A node capturing from `pg`.
async fn setup_on(pg: TestPostgres, adjust: impl FnOnce(&mut PostgresChangesConfig)) -> Setup {
    let mut changes = PostgresChangesConfig::new(pg.url());
    changes.slot = "crier_test".into();
    adjust(&mut changes);
    let server = TestServer::start_with(|config: &mut Config| {
        config.postgres_changes = Some(changes);
    })
    .await;
    Setup { pg, server }
}

async fn client(setup: &Setup, claims: Value) -> Inbox {
    let client = setup
        .server
        .connect_with_token(Vsn::V2, &token(claims))
        .await;
    Inbox {
        client,
        kept: Vec::new(),
    }
}

async fn anon(setup: &Setup) -> Inbox {
    client(setup, json!({"role": "anon"})).await
}

/// A client whose messages are kept per topic until a test asks for them, so waiting on
/// one channel never throws away another's.
struct Inbox {
    client: Client,
    kept: Vec<Message>,
}

impl std::ops::Deref for Inbox {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Inbox {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Inbox {
    /// The next `event` on `topic`, keeping everything else that arrives meanwhile.
    async fn next(&mut self, topic: &str, event: &str) -> Message {
        if let Some(at) = self
            .kept
            .iter()
            .position(|m| m.topic == topic && m.event == event)
        {
            return self.kept.remove(at);
        }
        loop {
            let frame = tokio::time::timeout(DB_WAIT, self.client.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no {event} on {topic} in time"))
                .expect("the socket is open")
                .expect("a frame");
            let WsMessage::Text(text) = frame else {
                continue;
            };
            let message = serializer::decode_from_server(self.client.vsn, FrameRef::Text(&text))
                .expect("decodable");
            if message.topic == topic && message.event == event {
                return message;
            }
            self.kept.push(message);
        }
    }
}

impl Inbox {
    /// Asserts that no `postgres_changes` is waiting, kept or on its way: everything the
    /// node queued before a heartbeat's reply has arrived with it.
    async fn assert_no_more_changes(&mut self, context: &str) {
        let rest = self.client.drain().await;
        let changes: Vec<&Message> = self
            .kept
            .iter()
            .chain(&rest)
            .filter(|m| m.event == "postgres_changes")
            .collect();
        assert!(changes.is_empty(), "{context}: unexpected {changes:?}");
    }
}

/// Waits for the next `system` message of `topic`.
async fn system(client: &mut Inbox, topic: &str) -> Value {
    json_payload(&client.next(topic, "system").await).clone()
}

/// Joins with `bindings`, checks the echo, and waits until the subscription is live.
async fn subscribe(client: &mut Inbox, topic: &str, bindings: Value) -> String {
    let join_ref = client
        .join_ok(topic, json!({"postgres_changes": bindings}))
        .await;
    let status = system(client, topic).await;
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(status["message"], "Subscribed to PostgreSQL");
    assert_eq!(status["extension"], "postgres_changes");
    join_ref
}

/// The next `postgres_changes` payload on `topic`.
async fn change(client: &mut Inbox, topic: &str) -> Value {
    json_payload(&client.next(topic, "postgres_changes").await).clone()
}

/// Waits until the node's metrics say it has read `count` changes from the slot.
async fn captured_at_least(setup: &Setup, count: u64) {
    let url = setup.server.http("/metrics");
    tokio::time::timeout(DB_WAIT, async {
        loop {
            let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
            let captured: u64 = text
                .lines()
                .find_map(|line| line.strip_prefix("crier_postgres_changes_captured_total "))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if captured >= count {
                return;
            }
            // Capture is another task's work; ask again once it has had a chance to run.
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the change was captured in time");
}

/// Collects changes on `topic` until one whose record has `id == witness`; returns the
/// ids of the records before it. A witness row every subscriber matches is how a test
/// shows that other rows did *not* arrive.
async fn ids_until(client: &mut Inbox, topic: &str, witness: i64) -> BTreeSet<i64> {
    let mut seen = BTreeSet::new();
    loop {
        let payload = change(client, topic).await;
        let data = &payload["data"];
        let record = if data["type"] == "DELETE" {
            &data["old_record"]
        } else {
            &data["record"]
        };
        let id = record["id"].as_i64().expect("an id");
        if id == witness {
            return seen;
        }
        seen.insert(id);
    }
}

fn binding_id(join_reply_binding: &Value) -> i64 {
    join_reply_binding["id"].as_i64().unwrap()
}

#[tokio::test]
async fn inserts_updates_and_deletes_arrive_as_supabase_sends_them() {
    let setup = setup().await;
    let mut c = anon(&setup).await;
    let topic = "realtime:todos";
    let (join_ref, status, response) = c
        .join(
            topic,
            json!({"config": {"postgres_changes": [{"event": "*", "schema": "public", "table": "todos"}]}}),
        )
        .await;
    assert_eq!(status, "ok");
    let id = binding_id(&response["postgres_changes"][0]);
    assert_eq!(
        system(&mut c, topic).await,
        json!({"extension": "postgres_changes", "status": "ok", "message": "Subscribed to PostgreSQL", "channel": "todos"})
    );
    let _ = join_ref;

    setup
        .pg
        .psql(
            "insert into todos values (1, 'write tests', false, '{a,\"b c\"}', '{\"k\": [1, 2.50]}',
                                       '2026-01-02 03:04:05.678+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 10.50);
             update todos set done = true where id = 1;
             delete from todos where id = 1;",
        )
        .unwrap();

    let insert = change(&mut c, topic).await;
    assert_eq!(insert["ids"], json!([id]));
    let data = &insert["data"];
    let commit = data["commit_timestamp"].as_str().unwrap();
    assert_eq!(commit.len(), "2026-01-02T03:04:05.678Z".len(), "{commit}");
    assert!(
        commit.ends_with('Z') && commit.as_bytes()[10] == b'T',
        "{commit}"
    );
    let expected_record = json!({"id": 1, "title": "write tests", "done": false, "tags": ["a", "b c"],
        "meta": {"k": [1, 2.50]}, "due": "2026-01-02T03:04:05.678+00:00",
        "owner": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "price": 10.50});
    assert_eq!(
        *data,
        json!({
            "schema": "public", "table": "todos", "commit_timestamp": commit, "type": "INSERT",
            "columns": [
                {"name": "id", "type": "int8"}, {"name": "title", "type": "text"},
                {"name": "done", "type": "bool"}, {"name": "tags", "type": "_text"},
                {"name": "meta", "type": "jsonb"}, {"name": "due", "type": "timestamptz"},
                {"name": "owner", "type": "uuid"}, {"name": "price", "type": "numeric"}
            ],
            "record": expected_record,
            "errors": null
        })
    );

    let update = change(&mut c, topic).await;
    let data = &update["data"];
    assert_eq!(data["type"], "UPDATE");
    assert_eq!(data["record"]["done"], true);
    assert_eq!(
        data["old_record"],
        json!({"id": 1}),
        "REPLICA IDENTITY DEFAULT: the key only"
    );

    let delete = change(&mut c, topic).await;
    let data = &delete["data"];
    assert_eq!(data["type"], "DELETE");
    assert_eq!(data["old_record"], json!({"id": 1}));
    assert!(data.get("record").is_none(), "{data}");
}

#[tokio::test]
async fn subscribed_waits_for_the_slot_so_no_later_commit_is_lost() {
    let pg = database();
    // A transaction that holds an xid holds up the slot's creation: a logical slot is
    // ready only once every transaction running when its creation began has ended, and a
    // transaction that commits before that is never decoded from it.
    let (blocker, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    blocker
        .batch_execute("begin; insert into notes values (0, 'blocker')")
        .await
        .unwrap();
    let setup = setup_on(pg, |_| {}).await;
    let mut c = anon(&setup).await;
    let topic = "realtime:early";
    c.join_ok(
        topic,
        json!({"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "todos"}]}),
    )
    .await;
    // The node is creating the slot now. A node that confirmed the subscription anyway
    // would do so within this window (its checks take milliseconds), and the row written
    // on that confirmation would be lost. The window is how long a wrong node gets to
    // show itself, not a synchronisation: the right one stays silent until the commit.
    let early = tokio::time::timeout(Duration::from_secs(1), system(&mut c, topic)).await;
    if let Ok(status) = &early {
        assert_eq!(status["status"], "ok", "{status}");
        setup.pg.psql("insert into todos (id) values (1)").unwrap();
    }
    blocker.batch_execute("commit").await.unwrap();
    if early.is_err() {
        let status = system(&mut c, topic).await;
        assert_eq!(status["message"], "Subscribed to PostgreSQL", "{status}");
        setup.pg.psql("insert into todos (id) values (1)").unwrap();
    }
    setup
        .pg
        .psql("insert into todos (id) values (100)")
        .unwrap();
    assert_eq!(
        ids_until(&mut c, topic, 100).await,
        BTreeSet::from([1]),
        "the row written once the subscription was confirmed arrives"
    );
    assert!(
        early.is_err(),
        "the subscription was confirmed before the slot existed"
    );
}

#[tokio::test]
async fn replica_identity_full_sends_the_whole_old_row() {
    let setup = setup().await;
    setup
        .pg
        .psql("alter table notes replica identity full; insert into notes values (1, 'before')")
        .unwrap();
    let mut c = anon(&setup).await;
    let topic = "realtime:notes";
    subscribe(
        &mut c,
        topic,
        json!([{"event": "*", "schema": "public", "table": "notes"}]),
    )
    .await;
    setup
        .pg
        .psql("update notes set body = 'after' where id = 1; delete from notes where id = 1")
        .unwrap();
    let update = change(&mut c, topic).await;
    assert_eq!(update["data"]["record"], json!({"id": 1, "body": "after"}));
    assert_eq!(
        update["data"]["old_record"],
        json!({"id": 1, "body": "before"})
    );
    let delete = change(&mut c, topic).await;
    assert_eq!(
        delete["data"]["old_record"],
        json!({"id": 1, "body": "after"})
    );
}

#[tokio::test]
async fn each_filter_operator_selects_its_rows() {
    let setup = setup().await;
    let cases: &[(&str, &[i64])] = &[
        ("id=eq.2", &[2]),
        ("id=neq.2", &[1, 3, 4, 5]),
        ("id=lt.3", &[1, 2]),
        ("id=lte.3", &[1, 2, 3]),
        ("id=gt.3", &[4, 5]),
        ("id=gte.3", &[3, 4, 5]),
        ("id=in.(1,4,5)", &[1, 4, 5]),
        ("title=eq.two", &[2]),
        ("title=in.(one,\"three\")", &[1, 3]),
        ("title=like.t%", &[2, 3]),
        ("title=ilike.F%", &[4, 5]),
        ("price=gt.2.5", &[3, 4, 5]),
        ("done=eq.true", &[2, 4]),
        ("title=is.null", &[]),
        ("id=not.in.(1,2)", &[3, 4, 5]),
        ("id=gt.1,id=lt.4", &[2, 3]),
    ];
    let mut c = anon(&setup).await;
    let witness_binding =
        json!({"event": "INSERT", "schema": "public", "table": "todos", "filter": "id=eq.100"});
    for (i, (filter, _)) in cases.iter().enumerate() {
        let topic = format!("realtime:filter{i}");
        subscribe(
            &mut c,
            &topic,
            json!([{"event": "INSERT", "schema": "public", "table": "todos", "filter": filter}, witness_binding]),
        )
        .await;
    }
    setup
        .pg
        .psql(
            "insert into todos (id, title, done, price) values
                (1, 'one', false, 1), (2, 'two', true, 2.5), (3, 'three', false, 3),
                (4, 'four', true, 4), (5, 'five', false, 5), (100, 'witness', false, 0)",
        )
        .unwrap();
    for (i, (filter, expected)) in cases.iter().enumerate() {
        let topic = format!("realtime:filter{i}");
        let seen = ids_until(&mut c, &topic, 100).await;
        assert_eq!(
            seen,
            expected.iter().copied().collect::<BTreeSet<_>>(),
            "filter {filter}"
        );
    }
}

#[tokio::test]
async fn wildcard_tables_and_event_filters() {
    let setup = setup().await;
    let mut c = anon(&setup).await;
    subscribe(
        &mut c,
        "realtime:all",
        json!([{"event": "*", "schema": "public", "table": "*"}]),
    )
    .await;
    subscribe(
        &mut c,
        "realtime:inserts",
        json!([{"event": "INSERT", "schema": "public"}]),
    )
    .await;
    subscribe(
        &mut c,
        "realtime:deletes",
        json!([{"event": "delete", "schema": "public", "table": "notes"}]),
    )
    .await;
    setup
        .pg
        .psql(
            "insert into todos (id) values (1); insert into notes values (2, 'x');
             update notes set body = 'y' where id = 2; delete from notes where id = 2;
             delete from todos where id = 1",
        )
        .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let payload = change(&mut c, "realtime:all").await;
        kinds.push(format!(
            "{} {}",
            payload["data"]["table"].as_str().unwrap(),
            payload["data"]["type"].as_str().unwrap()
        ));
    }
    assert_eq!(
        kinds,
        [
            "todos INSERT",
            "notes INSERT",
            "notes UPDATE",
            "notes DELETE",
            "todos DELETE"
        ]
    );
    for table in ["todos", "notes"] {
        let payload = change(&mut c, "realtime:inserts").await;
        assert_eq!(payload["data"]["type"], "INSERT");
        assert_eq!(payload["data"]["table"], table);
    }
    let payload = change(&mut c, "realtime:deletes").await;
    assert_eq!(payload["data"]["type"], "DELETE");
    assert_eq!(payload["data"]["old_record"], json!({"id": 2}));
    // Nothing else was queued for the filtered channels.
    c.assert_no_more_changes("the filtered channels").await;
}

#[tokio::test]
async fn row_level_security_shows_each_user_only_its_rows() {
    let setup = setup().await;
    let mut alice = client(&setup, json!({"role": "authenticated", "sub": "alice"})).await;
    let mut bob = client(&setup, json!({"role": "authenticated", "sub": "bob"})).await;
    let binding = json!([{"event": "*", "schema": "public", "table": "events"}]);
    subscribe(&mut alice, "realtime:events", binding.clone()).await;
    subscribe(&mut bob, "realtime:events", binding).await;
    setup
        .pg
        .psql(
            "insert into events (id, owner, body) values (1, 'alice', 'a1'), (2, 'bob', 'b1');
             insert into events (id, owner, body) values (3, 'alice', 'a2');
             update events set body = 'b2' where id = 2;
             insert into events (id, owner, body) values (100, 'alice', 'end'), (101, 'bob', 'end');",
        )
        .unwrap();
    let mut alice_saw = Vec::new();
    loop {
        let payload = change(&mut alice, "realtime:events").await;
        let record = &payload["data"]["record"];
        assert_eq!(record["owner"], "alice", "alice saw {payload}");
        if record["id"] == 100 {
            break;
        }
        alice_saw.push(record["id"].as_i64().unwrap());
    }
    assert_eq!(alice_saw, [1, 3]);
    let mut bob_saw = Vec::new();
    loop {
        let payload = change(&mut bob, "realtime:events").await;
        let data = &payload["data"];
        assert_eq!(data["record"]["owner"], "bob", "bob saw {payload}");
        if data["record"]["id"] == 101 {
            break;
        }
        bob_saw.push(format!(
            "{} {}",
            data["type"].as_str().unwrap(),
            data["record"]["body"]
        ));
    }
    assert_eq!(bob_saw, ["INSERT \"b1\"", "UPDATE \"b2\""]);

    // Deletes are not checked (the row is gone); with RLS on they carry the key only.
    setup.pg.psql("delete from events where id = 3").unwrap();
    let delete = change(&mut bob, "realtime:events").await;
    assert_eq!(delete["data"]["old_record"], json!({"id": 3}));
}

// Multi-threaded, so that the node keeps running while the test waits on `psql`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_waits_for_the_transaction_to_end() {
    let setup = setup().await;
    let mut alice = client(&setup, json!({"role": "authenticated", "sub": "alice"})).await;
    subscribe(
        &mut alice,
        "realtime:events",
        json!([{"event": "INSERT", "schema": "public", "table": "events"}]),
    )
    .await;
    // Synchronous replication to a standby that never comes holds a commit between its
    // WAL record (which decoding streams at once) and its end (when other sessions see
    // its rows): the moment in which every commit is, briefly, made long. Only the
    // writer below asks for it.
    for sql in [
        "alter database postgres set synchronous_commit = local",
        "alter system set synchronous_standby_names = 'nobody'",
        "select pg_reload_conf()",
    ] {
        setup.pg.psql(sql).unwrap();
    }
    let (writer, connection) = tokio_postgres::connect(&setup.pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let standby = writer
        .query_one("show synchronous_standby_names", &[])
        .await
        .unwrap();
    assert_eq!(standby.get::<_, String>(0), "nobody", "the reload applies");
    let pid: i32 = writer
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let commit = tokio::spawn(async move {
        writer
            .batch_execute(
                "set synchronous_commit = on; insert into events (id, owner) values (1, 'alice')",
            )
            .await
    });
    // Once the node has captured the change, a node that checked it at once would not
    // find the row and drop it; the right one waits for the transaction's end.
    captured_at_least(&setup, 1).await;
    assert!(!commit.is_finished(), "the commit waits for the standby");
    // Cancelling the wait ends the transaction, committed. That takes a `psql` process,
    // many times longer than the node needs to check the row it has just captured.
    let pg = std::sync::Arc::new(setup.pg);
    let _server = setup.server;
    {
        let pg = std::sync::Arc::clone(&pg);
        tokio::task::spawn_blocking(move || {
            pg.psql(&format!("select pg_cancel_backend({pid})"))
                .unwrap()
        })
        .await
        .unwrap();
    }
    commit.await.unwrap().unwrap();
    pg.psql("insert into events (id, owner) values (100, 'alice')")
        .unwrap();
    assert_eq!(
        ids_until(&mut alice, "realtime:events", 100).await,
        BTreeSet::from([1])
    );
}

#[tokio::test]
async fn column_privileges_limit_what_a_role_sees() {
    let setup = setup().await;
    setup
        .pg
        .psql("revoke select on notes from anon; grant select (id) on notes to anon")
        .unwrap();
    let mut c = anon(&setup).await;
    subscribe(
        &mut c,
        "realtime:notes",
        json!([{"event": "INSERT", "schema": "public", "table": "notes"}]),
    )
    .await;
    setup
        .pg
        .psql("insert into notes values (1, 'secret')")
        .unwrap();
    let payload = change(&mut c, "realtime:notes").await;
    assert_eq!(payload["data"]["record"], json!({"id": 1}));
    assert_eq!(
        payload["data"]["columns"],
        json!([{"name": "id", "type": "int4"}])
    );
}

#[tokio::test]
async fn a_select_limits_the_records_to_its_columns_and_the_key() {
    let setup = setup().await;
    setup
        .pg
        .psql("alter table todos replica identity full")
        .unwrap();
    let mut c = anon(&setup).await;
    let topic = "realtime:selected";
    subscribe(
        &mut c,
        topic,
        json!([{"event": "*", "schema": "public", "table": "todos", "select": ["title", "title"]}]),
    )
    .await;
    setup
        .pg
        .psql("insert into todos (id, title, done) values (1, 'a', true); update todos set title = 'b' where id = 1")
        .unwrap();
    let insert = change(&mut c, topic).await;
    assert_eq!(insert["data"]["record"], json!({"id": 1, "title": "a"}));
    assert_eq!(
        insert["data"]["columns"],
        json!([{"name": "id", "type": "int8"}, {"name": "title", "type": "text"}])
    );
    let update = change(&mut c, topic).await;
    assert_eq!(update["data"]["record"], json!({"id": 1, "title": "b"}));
    assert_eq!(update["data"]["old_record"], json!({"id": 1, "title": "a"}));

    // An unknown column, a select that is not a list, a select on a wildcard table.
    for (bindings, expected) in [
        (
            json!([{"event": "*", "schema": "public", "table": "todos", "select": ["nope"]}]),
            "Unable to subscribe to changes with given parameters. Exception: ERROR P0001 (raise_exception) invalid column for select nope",
        ),
        (
            json!([{"event": "*", "schema": "public", "table": "todos", "select": "title"}]),
            r#"Error parsing `select` params: expected a list of column name strings, e.g. select: ["col1", "col2"]"#,
        ),
        (
            json!([{"event": "*", "schema": "public", "table": "*", "select": ["id"]}]),
            "Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name.",
        ),
    ] {
        let topic = format!("realtime:bad-select-{}", expected.len());
        c.join_ok(&topic, json!({"postgres_changes": bindings}))
            .await;
        let error = system(&mut c, &topic).await;
        assert_eq!(error["status"], "error", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(expected),
            "{error} should say {expected}"
        );
    }
}

#[tokio::test]
async fn a_table_without_a_primary_key_reports_the_error_supabase_does() {
    let setup = setup().await;
    let mut c = anon(&setup).await;
    subscribe(
        &mut c,
        "realtime:keyless",
        json!([{"event": "INSERT", "schema": "public", "table": "keyless"}]),
    )
    .await;
    setup.pg.psql("insert into keyless values (7)").unwrap();
    let payload = change(&mut c, "realtime:keyless").await;
    assert_eq!(
        payload["data"]["errors"],
        json!(["Error 400: Bad Request, no primary key"])
    );
    assert!(
        payload["data"]
            .get("record")
            .is_none_or(|r| r.get("v").is_none())
    );
}

#[tokio::test]
async fn bad_subscriptions_get_system_errors_and_the_channel_stays_joined() {
    let setup = setup().await;
    let mut c = anon(&setup).await;

    let topic = "realtime:bad-filter";
    let join_ref = c
        .join_ok(
            topic,
            json!({"broadcast": {"ack": true},
                   "postgres_changes": [{"event": "*", "schema": "public", "table": "todos", "filter": "id=foo.1"}]}),
        )
        .await;
    let error = system(&mut c, topic).await;
    assert_eq!(error["status"], "error");
    assert_eq!(error["extension"], "postgres_changes");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("Error parsing `filter` params:"),
        "{error}"
    );
    let (status, _) = c
        .push(
            &join_ref,
            topic,
            "broadcast",
            json!({"type": "broadcast", "event": "e", "payload": {}}),
        )
        .await;
    assert_eq!(status, "ok", "the channel is still joined");

    let topic = "realtime:no-table";
    c.join_ok(
        topic,
        json!({"postgres_changes": [{"event": "*", "schema": "public", "table": "doesnotexist"}]}),
    )
    .await;
    assert_eq!(
        system(&mut c, topic).await["message"],
        "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: doesnotexist, filters: [], select: nil]"
    );

    let topic = "realtime:no-column";
    c.join_ok(
        topic,
        json!({"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "todos", "filter": "nope=eq.1"}]}),
    )
    .await;
    assert_eq!(
        system(&mut c, topic).await["message"],
        "Unable to subscribe to changes with given parameters. Exception: ERROR P0001 (raise_exception) invalid column for filter nope"
    );

    let mut ghost = client(&setup, json!({"role": "ghost"})).await;
    let topic = "realtime:ghost";
    ghost
        .join_ok(
            topic,
            json!({"postgres_changes": [{"event": "*", "schema": "public", "table": "todos"}]}),
        )
        .await;
    assert_eq!(
        system(&mut ghost, topic).await["message"],
        "Unable to subscribe to changes with given parameters. Exception: ERROR 22023 (invalid_parameter_value) role \"ghost\" does not exist"
    );

    // None of them receives changes; a good subscription on the same socket does.
    subscribe(
        &mut c,
        "realtime:good",
        json!([{"event": "INSERT", "schema": "public", "table": "todos"}]),
    )
    .await;
    setup.pg.psql("insert into todos (id) values (1)").unwrap();
    change(&mut c, "realtime:good").await;
    c.assert_no_more_changes("only the good channel receives changes")
        .await;
}

#[tokio::test]
async fn a_channel_that_leaves_stops_receiving() {
    let setup = setup().await;
    let mut c = anon(&setup).await;
    let binding = json!([{"event": "INSERT", "schema": "public", "table": "todos"}]);
    let left = subscribe(&mut c, "realtime:left", binding.clone()).await;
    subscribe(&mut c, "realtime:stays", binding).await;
    let msg_ref = c.next_ref();
    c.send(
        Some(&left),
        Some(&msg_ref),
        "realtime:left",
        "phx_leave",
        json!({}),
    )
    .await;
    c.reply(&msg_ref).await;
    setup.pg.psql("insert into todos (id) values (1)").unwrap();
    change(&mut c, "realtime:stays").await;
    c.assert_no_more_changes("a left channel").await;
}

// Multi-threaded, and the restarts run off the runtime: a fast shutdown waits for the
// walsender's client (this node) to confirm what it was sent, so the node must keep
// running while `pg_ctl` waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_committed_is_lost_across_a_postgres_restart() {
    let setup = setup().await;
    let mut c = anon(&setup).await;
    let topic = "realtime:restart";
    subscribe(
        &mut c,
        topic,
        json!([{"event": "INSERT", "schema": "public", "table": "notes"}]),
    )
    .await;
    let pg = std::sync::Arc::new(setup.pg);
    let writer = {
        let pg = std::sync::Arc::clone(&pg);
        tokio::task::spawn_blocking(move || {
            pg.psql("insert into notes select g, 'before' from generate_series(1, 200) g")
                .unwrap();
            pg.restart("fast").unwrap();
            pg.psql("insert into notes select g, 'after' from generate_series(201, 400) g")
                .unwrap();
            pg.restart("immediate").unwrap();
            pg.psql("insert into notes select g, 'last' from generate_series(401, 500) g")
                .unwrap();
        })
    };
    let mut seen = BTreeSet::new();
    while seen.len() < 500 {
        let payload = change(&mut c, topic).await;
        // Redelivery after a restart is allowed (at least once); loss is not.
        seen.insert(payload["data"]["record"]["id"].as_i64().unwrap());
        if seen.len() % 100 == 0 {
            // Long restarts must not end the socket for silence.
            c.send(None, None, "phoenix", "heartbeat", json!({})).await;
        }
    }
    writer.await.unwrap();
    assert_eq!(seen, (1..=500).collect::<BTreeSet<_>>());
}

#[tokio::test]
async fn a_refreshed_token_changes_what_row_level_security_allows() {
    let setup = setup().await;
    let mut c = client(&setup, json!({"role": "authenticated", "sub": "alice"})).await;
    let join_ref = subscribe(
        &mut c,
        "realtime:events",
        json!([{"event": "INSERT", "schema": "public", "table": "events"}]),
    )
    .await;
    let bob = token(json!({"role": "authenticated", "sub": "bob"}));
    c.send(
        Some(&join_ref),
        None,
        "realtime:events",
        "access_token",
        json!({"access_token": bob}),
    )
    .await;
    c.heartbeat().await;
    setup
        .pg
        .psql("insert into events (id, owner) values (1, 'alice'), (2, 'bob')")
        .unwrap();
    let payload = change(&mut c, "realtime:events").await;
    assert_eq!(payload["data"]["record"]["owner"], "bob");
}

#[tokio::test]
async fn a_join_that_waits_is_answered_once_its_changes_are_live() {
    let setup = setup().await;
    let mut c = anon(&setup).await;
    let topic = "realtime:waiting";
    let (_, status, response) = c
        .join(
            topic,
            json!({"config": {
                "postgres_changes": [{"event": "INSERT", "schema": "public", "table": "todos"}],
                "postgres_changes_options": {"wait": true, "timeout": 20000}
            }}),
        )
        .await;
    assert_eq!(status, "ok", "{response}");
    assert_eq!(response["postgres_changes"][0]["table"], "todos");
    // Live by the time of the reply: a row written now is delivered.
    setup.pg.psql("insert into todos (id) values (1)").unwrap();
    assert_eq!(change(&mut c, topic).await["data"]["record"]["id"], 1);
    assert_eq!(system(&mut c, topic).await["status"], "ok");
}

#[tokio::test]
async fn a_join_that_waits_is_refused_when_its_changes_cannot_work() {
    let setup = setup().await;
    let mut c = anon(&setup).await;
    let options = json!({"wait": true});
    let cases = [
        (
            json!([{"event": "*", "schema": "public", "table": "doesnotexist"}]),
            "Unable to subscribe to changes with given parameters. Please check Realtime is enabled",
        ),
        (
            json!([{"event": "*", "schema": "public", "table": "todos", "filter": "id=foo.1"}]),
            "Error parsing `filter` params:",
        ),
    ];
    for (i, (bindings, reason)) in cases.into_iter().enumerate() {
        let topic = format!("realtime:refused{i}");
        let (join_ref, status, response) = c
            .join(
                &topic,
                json!({"config": {"postgres_changes": bindings, "postgres_changes_options": options}}),
            )
            .await;
        assert_eq!(status, "error", "{response}");
        assert!(
            response["reason"].as_str().unwrap().starts_with(reason),
            "{response}"
        );
        // The channel is not joined.
        let (status, response) = c
            .push(
                &join_ref,
                &topic,
                "broadcast",
                json!({"type": "broadcast", "event": "e", "payload": {}}),
            )
            .await;
        assert_eq!(status, "error");
        assert_eq!(response["reason"], "unmatched topic");
    }
}
