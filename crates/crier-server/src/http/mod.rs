//! The HTTP surface: WebSocket endpoints, the broadcast API, health and metrics.
//! Every error answer has a JSON body (`errors`).

mod body;
mod broadcast;
mod errors;
mod history;
mod inspector;
mod socket;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::middleware::map_response;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;
use tower_http::cors::CorsLayer;

use crate::node::Node;

impl Node {
    /// The axum router serving the WebSocket endpoints (`/socket/websocket`,
    /// `/realtime/v1/websocket`), the broadcast API, `/healthcheck`, `/api/ping` and
    /// `/metrics`, and with the inspector on, its page at `/inspector`. Merge it into an existing app or serve it with [`crate::serve`].
    ///
    /// Defined here rather than in `node`: the HTTP surface depends on the node, and the
    /// node knows nothing of HTTP.
    pub fn router(&self) -> Router {
        router(self.clone())
    }
}

/// Every route, mounted both at `/` and, for clients that go through a Supabase-style
/// gateway path, at `/realtime/v1`.
fn router(node: Node) -> Router {
    // Bodies are read by the handlers themselves (`body`): up to a frame's size, so the
    // payload limit (not axum's 2 MB default) decides, and within the body timeout.
    let api = Router::new()
        .route("/api/broadcast", post(broadcast::batch))
        .route(
            "/api/broadcast/{topic}/events/{event}",
            post(broadcast::single),
        )
        .route("/api/broadcast/{topic}/history", get(history::history))
        .route("/api/ping", get(ping))
        .layer(CorsLayer::permissive());
    let mut routes = Router::new();
    if node.shared.config.inspector.enabled {
        routes = routes
            .route("/inspector", get(inspector::page))
            .route("/inspector/", get(inspector::page))
            .route("/inspector/assets/{name}", get(inspector::asset))
            .route("/inspector/sign-in", post(inspector::sign_in));
    }
    routes
        .route("/socket/websocket", get(socket::upgrade))
        .route("/realtime/v1/websocket", get(socket::upgrade))
        .route("/healthcheck", get(healthcheck))
        .route("/metrics", get(metrics))
        .merge(api.clone())
        .nest("/realtime/v1", api)
        .fallback(errors::not_found)
        .layer(map_response(errors::json_bodies))
        .with_state(node)
}

/// `ok`, or `degraded: <why>` while the cluster bus is unreachable. Still 200: the node
/// serves its own clients, and a balancer that took every node out during a Redis
/// outage would stop even local delivery.
async fn healthcheck(State(node): State<Node>) -> String {
    match node.health() {
        Ok(()) => "ok".to_owned(),
        Err(why) => format!("degraded: {why}"),
    }
}

async fn ping() -> impl IntoResponse {
    axum::Json(json!({"message": "Success"}))
}

async fn metrics(State(node): State<Node>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        node.metrics_text(),
    )
}
