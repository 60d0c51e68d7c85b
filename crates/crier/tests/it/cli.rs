//! The `crier` binary: the development banner, `crier token`, and a graceful stop on
//! SIGTERM.

use crate::support::{Running, crier, http_get, listening_port_in, run, serve, serve_command};

#[test]
fn serve_without_a_secret_prints_working_dev_keys_and_stops_on_sigterm() {
    // The banner names the port in its first line (`serve` fails the test otherwise).
    let (server, port) = serve(&["--log-level", "warn"]);
    let mut anon_key = None;
    let mut saw_warning = false;
    loop {
        let line = server.next_line();
        saw_warning |= line.contains("DEVELOPMENT ONLY");
        if let Some(key) = line.trim().strip_prefix("service_role key:") {
            assert!(!key.trim().is_empty());
            break;
        }
        if let Some(key) = line.trim().strip_prefix("anon key:") {
            anon_key = Some(key.trim().to_owned());
        }
    }
    let anon_key = anon_key.expect("an anon key is printed");
    assert!(
        saw_warning,
        "the banner says the keys are for development only"
    );

    assert!(http_get(port, "/healthcheck", "").ends_with("ok"));
    // The printed key opens a WebSocket: the server answers the upgrade with 101.
    let upgrade = http_get(
        port,
        &format!("/socket/websocket?apikey={anon_key}&vsn=2.0.0"),
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    assert!(upgrade.starts_with("HTTP/1.1 101"), "{upgrade}");
    let refused = http_get(
        port,
        "/socket/websocket?apikey=nope",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    let (status, rest) = server.terminate_with_output();
    assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
    assert!(status.success(), "a graceful stop exits 0");
}

#[test]
fn token_prints_a_jwt_the_server_accepts() {
    let output = run(&[
        "token",
        "--jwt-secret",
        "s3cret-s3cret-s3cret",
        "--role",
        "authenticated",
        "--sub",
        "u-1",
        "--exp",
        "2h",
    ]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.lines().last().unwrap();
    let verifier = crier_server::auth::JwtVerifier::new("s3cret-s3cret-s3cret");
    let claims = verifier
        .verify(token, crier_server::auth::unix_now())
        .unwrap();
    assert_eq!(claims.role, "authenticated");
    assert_eq!(claims.sub.as_deref(), Some("u-1"));
    let lifetime = claims.exp - crier_server::auth::unix_now();
    assert!((7190..=7200).contains(&lifetime), "{lifetime}");
}

#[test]
fn bad_settings_fail_with_one_clear_line() {
    let output = run(&["serve", "--port", "not-a-port"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--port"), "{stderr}");
}

#[test]
fn environment_variables_configure_the_server_and_stay_out_of_help() {
    let mut command = serve_command(None, &[]);
    command
        .env("CRIER_JWT_SECRET", "env-secret-value-0123456789")
        .env("CRIER_MAX_CONNECTIONS", "7")
        .env("CRIER_TENANT", "from-env");
    let server = Running::start(command);
    let mut banner = Vec::new();
    loop {
        let line = server.next_line();
        let done = line.contains("limits:");
        banner.push(line);
        if done {
            break;
        }
    }
    server.kill();
    assert!(banner[0].contains("(tenant from-env)"), "{banner:?}");
    assert!(
        banner.last().unwrap().contains("7 connections"),
        "{banner:?}"
    );
    assert!(
        !banner.iter().any(|l| l.contains("DEVELOPMENT")),
        "a secret was given: no dev keys"
    );

    let help = crier()
        .args(["serve", "--help"])
        .env("CRIER_JWT_SECRET", "env-secret-value-0123456789")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("CRIER_JWT_SECRET"));
    assert!(
        !help.contains("env-secret-value"),
        "help must not print the secret"
    );
}

/// As under `crier serve | head -1`: the pipe is closed after the first line (not
/// `support::serve`, which keeps draining it).
#[test]
fn serve_keeps_running_when_its_stdout_is_closed() {
    let (mut server, first) =
        Running::first_line_then_close(serve_command(None, &["--log-level", "warn"]));
    // The reader is gone now: what the server writes next goes into a closed pipe.
    let port = listening_port_in(&first).expect("the banner names the port");
    assert!(http_get(port, "/healthcheck", "").ends_with("ok"));
    assert!(server.is_running(), "still running");
    // Its shutdown message is written after the reader is certainly gone.
    let status = server.terminate();
    assert!(status.success(), "a clean exit, not a panic on EPIPE");
}
