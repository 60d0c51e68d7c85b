//! Every HTTP error answer has a JSON body: `{"message": "..."}`, the shape Supabase's
//! REST API and realtime-js's `httpSend` read.
//!
//! Crier's own handlers build theirs with [`json_error`]. What the framework answers by
//! itself (an unknown route, a wrong method, a path or query that does not parse) comes
//! with plain text or nothing, so [`json_bodies`] rewrites any error answer that is not
//! JSON yet. What hyper answers before a request even reaches the router is handled in
//! `serve`.

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Longest framework error text kept when rewriting it.
const MAX_TEXT: usize = 4096;

/// `status` with `{"message": message}`.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"message": message.into()}))).into_response()
}

/// Middleware: turns an error answer without a JSON body into `{"message": ...}`, keeping
/// its status, its other headers and its text.
pub(crate) async fn json_bodies(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = to_bytes(body, MAX_TEXT)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").to_owned());
    let body = serde_json::to_vec(&json!({"message": text})).expect("a JSON object");
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// The answer for a route that does not exist.
pub(crate) async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "No such endpoint")
}
