//! Runs the `crier-rawws` binary on a free port and drives it with real WebSocket
//! clients: subscribe, publish, ping, and a bad command that must not break anything.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The server process, killed when the test ends however it ends.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crier-rawws"))
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("crier-rawws starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let port = line
            .trim()
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        assert_ne!(port, 0, "--port 0 prints the port actually bound");
        Server { child, port }
    }

    async fn connect(&self, path: &str) -> Ws {
        let url = format!("ws://127.0.0.1:{}{path}", self.port);
        connect_async(url).await.expect("WebSocket connects").0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// The next text frame, failing after a few seconds.
async fn recv(ws: &mut Ws) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("no error");
        match frame {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Nothing arrives for a moment.
async fn assert_quiet(ws: &mut Ws) {
    let next = tokio::time::timeout(Duration::from_millis(150), ws.next()).await;
    assert!(next.is_err(), "unexpected frame {next:?}");
}

#[tokio::test]
async fn publish_reaches_every_subscriber_verbatim() {
    let server = Server::start();
    // Any path and query are accepted.
    let mut first = server.connect("/").await;
    let mut second = server.connect("/any/path?x=1").await;
    let mut publisher = server.connect("/").await;

    send(&mut first, "sub room").await;
    assert_eq!(recv(&mut first).await, "ok room");
    send(&mut first, "sub other").await;
    assert_eq!(recv(&mut first).await, "ok other");
    send(&mut second, "sub room").await;
    assert_eq!(recv(&mut second).await, "ok room");

    let payload = r#"{"text":"two  spaces, é ✓","n":1} trailing "#;
    send(&mut publisher, &format!("pub room {payload}")).await;
    assert_eq!(recv(&mut first).await, payload);
    assert_eq!(recv(&mut second).await, payload);

    send(&mut publisher, "pub other just first").await;
    assert_eq!(recv(&mut first).await, "just first");
    assert_quiet(&mut second).await;
    // The publisher subscribes to nothing and gets no reply.
    assert_quiet(&mut publisher).await;
}

#[tokio::test]
async fn a_publisher_that_subscribed_receives_its_own_message() {
    let server = Server::start();
    let mut ws = server.connect("/").await;
    send(&mut ws, "sub echo").await;
    assert_eq!(recv(&mut ws).await, "ok echo");
    send(&mut ws, "pub echo hello").await;
    assert_eq!(recv(&mut ws).await, "hello");
}

#[tokio::test]
async fn ping_and_bad_commands_keep_the_connection() {
    let server = Server::start();
    let mut ws = server.connect("/").await;
    send(&mut ws, "ping").await;
    assert_eq!(recv(&mut ws).await, "pong");

    for bad in ["frobnicate", "sub ", "pub nopayload", "pub  x"] {
        send(&mut ws, bad).await;
        let reply = recv(&mut ws).await;
        assert!(reply.starts_with("err "), "{bad:?} got {reply:?}");
    }
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert!(recv(&mut ws).await.starts_with("err "));

    send(&mut ws, "sub t").await;
    assert_eq!(recv(&mut ws).await, "ok t");
    send(&mut ws, "pub t still here").await;
    assert_eq!(recv(&mut ws).await, "still here");
    send(&mut ws, "ping").await;
    assert_eq!(recv(&mut ws).await, "pong");
}

#[tokio::test]
async fn publishing_after_a_subscriber_left_still_works() {
    let server = Server::start();
    let mut gone = server.connect("/").await;
    send(&mut gone, "sub t").await;
    assert_eq!(recv(&mut gone).await, "ok t");
    gone.close(None).await.unwrap();
    drop(gone);

    let mut ws = server.connect("/").await;
    send(&mut ws, "sub t").await;
    assert_eq!(recv(&mut ws).await, "ok t");
    // Publishing to a topic whose other subscriber left still works.
    send(&mut ws, "pub t after").await;
    assert_eq!(recv(&mut ws).await, "after");
}
