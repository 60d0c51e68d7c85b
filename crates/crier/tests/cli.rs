//! The `crier` binary: the development banner, `crier token`, and a graceful stop on
//! SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

const CRIER: &str = env!("CARGO_BIN_EXE_crier");

/// A plain HTTP/1.1 GET over a std socket: enough to probe the server from a sync test.
/// Reads the head, then `Content-Length` bytes of body (an upgraded connection stays
/// open, so reading to the end would never return).
fn http_get(port: u16, path: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8(body).unwrap()
}

#[test]
fn serve_without_a_secret_prints_working_dev_keys_and_stops_on_sigterm() {
    let mut child = Command::new(CRIER)
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "warn",
        ])
        .env_remove("CRIER_JWT_SECRET")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut port = None;
    let mut anon_key = None;
    let mut saw_warning = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            port = rest
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        }
        saw_warning |= line.contains("DEVELOPMENT ONLY");
        if let Some(key) = line.trim().strip_prefix("service_role key:") {
            assert!(!key.trim().is_empty());
            break;
        }
        if let Some(key) = line.trim().strip_prefix("anon key:") {
            anon_key = Some(key.trim().to_owned());
        }
    }
    let port = port.expect("the banner names the port");
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

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
    assert!(child.wait().unwrap().success(), "a graceful stop exits 0");
}

#[test]
fn token_prints_a_jwt_the_server_accepts() {
    let output = Command::new(CRIER)
        .args([
            "token",
            "--jwt-secret",
            "s3cret-s3cret-s3cret",
            "--role",
            "authenticated",
            "--sub",
            "u-1",
            "--exp",
            "2h",
        ])
        .output()
        .unwrap();
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
    let output = Command::new(CRIER)
        .args(["serve", "--port", "not-a-port"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--port"), "{stderr}");
}

#[test]
fn environment_variables_configure_the_server_and_stay_out_of_help() {
    let mut child = Command::new(CRIER)
        .args(["serve", "--bind", "127.0.0.1", "--port", "0"])
        .env("CRIER_JWT_SECRET", "env-secret-value-0123456789")
        .env("CRIER_MAX_CONNECTIONS", "7")
        .env("CRIER_TENANT", "from-env")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    for line in lines.map_while(Result::ok) {
        let done = line.contains("limits:");
        banner.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner[0].contains("(tenant from-env)"), "{banner:?}");
    assert!(
        banner.last().unwrap().contains("7 connections"),
        "{banner:?}"
    );
    assert!(
        !banner.iter().any(|l| l.contains("DEVELOPMENT")),
        "a secret was given: no dev keys"
    );

    let help = Command::new(CRIER)
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

#[test]
fn serve_keeps_running_when_its_stdout_is_closed() {
    let mut child = Command::new(CRIER)
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "warn",
        ])
        .env_remove("CRIER_JWT_SECRET")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone now; the rest of the banner goes into a closed pipe.
    let port: u16 = first
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the banner names the port");
    assert!(http_get(port, "/healthcheck", "").ends_with("ok"));
    assert!(child.try_wait().unwrap().is_none(), "still running");
    // Its shutdown message is written after the reader is certainly gone.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        child.wait().unwrap().success(),
        "a clean exit, not a panic on EPIPE"
    );
}
