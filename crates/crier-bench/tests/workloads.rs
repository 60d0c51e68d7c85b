//! The workloads against a real Crier node in this process, over loopback: every
//! delivery counted, both serializers, the ramp's stopping rule, refusals reported, and
//! postgres changes from a private PostgreSQL with and without row level security.

use std::net::SocketAddr;

use crier_bench::workload::pgchanges::{self, RlsMode, Via};
use crier_bench::workload::{self, FanoutOptions, IdleOptions, PgChangesOptions, VuOptions};
use crier_bench::{BenchError, Options, Rate, ServerKind, Target, Vsn};
use crier_server::PostgresChangesConfig;
use crier_testkit::TestPostgres;
use crier_testkit::prelude::{BadToken, TestServer, token};
use serde_json::{Value, json};

/// A node in this process with limits too high for a load test to meet.
async fn start_crier() -> SocketAddr {
    TestServer::start_with(|config| config.limits.max_events_per_second = 100_000_000)
        .await
        .addr
}

fn options(addr: SocketAddr, vsn: Vsn, token: String) -> Options {
    let mut options = Options::new(Target {
        kind: ServerKind::Crier,
        url: format!("ws://{addr}/socket/websocket"),
        vsn,
        token: Some(token),
    });
    // The node runs in this process, so its memory and CPU are ours.
    options.server_pid = Some(std::process::id());
    options
}

fn anon() -> String {
    token(json!({"role": "anon"}))
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
        let runs = workload::fanout(&options(addr, vsn, anon()), &shape)
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
    let runs = workload::vus(&options(addr, Vsn::V2, anon()), &shape)
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
    let runs = workload::idle(&options(addr, Vsn::V2, anon()), &shape)
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
    let error = workload::idle(&options(addr, Vsn::V2, BadToken::Forged.token()), &shape)
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
    let error = workload::idle(&options(addr, Vsn::V2, anon()), &shape)
        .await
        .expect_err("nothing listens");
    assert!(error.to_string().contains("connect"), "{error}");
}

/// B3 against a node capturing from a private PostgreSQL: without RLS every subscriber
/// gets every row; with `per-user`, each row reaches its owner's subscribers only; via
/// database broadcasts (a trigger), every subscriber of the private topic gets every
/// row. Every expected delivery must arrive, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgchanges_delivers_every_row_with_and_without_rls() {
    let pg = TestPostgres::start().expect("a private PostgreSQL");
    // The table, the publication and realtime.messages exist before the node starts
    // capturing (`crier serve` prepares the realtime schema before it listens).
    crier_server::authz::prepare_database(&pg.url())
        .await
        .expect("realtime schema");
    pgchanges::apply_setup(
        &pg.url(),
        "supabase_realtime",
        RlsMode::Off,
        Via::PostgresChanges,
    )
    .await
    .expect("setup");
    let server = TestServer::start_with(|config| {
        let mut changes = PostgresChangesConfig::new(pg.url());
        changes.slot = "crier_bench_test".into();
        config.postgres_changes = Some(changes);
        config.authorization.database_url = Some(pg.url());
    })
    .await;
    let options = options(server.addr, Vsn::V2, anon());

    for (rls, users, via) in [
        (RlsMode::Off, None, Via::PostgresChanges),
        (RlsMode::PerUser, Some(2), Via::PostgresChanges),
        (RlsMode::Off, None, Via::DatabaseBroadcasts),
    ] {
        let mut shape = PgChangesOptions::new(pg.url());
        shape.rls = rls;
        shape.via = via;
        shape.subscribers = 4;
        shape.users = users;
        shape.rate = 200;
        shape.writers = 2;
        shape.warmup = 0.5;
        shape.seconds = 1.5;
        if rls != RlsMode::Off {
            shape.tokens = pgchanges::user_claims(rls, shape.user_count())
                .into_iter()
                .map(|claims| token(Value::Object(claims)))
                .collect();
        }
        let report = workload::pgchanges(&options, &shape)
            .await
            .unwrap_or_else(|e| panic!("{rls}: {e}\n{}", pg.log()));
        let f = &report.figures;
        let context = format!("{rls} {via}: {f:?}");
        assert_eq!(f.subscribers, 4, "{context}");
        assert!(f.rows > 100, "{context}");
        let per_row = if rls == RlsMode::Off { 4 } else { 2 };
        assert_eq!(f.expected, f.rows * per_row, "{context}");
        assert_eq!(f.received, f.expected, "{context}");
        assert_eq!(f.missing, 0, "{context}");
        assert_eq!(f.fully_delivered, f.rows, "{context}");
        assert_eq!((f.duplicates, f.unauthorized), (0, 0), "{context}");
        assert!(f.p50_ms > 0.0 && f.p50_ms <= f.p90_ms, "{context}");
        assert!(f.p90_ms <= f.p99_ms && f.p99_ms <= f.max_ms, "{context}");
        if via == Via::PostgresChanges {
            // Database broadcasts carry no commit_timestamp.
            assert!(f.commit_p50_ms > 0.0, "{context}");
        }

        let run = report.run();
        assert_eq!(
            (run.workload.as_str(), run.server.as_str()),
            ("B3", "crier")
        );
        assert_eq!(run.rate, Rate::PerSec(200.0));
        assert_eq!(run.delivery_ratio, 1.0, "{run:?}");
        assert!(
            run.p50_ms <= run.p95_ms && run.p95_ms <= run.p99_ms,
            "{run:?}"
        );
        assert!(run.problems.is_empty(), "{run:?}");
        let mut text = Vec::new();
        report.print(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("latency at→client"), "{text}");
        let line: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(line["mode"], "pgchanges");
        assert_eq!(line["rls"], rls.name());
        assert_eq!(line["via"], via.name());
        assert_eq!(line["missing"], 0);
    }
}

