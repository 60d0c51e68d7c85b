//! Crier is killed (SIGKILL) while rows are being written, and started again: the rows
//! committed while it was down wait in the replication slot, and a subscriber that
//! reconnects within the resume grace period receives them. Everything runs as a user
//! would run it: `crier serve --database-url`, and `crier listen --postgres` as the
//! subscriber, which reconnects and rejoins on its own.

use std::collections::BTreeSet;

use crate::support::{Running, free_port, serve_on, token};
use crier_testkit::TestPostgres;

const SECRET: &str = "postgres-restart-secret-0123456789abcdef";

fn start_server(port: u16, database_url: &str) -> Running {
    serve_on(
        Some(port),
        &[
            "--jwt-secret",
            SECRET,
            "--database-url",
            database_url,
            "--cdc-resume-grace",
            "5s",
            "--log-level",
            "warn",
        ],
    )
    .0
}

/// Reads the listener's lines until every id in `expected` has been printed in an INSERT
/// line; returns every id seen (redeliveries included once).
fn read_inserts(listener: &Running, expected: &BTreeSet<i64>, seen: &mut BTreeSet<i64>) {
    while !expected.is_subset(seen) {
        let line = listener.next_json();
        if line["type"] == "postgres_changes" {
            assert_eq!(line["event"], "INSERT", "{line}");
            seen.insert(line["new"]["id"].as_i64().expect("an id"));
        } else if line["type"] == "system" && line["extension"] == "postgres_changes" {
            assert_eq!(line["status"], "ok", "{line}");
        }
    }
}

/// Reads the listener's lines until every `n` in `expected` has been printed in a
/// broadcast line; returns every `n` seen.
fn read_broadcasts(listener: &Running, expected: &BTreeSet<i64>, seen: &mut BTreeSet<i64>) {
    while !expected.is_subset(seen) {
        let line = listener.next_json();
        if line["type"] == "broadcast" {
            assert_eq!(line["event"], "note", "{line}");
            assert_eq!(line["meta"]["id"], line["payload"]["id"], "{line}");
            seen.insert(line["payload"]["n"].as_i64().expect("an n"));
        }
    }
}

fn ids(range: std::ops::RangeInclusive<i64>) -> BTreeSet<i64> {
    range.collect()
}

#[test]
fn changes_committed_while_crier_was_down_reach_the_subscriber_that_comes_back() {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql(
        "create role anon nologin;
         create table notes (id bigint primary key, body text);
         grant select on notes to anon;
         create publication supabase_realtime for table notes;",
    )
    .unwrap();
    let port = free_port();
    let server = start_server(port, &pg.url());
    let url = format!("ws://127.0.0.1:{port}/socket");
    let listener = Running::spawn(&[
        "listen",
        "notes",
        "--postgres",
        "INSERT:public.notes",
        "--url",
        &url,
        "--apikey",
        &token(SECRET),
    ]);
    // Changes are live once the server says so (after the join reply).
    listener.until(|line| line["type"] == "system" && line["status"] == "ok");

    let mut seen = BTreeSet::new();
    pg.psql("insert into notes select g, 'before' from generate_series(1, 100) g")
        .unwrap();
    read_inserts(&listener, &ids(1..=100), &mut seen);

    server.kill();
    pg.psql("insert into notes select g, 'while down' from generate_series(101, 200) g")
        .unwrap();
    let _server = start_server(port, &pg.url());
    // The listener reconnects and rejoins by itself; the backlog (and these rows, written
    // before it is back) follow once the grace period is over.
    pg.psql("insert into notes select g, 'after' from generate_series(201, 300) g")
        .unwrap();
    read_inserts(&listener, &ids(1..=300), &mut seen);
    assert_eq!(seen, ids(1..=300), "no committed row lost");
}

#[test]
fn database_broadcasts_committed_while_crier_was_down_are_delivered_when_it_is_back() {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql("create role anon nologin;").unwrap();
    let port = free_port();
    let server = start_server(port, &pg.url());
    let url = format!("ws://127.0.0.1:{port}/socket");
    let listener = Running::spawn(&[
        "listen",
        "feed",
        "--replication-ready",
        "--url",
        &url,
        "--apikey",
        &token(SECRET),
    ]);
    listener.until(|line| {
        line["type"] == "system" && line["message"] == "Replication connection established"
    });
    let send = |range: std::ops::RangeInclusive<i64>| {
        pg.psql(&format!(
            "select realtime.send(jsonb_build_object('n', g), 'note', 'feed', false)
             from generate_series({}, {}) g",
            range.start(),
            range.end()
        ))
        .unwrap();
    };

    let mut seen = BTreeSet::new();
    send(1..=100);
    read_broadcasts(&listener, &ids(1..=100), &mut seen);

    server.kill();
    // Supabase's temporary slot would lose these: Crier's persistent one keeps them.
    send(101..=200);
    let _server = start_server(port, &pg.url());
    send(201..=300);
    read_broadcasts(&listener, &ids(1..=300), &mut seen);
    assert_eq!(seen, ids(1..=300), "no committed broadcast lost");
}
