//! The broadcast REST API: `POST /api/broadcast` (a batch) and
//! `POST /api/broadcast/:topic/events/:event` (realtime-js `httpSend`).
//!
//! Both authenticate with `Authorization: Bearer <jwt>` or an `apikey` header, and
//! deliver exactly what a WebSocket broadcast delivers. 202 (empty body) means every
//! message was handed to every current subscriber's queue. The handlers publish the way
//! a socket does: after a message that leaves subscribers over their room mark they wait
//! for them, so a large batch reaches fast subscribers in full instead of overflowing
//! their queues. When the node's queues are over their budget the answer is 503 with a
//! JSON reason (and, mid-batch, how many messages were delivered), never a silent drop.
//!
//! A private message is checked against the channel's write policy with the caller's
//! claims (once per topic per request): the batch skips a denied one, as Supabase does,
//! and still answers 202; the single-event route answers 403, or 422 when a policy
//! failed.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crier_protocol::events::{TOPIC_PREFIX, is_valid_topic};
use crier_protocol::rest::parse_batch;
use crier_protocol::{PayloadEncoding, Reason, json as client_json};
use serde::Deserialize;
use serde_json::json;

use super::body;
use super::errors::json_error as error;
use crate::auth::{AuthError, Claims};
use crate::authz::{AuthorizationError, Extension, channel_check, request_headers};
use crate::fanout::{Content, Outgoing, to_raw};
use crate::node::Node;
use crate::registry::topic_key;

/// Verifies the caller's JWT: the bearer token wins over the `apikey` header, because
/// realtime-js sends the anon key as `apikey` and the signed-in user's token as bearer.
pub(super) async fn authenticate(node: &Node, headers: &HeaderMap) -> Result<Claims, AuthError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let apikey = headers.get("apikey").and_then(|v| v.to_str().ok());
    let token = bearer.or(apikey).ok_or(AuthError::Missing)?;
    let clock = &node.shared.clock;
    node.shared
        .verifier
        .verify_fresh(
            token,
            || clock.unix_now(),
            super::socket::KEY_ROTATION_PATIENCE,
        )
        .await
}

/// Whether the caller may broadcast to private channel `name`. `Ok(false)` as well when
/// the node has nothing to ask.
async fn may_write_private(
    node: &Node,
    claims: &Claims,
    headers: &HeaderMap,
    name: &str,
) -> Result<bool, AuthorizationError> {
    let Some(checks) = &node.shared.checks else {
        tracing::debug!(
            name,
            "private HTTP broadcast refused: no authorizer is configured"
        );
        return Ok(false);
    };
    let check = channel_check(name, claims, &request_headers(headers));
    checks.write(check, Extension::Broadcast).await
}

/// `{"message":"Unauthorized"}` as Supabase sends it, plus `error` with the cause, which
/// realtime-js's `httpSend` shows in preference to `message`.
pub(super) fn unauthorized(cause: &AuthError) -> Response {
    let body = json!({"message": "Unauthorized", "error": cause.connect_message()});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// The rate headers Supabase sets on the broadcast API.
fn with_rate_headers(node: &Node, mut response: Response) -> Response {
    let limit = node.shared.config.limits.max_events_per_second;
    let rate = node.shared.counters.events.rate();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("x-rate-limit", limit.to_string());
    set("x-rate-rolling", format!("{rate:.2}"));
    set(
        "x-rate-limit-remaining",
        format!("{:.0}", (f64::from(limit) - rate).max(0.0)),
    );
    response
}

#[derive(Deserialize)]
pub(crate) struct SingleQuery {
    #[serde(default)]
    private: Option<String>,
}

/// `realtime:<channel>`; `None` when that is no valid topic ([`invalid_topic`]).
pub(super) fn wire_topic(channel: &str) -> Option<String> {
    let topic = format!("{TOPIC_PREFIX}{channel}");
    is_valid_topic(&topic).then_some(topic)
}

/// The 422 for a channel name that makes no valid topic.
pub(super) fn invalid_topic() -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        Reason::invalid_topic().to_string(),
    )
}

/// The request's media type, lowercased, without parameters.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn unsupported_media_type(found: &str, expected: &str) -> Response {
    error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("Unsupported content type `{found}`: send {expected}"),
    )
}

/// Reads the request body within the size limit and the body timeout.
async fn read_body(node: &Node, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let limit = node.shared.config.limits.max_frame_bytes;
    let gap = node.shared.config.socket.body_read_timeout;
    body::read(headers, body, limit, gap).await
}

