//! `GET /socket/websocket` and `/realtime/v1/websocket`: the connect checks, then the
//! upgrade.
//!
//! Every refusal is a plain HTTP answer with `{"error": "..."}`, before any WebSocket
//! exists, with Supabase's statuses and texts: 403 for a bad `vsn`, 401 for the token,
//! 429 for the connection and join limits, 503 while shutting down.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use crier_protocol::Vsn;
use serde_json::json;

use crate::auth::{AuthError, unix_now};
use crate::node::Node;
use crate::session::{self, ConnectParams};

fn refuse(node: &Node, status: StatusCode, message: impl Into<String>) -> Response {
    node.shared.metrics.connect_rejections.inc();
    let message = message.into();
    tracing::debug!(%status, message, "connect refused");
    (status, Json(json!({"error": message}))).into_response()
}

pub(crate) async fn upgrade(
    State(node): State<Node>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    extensions: Extensions,
    ws: WebSocketUpgrade,
) -> Response {
    let vsn = match params.get("vsn") {
        None => Vsn::V1,
        Some(value) => match Vsn::parse(value) {
            Some(vsn) => vsn,
            None => {
                return refuse(
                    &node,
                    StatusCode::FORBIDDEN,
                    format!("Unsupported serializer version: {value}"),
                );
            }
        },
    };
    if node.is_shutting_down() {
        return refuse(
            &node,
            StatusCode::SERVICE_UNAVAILABLE,
            "Realtime is restarting, please standby",
        );
    }
    // The x-api-key header takes precedence over the apikey query parameter.
    let token = headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| params.get("apikey").cloned());
    let Some(token) = token.filter(|token| !token.trim().is_empty()) else {
        return refuse(
            &node,
            StatusCode::UNAUTHORIZED,
            AuthError::Missing.connect_message(),
        );
    };
    let claims = match node.shared.verifier.verify(&token, unix_now()) {
        Ok(claims) => claims,
        Err(err) => return refuse(&node, StatusCode::UNAUTHORIZED, err.connect_message()),
    };
    let Some(permit) = node.shared.connections.try_acquire() else {
        return refuse(
            &node,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many connected users",
        );
    };
    if node.shared.counters.joins.is_over_limit() {
        return refuse(
            &node,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many joins per second",
        );
    }

    let remote_addr = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let socket = &node.shared.config.socket;
    let max_frame = node.shared.config.limits.max_frame_bytes;
    let connect = ConnectParams {
        vsn,
        token,
        claims,
        remote_addr,
        permit,
    };
    ws.read_buffer_size(socket.read_buffer_bytes)
        .write_buffer_size(socket.write_buffer_bytes)
        .max_write_buffer_size(socket.write_buffer_bytes + 2 * max_frame + 64)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_failed_upgrade(|err| tracing::debug!(error = %err, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| session::run(node, socket, connect))
}