#[tokio::test]
async fn pgchanges_with_rls_needs_a_token_per_user() {
    let mut shape = PgChangesOptions::new("postgres://127.0.0.1:1/none");
    shape.rls = RlsMode::All;
    shape.subscribers = 3;
    let addr = "127.0.0.1:1".parse().unwrap();
    let error = workload::pgchanges(&options(addr, Vsn::V2, anon()), &shape)
        .await
        .expect_err("one anon token cannot stand for three users");
    assert!(matches!(error, BenchError::Settings(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_storm_reports_every_answer_and_the_servers_checks() {
    use crier_server::authz::{Access, Extension, FnAuthorizer};
    // Read on `storm` only: a private join elsewhere is refused, and both show up.
    let node = crier_server::Node::builder({
        let mut config = crier_server::Config::new(crier_testkit::prelude::SECRET);
        config.limits.max_connections = 1000;
        config.limits.max_joins_per_second = 100_000;
        config
    })
    .channel_authorizer(std::sync::Arc::new(FnAuthorizer::new(|check, access| {
        Ok(check.topic == "storm" && access == Access::Read(Extension::Broadcast))
    })))
    .build()
    .unwrap();
    let server = TestServer::start_node(node).await;
    let storm = |topic: &str| workload::JoinStormOptions {
        url: format!("ws://{}/socket/websocket", server.addr),
        metrics_url: Some(server.http("/metrics")),
        tokens: vec![token(json!({"role": "authenticated"}))],
        clients: 50,
        topic: topic.to_owned(),
        private: true,
        connect_concurrency: 10,
        timeout: std::time::Duration::from_secs(10),
    };
    let report = workload::join_storm(&storm("storm")).await.unwrap();
    assert_eq!((report.joined, report.errors.len()), (50, 0));
    assert_eq!(report.authorization_checks, Some(50.0));
    let queries = report.authorization_queries.unwrap();
    assert!((1.0..=50.0).contains(&queries), "{queries}");
    assert!(report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms);

    let refused = workload::join_storm(&storm("elsewhere")).await.unwrap();
    assert_eq!(refused.joined, 0);
    assert_eq!(
        refused.errors.get(
            "Unauthorized: You do not have permissions to read from this Channel topic: elsewhere"
        ),
        Some(&50)
    );
}
