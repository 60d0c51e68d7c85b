//! Two nodes sharing one replication slot over Redis: one streams it, the other follows
//! through the change relay; both deliver every row change to their own subscribers
//! once; when the streaming node stops, the other takes the slot over and nothing
//! committed is lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crier_cluster::RedisBroker;
use crier_server::changes::ChangeRelay;
use crier_server::protocol::Vsn;
use crier_server::{Config, Node, PostgresChangesConfig};
use crier_testkit::prelude::{Client, SECRET, TestServer, json_payload};
use crier_testkit::{TestPostgres, TestRedis};
use serde_json::json;

const SCHEMA: &str = "
    create role anon nologin;
    create table items (id bigint primary key);
    grant select on items to anon;
    create publication supabase_realtime for table items;
";

const TOPIC: &str = "realtime:items";

async fn node(pg: &TestPostgres, redis: &TestRedis, name: &str) -> TestServer {
    let bus = RedisBroker::connect(&redis.url(), name).await.unwrap();
    let mut config = Config::new(SECRET);
    let mut changes = PostgresChangesConfig::new(pg.url());
    changes.slot = "crier_cluster".into();
    changes.resume_grace = Duration::ZERO;
    config.postgres_changes = Some(changes);
    let relay: Arc<dyn ChangeRelay> = bus.change_relay();
    let node = Node::builder(config)
        .broker(bus.clone())
        .presence_store(bus)
        .change_relay(relay)
        .build()
        .unwrap();
    TestServer::start_node(node).await
}

async fn subscribed(server: &TestServer) -> Client {
    let mut client = server.connect(Vsn::V2).await;
    let bindings = json!([{"event": "INSERT", "schema": "public", "table": "items"}]);
    client
        .join_ok(TOPIC, json!({"postgres_changes": bindings}))
        .await;
    let status = client.event(TOPIC, "system").await;
    assert_eq!(json_payload(&status)["message"], "Subscribed to PostgreSQL");
    client
}

/// The next inserted id `client` receives.
async fn next_id(client: &mut Client) -> i64 {
    let change = client.event(TOPIC, "postgres_changes").await;
    json_payload(&change)["data"]["record"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {change:?}"))
}

fn insert(pg: &TestPostgres, ids: std::ops::RangeInclusive<i64>) {
    let values: Vec<String> = ids.map(|id| format!("({id})")).collect();
    pg.psql(&format!("insert into items values {}", values.join(",")))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_streams_the_slot_both_deliver_and_the_other_takes_over_when_it_stops() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let pg = TestPostgres::start().expect("postgres");
    pg.psql(SCHEMA).unwrap();
    let redis = TestRedis::start().unwrap();

    // Node A alone: it streams the slot.
    let a = node(&pg, &redis, "a").await;
    let mut on_a = subscribed(&a).await;
    insert(&pg, 1..=1);
    assert_eq!(next_id(&mut on_a).await, 1);

    // Node B finds the slot busy and follows node A through Redis.
    let b = node(&pg, &redis, "b").await;
    let mut on_b = subscribed(&b).await;
    insert(&pg, 2..=41);
    for client in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        for _ in 2..=41 {
            got.push(next_id(client).await);
        }
        assert_eq!(
            got,
            (2..=41).collect::<Vec<_>>(),
            "each once, in commit order"
        );
    }

    // Rows are committed right before node A stops and while nobody streams the slot:
    // node B takes it over and gets every one.
    for id in 100..120 {
        insert(&pg, id..=id);
    }
    let stopped = Instant::now();
    a.node.shutdown().await;
    drop(a);
    for id in 120..140 {
        insert(&pg, id..=id);
    }
    let mut got = BTreeSet::new();
    let mut duplicates = 0;
    while got.len() < 40 {
        if !got.insert(next_id(&mut on_b).await) {
            duplicates += 1;
        }
    }
    let took = stopped.elapsed();
    eprintln!("node B delivered every row 0.. {took:?} after node A stopped");
    assert_eq!(got, (100..140).collect(), "no committed row lost");
    assert_eq!(duplicates, 0, "transactions that came twice were skipped");
    assert!(took < Duration::from_secs(15), "taken over in {took:?}");
    // And the new holder streams what is committed now.
    insert(&pg, 500..=500);
    assert_eq!(next_id(&mut on_b).await, 500);
}
