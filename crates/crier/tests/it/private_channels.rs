//! Private channels through the binary: `crier serve --database-url` makes the realtime
//! schema and authorizes with its policies; `crier listen/send --private` go through
//! them; a role that may not create the schema stops the start with the grant to give.

use serde_json::json;

use crate::support::{Running, run, serve, without_position};
use crier_testkit::TestPostgres;

const SECRET: &str = "private-channels-secret-0123456789abcdef";

/// `crier token` for `role` and `sub`.
fn token(role: &str, sub: &str) -> String {
    let output = run(&[
        "token",
        "--jwt-secret",
        SECRET,
        "--role",
        role,
        "--sub",
        sub,
    ]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn listen_and_send_go_through_the_databases_policies() {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql("create role authenticated nologin; create role anon nologin;")
        .unwrap();
    let url = pg.url();
    let (_server, port) = serve(&[
        "--jwt-secret",
        SECRET,
        "--database-url",
        &url,
        "--log-level",
        "warn",
    ]);
    // The server created realtime.messages; now the app's policies.
    pg.psql(
        "create policy members on realtime.messages for select to authenticated
             using (realtime.topic() = 'crew');
         create policy members_send on realtime.messages for insert to authenticated
             with check (realtime.topic() = 'crew');",
    )
    .unwrap();
    let socket = format!("ws://127.0.0.1:{port}/socket");
    let member = token("authenticated", "m1");
    let listener = Running::spawn(&[
        "listen",
        "crew",
        "--private",
        "--url",
        &socket,
        "--apikey",
        &member,
    ]);
    listener.joined();
    let sent = run(&[
        "send",
        "crew",
        "hi",
        r#"{"n":1}"#,
        "--private",
        "--url",
        &socket,
        "--apikey",
        &member,
    ]);
    assert!(sent.status.success(), "{sent:?}");
    assert_eq!(
        without_position(&listener.until(|line| line["type"] == "broadcast")),
        json!({"type": "broadcast", "event": "hi", "payload": {"n": 1}})
    );
    // What the database sent before a listener came is replayed to it.
    pg.psql("select realtime.send('{\"stored\": true}', 'kept', 'crew')")
        .unwrap();
    let replaying = Running::spawn(&[
        "listen",
        "crew",
        "--private",
        "--replay-since",
        "0",
        "--url",
        &socket,
        "--apikey",
        &member,
    ]);
    let line = replaying.until(|line| line["type"] == "broadcast");
    assert_eq!(line["event"], "kept", "{line}");
    assert_eq!(line["payload"]["stored"], true, "{line}");
    assert_eq!(line["meta"]["replayed"], true, "{line}");
    assert!(replaying.terminate().success());
    // An anon key may not read the channel.
    let refused = run(&[
        "listen",
        "crew",
        "--private",
        "--url",
        &socket,
        "--apikey",
        &token("anon", "x"),
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "Unauthorized: You do not have permissions to read from this Channel topic: crew"
        ),
        "{stderr}"
    );
    assert!(listener.terminate().success());
}

#[test]
fn a_role_that_may_not_create_the_realtime_schema_stops_the_start() {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql("create role crier login replication; revoke create on database postgres from public")
        .unwrap();
    let url = pg.url().replace("postgres@", "crier@");
    let output = run(&[
        "serve",
        "--port",
        "0",
        "--jwt-secret",
        SECRET,
        "--database-url",
        &url,
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            r#"private channels cannot work: schema realtime is missing and role "crier" may not create it: GRANT CREATE ON DATABASE "postgres" TO "crier""#
        ),
        "{stderr}"
    );
}
