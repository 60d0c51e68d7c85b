//! The client's postgres-change streams against a real Crier node (in this process, on a
//! loopback port) capturing from a real PostgreSQL (a private cluster per test).
//!
//! Every wait is on an event, with a timeout only as the failure guard.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crier_client::{
    Backoff, ChangeEvent, ChannelEvent, ChannelStatus, Client, Error, PostgresChange,
    PostgresChangesFilter,
};
use crier_server::{Config, Node, PostgresChangesConfig};
use crier_testkit::TestPostgres;
use crier_testkit::prelude::{SECRET, next, token};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// The failure guard on every wait on the database path.
const WAIT: Duration = Duration::from_secs(30);
const SLOT: &str = "crier_client_test";

const SCHEMA: &str = "
    create role anon nologin;
    create role authenticated nologin;
    create table todos (id bigint primary key, title text not null, done boolean not null default false);
    create table events (id bigint primary key, owner text not null, body text not null);
    create table unpublished (id bigint primary key);
    alter table events enable row level security;
    create policy own_events on events for select to authenticated
        using (owner = current_setting('request.jwt.claims', true)::jsonb->>'sub');
    grant select on todos, unpublished to anon, authenticated;
    grant select on events to authenticated;
    create publication supabase_realtime;
    alter publication supabase_realtime add table todos, events;
