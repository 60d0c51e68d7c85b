//! `GET /inspector`: the live inspector page and its files, and `POST
//! /inspector/sign-in`, which tells the page whether a key may inspect before it opens a
//! socket with it. The page shows nothing by itself: every figure comes over the
//! inspector's channel, which only an admin token may join (`session::inspector`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::errors::json_error;
use crate::inspector::{self, assets};
use crate::node::Node;

/// Scripts, styles and sockets from this server only; nothing inline, nothing framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn serve(asset: assets::Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.body,
    )
        .into_response()
}

pub(crate) async fn page() -> Response {
    serve(assets::INDEX)
}

pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match assets::named(&name) {
        Some(asset) => serve(asset),
        None => json_error(StatusCode::NOT_FOUND, format!("No inspector file {name}")),
    }
}

#[derive(Deserialize)]
pub(crate) struct SignIn {
    key: String,
}

/// Whether `key` may inspect. Always 200 with `{"ok": bool, "reason"?}`: the page
/// shows the reason on its form (a 401 would also land in the browser's console). Each
/// check counts against the joins-per-second limit, like a connect.
pub(crate) async fn sign_in(State(node): State<Node>, body: Option<Json<SignIn>>) -> Response {
    let Some(Json(SignIn { key })) = body else {
        return Json(json!({"ok": false, "reason": "Enter the service role key"})).into_response();
    };
    let shared = &node.shared;
    // Each check costs what a connect costs, and is limited like one.
    if shared.counters.joins.is_over_limit() {
        shared.metrics.rate_limited.inc();
        return Json(
            json!({"ok": false, "reason": "Too many joins per second, try again shortly"}),
        )
        .into_response();
    }
    shared.counters.joins.add(1);
    let verdict = match shared.verifier.verify(key.trim(), shared.clock.unix_now()) {
        Err(err) => json!({"ok": false, "reason": err.to_string()}),
        Ok(claims) if inspector::may_inspect(&shared.config.inspector, &claims) => {
            json!({"ok": true})
        }
        Ok(claims) => json!({"ok": false, "reason": format!(
            "A token of role {} may not inspect: use the service role key", claims.role)}),
    };
    Json(verdict).into_response()
}