/// 503 while the node's queues are over their budget; `delivered` says how much of the
/// request went out before it.
fn overloaded(node: &Node, delivered: Option<usize>) -> Response {
    node.shared.metrics.overloaded.inc();
    let message =
        "The server's outbound queues are full: subscribers are not keeping up. Retry shortly";
    let body = match delivered {
        None => json!({"message": message}),
        Some(delivered) => json!({"message": message, "delivered": delivered}),
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    with_rate_headers(node, response)
}

/// `POST /api/broadcast/:topic/events/:event`: the body is the payload, JSON or
/// `application/octet-stream`.
pub(crate) async fn single(
    State(node): State<Node>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<SingleQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let claims = match authenticate(&node, &headers).await {
        Ok(claims) => claims,
        Err(err) => return unauthorized(&err),
    };
    let (Path((channel, event)), Query(query)) = match (path, query) {
        (Ok(path), Ok(query)) => (path, query),
        (Err(rejection), _) => return error(rejection.status(), rejection.body_text()),
        (_, Err(rejection)) => return error(rejection.status(), rejection.body_text()),
    };
    let Some(topic) = wire_topic(&channel) else {
        return invalid_topic();
    };
    let content_type = content_type(&headers);
    if !matches!(
        content_type.as_str(),
        "application/json" | "application/octet-stream"
    ) {
        return unsupported_media_type(
            &content_type,
            "application/json or application/octet-stream",
        );
    }
    let body = match read_body(&node, &headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let outgoing = if content_type == "application/json" {
        let payload = match client_json::raw_from_slice(&body) {
            Ok(payload) => payload,
            Err(err) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("The body is not valid JSON: {err}"),
                );
            }
        };
        Outgoing::broadcast(&topic, Arc::new(Content::json(&event, payload, None)))
    } else {
        if event.len() > 255 {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Binary broadcasts need an event and topic of at most 255 bytes",
            );
        }
        let content = Content::binary(event.clone(), PayloadEncoding::Binary, body);
        Outgoing::broadcast(&topic, Arc::new(content))
    };
    if outgoing.body_len() > node.shared.config.limits.max_payload_bytes() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Payload size exceeds tenant limit",
        );
    }
    if let Some(response) = rate_limited(&node, 1) {
        return response;
    }
    if node.shared.ledger.is_over_budget() {
        return overloaded(&node, None);
    }
    let private = query.private.as_deref() == Some("true");
    if private {
        match may_write_private(&node, &claims, &headers, &channel).await {
            Ok(true) => {}
            Ok(false) => return error(StatusCode::FORBIDDEN, "Unauthorized"),
            Err(AuthorizationError::Refused(why)) => {
                tracing::warn!(topic, error = %why, "write policy error: HTTP broadcast refused");
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "The write policy of this private channel failed",
                );
            }
            Err(err) => {
                tracing::warn!(topic, error = %err, "HTTP broadcast: authorization check failed");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    crier_protocol::codes::shutdown::UNABLE_TO_CONNECT,
                );
            }
        }
    }
    let delivery = node.publish(&topic_key(&topic, private), &outgoing, None);
    drop(outgoing);
    // Answered once the subscribers it left lagging have room, so that a client
    // calling this in a loop goes at their pace. It is queued already: a node still
    // over budget afterwards is the next call's answer.
    node.wait_for_subscribers(&delivery.lagging).await;
    with_rate_headers(&node, StatusCode::ACCEPTED.into_response())
}

/// 429 when the events limit is over, or would be with `count` more messages.
fn rate_limited(node: &Node, count: u64) -> Option<Response> {
    let events = &node.shared.counters.events;
    if events.is_over_limit() {
        node.shared.metrics.rate_limited.inc();
        return Some(with_rate_headers(
            node,
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "You have exceeded your rate limit",
            ),
        ));
    }
    if count > 1 && events.would_exceed(count) {
        node.shared.metrics.rate_limited.inc();
        return Some(with_rate_headers(
            node,
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many messages to broadcast, please reduce the batch size",
            ),
        ));
    }
    None
}

/// `POST /api/broadcast`: `{"messages":[{"topic","event","payload","private"?,"id"?}]}`.
/// Invalid messages get 422 with per-message errors, shaped like Supabase's.
pub(crate) async fn batch(State(node): State<Node>, headers: HeaderMap, body: Body) -> Response {
    let claims = match authenticate(&node, &headers).await {
        Ok(claims) => claims,
        Err(err) => return unauthorized(&err),
    };
    let content_type = content_type(&headers);
    if content_type != "application/json" {
        return unsupported_media_type(&content_type, "application/json");
    }
    let body = match read_body(&node, &headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let limit = node.shared.config.limits.max_payload_bytes();
    let messages = match parse_batch(&body, limit) {
        Ok(messages) => messages,
        Err(err) => {
            return match err.errors() {
                Some(errors) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({"errors": errors})),
                )
                    .into_response(),
                None => error(StatusCode::BAD_REQUEST, err.to_string()),
            };
        }
    };
    if let Some(response) = rate_limited(&node, messages.len() as u64) {
        return response;
    }
    if node.shared.ledger.is_over_budget() {
        return overloaded(&node, None);
    }
    let count = messages.len();
    // One check per private topic per request.
    let mut writable: std::collections::HashMap<String, bool> = Default::default();
    for (position, message) in messages.into_iter().enumerate() {
        let topic = message.full_topic();
        if message.private {
            let name = topic
                .strip_prefix(TOPIC_PREFIX)
                .unwrap_or(&topic)
                .to_owned();
            let allowed = match writable.get(&name) {
                Some(allowed) => *allowed,
                None => {
                    let allowed = match may_write_private(&node, &claims, &headers, &name).await {
                        Ok(allowed) => allowed,
                        Err(err) => {
                            tracing::warn!(topic, error = %err, "HTTP broadcast: private message not authorized");
                            false
                        }
                    };
                    writable.insert(name, allowed);
                    allowed
                }
            };
            if !allowed {
                tracing::debug!(topic, "private HTTP broadcast skipped: no write permission");
                continue;
            }
        }
        let content = Content::json(
            &message.event,
            &to_raw(&message.payload),
            message.id.as_ref().map(to_raw),
        );
        let delivery = node.publish(
            &topic_key(&topic, message.private),
            &Outgoing::broadcast(&topic, Arc::new(content)),
            None,
        );
        let last = position + 1 == count;
        if !last && node.wait_for_room(&delivery.lagging).await.is_err() {
            return overloaded(&node, Some(position + 1));
        }
    }
    with_rate_headers(&node, StatusCode::ACCEPTED.into_response())
}