";

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Todo {
    id: i64,
    title: String,
    done: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Event {
    id: i64,
    owner: String,
    body: String,
}

/// A database and a node capturing from it.
struct Setup {
    pg: Arc<TestPostgres>,
    node: Node,
    addr: SocketAddr,
    serving: JoinHandle<std::io::Result<()>>,
}

impl Setup {
    async fn start() -> Setup {
        let pg = TestPostgres::start().expect("postgres starts");
        pg.psql(SCHEMA).unwrap();
        // The slot exists before the node starts, so every commit after this point is
        // captured. (A node that creates its slot itself can confirm a subscription before
        // the slot exists, and a commit in that window is never captured: a server-side gap,
        // not what these tests are about.)
        pg.psql(&format!(
            "select pg_create_logical_replication_slot('{SLOT}', 'pgoutput')"
        ))
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (node, serving) = serve(&pg, listener);
        Setup {
            pg: Arc::new(pg),
            node,
            addr,
            serving,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/socket", self.addr)
    }

    /// Runs SQL off the runtime, so the node keeps capturing meanwhile.
    async fn sql(&self, sql: &str) -> String {
        let pg = Arc::clone(&self.pg);
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || pg.psql(&sql))
            .await
            .unwrap()
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Shuts the node down (every socket is told and closed with 1012) and starts a new
    /// one on the same address, capturing from the same slot.
    async fn restart_node(&mut self) {
        assert!(self.node.shutdown().await, "the sockets drained");
        (&mut self.serving)
            .await
            .unwrap()
            .expect("the accept loop ended cleanly");
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let (node, serving) = serve(&self.pg, listener);
        self.node = node;
        self.serving = serving;
    }
}

fn serve(
    pg: &TestPostgres,
    listener: tokio::net::TcpListener,
) -> (Node, JoinHandle<std::io::Result<()>>) {
    let mut changes = PostgresChangesConfig::new(pg.url());
    changes.slot = SLOT.into();
    // Nothing to wait for: the tests only count changes committed while subscribed.
    changes.resume_grace = Duration::ZERO;
    let mut config = Config::new(SECRET);
    config.limits.max_joins_per_second = 100_000;
    config.limits.max_events_per_second = 1_000_000;
    config.postgres_changes = Some(changes);
    let node = Node::new(config).unwrap();
    let serving = tokio::spawn(crier_server::serve(listener, node.clone()));
    (node, serving)
}

fn anon_key() -> String {
    token(json!({"role": "anon"}))
}

/// A client with the anon key; `user` claims, when given, are the channels' access token.
fn client(setup: &Setup, user: Option<Value>) -> Client {
    let mut builder = Client::builder(setup.url())
        .api_key(anon_key())
        .reconnect_policy(Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            ..Backoff::RECONNECT
        });
    if let Some(claims) = user {
        builder = builder.access_token(token(claims));
    }
    builder.build().unwrap()
}

fn todos(event: ChangeEvent) -> PostgresChangesFilter {
    PostgresChangesFilter::new(event, "public").table("todos")
}

async fn next_change<T>(
    stream: &mut BoxStream<'static, Result<PostgresChange<T>, Error>>,
) -> PostgresChange<T> {
    next(WAIT, stream).await.expect("a decodable change")
}

/// Nothing more is queued on `stream` (every event before the last one awaited elsewhere
/// on the same channel has already been sorted into it).
fn assert_drained<T: std::fmt::Debug>(stream: &mut BoxStream<'static, T>, name: &str) {
    if let Some(item) = stream.next().now_or_never() {
        panic!("{name} got more than it should: {item:?}");
    }
}

/// The id of the row a change is about.
fn row_id(change: &PostgresChange<Value>) -> i64 {
    match change {
        PostgresChange::Insert { new, .. } | PostgresChange::Update { new, .. } => &new["id"],
        PostgresChange::Delete { old, .. } => &old["id"],
    }
    .as_i64()
    .expect("an id")
}

fn kind<T>(change: &PostgresChange<T>) -> &'static str {
    match change {
        PostgresChange::Insert { .. } => "INSERT",
        PostgresChange::Update { .. } => "UPDATE",
        PostgresChange::Delete { .. } => "DELETE",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_select_gets_only_its_columns_and_the_key() {
    let setup = Setup::start().await;
    let client = client(&setup, None);
    let room = client.channel("titles");
    let mut changes = room.postgres_changes::<Value>(todos(ChangeEvent::Insert).select(["title"]));
    room.subscribe().await.unwrap();
    setup
        .sql("insert into todos values (7, 'only the title', true)")
        .await;
    match next_change(&mut changes).await {
        PostgresChange::Insert { new, meta } => {
            assert_eq!(new, json!({"id": 7, "title": "only the title"}));
            assert_eq!(meta.columns.len(), 2, "{meta:?}");
        }
        other => panic!("expected the insert, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_stream_gets_inserts_updates_and_deletes_written_right_after_subscribe() {
    let setup = Setup::start().await;
    let client = client(&setup, None);
    let room = client.channel("todos");
    let mut changes = room.postgres_changes::<Todo>(todos(ChangeEvent::All));
    room.subscribe().await.unwrap();
    // No wait of any kind: `subscribe()` resolved on "Subscribed to PostgreSQL", so the
    // very next commit is captured for this channel.
    setup
        .sql(
            "insert into todos values (1, 'write tests', false);
             update todos set done = true where id = 1;
             delete from todos where id = 1;",
        )
        .await;

    let written = Todo {
        id: 1,
        title: "write tests".into(),
        done: false,
    };
    match next_change(&mut changes).await {
        PostgresChange::Insert { new, meta } => {
            assert_eq!(new, written);
            assert_eq!(
                (meta.schema.as_str(), meta.table.as_str()),
                ("public", "todos")
            );
            let columns: Vec<(&str, &str)> = meta
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.type_name.as_str()))
                .collect();
            assert_eq!(
                columns,
                [("id", "int8"), ("title", "text"), ("done", "bool")]
            );
            assert!(meta.commit_timestamp.ends_with('Z'), "{meta:?}");
            assert_eq!(meta.errors, None);
        }
        other => panic!("expected the insert, got {other:?}"),
    }
    match next_change(&mut changes).await {
        PostgresChange::Update { new, old, .. } => {
            assert_eq!(
                new,
                Todo {
                    done: true,
                    ..written.clone()
                }
            );
            // REPLICA IDENTITY DEFAULT: the key only.
            assert_eq!(old, json!({"id": 1}));
        }
        other => panic!("expected the update, got {other:?}"),
    }
    match next_change(&mut changes).await {
        PostgresChange::Delete { old, meta } => {
            assert_eq!(old, json!({"id": 1}));
            assert_eq!(meta.table, "todos");
        }
        other => panic!("expected the delete, got {other:?}"),
    }
    assert_drained(&mut changes, "the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_reaches_exactly_the_streams_whose_binding_matched() {
    let setup = Setup::start().await;
    let client = client(&setup, None);
    let room = client.channel("routing");
    let mut first_inserts =
        room.postgres_changes::<Todo>(todos(ChangeEvent::Insert).filter("id=eq.1"));
    let mut deletes = room.postgres_changes::<Value>(todos(ChangeEvent::Delete));
    let mut everything = room.postgres_changes::<Value>(todos(ChangeEvent::All));
    let mut events = room.events();
    room.subscribe().await.unwrap();
    setup
        .sql(
            "insert into todos values (2, 'two', false);
             insert into todos values (1, 'one', false);
             update todos set done = true where id = 1;
             delete from todos where id = 2;
             delete from todos where id = 1;",
        )
        .await;

    // The catch-all sees every change, in commit order.
    let mut seen = Vec::new();
    for _ in 0..5 {
        let change = next_change(&mut everything).await;
        seen.push(format!("{} {}", kind(&change), row_id(&change)));
    }
    assert_eq!(
        seen,
        ["INSERT 2", "INSERT 1", "UPDATE 1", "DELETE 2", "DELETE 1"]
    );
    // The last change has been sorted into every stream by now: what the others hold is
    // all they will get.
    match next_change(&mut first_inserts).await {
        PostgresChange::Insert { new, .. } => assert_eq!(
            new,
            Todo {
                id: 1,
                title: "one".into(),
                done: false
            }
        ),
        other => panic!("expected insert 1, got {other:?}"),
    }
    assert_drained(&mut first_inserts, "the id=eq.1 INSERT stream");
    let deleted: Vec<String> = [
        next_change(&mut deletes).await,
        next_change(&mut deletes).await,
    ]
    .iter()
    .map(|c| format!("{} {}", kind(c), row_id(c)))
    .collect();
    assert_eq!(deleted, ["DELETE 2", "DELETE 1"]);
    assert_drained(&mut deletes, "the DELETE stream");
    assert_drained(&mut everything, "the catch-all stream");

    // On the channel, each change names the filters (by registration index) whose
    // binding ids it carried.
    let mut routed = Vec::new();
    while routed.len() < 5 {
        if let ChannelEvent::PostgresChange(change) = next(WAIT, &mut events).await {
            routed.push((
                change.data["type"].as_str().unwrap().to_owned(),
                change.filters.clone(),
            ));
        }
    }
    let expected: Vec<(String, Vec<usize>)> = [
        ("INSERT", vec![2]),
        ("INSERT", vec![0, 2]),
        ("UPDATE", vec![2]),
        ("DELETE", vec![1, 2]),
        ("DELETE", vec![1, 2]),
    ]
    .into_iter()
    .map(|(t, f)| (t.to_owned(), f))
    .collect();
    assert_eq!(routed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_fails_subscribe_with_the_servers_message() {
    let setup = Setup::start().await;
    let client = client(&setup, None);

    let room = client.channel("bad-filter");
    let _bad = room.postgres_changes::<Todo>(todos(ChangeEvent::Insert).filter("id=foo.1"));
    let error = room.subscribe().await.unwrap_err();
    let Error::PostgresChangesUnavailable { message } = &error else {
        panic!("expected PostgresChangesUnavailable, got {error:?}");
    };
    assert!(
        message.starts_with("Error parsing `filter` params:"),
        "{message}"
    );
    assert!(error.to_string().contains(message.as_str()), "{error}");
    // The channel itself is joined (only its postgres changes were refused), and asking
    // again does not report them live.
    assert_eq!(room.status(), ChannelStatus::Joined);
    assert_eq!(room.subscribe().await, Err(error.clone()));

    let room = client.channel("unpublished");
    let _missing = room.postgres_changes::<Value>(
        PostgresChangesFilter::new(ChangeEvent::All, "public").table("unpublished"),
    );
    let error = room.subscribe().await.unwrap_err();
    assert_eq!(
        error,
        Error::PostgresChangesUnavailable {
            message: "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: unpublished, filters: [], select: nil]".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_gives_each_user_only_its_rows() {
    let setup = Setup::start().await;
    let alice = client(
        &setup,
        Some(json!({"role": "authenticated", "sub": "alice"})),
    );
    let bob = client(&setup, Some(json!({"role": "authenticated", "sub": "bob"})));
    let filter = PostgresChangesFilter::new(ChangeEvent::All, "public").table("events");
    let alice_room = alice.channel("events");
    let bob_room = bob.channel("events");
    let mut alice_sees = alice_room.postgres_changes::<Event>(filter.clone());
    let mut bob_sees = bob_room.postgres_changes::<Event>(filter);
    alice_room.subscribe().await.unwrap();
    bob_room.subscribe().await.unwrap();
    setup
        .sql(
            "insert into events values (1, 'bob', 'b1'), (2, 'alice', 'a1');
             insert into events values (3, 'bob', 'b2');
             update events set body = 'a1 edited' where id = 2;
             insert into events values (4, 'alice', 'a2');
             insert into events values (100, 'alice', 'end'), (101, 'bob', 'end');",
        )
        .await;

    // Each user's last row is the witness: nothing of the other's came before it.
    for (name, stream, witness, expected) in [
        (
            "alice",
            &mut alice_sees,
            100,
            vec!["INSERT 2 a1", "UPDATE 2 a1 edited", "INSERT 4 a2"],
        ),
        (
            "bob",
            &mut bob_sees,
            101,
            vec!["INSERT 1 b1", "INSERT 3 b2"],
        ),
    ] {
        let mut seen = Vec::new();
        loop {
            let change = next_change(stream).await;
            let (PostgresChange::Insert { new, .. } | PostgresChange::Update { new, .. }) = &change
            else {
                panic!("{name} got {change:?}");
            };
            assert_eq!(new.owner, name, "{name} got {change:?}");
            if new.id == witness {
                break;
            }
            seen.push(format!("{} {} {}", kind(&change), new.id, new.body));
        }
        assert_eq!(seen, expected, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_server_drops_the_socket_the_client_rejoins_and_the_stream_goes_on() {
    let mut setup = Setup::start().await;
    let client = client(&setup, None);
    let room = client.channel("survivor");
    let mut changes = room.postgres_changes::<Todo>(todos(ChangeEvent::Insert));
    let mut events = room.events();
    room.subscribe().await.unwrap();
    setup
        .sql("insert into todos values (1, 'before', false)")
        .await;
    match next_change(&mut changes).await {
        PostgresChange::Insert { new, .. } => assert_eq!(new.id, 1),
        other => panic!("{other:?}"),
    }

    // The node goes away: every socket is told and closed (1012). A new node comes up on
    // the same address and resumes the same slot.
    setup.restart_node().await;

    // One deadline for the whole wait: the client reconnects, rejoins, and the new node
    // confirms postgres changes for the rejoined channel.
    timeout(WAIT, async {
        let mut resumed = false;
        loop {
            match next(WAIT, &mut events).await {
                ChannelEvent::Resumed { .. } => resumed = true,
                ChannelEvent::System(system)
                    if resumed && system.extension == "postgres_changes" =>
                {
                    assert_eq!(system.status, "ok", "{system:?}");
                    assert_eq!(system.message, "Subscribed to PostgreSQL");
                    break;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the channel rejoined and postgres changes are live again");
    assert_eq!(room.status(), ChannelStatus::Joined);

    setup
        .sql("insert into todos values (2, 'after', false)")
        .await;
    // Delivery is at least once: the first node's acknowledgement of row 1 may not have
    // reached the database before it stopped, so row 1 may come again. Nothing else may.
    timeout(WAIT, async {
        loop {
            match next_change(&mut changes).await {
                PostgresChange::Insert { new, .. } if new.id == 2 => {
                    assert_eq!(new.title, "after");
                    break;
                }
                PostgresChange::Insert { new, .. } if new.id == 1 => continue,
                other => panic!("unexpected after the rejoin: {other:?}"),
            }
        }
    })
    .await
    .expect("in time");
}
