//! Asymmetric keys through the binary: `crier token --jwk` signs, `crier serve --jwt-jwks`
//! verifies, SIGHUP re-reads the set, and a set that does not parse stops the start.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{http_get, run, serve};

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn keys(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crier-testkit/keys")
        .join(name)
}

/// `crier token --jwk <the test keys> --kid <kid>`.
fn token(kid: &str) -> String {
    let private = keys("private.jwks.json");
    let output = run(&[
        "token",
        "--jwk",
        private.to_str().unwrap(),
        "--kid",
        kid,
        "--role",
        "authenticated",
        "--sub",
        kid,
    ]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn connect_status(port: u16, token: &str) -> String {
    let answer = http_get(
        port,
        &format!("/socket/websocket?apikey={token}&vsn=2.0.0"),
        UPGRADE,
    );
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn token_signs_with_a_private_jwk_that_the_public_set_verifies() {
    let public = std::fs::read_to_string(keys("public.jwks.json")).unwrap();
    let verifier = crier_server::auth::JwtVerifier::with_secrets(&[])
        .with_jwks(&public)
        .unwrap();
    for kid in ["test-rsa", "test-p256", "test-p384", "test-ed25519"] {
        let claims = verifier
            .verify(&token(kid), crier_server::auth::unix_now())
            .unwrap_or_else(|err| panic!("{kid}: {err}"));
        assert_eq!(claims.sub.as_deref(), Some(kid));
    }
    let missing = run(&[
        "token",
        "--jwk",
        keys("private.jwks.json").to_str().unwrap(),
        "--kid",
        "nope",
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no key with kid `nope`"));
}

#[test]
fn serve_verifies_a_jwks_file_and_reads_it_again_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::copy(keys("public.jwks.json"), &file).unwrap();
    let (server, port) = serve(&[
        "--jwt-secret",
        "a-secret-for-hs-tokens-0123456789",
        "--jwt-jwks",
        file.to_str().unwrap(),
    ]);
    let p256 = token("test-p256");
    assert!(connect_status(port, &p256).starts_with("HTTP/1.1 101"));
    assert!(connect_status(port, &token("test-rsa")).starts_with("HTTP/1.1 101"));

    // The operator drops the P-256 key and sends SIGHUP.
    let mut set: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|key| key["kid"] != "test-p256");
    std::fs::write(&file, set.to_string()).unwrap();
    let sent = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    loop {
        let line = server.next_line();
        if line.contains("SIGHUP") {
            assert!(line.contains("JWKS reloaded, 3 keys"), "{line}");
            break;
        }
    }
    assert!(connect_status(port, &p256).starts_with("HTTP/1.1 401"));
    assert!(connect_status(port, &token("test-rsa")).starts_with("HTTP/1.1 101"));

    // A broken edit keeps the keys in use.
    std::fs::write(&file, "{").unwrap();
    Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    loop {
        let line = server.next_line();
        if line.contains("SIGHUP") {
            assert!(
                line.contains("reload failed, keeping the keys in use"),
                "{line}"
            );
            break;
        }
    }
    assert!(connect_status(port, &token("test-rsa")).starts_with("HTTP/1.1 101"));
    assert!(server.terminate().success());
}

#[test]
fn a_jwks_file_that_does_not_parse_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, "{\"keys\": []}").unwrap();
    let output = run(&["serve", "--port", "0", "--jwt-jwks", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid --jwt-jwks") && stderr.contains("no key that verifies"),
        "{stderr}"
    );
}
