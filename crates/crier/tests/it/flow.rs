//! Bursts against the real binary: `crier listen` gets every message of a REST batch far
//! larger than any queue count, and a burst to a thousand subscribers stays within the
//! server's budget of queued bytes (its peak RSS says so).

use std::time::Duration;

use crate::support::{Running, http_post_json, serve, token};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "flow-test-secret-0123456789abcdef";

fn batch(count: u64, pad: usize) -> String {
    let pad = "p".repeat(pad);
    let messages: Vec<Value> = (0..count)
        .map(|seq| json!({"topic": "room1", "event": "e", "payload": {"seq": seq, "pad": pad}}))
        .collect();
    json!({"messages": messages}).to_string()
}

/// `crier serve` with the limits raised out of the way, plus `extra`; and a key.
fn server(extra: &[&str]) -> (Running, u16, String) {
    let mut args = vec![
        "--jwt-secret",
        SECRET,
        "--max-connections",
        "2000",
        "--max-joins-per-second",
        "100000",
        "--max-events-per-second",
        "2000000000",
        "--log-level",
        "warn",
    ];
    args.extend(extra);
    let (server, port) = serve(&args);
    (server, port, token(SECRET))
}

#[test]
fn crier_listen_receives_a_rest_batch_of_10000_in_full_and_in_order() {
    let (_server, port, key) = server(&[]);
    let url = format!("ws://127.0.0.1:{port}/socket");
    let mut listen = Running::spawn(&["listen", "room1", "--url", &url, "--apikey", &key]);
    listen.joined();
    let answer = http_post_json(
        port,
        "/api/broadcast",
        &format!("apikey: {key}\r\n"),
        &batch(10_000, 0),
    );
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    for seq in 0..10_000u64 {
        let line = listen.until(|line| line["type"] == "broadcast");
        assert_eq!(line["payload"]["seq"], seq, "{line}");
    }
    assert!(listen.is_running(), "the listener was not disconnected");
}

/// The server's resident and peak resident memory, in bytes (from /proc).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A subscriber of `realtime:room1` with a 4 KiB receive buffer (the kernel holds next to
/// nothing for it), which reads nothing until `go` says so, then counts broadcasts until
/// it has `count` and checks their order.
async fn subscriber(
    port: u16,
    url: String,
    count: u64,
    mut go: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    ws.send(Message::Text(
        r#"["1","1","realtime:room1","phx_join",{"config":{}}]"#.into(),
    ))
    .await
    .unwrap();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains("phx_reply") => break,
            Some(Ok(_)) => {}
            other => panic!("join failed: {other:?}"),
        }
    }
    tokio::spawn(async move {
        go.wait_for(|go| *go).await.unwrap();
        let mut next = 0;
        while next < count {
            let frame = tokio::time::timeout(Duration::from_secs(120), ws.next()).await;
            let Ok(Some(Ok(frame))) = frame else {
                return Err(format!("lost after {next} messages: {frame:?}"));
            };
            if let Message::Text(text) = frame
                && let Some(at) = text.find("\"seq\":")
            {
                let digits: String = text[at + 6..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if digits.parse::<u64>() != Ok(next) {
                    return Err(format!("expected {next}, got {digits}"));
                }
                next += 1;
            }
        }
        Ok(())
    })
}

/// Polls `/metrics` until the number after `name` satisfies `wanted` (a failure guard
/// stops it after a minute).
fn await_metric(port: u16, name: &str, wanted: impl Fn(f64) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = crate::support::http_get(port, "/metrics", "");
        let value = metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok());
        if value.is_some_and(&wanted) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never got there: {value:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_1000_subscribers_that_pause_stays_within_the_queued_bytes_budget() {
    const SUBSCRIBERS: usize = 1000;
    const MESSAGES: u64 = 5000;
    let budget: u64 = 8 << 20;
    let (server, port, key) = server(&[
        "--max-queued-bytes",
        "8MiB",
        // A pause is not a stall: nobody here is cut off.
        "--slow-consumer-timeout",
        "60s",
    ]);
    let url = format!("ws://127.0.0.1:{port}/socket/websocket?vsn=2.0.0&apikey={key}");
    let (go, paused) = tokio::sync::watch::channel(false);
    let mut readers = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        readers.push(subscriber(port, url.clone(), MESSAGES, paused.clone()).await);
    }
    let (before, _) = memory(server.pid());
    // 5,000 messages for 1,000 subscribers that are not reading: 5 million queue
    // entries. Unbounded, the entries alone would take 200 MB.
    let body = batch(MESSAGES, 200);
    let post = tokio::task::spawn_blocking(move || {
        http_post_json(port, "/api/broadcast", &format!("apikey: {key}\r\n"), &body)
    });
    // The publisher has filled the budget and waits for room.
    tokio::task::spawn_blocking(move || {
        await_metric(port, "crier_queued_bytes", |queued| {
            queued > (8 << 20) as f64
        });
    })
    .await
    .unwrap();
    go.send_replace(true);
    for (i, reader) in readers.into_iter().enumerate() {
        if let Err(why) = reader.await.unwrap() {
            panic!("subscriber {i}: {why}");
        }
    }
    let answer = post.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let (_, peak) = memory(server.pid());
    let growth = peak.saturating_sub(before);
    eprintln!(
        "RSS before the burst {} MiB, peak {} MiB, growth {} MiB (budget {} MiB)",
        before >> 20,
        peak >> 20,
        growth >> 20,
        budget >> 20
    );
    // Bounded by the budget plus what every socket that has written a burst keeps
    // whatever the burst's size (a WebSocket write buffer of up to 32 KiB, 40-60 MiB in
    // all here), where unbounded queues would take 200 MB and more.
    assert!(
        growth <= budget + (88 << 20),
        "RSS grew {} MiB during the burst",
        growth >> 20
    );
}
