//! `GET /api/broadcast/:topic/history?after=N&limit=M[&private=true]`: a topic's recent
//! broadcasts as its subscribers received them, for a server that catches up without a
//! socket. The service role may read any topic; another token only a private topic
//! whose broadcasts its policies let it read.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::broadcast::{authenticate, invalid_topic, unauthorized, wire_topic};
use super::errors::json_error as error;
use crate::authz::{channel_check, request_headers};
use crate::fanout::Assembled;
use crate::history::{Entry, Position};
use crate::node::Node;
use crate::registry::topic_key;

/// The most messages one call returns.
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
pub(crate) struct HistoryQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    private: Option<String>,
}

pub(crate) async fn history(
    State(node): State<Node>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let claims = match authenticate(&node, &headers).await {
        Ok(claims) => claims,
        Err(err) => return unauthorized(&err),
    };
    let (Path(channel), Query(query)) = match (path, query) {
        (Ok(path), Ok(query)) => (path, query),
        (Err(rejection), _) => return error(rejection.status(), rejection.body_text()),
        (_, Err(rejection)) => return error(rejection.status(), rejection.body_text()),
    };
    let Some(topic) = wire_topic(&channel) else {
        return invalid_topic();
    };
    let Some(store) = &node.shared.history else {
        return error(
            StatusCode::NOT_FOUND,
            "This server keeps no history (--history-size 0)",
        );
    };
    let private = query.private.as_deref() == Some("true");
    if claims.role != "service_role" {
        let may_read = match (&node.shared.checks, private) {
            (Some(checks), true) => {
                let check = channel_check(&channel, &claims, &request_headers(&headers));
                matches!(checks.read(check).await, Ok(access) if access.broadcast)
            }
            _ => false,
        };
        if !may_read {
            return error(
                StatusCode::FORBIDDEN,
                "Reading history needs the service role, or broadcast read on a private channel",
            );
        }
    }
    let limit = query.limit.unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT);
    let key = topic_key(&topic, private);
    // In a cluster that shares its history, the shared stream is the whole one.
    let read = match &node.shared.shared_history {
        None => store.read(&key, query.after, limit),
        Some(shared) => match shared.read(&key, query.after, limit).await {
            Ok(read) => Some(crate::session::shared_entries(read)),
            Err(err) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("The cluster's history cannot be read now: {err}"),
                );
            }
        },
    };
    let body = match read {
        None => json!({"epoch": Value::Null, "offset": 0, "messages": []}),
        Some((latest, entries)) => json!({
            "epoch": &*latest.epoch,
            "offset": latest.offset,
            "messages": entries.iter().map(|entry| message(&latest, entry)).collect::<Vec<_>>(),
        }),
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// One broadcast as a subscriber received it; a binary payload as `payload_base64`.
fn message(latest: &Position, entry: &Entry) -> Value {
    let position = Position {
        epoch: latest.epoch.clone(),
        offset: entry.offset,
    };
    match entry.content.assemble(Some(&position)) {
        Assembled::Json(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Assembled::Binary(broadcast) => {
            let meta: Value = serde_json::from_slice(&broadcast.metadata).unwrap_or(Value::Null);
            json!({"type": "broadcast", "event": broadcast.event,
                   "payload_base64": STANDARD.encode(&broadcast.payload), "meta": meta})
        }
    }
}
