//! Flow control end to end: bursts reach every subscriber that reads, in full and in
//! order, however many messages they hold; a subscriber that stops reading is cut off
//! within the slow-consumer bound and holds nobody else back.

use std::time::Duration;

use crier_server::protocol::Vsn;
use crier_server::{Config, Node};
use crier_testkit::prelude::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const TOPIC: &str = "realtime:burst";
/// Messages in every burst.
const BURST: u64 = 10_000;
/// The failure guard while a burst is read: generous, because a thousand readers share
/// two cores with the server.
const READ_GUARD: Duration = Duration::from_secs(120);

fn config(config: &mut Config) {
    config.limits.max_connections = 1100;
    config.limits.max_events_per_second = u32::MAX;
}

/// The `seq` of a broadcast frame, found without parsing the JSON (a thousand readers
/// parsing ten thousand frames each would measure the test, not the server).
fn seq_of(text: &str) -> Option<u64> {
    let start = text.find("\"seq\":")? + 6;
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

/// Reads broadcasts numbered 0..`count` from `client`, failing on a gap, a reorder or a
/// close.
async fn read_sequence(mut client: Client, count: u64) -> Result<Client, String> {
    let mut next = 0;
    while next < count {
        let frame = tokio::time::timeout(READ_GUARD, client.ws.next())
            .await
            .map_err(|_| format!("nothing arrived after {next} messages"))?;
        match frame {
            Some(Ok(WsMessage::Text(text))) => {
                if let Some(seq) = seq_of(&text) {
                    if seq != next {
                        return Err(format!("expected {next}, got {seq}"));
                    }
                    next += 1;
                }
            }
            Some(Ok(WsMessage::Close(frame))) => {
                return Err(format!("closed after {next} messages: {frame:?}"));
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return Err(format!("connection lost after {next} messages")),
        }
    }
    Ok(client)
}

/// `count` subscribers of [`TOPIC`], each read on its own task.
async fn readers(
    server: &TestServer,
    count: usize,
) -> Vec<tokio::task::JoinHandle<Result<Client, String>>> {
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let vsn = if i % 2 == 0 { Vsn::V2 } else { Vsn::V1 };
        let mut client = server.connect(vsn).await;
        client.join_ok(TOPIC, json!({})).await;
        tasks.push(tokio::spawn(read_sequence(client, BURST)));
    }
    tasks
}

/// Waits for every reader to have read everything; returns them, still connected.
async fn all_read(tasks: Vec<tokio::task::JoinHandle<Result<Client, String>>>) -> Vec<Client> {
    let mut clients = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(client) => clients.push(client),
            Err(why) => panic!("reader {i}: {why}"),
        }
    }
    clients
}

fn slow_consumer_disconnects(server: &TestServer) -> f64 {
    metric(
        &server.node.metrics_text(),
        "crier_slow_consumer_disconnects_total",
    )
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics"))
}

