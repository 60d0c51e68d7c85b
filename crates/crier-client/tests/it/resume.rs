//! The client resumes by itself: its connection is cut mid-stream (a relay between it
//! and a real node drops both sockets), it reconnects, rejoins with the last position it
//! received, and gets every broadcast it missed, none twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crier_client::{BroadcastPayload, ChannelEvent, ChannelOptions, Client};
use crier_testkit::prelude::{TestServer, next, token};
use futures_util::StreamExt;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);
const SENT: i64 = 10_000;

/// A TCP relay whose open connections can all be cut at once.
struct Relay {
    addr: std::net::SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn to(target: std::net::SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = Arc::clone(&links);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                accepted.lock().unwrap().push(link);
            }
        });
        Relay { addr, links }
    }

    /// Drops every open connection, both sides, with no WebSocket goodbye.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_stream_loses_and_repeats_nothing() {
    let server = TestServer::start_with(|config| config.history.size = 20_000).await;
    let relay = Relay::to(server.addr).await;
    let client = Client::builder(format!("ws://{}/socket", relay.addr))
        .api_key(token(json!({"role": "anon"})))
        // The test reads as fast as it can, but must never skip an event.
        .stream_capacity(2 * SENT as usize)
        .build()
        .unwrap();
    let channel = client.channel_with("feed", ChannelOptions::default());
    let mut broadcasts = channel.broadcasts();
    let mut events = channel
        .events()
        .filter(|event| std::future::ready(matches!(event, ChannelEvent::Resumed { .. })));
    channel.subscribe().await.unwrap();

    let node = server.node.clone();
    let publisher = tokio::spawn(async move {
        for n in 1..=SENT {
            node.broadcast_async("feed", "n", &json!({"n": n}))
                .await
                .unwrap();
        }
    });
    let mut received = Vec::with_capacity(SENT as usize);
    while received.len() < SENT as usize {
        let message = next(WAIT, &mut broadcasts).await;
        let BroadcastPayload::Json(payload) = &message.payload else {
            panic!("JSON payloads")
        };
        received.push(payload["n"].as_i64().unwrap());
        if received.len() == 3_000 {
            relay.cut();
        }
    }
    publisher.await.unwrap();
    assert_eq!(
        received,
        (1..=SENT).collect::<Vec<_>>(),
        "every broadcast once, in order"
    );
    let resumed = next(WAIT, &mut events).await;
    let ChannelEvent::Resumed {
        recovered, missed, ..
    } = resumed
    else {
        unreachable!("filtered")
    };
    assert!(recovered, "history covered the break");
    assert!(missed > 0, "the break missed something: {missed}");
}
