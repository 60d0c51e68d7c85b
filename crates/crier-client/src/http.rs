//! The broadcast REST API: `httpSend` and the channel-less batch.

use url::Url;

use crate::Error;
use crate::channel::Channel;
use crate::client::{Client, HttpMessage};

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

/// The `apikey` header and bearer token the REST API wants: the API key (or the token
/// when there is none), and the current access token.
fn authorize(client: &Client, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let token = client.shared.token.lock().expect("not poisoned").clone();
    let api_key = client
        .shared
        .options
        .api_key
        .clone()
        .or_else(|| token.clone());
    let mut request = request;
    if let Some(key) = api_key {
        request = request.header("apikey", key);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
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

pub(crate) async fn send_event(
    channel: &Channel,
    event: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(), Error> {
    let client = &channel.shared.client;
    let mut url = client.shared.options.http_endpoint.clone();
    url.path_segments_mut()
        .map_err(|()| Error::Unsupported("the HTTP endpoint cannot take a path".into()))?
        .push(channel.name())
        .push("events")
        .push(event);
    if channel.shared.options.private {
        url.query_pairs_mut().append_pair("private", "true");
    }
    let request = client
        .shared
        .http
        .post(url)
        .timeout(client.shared.options.timeout)
        .header("content-type", content_type)
        .body(body);
    expect_accepted(authorize(client, request).send().await).await
}

pub(crate) async fn broadcast_batch(
    client: &Client,
    messages: &[HttpMessage],
) -> Result<(), Error> {
    let request = client
        .shared
        .http
        .post(client.shared.options.http_endpoint.clone())
        .timeout(client.shared.options.timeout)
        .json(&serde_json::json!({ "messages": messages }));
    expect_accepted(authorize(client, request).send().await).await
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
