//! Who is online: tracks this process in a room and prints the room's presence state on
//! every sync, until Ctrl-C.
//!
//! ```sh
//! crier serve                                    # prints an anon key
//! CRIER_APIKEY=<anon key> cargo run -p crier-client --example presence -- room1 alice
//! ```
//!
//! `CRIER_URL` picks another server (default `ws://127.0.0.1:4000/socket`). Start a few
//! with different names, stop some, and watch the state follow.

use crier_client::{ChannelOptions, Client, PresenceEvent};
use futures_util::StreamExt;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), crier_client::Error> {
    let url = std::env::var("CRIER_URL").unwrap_or_else(|_| "ws://127.0.0.1:4000/socket".into());
    let apikey = std::env::var("CRIER_APIKEY").unwrap_or_default();
    let mut args = std::env::args().skip(1);
    let room_name = args.next().unwrap_or_else(|| "room1".into());
    let key = args.next().unwrap_or_else(|| "anonymous".into());

    let client = Client::builder(url).api_key(apikey).build()?;
    client.connect().await?;

    // The presence key names this process in the state (the server picks a UUID without one).
    let room = client.channel_with(&room_name, ChannelOptions::default().presence_key(&key));
    // Taken before subscribing: it turns presence on for the join.
    let mut presence = room.presence_events();
    room.subscribe().await?;
    // Tracked again by the client after every reconnect.
    room.track(json!({"status": "online", "pid": std::process::id()}))
        .await?;

    while let Some(event) = presence.next().await {
        match event {
            // The state changed: print all of it. Each key may have several payloads (one
            // per connection using that key).
            PresenceEvent::Sync => {
                let state = room.presence_state();
                println!("{} online:", state.len());
                for (key, metas) in &state {
                    let payloads: Vec<_> = metas.iter().map(|meta| &meta.payload).collect();
                    println!(
                        "  {key}: {}",
                        serde_json::to_string(&payloads).unwrap_or_default()
                    );
                }
            }
            PresenceEvent::Join { key, .. } => println!("+ {key}"),
            PresenceEvent::Leave { key, .. } => println!("- {key}"),
            PresenceEvent::Update { key, .. } => println!("~ {key}"),
        }
    }
    Ok(())
}