async fn rest_batch_reaches_every_reader(subscribers: usize) {
    let server = TestServer::start_with(config).await;
    let tasks = readers(&server, subscribers).await;
    let messages: Vec<Value> = (0..BURST)
        .map(|seq| json!({"topic": "burst", "event": "e", "payload": {"seq": seq}}))
        .collect();
    let response = reqwest::Client::new()
        .post(server.http("/api/broadcast"))
        .bearer_auth(token(json!({"role": "service_role"})))
        .json(&json!({"messages": messages}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    all_read(tasks).await;
    assert_eq!(slow_consumer_disconnects(&server), 0.0);
}

async fn websocket_burst_reaches_every_reader(subscribers: usize) {
    let server = TestServer::start_with(config).await;
    let tasks = readers(&server, subscribers).await;
    let mut sender = server.connect(Vsn::V2).await;
    let join_ref = sender.join_ok(TOPIC, json!({})).await;
    // Written as fast as the socket takes them: the server reads them only as fast as
    // the subscribers keep up, and TCP holds the rest.
    sender.burst(&join_ref, TOPIC, BURST, &json!({})).await;
    all_read(tasks).await;
    sender.heartbeat().await;
    assert_eq!(slow_consumer_disconnects(&server), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_batch_of_10000_reaches_one_reader() {
    rest_batch_reaches_every_reader(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_batch_of_10000_reaches_20_readers() {
    rest_batch_reaches_every_reader(20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_batch_of_10000_reaches_1000_readers() {
    rest_batch_reaches_every_reader(1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_burst_of_10000_reaches_one_reader() {
    websocket_burst_reaches_every_reader(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_burst_of_10000_reaches_20_readers() {
    websocket_burst_reaches_every_reader(20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_burst_of_10000_reaches_1000_readers() {
    websocket_burst_reaches_every_reader(1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_cut_off_within_the_bound_and_holds_nobody_back() {
    let bound = Duration::from_secs(1);
    let (gone_tx, mut gone_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = Config::new(SECRET);
    support_config(&mut config);
    config.flow.slow_consumer_timeout = bound;
    let node = Node::builder(config)
        .on_disconnect(move |info| {
            let _ = gone_tx.send(info.id);
        })
        .build()
        .unwrap();
    let server = TestServer::start_node(node).await;
    let mut stalled = server.connect_tiny_buffered().await;
    stalled.join_ok(TOPIC, json!({})).await;
    let tasks = readers(&server, 20).await;
    let mut sender = server.connect(Vsn::V2).await;
    let join_ref = sender.join_ok(TOPIC, json!({})).await;

    // 10 MB in 1 KB messages: far more than the stalled client's buffers hold.
    let started = tokio::time::Instant::now();
    sender
        .burst(&join_ref, TOPIC, BURST, &json!({"pad": "p".repeat(1000)}))
        .await;
    // Kept connected: the only disconnect to wait for is the stalled one's.
    let _readers = all_read(tasks).await;
    let everyone_read = started.elapsed();

    // Its socket stopped taking data during the burst, so it is gone at the latest one
    // bound after the burst's end (plus the margin a loaded machine needs).
    tokio::time::timeout(bound * 5, gone_rx.recv())
        .await
        .expect("the stalled subscriber was not disconnected in time")
        .unwrap();
    let gone_after = started.elapsed();
    assert!(
        gone_after <= everyone_read + bound * 5,
        "gone {gone_after:?} after the start, the burst was read in {everyone_read:?}"
    );
    assert_eq!(slow_consumer_disconnects(&server), 1.0);
    // What it finds when it reads again: the burst's start, then the slow-consumer close.
    let close = stalled.closed().await;
    if let Some(close) = close {
        assert_eq!(u16::from(close.code), 1013);
    }
    sender.heartbeat().await;
}

fn support_config(config: &mut Config) {
    config.limits.max_joins_per_second = 100_000;
    config.limits.max_presence_events_per_second = 1_000_000;
    self::config(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_slower_than_a_burst_gets_all_of_it_when_it_fits_its_budget() {
    // 8 MB go out, faster than the reader takes them: once its write has waited for
    // the patience, the publisher goes on, and the rest waits in the reader's queue
    // (budget 16 MiB) for it to catch up.
    let server = TestServer::start_with(config).await;
    let mut reader = server.connect_tiny_buffered().await;
    reader.join_ok(TOPIC, json!({})).await;
    let mut sender = server.connect(Vsn::V2).await;
    let join_ref = sender.join_ok(TOPIC, json!({})).await;
    let count = 2000;
    let reading = tokio::spawn(async move {
        // Slower than the server sends, but never stopped: 32 KiB, then a pause (this
        // shapes the reader's pace; nothing waits on it).
        let mut next = 0;
        let mut since_pause = 0;
        while next < count {
            let frame = tokio::time::timeout(READ_GUARD, reader.ws.next()).await;
            let Ok(Some(Ok(frame))) = frame else {
                return Err(format!("lost after {next} messages: {frame:?}"));
            };
            if let WsMessage::Text(text) = &frame {
                since_pause += text.len();
                if let Some(seq) = seq_of(text) {
                    assert_eq!(seq, next);
                    next += 1;
                }
            }
            if since_pause >= 32 << 10 {
                since_pause = 0;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(())
    });
    sender
        .burst(&join_ref, TOPIC, count, &json!({"pad": "p".repeat(4000)}))
        .await;
    reading.await.unwrap().unwrap();
    assert_eq!(slow_consumer_disconnects(&server), 0.0);
}
