//! The client commands of the `crier` binary (`listen`, `send`, `presence`) against a real
//! `crier serve`, every one a spawned process. Tests wait for lines; the timeouts only
//! turn a hang into a failure.

use std::process::Output;

use crate::support::{Running, crier, free_port, run, serve, token, without_position};

use serde_json::json;

const SECRET: &str = "client-cli-secret-0123456789abcdef";

/// `crier serve` on a free loopback port, and a key it accepts.
struct Server {
    _process: Running,
    url: String,
    key: String,
}

impl Server {
    fn start() -> Server {
        let (process, port) = serve(&[
            "--jwt-secret",
            SECRET,
            "--max-events-per-second",
            "100000",
            "--log-level",
            "warn",
        ]);
        Server {
            _process: process,
            url: format!("ws://127.0.0.1:{port}/socket"),
            key: token(SECRET),
        }
    }

    /// `args` followed by this server's `--url` and `--apikey`.
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(["--url", &self.url, "--apikey", &self.key]);
        all
    }

    fn listen(&self, args: &[&str]) -> Running {
        let mut all = vec!["listen"];
        all.extend(args);
        Running::spawn(&self.args(&all))
    }

    /// `crier send ...`, which must succeed.
    fn send(&self, args: &[&str]) {
        let mut all = vec!["send"];
        all.extend(args);
        let output = run(&self.args(&all));
        assert!(output.status.success(), "crier {all:?}: {output:?}");
    }
}

/// A failed command: non-zero, and one `error:` line on stderr (returned).
fn one_error_line(output: &Output) -> String {
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr:?}");
    lines[0].to_owned()
}

