//! Embedding Crier in a Rust service: mount the realtime endpoints next to your own
//! routes and publish from your own code.
//!
//! ```sh
//! JWT_SECRET=a-long-random-secret cargo run -p crier-server --example embed
//! ```
//!
//! Then point realtime-js at `ws://127.0.0.1:4000/socket` with a token signed by the same
//! secret (`crier token --jwt-secret a-long-random-secret`), subscribe to `orders`, and
//! `curl -X POST localhost:4000/orders` to see a broadcast arrive.

use axum::extract::State;
use crier_server::{Config, Node};
use serde_json::json;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| "a-long-random-secret".to_owned());
    let node = Node::builder(Config::new(secret))
        .on_connect(|conn| println!("connected: {} as {}", conn.id, conn.role))
        .on_disconnect(|conn| println!("disconnected: {}", conn.id))
        .build()
        .expect("a usable config");

    // Your own route publishes to the `orders` channel; Crier's routes serve the clients.
    let app = axum::Router::new()
        .route("/orders", axum::routing::post(create_order))
        .with_state(node.clone())
        .merge(node.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Tell every client to reconnect elsewhere, and wait for their sockets to drain.
            node.shutdown().await;
        })
        .await
}

async fn create_order(State(node): State<Node>) -> String {
    let order = json!({"id": rand_id(), "status": "created"});
    // Waits, if need be, for subscribers to have room: a burst of orders never gets a
    // subscriber cut off for being sent a lot at once.
    match node.broadcast_async("orders", "created", &order).await {
        Ok(recipients) => format!("order sent to {recipients} subscribers\n"),
        Err(err) => format!("not sent: {err}\n"),
    }
}

fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
