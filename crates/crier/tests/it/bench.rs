//! `crier bench` against a real `crier serve`: a run split over worker processes, its
//! JSON results, and clear errors for bad settings.

use crate::support::{run, serve};
use serde_json::Value;

const SECRET: &str = "bench-cli-secret-0123456789abcdef";

#[test]
fn a_fanout_split_over_worker_processes_counts_every_delivery() {
    let (_server, port) = serve(&[
        "--jwt-secret",
        SECRET,
        "--max-events-per-second",
        "100000000",
        "--max-joins-per-second",
        "100000",
        "--log-level",
        "warn",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("runs.json");
    let url = format!("ws://127.0.0.1:{port}/socket/websocket");
    // 25 subscribers and a publisher at 10 per worker: three worker processes, dialling
    // from 127.0.0.1, .2 and .3.
    let output = run(&[
        "bench",
        "fanout",
        "--url",
        &url,
        "--jwt-secret",
        SECRET,
        "--subscribers",
        "25",
        "--per-worker",
        "10",
        "--rates",
        "40",
        "--seconds",
        "0.5",
        "--warmup",
        "0.1",
        "--settle",
        "0",
        "--no-progress",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("deliv/s"), "{table}");

    let results: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{results}");
    assert_eq!(runs[0]["workload"], "memory");
    assert_eq!(runs[1]["workload"], "B1");
    assert_eq!(runs[1]["server"], "crier");
    assert_eq!(runs[1]["subscribers"], 25);
    assert_eq!(runs[1]["rate"], 40.0);
    assert_eq!(runs[1]["delivery_ratio"], 1.0, "{results}");
    assert_eq!(runs[1]["lost_connections"], 0);
    assert!(runs[1]["p99_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_bench_settings_get_one_clear_error() {
    let output = run(&["bench", "fanout", "--server", "phoenix"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("unknown server \"phoenix\""), "{stderr}");
    assert!(stderr.contains("socket.io"), "{stderr}");

    let output = run(&["bench", "fanout", "--rates", "fast"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("neither a positive number nor \"max\""),
        "{stderr}"
    );

    // Crier needs a key; saying so beats 1000 refused connections.
    let output = run(&["bench", "idle", "--connections", "1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--jwt-secret or --token"), "{stderr}");
}

#[test]
fn pgchanges_prints_its_setup_and_needs_a_secret_for_rls() {
    let output = run(&["bench", "pgchanges", "--print-setup", "--rls", "per-user"]);
    assert!(output.status.success(), "{output:?}");
    let sql = String::from_utf8(output.stdout).unwrap();
    assert!(sql.contains("create policy bench_read"), "{sql}");
    assert!(sql.contains("jsonb->>'sub'"), "{sql}");

    let output = run(&["bench", "pgchanges", "--print-setup", "--rls", "some"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("expected off, all or per-user"), "{stderr}");

    // One token cannot carry the claims of many users; say so before touching anything.
    let output = run(&[
        "bench",
        "pgchanges",
        "--database-url",
        "postgres://127.0.0.1:1/none",
        "--token",
        "some-token",
        "--rls",
        "all",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--rls all needs --jwt-secret"), "{stderr}");
}
