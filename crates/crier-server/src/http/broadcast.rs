//! The broadcast REST API: `POST /api/broadcast` (a batch) and
//! `POST /api/broadcast/:topic/events/:event` (realtime-js `httpSend`).
//!
//! Both authenticate with `Authorization: Bearer <jwt>` or an `apikey` header, answer
//! 202 with an empty body when the messages were handed to fan-out, and deliver exactly
//! what a WebSocket broadcast delivers. Private messages need database policies this
//! server does not have yet, so they are dropped (logged), as Supabase drops a denied one.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crier_protocol::events::{BROADCAST, TOPIC_PREFIX};
use crier_protocol::{PayloadEncoding, UserBroadcast};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::auth::{AuthError, Claims, unix_now};
use crate::fanout::{Outgoing, to_raw};
use crate::node::Node;
use crate::session::json_broadcast_body;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"message": message.into()}))).into_response()
}

/// Verifies the caller's JWT: the bearer token wins over the `apikey` header, because
/// realtime-js sends the anon key as `apikey` and the signed-in user's token as bearer.
fn authenticate(node: &Node, headers: &HeaderMap) -> Result<Claims, AuthError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let apikey = headers.get("apikey").and_then(|v| v.to_str().ok());
    let token = bearer.or(apikey).ok_or(AuthError::Missing)?;
    node.shared.verifier.verify(token, unix_now())
}

/// `{"message":"Unauthorized"}` as Supabase sends it, plus `error` with the cause, which
/// realtime-js's `httpSend` shows in preference to `message`.
fn unauthorized(cause: &AuthError) -> Response {
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

/// `POST /api/broadcast/:topic/events/:event`: the body is the payload, JSON or
/// `application/octet-stream`.
pub(crate) async fn single(
    State(node): State<Node>,
    Path((channel, event)): Path<(String, String)>,
    Query(query): Query<SingleQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(err) = authenticate(&node, &headers) {
        return unauthorized(&err);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let topic = format!("{TOPIC_PREFIX}{channel}");
    let outgoing = match content_type.as_str() {
        "application/json" => {
            let payload: &RawValue = match serde_json::from_slice(&body) {
                Ok(payload) => payload,
                Err(err) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("The body is not valid JSON: {err}"),
                    );
                }
            };
            Outgoing::raw(&topic, BROADCAST, json_broadcast_body(&event, payload))
        }
        "application/octet-stream" => {
            if event.len() > 255 || topic.len() > 255 {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Binary broadcasts need an event and topic of at most 255 bytes",
                );
            }
            Outgoing::binary(
                &topic,
                UserBroadcast {
                    event: event.clone(),
                    metadata: Default::default(),
                    encoding: PayloadEncoding::Binary,
                    payload: body,
                },
            )
        }
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Unsupported content type `{other}`: send application/json or application/octet-stream"
                ),
            );
        }
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
    if query.private.as_deref() == Some("true") {
        tracing::debug!(
            topic,
            "private HTTP broadcast dropped: no policies to authorize it"
        );
    } else {
        node.shared.counters.events.add(1);
        node.publish(&topic, &outgoing, None);
    }
    with_rate_headers(&node, StatusCode::ACCEPTED.into_response())
}

/// 429 when the events limit is over, or would be with `count` more messages.
fn rate_limited(node: &Node, count: u64) -> Option<Response> {
    let events = &node.shared.counters.events;
    if events.is_over_limit() {
        return Some(with_rate_headers(
            node,
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "You have exceeded your rate limit",
            ),
        ));
    }
    if count > 1 && events.would_exceed(count) {
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
pub(crate) async fn batch(State(node): State<Node>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(err) = authenticate(&node, &headers) {
        return unauthorized(&err);
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("The body is not valid JSON: {err}"),
            );
        }
    };
    let Some(messages) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"errors": {"messages": ["can't be blank"]}})),
        )
            .into_response();
    };
    let limit = node.shared.config.limits.max_payload_bytes();
    let mut valid = Vec::with_capacity(messages.len());
    let mut errors = Vec::with_capacity(messages.len());
    for message in messages {
        match validate_message(message, limit) {
            Ok(message) => {
                valid.push(message);
                errors.push(Map::new());
            }
            Err(fields) => errors.push(fields),
        }
    }
    if valid.len() != messages.len() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"errors": {"messages": errors}})),
        )
            .into_response();
    }
    if let Some(response) = rate_limited(&node, valid.len() as u64) {
        return response;
    }
    for message in valid {
        let topic = format!("{TOPIC_PREFIX}{}", message.topic);
        if message.private {
            tracing::debug!(
                topic,
                "private HTTP broadcast dropped: no policies to authorize it"
            );
            continue;
        }
        let mut payload =
            json!({"type": BROADCAST, "event": message.event, "payload": message.payload});
        if let Some(id) = message.id {
            payload["meta"] = json!({"id": id});
        }
        node.shared.counters.events.add(1);
        node.publish(
            &topic,
            &Outgoing::raw(&topic, BROADCAST, to_raw(&payload)),
            None,
        );
    }
    with_rate_headers(&node, StatusCode::ACCEPTED.into_response())
}

struct BatchMessage {
    topic: String,
    event: String,
    payload: Value,
    private: bool,
    id: Option<Value>,
}

fn validate_message(
    message: &Value,
    payload_limit: usize,
) -> Result<BatchMessage, Map<String, Value>> {
    let mut errors = Map::new();
    let mut fail = |field: &str, text: &str| {
        errors.insert(field.to_owned(), json!([text]));
    };
    let Some(map) = message.as_object() else {
        fail("message", "is invalid");
        return Err(errors);
    };
    let string = |field: &str| match map.get(field) {
        None | Some(Value::Null) => Err("can't be blank"),
        Some(Value::String(s)) if s.is_empty() => Err("can't be blank"),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err("is invalid"),
    };
    let topic = string("topic").map_err(|e| fail("topic", e)).ok();
    let event = string("event").map_err(|e| fail("event", e)).ok();
    let payload = match map.get("payload") {
        None | Some(Value::Null) => {
            fail("payload", "can't be blank");
            None
        }
        Some(payload @ Value::Object(_)) => {
            if to_raw(payload).get().len() > payload_limit {
                fail("payload", "Payload size exceeds tenant limit");
                None
            } else {
                Some(payload.clone())
            }
        }
        Some(_) => {
            fail("payload", "is invalid");
            None
        }
    };
    let private = match map.get("private") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            fail("private", "is invalid");
            false
        }
    };
    match (topic, event, payload) {
        (Some(topic), Some(event), Some(payload)) if errors.is_empty() => Ok(BatchMessage {
            topic,
            event,
            payload,
            private,
            id: map.get("id").cloned().filter(|id| !id.is_null()),
        }),
        _ => Err(errors),
    }
}
