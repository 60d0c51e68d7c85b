//! Two `crier serve --redis-url` processes on one private `redis-server`: `crier listen`
//! on one node receives what `crier send` publishes on the other; a name already held by
//! a live node and an unusable Redis URL stop `crier serve` with the reason.

use crier_testkit::TestRedis;

use crate::support::{Running, run, serve, token};

const SECRET: &str = "cluster-cli-secret-0123456789abcdef";

fn node(redis: &TestRedis, name: &str) -> (Running, String) {
    let url = redis.url();
    let (process, port) = serve(&[
        "--jwt-secret",
        SECRET,
        "--redis-url",
        &url,
        "--node-name",
        name,
        "--log-level",
        "warn",
    ]);
    (process, format!("ws://127.0.0.1:{port}/socket"))
}

#[test]
fn a_broadcast_sent_on_one_node_is_printed_by_a_listener_on_the_other() {
    let redis = TestRedis::start().expect("redis-server");
    let (_a, on_a) = node(&redis, "a");
    let (_b, on_b) = node(&redis, "b");
    let key = token(SECRET);
    let listener = Running::spawn(&["listen", "room", "--url", &on_b, "--apikey", &key]);
    // Joined means subscribed across the cluster: the reply waits for the bus.
    listener.joined();
    let sent = run(&[
        "send",
        "room",
        "hello",
        r#"{"n":1}"#,
        "--url",
        &on_a,
        "--apikey",
        &key,
    ]);
    assert!(sent.status.success(), "{sent:?}");
    let line = listener.until(|line| line["type"] == "broadcast");
    assert_eq!(line["event"], "hello");
    assert_eq!(line["payload"], serde_json::json!({"n": 1}));

    let url = redis.url();
    let twin = run(&[
        "serve",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--jwt-secret",
        SECRET,
        "--redis-url",
        &url,
        "--node-name",
        "a",
    ]);
    assert!(!twin.status.success());
    let stderr = String::from_utf8_lossy(&twin.stderr);
    assert!(stderr.contains(r#"another node runs as "a""#), "{stderr}");
}

#[test]
fn an_unusable_redis_url_stops_serve_with_the_reason() {
    let bad = run(&[
        "serve",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--jwt-secret",
        SECRET,
        "--redis-url",
        "http://not-redis",
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("invalid Redis URL"), "{stderr}");
}