#[test]
fn listen_prints_broadcasts_sent_over_the_socket_and_http_and_stops_on_sigterm() {
    let server = Server::start();
    let listener = server.listen(&["room"]);
    listener.joined();

    server.send(&["room", "hello", r#"{"a":1}"#]);
    assert_eq!(
        without_position(&listener.until(|line| line["type"] == "broadcast")),
        json!({"type": "broadcast", "event": "hello", "payload": {"a": 1}})
    );
    server.send(&["room", "hello", r#"{"b":[2,3]}"#, "--http"]);
    assert_eq!(
        without_position(&listener.until(|line| line["type"] == "broadcast")),
        json!({"type": "broadcast", "event": "hello", "payload": {"b": [2, 3]}})
    );

    let status = listener.terminate();
    assert!(status.success(), "SIGTERM ends listen with 0: {status:?}");
}

#[test]
fn listen_event_prints_only_matching_broadcasts() {
    let server = Server::start();
    let listener = server.listen(&["room", "--event", "cursor"]);
    listener.joined();
    // Acknowledged sends, one after the other: the server delivers them in this order.
    server.send(&["room", "chat", r#"{"text":"hi"}"#]);
    server.send(&["room", "cursor", r#"{"x":1}"#]);
    assert_eq!(
        without_position(&listener.next_json()),
        json!({"type": "broadcast", "event": "cursor", "payload": {"x": 1}}),
        "the chat broadcast before it was not printed"
    );
}

#[test]
fn presence_tracks_and_listen_sees_the_join_and_the_leave() {
    let server = Server::start();
    let listener = server.listen(&["room", "--presence"]);
    listener.joined();

    let alice = Running::spawn(&server.args(&[
        "presence",
        "room",
        "--track",
        r#"{"n":1}"#,
        "--key",
        "alice",
    ]));
    // The tracker prints the state each time it changes; its own key shows up.
    let state = alice.until(|line| line["state"].get("alice").is_some());
    assert_eq!(
        state,
        json!({"type": "presence_state", "state": {"alice": [{"n": 1}]}})
    );

    let join = listener.until(|line| line["type"] == "presence" && line["event"] == "join");
    assert_eq!(join["key"], "alice");
    assert_eq!(join["meta"]["n"], 1);
    assert!(join["meta"]["phx_ref"].is_string(), "{join}");

    // The tracker goes away: its presence leaves.
    let status = alice.terminate();
    assert!(status.success(), "SIGTERM ends presence with 0: {status:?}");
    let leave = listener.until(|line| line["type"] == "presence" && line["event"] == "leave");
    assert_eq!(leave["key"], "alice");
}

#[test]
fn bad_json_arguments_fail_with_one_line() {
    // Checked before connecting: no server needed.
    let output = run(&["send", "room", "hello", "{nope"]);
    let line = one_error_line(&output);
    assert!(line.contains("not valid JSON"), "{line}");
    assert_eq!(output.status.code(), Some(2));

    let output = run(&["presence", "room", "--track", "{nope"]);
    assert!(one_error_line(&output).contains("not valid JSON"));
    let output = run(&["presence", "room", "--track", "[1, 2]"]);
    assert!(one_error_line(&output).contains("--track must be a JSON object"));
}

#[test]
fn an_unreachable_server_fails_with_one_line() {
    let url = format!("ws://127.0.0.1:{}/socket", free_port());
    for args in [
        vec!["listen", "room"],
        vec!["send", "room", "hello", "{}"],
        vec!["send", "room", "hello", "{}", "--http"],
        vec!["presence", "room", "--track", "{}"],
    ] {
        let mut args = args;
        args.extend(["--url", &url, "--apikey", "any"]);
        let output = run(&args);
        let line = one_error_line(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        if args.contains(&"--http") {
            assert!(line.contains("REST API"), "{line}");
        } else {
            assert!(line.contains(&format!("cannot connect to {url}")), "{line}");
            assert!(line.contains("Connection refused"), "{line}");
        }
    }
}

#[test]
fn a_refused_key_or_join_fails_with_the_servers_reason() {
    let server = Server::start();
    let refused = |output: Output| {
        let line = one_error_line(&output);
        assert!(line.contains("401"), "{line}");
        assert!(
            line.contains("The token provided is not a valid JWT"),
            "{line}"
        );
    };
    refused(run(&[
        "listen",
        "room",
        "--url",
        &server.url,
        "--apikey",
        "nope",
    ]));
    refused(run(&[
        "send",
        "room",
        "hello",
        "{}",
        "--url",
        &server.url,
        "--apikey",
        "nope",
    ]));
    refused(run(&[
        "send",
        "room",
        "hello",
        "{}",
        "--http",
        "--url",
        &server.url,
        "--apikey",
        "nope",
    ]));
    // The key from the environment, as CRIER_APIKEY.
    let output = crier()
        .args(["listen", "room", "--url", &server.url])
        .env("CRIER_APIKEY", "nope")
        .output()
        .unwrap();
    refused(output);
    // No key at all.
    let line = one_error_line(&run(&["listen", "room", "--url", &server.url]));
    assert!(line.contains("API key is missing"), "{line}");

    // A join the server refuses: the topic is too long.
    let topic = "x".repeat(300);
    let output = run(&server.args(&["listen", &topic]));
    let line = one_error_line(&output);
    assert!(line.contains("cannot join channel"), "{line}");
    assert!(line.contains("InvalidTopic"), "{line}");

    // --private: this server has no database to authorize private channels with, so
    // every private join (listen, send, presence) is refused with Supabase's reason.
    for command in [
        vec!["listen", "room", "--private"],
        vec!["send", "room", "hello", "{}", "--private"],
        vec!["presence", "room", "--track", "{}", "--private"],
    ] {
        let line = one_error_line(&run(&server.args(&command)));
        assert!(
            line.contains(
                "Unauthorized: You do not have permissions to read from this Channel topic: room"
            ),
            "{command:?}: {line}"
        );
    }
    // Over HTTP, a private message nobody may write is refused with 403.
    let line = one_error_line(&run(&server.args(&[
        "send",
        "room",
        "hello",
        "{}",
        "--http",
        "--private",
    ])));
    assert!(line.contains("403"), "{line}");
}

#[test]
fn bad_postgres_specs_fail_with_one_line() {
    for spec in [
        "UPSERT:public.todos",
        "INSERT",
        "INSERT:",
        "INSERT:public.",
        "*:public.todos:id",
    ] {
        let output = run(&[
            "listen",
            "room",
            "--postgres",
            spec,
            "--url",
            "ws://127.0.0.1:1/socket",
        ]);
        let line = one_error_line(&output);
        assert_eq!(output.status.code(), Some(2), "{spec}");
        assert!(line.contains(&format!("--postgres '{spec}'")), "{line}");
        assert!(line.contains("EVENT:SCHEMA[.TABLE][:FILTER]"), "{line}");
    }
}

#[test]
fn postgres_without_a_database_prints_a_system_line_and_keeps_listening() {
    let server = Server::start();
    let listener = server.listen(&["room", "--postgres", "INSERT:public.todos"]);
    let system = listener.until(|line| line["type"] == "system");
    assert_eq!(system["extension"], "postgres_changes");
    assert_eq!(system["status"], "error");
    assert!(
        system["message"]
            .as_str()
            .unwrap()
            .contains("no database is configured"),
        "{system}"
    );

    server.send(&["room", "after", r#"{"still":"here"}"#]);
    assert_eq!(
        without_position(&listener.until(|line| line["type"] == "broadcast")),
        json!({"type": "broadcast", "event": "after", "payload": {"still": "here"}})
    );
}

#[test]
fn help_documents_the_lines_and_hides_the_key() {
    let output = crier()
        .args(["listen", "--help"])
        .env("CRIER_APIKEY", "secret-key-value")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for shape in [
        r#"{"type":"broadcast","event":"cursor","payload":{"x":1}}"#,
        r#""payload_base64""#,
        r#"{"type":"presence","event":"join","key":"alice""#,
        r#"{"type":"postgres_changes","event":"INSERT""#,
        r#"{"type":"system""#,
        r#"{"type":"status","status":"joined"}"#,
        "CRIER_APIKEY",
    ] {
        assert!(help.contains(shape), "{shape} missing from:\n{help}");
    }
    assert!(
        !help.contains("secret-key-value"),
        "help must not print the key"
    );
}

#[test]
fn listen_resume_prints_what_was_missed_then_a_resumed_line() {
    let server = Server::start();
    let first = server.listen(&["feed"]);
    first.joined();
    server.send(&["feed", "n", r#"{"n":1}"#]);
    let line = first.until(|line| line["type"] == "broadcast");
    let (epoch, offset) = (
        line["meta"]["epoch"]
            .as_str()
            .expect("meta.epoch")
            .to_owned(),
        line["meta"]["offset"].as_u64().expect("meta.offset"),
    );
    assert!(first.terminate().success());
    for n in 2..=3 {
        server.send(&["feed", "n", &format!(r#"{{"n":{n}}}"#)]);
    }
    let from = format!("{epoch}:{offset}");
    let back = server.listen(&["feed", "--resume", &from]);
    for n in 2..=3 {
        let line = back.until(|line| line["type"] == "broadcast");
        assert_eq!(line["payload"]["n"], n, "{line}");
        assert_eq!(line["meta"]["offset"], offset + n as u64 - 1, "{line}");
    }
    let resumed = back.until(|line| line["status"] == "resumed");
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(resumed["missed"], 2, "{resumed}");

    let bad = run(&server.args(&["listen", "feed", "--resume", "no-offset"]));
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("\"no-offset\" is not EPOCH:OFFSET"),
        "{stderr}"
    );
}
