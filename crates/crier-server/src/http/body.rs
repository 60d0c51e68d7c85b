//! Request bodies, read with a size limit and a clock.
//!
//! hyper bounds how long request headers may take (`serve`), but nothing bounds a body:
//! a client that sends `Content-Length: 1000` and then ten bytes would hold its request,
//! and its connection, forever. A body here must keep arriving (no gap longer than the
//! body timeout) and be complete within six times that; otherwise the answer is 408 and
//! the connection is closed. A body over the limit is 413, refused from its
//! `Content-Length` when it has one, before any of it is read.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::time::{Instant, timeout_at};

use super::errors::json_error;

/// Reads the whole of `body`: at most `limit` bytes, with no gap longer than `gap`.
pub(crate) async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    gap: Duration,
) -> Result<Bytes, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    let deadline = Instant::now() + 6 * gap;
    let mut stream = body.into_data_stream();
    let mut bytes = BytesMut::new();
    loop {
        let next_by = (Instant::now() + gap).min(deadline);
        match timeout_at(next_by, stream.next()).await {
            Err(_) => return Err(timed_out()),
            Ok(None) => return Ok(bytes.freeze()),
            Ok(Some(Err(err))) => {
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    format!("The request body could not be read: {err}"),
                ));
            }
            Ok(Some(Ok(chunk))) => {
                if bytes.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                bytes.extend_from_slice(&chunk);
            }
        }
    }
}

fn too_large(limit: usize) -> Response {
    let mut response = json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("The request body is larger than the {limit}-byte limit"),
    );
    // What is left of it will not be read.
    close_after(&mut response);
    response
}

fn timed_out() -> Response {
    let mut response = json_error(
        StatusCode::REQUEST_TIMEOUT,
        "The request body stopped arriving before it was complete",
    );
    close_after(&mut response);
    response
}

fn close_after(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}
