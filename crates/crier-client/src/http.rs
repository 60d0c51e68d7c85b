//! The broadcast REST API: `httpSend` and the channel-less batch.
//!
//! These calls do not go through the driver (they need no connection), so they get what
//! they need, settings and the current token, handed in rather than from the handles.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use url::Url;

use crate::Error;
use crate::options::ClientOptions;

/// One message of [`Client::http_broadcast`](crate::Client::http_broadcast).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpMessage {
    /// The channel name (without `realtime:`).
    pub topic: String,
    /// The event.
    pub event: String,
    /// The payload (a JSON object).
    pub payload: serde_json::Value,
    /// For private channels.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

impl HttpMessage {
    /// A public message.
    pub fn new(
        topic: impl Into<String>,
        event: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        HttpMessage {
            topic: topic.into(),
            event: event.into(),
            payload,
            private: false,
        }
    }
}

/// `.../api/broadcast` from the socket URL, the way realtime-js derives it: `ws` becomes
/// `http`, and a trailing `/socket/websocket`, `/socket` or `/websocket` is dropped.
pub(crate) fn endpoint(socket_url: &Url) -> Result<Url, Error> {
    let mut url = socket_url.clone();
    let scheme = if url.scheme() == "wss" {
        "https"
    } else {
        "http"
    };
    url.set_scheme(scheme)
        .map_err(|()| Error::Unsupported("cannot derive the HTTP endpoint".into()))?;
    url.set_query(None);
    let path = url.path().trim_end_matches('/');
    let path = ["/socket/websocket", "/socket", "/websocket"]
        .iter()
        .find_map(|suffix| path.strip_suffix(suffix))
        .unwrap_or(path)
        .to_owned();
    url.set_path(&format!("{path}/api/broadcast"));
    Ok(url)
}

/// An error with its chain of causes ("error sending request: ... : Connection refused").
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

async fn expect_accepted(response: Result<reqwest::Response, reqwest::Error>) -> Result<(), Error> {
    let response = response.map_err(|err| Error::Http {
        status: 0,
        message: with_causes(&err),
    })?;
    let status = response.status().as_u16();
    if status == 202 || response.status().is_success() {
        return Ok(());
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body
        .get("error")
        .or_else(|| body.get("message"))
        .map(|m| {
            m.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| m.to_string())
        })
        .unwrap_or_else(|| body.to_string());
    Err(Error::Http { status, message })
}

/// The REST calls of one client: shares its settings and the token the driver mirrors.
#[derive(Clone)]
pub(crate) struct BroadcastApi {
    http: reqwest::Client,
    options: Arc<ClientOptions>,
    token: Arc<Mutex<Option<String>>>,
}

impl BroadcastApi {
    /// The REST calls with their own HTTP connection pool.
    pub(crate) fn new(options: Arc<ClientOptions>, token: Arc<Mutex<Option<String>>>) -> Self {
        BroadcastApi {
            http: reqwest::Client::new(),
            options,
            token,
        }
    }

    /// `POST /api/broadcast/:channel/events/:event` with a raw body (`httpSend`).
    pub(crate) async fn send_event(
        &self,
        channel: &str,
        private: bool,
        event: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), Error> {
        let mut url = self.options.http_endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Unsupported("the HTTP endpoint cannot take a path".into()))?
            .push(channel)
            .push("events")
            .push(event);
        if private {
            url.query_pairs_mut().append_pair("private", "true");
        }
        let request = self
            .http
            .post(url)
            .timeout(self.options.timeout)
            .header("content-type", content_type)
            .body(body);
        expect_accepted(self.authorize(request).send().await).await
    }

    /// `POST /api/broadcast` with a batch of messages for any channels.
    pub(crate) async fn broadcast(&self, messages: &[HttpMessage]) -> Result<(), Error> {
        let request = self
            .http
            .post(self.options.http_endpoint.clone())
            .timeout(self.options.timeout)
            .json(&serde_json::json!({ "messages": messages }));
        expect_accepted(self.authorize(request).send().await).await
    }

    /// The `apikey` header and bearer token the REST API wants: the API key (or the token
    /// when there is none), and the current access token.
    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let token = self.token.lock().expect("not poisoned").clone();
        let api_key = self.options.api_key.clone().or_else(|| token.clone());
        let mut request = request;
        if let Some(key) = api_key {
            request = request.header("apikey", key);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_derived_like_realtime_js() {
        let cases = [
            (
                "ws://localhost:4000/socket/websocket?vsn=2.0.0",
                "http://localhost:4000/api/broadcast",
            ),
            (
                "wss://x.supabase.co/realtime/v1/websocket?vsn=2.0.0",
                "https://x.supabase.co/realtime/v1/api/broadcast",
            ),
        ];
        for (socket, expected) in cases {
            assert_eq!(
                endpoint(&Url::parse(socket).unwrap()).unwrap().as_str(),
                expected
            );
        }
    }
}
