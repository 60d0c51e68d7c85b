//! `GET /socket/websocket` and `/realtime/v1/websocket`: the connect checks, then the
//! upgrade.
//!
//! Every refusal is a plain HTTP answer with `{"error": "..."}`, before any WebSocket
//! exists, with Supabase's statuses and texts: 400 for a request that is not a WebSocket
//! upgrade, 403 for a bad `vsn`, 401 for the token, 429 for the connection and join
//! limits, 503 while shutting down.
//!
//! The upgrade is done here with `tokio-tungstenite` rather than by axum's extractor,
//! because the session needs the raw connection underneath the WebSocket: after refusing
//! an oversized frame it reads and drops the rest of it, so that the client gets its
//! close frame instead of a reset (`session::io::discard_incoming`).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crier_protocol::Vsn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::auth::AuthError;
use crate::node::Node;
use crate::outbound::WriteProgress;
use crate::session::{self, ConnectParams, Metered};

fn refuse(node: &Node, status: StatusCode, message: impl Into<String>) -> Response {
    node.shared.metrics.connect_rejections.inc();
    let message = message.into();
    tracing::debug!(%status, message, "connect refused");
    (status, Json(json!({"error": message}))).into_response()
}

/// The parts of a WebSocket upgrade request (RFC 6455 §4.2.1) a server must check, or
/// what is wrong with it.
/// How long a connect whose token names an unknown `kid` waits for the JWK set to be
/// fetched again.
pub(crate) const KEY_ROTATION_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

fn websocket_key(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, &'static str> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if method != Method::GET {
        return Err("A WebSocket upgrade must be a GET request");
    }
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err("Expected a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("Unsupported WebSocket version: expected Sec-WebSocket-Version: 13");
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or("The Sec-WebSocket-Key header is missing")
}

pub(crate) async fn upgrade(
    State(node): State<Node>,
    Query(params): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let headers = &parts.headers;
    let key = match websocket_key(&parts.method, headers) {
        Ok(key) => key,
        Err(why) => return refuse(&node, StatusCode::BAD_REQUEST, why),
    };
    let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        return refuse(
            &node,
            StatusCode::BAD_REQUEST,
            "This connection cannot be upgraded to a WebSocket",
        );
    };
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
    // A token naming a key the JWK set does not have yet waits a moment for a re-fetch
    // (a key rotation) instead of failing at once.
    let clock = &node.shared.clock;
    let claims = match node
        .shared
        .verifier
        .verify_fresh(&token, || clock.unix_now(), KEY_ROTATION_PATIENCE)
        .await
    {
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
        node.shared.metrics.rate_limited.inc();
        return refuse(
            &node,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many joins per second",
        );
    }

    let remote_addr = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let socket = &node.shared.config.socket;
    let max_frame = node.shared.config.limits.max_frame_bytes;
    let config = WebSocketConfig::default()
        .read_buffer_size(socket.read_buffer_bytes)
        .write_buffer_size(socket.write_buffer_bytes)
        .max_write_buffer_size(socket.write_buffer_bytes + 2 * max_frame + 64)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame));
    let progress = std::sync::Arc::new(WriteProgress::default());
    let connect = ConnectParams {
        vsn,
        token,
        claims,
        remote_addr,
        permit,
        progress: std::sync::Arc::clone(&progress),
        headers: crate::authz::request_headers(headers).into(),
    };
    // The 101 answer goes out first; hyper hands the connection over once it has.
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "WebSocket upgrade failed");
                return;
            }
        };
        let connection = Metered::new(TokioIo::new(upgraded), progress);
        let ws = WebSocketStream::from_raw_socket(connection, Role::Server, Some(config)).await;
        // A task of its own: this one's future keeps room for everything the upgrade
        // needed, which a session that lives for hours should not carry.
        tokio::spawn(session::run(node, ws, connect));
    });
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .expect("a valid 101 response")
}
