//! A chat room in the terminal: prints what others say in the room, and sends every line
//! typed on stdin as a broadcast.
//!
//! ```sh
//! crier serve                                    # prints an anon key
//! CRIER_APIKEY=<anon key> cargo run -p crier-client --example chat -- room1
//! ```
//!
//! `CRIER_URL` picks another server (default `ws://127.0.0.1:4000/socket`). Run it in two
//! terminals and type.

use std::io::BufRead;

use crier_client::{Broadcast, BroadcastPayload, Channel, Client};
use futures_util::StreamExt;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), crier_client::Error> {
    let url = std::env::var("CRIER_URL").unwrap_or_else(|_| "ws://127.0.0.1:4000/socket".into());
    let apikey = std::env::var("CRIER_APIKEY").unwrap_or_default();
    let room_name = std::env::args().nth(1).unwrap_or_else(|| "room1".into());
    let me = std::env::var("USER").unwrap_or_else(|_| "someone".into());

    // One client is one connection; it reconnects and rejoins by itself from now on.
    let client = Client::builder(url).api_key(apikey).build()?;
    // Connect first, so a wrong URL or key is reported now rather than retried.
    client.connect().await?;

    // Take the stream before subscribing, so nothing sent right after the join is missed.
    let room = client.channel(&room_name);
    let mut messages = room.broadcasts_for("message");
    room.subscribe().await?;
    println!("joined {room_name} as {me}; type to talk, Ctrl-D to leave");

    // Stdin is blocking: read it on a thread and hand the lines over.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    loop {
        tokio::select! {
            Some(message) = messages.next() => print_message(&message),
            line = lines.recv() => match line {
                Some(text) => send(&room, &me, text).await,
                None => break, // Ctrl-D
            },
        }
    }
    room.unsubscribe().await
}

/// Others' messages only: a channel does not receive its own broadcasts unless
/// `ChannelOptions::broadcast_self` is on.
fn print_message(message: &Broadcast) {
    if let BroadcastPayload::Json(body) = &message.payload {
        let from = body["from"].as_str().unwrap_or("?");
        println!("<{from}> {}", body["text"].as_str().unwrap_or_default());
    }
}

/// While the connection is down, the message waits in a bounded buffer and goes out
/// after the rejoin.
async fn send(room: &Channel, me: &str, text: String) {
    let body = json!({"from": me, "text": text});
    if let Err(err) = room.broadcast("message", body).await {
        eprintln!("not sent: {err}");
    }
}
