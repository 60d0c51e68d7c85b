//! Where a JWK set comes from, and keeping it current.
//!
//! A **file** is read when the node is built (a set that does not parse is a startup
//! error) and read again on [`crate::Node::reload_keys`] (`crier serve` calls it on
//! SIGHUP) or when a token names an unknown `kid`; a re-read that fails keeps the keys
//! in use. `reload_keys` fetches a URL again the same way. A **URL** is fetched in the background from the start, with backoff until it
//! answers (HS tokens verify meanwhile; asymmetric ones are refused with the reason),
//! and again when a token names an unknown `kid` (a key rotation), at most once per
//! [`REFETCH_INTERVAL`].

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::JwtVerifier;
use super::keys::{JwkKey, JwksError, parse_jwks};

/// The least time between two re-fetches caused by unknown `kid`s, so a client sending
/// tokens with made-up ids cannot make the server hammer the key server.
pub(crate) const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between attempts to fetch a URL that does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where the JWK set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file holding `{"keys": [...]}`.
    File(PathBuf),
    /// An `http://` or `https://` URL that serves it.
    Url(String),
}

impl JwksSource {
    /// A URL when `text` starts with `http://` or `https://`, else a file path.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("http://") || text.starts_with("https://") {
            JwksSource::Url(text.to_owned())
        } else {
            JwksSource::File(PathBuf::from(text))
        }
    }

    fn name(&self) -> String {
        match self {
            JwksSource::File(path) => path.display().to_string(),
            JwksSource::Url(url) => url.clone(),
        }
    }
}

/// Reads the file of a [`JwksSource::File`].
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<JwkKey>, JwksError> {
    let text = std::fs::read_to_string(path).map_err(|err| JwksError::Unreadable {
        source_name: path.display().to_string(),
        message: err.to_string(),
    })?;
    parse_jwks(&text)
}

/// Reads or fetches the set.
pub(crate) async fn load(
    source: &JwksSource,
    http: &reqwest::Client,
) -> Result<Vec<JwkKey>, JwksError> {
    let unreadable = |message: String| JwksError::Unreadable {
        source_name: source.name(),
        message,
    };
    match source {
        JwksSource::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_file(&path))
                .await
                .map_err(|err| unreadable(err.to_string()))?
        }
        JwksSource::Url(url) => {
            let response = http
                .get(url)
                .timeout(FETCH_TIMEOUT)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|err| unreadable(err.to_string()))?;
            let text = response
                .text()
                .await
                .map_err(|err| unreadable(err.to_string()))?;
            parse_jwks(&text)
        }
    }
}

/// Keeps `verifier`'s JWK set current until `shutdown` (module docs).
pub(crate) async fn keep_jwks_fresh(
    verifier: JwtVerifier,
    source: JwksSource,
    shutdown: CancellationToken,
) {
    let http = reqwest::Client::new();
    let unknown_kid = verifier.unknown_kid();
    // A file was read when the node was built; a URL is fetched now.
    let mut loaded = matches!(source, JwksSource::File(_));
    let mut backoff = Duration::from_secs(1);
    // Re-fetches that tokens ask for are spaced out; the first one goes at once.
    let mut last_asked: Option<Instant> = None;
    loop {
        if !loaded {
            match load(&source, &http).await {
                Ok(keys) => {
                    tracing::info!(source = %source.name(), keys = keys.len(), "JWKS loaded");
                    verifier.set_jwks(keys);
                    loaded = true;
                    backoff = Duration::from_secs(1);
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "JWKS not loaded");
                    verifier.set_jwks_problem(Some(err.to_string()));
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = unknown_kid.notified() => {}
        }
        if let Some(last) = last_asked {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(last + REFETCH_INTERVAL) => {}
            }
        }
        last_asked = Some(Instant::now());
        match load(&source, &http).await {
            Ok(keys) => {
                tracing::info!(source = %source.name(), keys = keys.len(), "JWKS reloaded");
                verifier.set_jwks(keys);
            }
            // The keys in use stay: a bad edit or a key server hiccup must not lock
            // every user out.
            Err(err) => tracing::warn!(error = %err, "JWKS reload failed; keeping the keys in use"),
        }
    }
}
