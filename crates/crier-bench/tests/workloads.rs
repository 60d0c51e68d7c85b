//! The workloads against a real Crier node in this process, over loopback: every
//! delivery counted, both serializers, the ramp's stopping rule, and refusals reported.

use std::net::SocketAddr;

use crier_bench::workload::{self, FanoutOptions, IdleOptions, VuOptions};
use crier_bench::{BenchError, Options, Rate, ServerKind, Target, Vsn};
use crier_server::auth::{sign_token, unix_now};
use crier_server::{Config, Node};
use serde_json::{Map, Value};

const SECRET: &str = "bench-test-secret-0123456789abcdef";

async fn start_crier() -> SocketAddr {
    let mut config = Config::new(SECRET);
    config.limits.max_connections = 1000;
    config.limits.max_joins_per_second = 100_000;
    config.limits.max_events_per_second = 100_000_000;
    let node = Node::new(config).expect("valid config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crier_server::serve(listener, node));
    addr
}

fn token(secret: &str) -> String {
    let mut claims = Map::new();
    claims.insert("role".into(), Value::from("anon"));
    claims.insert("exp".into(), Value::from(unix_now() + 600));
    sign_token(secret, &claims)
}

fn options(addr: SocketAddr, vsn: Vsn, secret: &str) -> Options {
    let mut options = Options::new(Target {
        kind: ServerKind::Crier,
        url: format!("ws://{addr}/socket/websocket"),
        vsn,
        token: Some(token(secret)),
    });
    // The node runs in this process, so its memory and CPU are ours.
    options.server_pid = Some(std::process::id());
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_counts_every_delivery_with_both_serializers() {
    let addr = start_crier().await;
    for vsn in [Vsn::V1, Vsn::V2] {
        let shape = FanoutOptions {
            subscribers: 20,
            payloads: vec![100, 1000],
            rates: vec![Rate::PerSec(50.0), Rate::Max],
            seconds: 0.4,
            warmup: 0.1,
            drain: 10.0,
            window: 8,
            settle: 0.0,
        };
        let runs = workload::fanout(&options(addr, vsn, SECRET), &shape)
            .await
            .expect("the run completes");
        assert_eq!(runs.len(), 1 + 4, "a memory row, then one row per phase");
        assert_eq!(runs[0].workload, "memory");
        assert_eq!(runs[0].subscribers, 20);
        assert!(runs[0].rss_bytes.is_some());
        for (run, (payload, rate)) in runs[1..].iter().zip([
            (100, Rate::PerSec(50.0)),
            (100, Rate::Max),
            (1000, Rate::PerSec(50.0)),
            (1000, Rate::Max),
        ]) {
            assert_eq!(run.workload, "B1");
            assert_eq!((run.payload_bytes, run.rate), (payload, rate));
            assert_eq!(run.delivery_ratio, 1.0, "{vsn:?}: {run:?}");
            assert!(run.publishes_per_sec > 0.0, "{run:?}");
            if let Rate::PerSec(rate) = rate {
                // Also after a max-rate phase: the new rate applies at once.
                let published = run.publishes_per_sec;
                assert!(published > rate * 0.5 && published < rate * 1.5, "{run:?}");
            }
            assert!(run.deliveries_per_sec > run.publishes_per_sec, "{run:?}");
            assert!(run.p50_ms > 0.0 && run.p50_ms <= run.p99_ms, "{run:?}");
            assert_eq!((run.failed_joins, run.lost_connections), (0, 0));
        }
        // Closed loop outruns 50 messages a second on any machine that can run the tests.
        assert!(runs[2].publishes_per_sec > runs[1].publishes_per_sec);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_users_ramp_until_the_last_step() {
    let addr = start_crier().await;
    let shape = VuOptions {
        start: 12,
        step: 6,
        max: 18,
        seconds: 0.5,
        warmup: 0.2,
        drain: 2.0,
        payload_bytes: 100,
        period_ms: 100,
        p99_limit_ms: 10_000.0,
        min_delivery_ratio: 0.999,
    };
    let runs = workload::vus(&options(addr, Vsn::V2, SECRET), &shape)
        .await
        .expect("the ramp completes");
    let users: Vec<u64> = runs.iter().map(|r| r.subscribers).collect();
    assert_eq!(users, [12, 18]);
    assert_eq!(runs[0].stopped_because, None);
    assert_eq!(runs[1].stopped_because.as_deref(), Some("max"));
    for run in &runs {
        assert_eq!(run.workload, "B2");
        assert!(run.delivery_ratio >= 0.999, "{run:?}");
        // Each user publishes to its echo topic (1 recipient) and to its group (6
        // recipients, itself included): 7 deliveries per 2 publications.
        let per_publish = run.deliveries_per_sec / run.publishes_per_sec;
        assert!((per_publish - 3.5).abs() < 0.5, "{run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_spread_over_topics() {
    let addr = start_crier().await;
    let shape = IdleOptions {
        connections: 30,
        topics: 3,
        settle: 0.0,
    };
    let runs = workload::idle(&options(addr, Vsn::V2, SECRET), &shape)
        .await
        .expect("the run completes");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].workload.as_str(), runs[0].subscribers),
        ("memory", 30)
    );
    assert!(runs[0].idle_rss_per_conn_bytes.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_not_measured() {
    let addr = start_crier().await;
    let shape = IdleOptions {
        connections: 3,
        topics: 1,
        settle: 0.0,
    };
    let error = workload::idle(&options(addr, Vsn::V2, "some-other-secret"), &shape)
        .await
        .expect_err("nobody can join");
    assert!(matches!(error, BenchError::NoneJoined(_)), "{error}");
    assert!(error.to_string().contains("401"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_reported() {
    // Bind and drop, so the port is almost certainly closed.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let shape = IdleOptions {
        connections: 2,
        topics: 1,
        settle: 0.0,
    };
    let error = workload::idle(&options(addr, Vsn::V2, SECRET), &shape)
        .await
        .expect_err("nothing listens");
    assert!(error.to_string().contains("connect"), "{error}");
}
