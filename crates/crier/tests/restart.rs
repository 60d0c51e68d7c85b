//! The server is killed (SIGKILL, no goodbye) and restarted mid-session: the Rust client
//! reconnects, rejoins with its presence, says it resumed, and receives again.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crier_client::{
    Backoff, BroadcastPayload, ChannelEvent, ChannelOptions, Client, ConnectionStatus,
    PresenceEvent,
};
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::timeout;

const CRIER: &str = env!("CARGO_BIN_EXE_crier");
const SECRET: &str = "restart-test-secret-0123456789abcdef";
/// The failure guard on every wait.
const WAIT: Duration = Duration::from_secs(20);

/// A `crier serve` child, killed when dropped.
struct Server(Child);

impl Server {
    fn start(port: u16) -> Server {
        let mut child = Command::new(CRIER)
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--jwt-secret",
                SECRET,
            ])
            .args(["--log-level", "warn"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("crier starts");
        // Ready once it says where it listens. The rest of its output is drained on a
        // thread, so the server never writes into a closed pipe.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert!(
            first.contains(&format!("listening on 127.0.0.1:{port}")),
            "{first}"
        );
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server(child)
    }

    fn kill(mut self) {
        self.0.kill().unwrap(); // SIGKILL: no close frames, no drain
        self.0.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the first item `pick` accepts, with one deadline for the whole wait (a
/// stream that keeps yielding other items must not keep the test alive).
async fn until<T, R>(
    stream: &mut (impl futures_util::Stream<Item = T> + Unpin),
    mut pick: impl FnMut(T) -> Option<R>,
) -> R {
    timeout(WAIT, async {
        while let Some(item) = stream.next().await {
            if let Some(found) = pick(item) {
                return found;
            }
        }
        panic!("the stream ended first")
    })
    .await
    .expect("in time")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn token() -> String {
    let output = Command::new(CRIER)
        .args(["token", "--jwt-secret", SECRET, "--exp", "1h"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_rejoins_and_receives_after_a_server_kill() {
    let port = free_port();
    let server = Server::start(port);
    let url = format!("ws://127.0.0.1:{port}/socket");
    let fast = Backoff {
        initial: Duration::from_millis(100),
        multiplier: 2.0,
        max: Duration::from_millis(800),
        jitter: 0.25,
    };
    let client = Client::builder(&url)
        .api_key(token())
        .reconnect_policy(fast)
        .build()
        .unwrap();
    let room = client.channel_with("room", ChannelOptions::default().presence_key("alice"));
    let mut messages = room.broadcasts();
    let mut events = room.events();
    let mut statuses = client.status_stream();
    room.subscribe().await.unwrap();
    room.track(json!({"status": "online"})).await.unwrap();

    let sender = Client::builder(&url).api_key(token()).build().unwrap();
    sender
        .channel("room")
        .http_send("before", json!({"n": 1}))
        .await
        .unwrap();
    let message = timeout(WAIT, messages.next()).await.unwrap().unwrap();
    assert_eq!(message.event, "before");

    server.kill();
    until(&mut statuses, |status| {
        matches!(status, ConnectionStatus::Reconnecting { .. }).then_some(())
    })
    .await;
    let _server = Server::start(port);
    let gap = until(&mut events, |event| match event {
        ChannelEvent::Resumed { gap } => Some(gap),
        _ => None,
    })
    .await;
    assert!(gap > Duration::ZERO);

    // Delivery works again...
    sender
        .channel("room")
        .http_send("after", json!({"n": 2}))
        .await
        .unwrap();
    let message = timeout(WAIT, messages.next()).await.unwrap().unwrap();
    assert_eq!(
        (message.event.as_str(), message.payload),
        ("after", BroadcastPayload::Json(json!({"n": 2})))
    );

    // ...and the presence was tracked again on the new server, without asking.
    let watcher = Client::builder(&url).api_key(token()).build().unwrap();
    let watch = watcher.channel_with("room", ChannelOptions::default().presence_key("watcher"));
    let mut presence = watch.presence_events();
    watch.subscribe().await.unwrap();
    let metas = until(&mut presence, |event| match event {
        PresenceEvent::Sync => watch.presence_state().get("alice").cloned(),
        _ => None,
    })
    .await;
    assert_eq!(metas[0].payload["status"], "online");
}
