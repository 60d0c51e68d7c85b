//! A reconnect storm: N clients, all connected first, send their `phx_join` for one
//! channel at the same moment (what every client of an app does a second after a deploy).
//! Reports how long until every join was answered, the answers' latencies, the refusals
//! by reason, and, from the server's `/metrics`, how many authorization checks were
//! asked for and how many reached the database.
//!
//! Joins go straight onto the sockets (no `Wire`): the storm is about one message per
//! socket and its reply, not about fan-out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt, stream};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::BenchError;

/// How a storm is shaped.
#[derive(Debug, Clone)]
pub struct JoinStormOptions {
    /// The WebSocket URL, e.g. `ws://127.0.0.1:4000/socket/websocket`.
    pub url: String,
    /// The server's `/metrics` URL, for the authorization figures (none: not reported).
    pub metrics_url: Option<String>,
    /// One token per client, or one for all.
    pub tokens: Vec<String>,
    /// How many clients.
    pub clients: usize,
    /// The channel name (without `realtime:`).
    pub topic: String,
    /// Join with `private: true`.
    pub private: bool,
    /// Connects in flight at once while connecting (before the storm).
    pub connect_concurrency: usize,
    /// How long a join may wait for its reply before it counts as timed out.
    pub timeout: Duration,
}

/// What a storm did.
#[derive(Debug, Clone, Serialize)]
pub struct JoinStormReport {
    /// Clients connected (all of them, or the run stops before the storm).
    pub clients: usize,
    /// Joins answered `ok`.
    pub joined: usize,
    /// Refusals and timeouts, by reason.
    pub errors: BTreeMap<String, usize>,
    /// From the moment the joins were sent to the last answer.
    pub seconds_until_all_answered: f64,
    /// Join latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// `crier_authorization_checks_total` during the storm.
    pub authorization_checks: Option<f64>,
    /// `crier_authorization_queries_total` during the storm: database round trips.
    pub authorization_queries: Option<f64>,
}

/// Runs the storm (module docs).
pub async fn join_storm(options: &JoinStormOptions) -> Result<JoinStormReport, BenchError> {
    if options.tokens.is_empty() || options.clients == 0 {
        return Err(BenchError::Settings(
            "a storm needs clients and a token".into(),
        ));
    }
    let token = |n: usize| options.tokens[n % options.tokens.len()].clone();
    // Everyone connects first; the storm is the joins.
    let sockets: Vec<_> = stream::iter(0..options.clients)
        .map(|n| {
            let url = format!("{}?apikey={}&vsn=2.0.0", options.url, token(n));
            async move {
                tokio_tungstenite::connect_async(url)
                    .await
                    .map(|(ws, _)| ws)
            }
        })
        .buffer_unordered(options.connect_concurrency.max(1))
        .collect()
        .await;
    let mut connected = Vec::with_capacity(sockets.len());
    for socket in sockets {
        connected.push(socket.map_err(|err| BenchError::NoneJoined(err.to_string()))?);
    }
    let before = metrics(options.metrics_url.as_deref()).await;

    let (go, ready) = tokio::sync::watch::channel(false);
    let topic = Arc::new(format!("realtime:{}", options.topic));
    let mut tasks = Vec::with_capacity(connected.len());
    for (n, ws) in connected.into_iter().enumerate() {
        let mut ready = ready.clone();
        let topic = Arc::clone(&topic);
        let join = json!(["1", "1", *topic, "phx_join", {
            "config": {"private": options.private, "broadcast": {"self": false}},
            "access_token": token(n),
        }])
        .to_string();
        let limit = options.timeout;
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let _ = ready.wait_for(|go| *go).await;
            let sent = Instant::now();
            if let Err(err) = sink.send(Message::Text(join.into())).await {
                return (sent.elapsed(), Err(format!("send: {err}")), sink, stream);
            }
            let answer = tokio::time::timeout(limit, async {
                while let Some(frame) = stream.next().await {
                    let Ok(Message::Text(text)) = frame else {
                        continue;
                    };
                    let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if parts.get(3).and_then(Value::as_str) == Some("phx_reply")
                        && parts.get(1).and_then(Value::as_str) == Some("1")
                    {
                        let payload = &parts[4];
                        return match payload["status"].as_str() {
                            Some("ok") => Ok(()),
                            _ => Err(payload["response"]["reason"]
                                .as_str()
                                .unwrap_or("error")
                                .to_owned()),
                        };
                    }
                }
                Err("the socket closed".to_owned())
            })
            .await
            .unwrap_or_else(|_| Err("no reply in time".to_owned()));
            (sent.elapsed(), answer, sink, stream)
        }));
    }
    let started = Instant::now();
    let _ = go.send(true);
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut joined = 0;
    // The sockets stay open until every answer is in, so no close disturbs the storm.
    let mut keep = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (latency, answer, sink, stream) = task
            .await
            .map_err(|err| BenchError::Worker(err.to_string()))?;
        latencies.push(latency.as_secs_f64() * 1e3);
        match answer {
            Ok(()) => joined += 1,
            Err(reason) => *errors.entry(reason).or_default() += 1,
        }
        keep.push((sink, stream));
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = metrics(options.metrics_url.as_deref()).await;
    drop(keep);
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let delta = |name: &str| Some(after.as_ref()?.get(name)? - before.as_ref()?.get(name)?);
    Ok(JoinStormReport {
        clients: options.clients,
        joined,
        errors,
        seconds_until_all_answered: seconds,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        authorization_checks: delta("crier_authorization_checks_total"),
        authorization_queries: delta("crier_authorization_queries_total"),
    })
}

/// The server's counters, by name (`None` without a URL or when it does not answer).
async fn metrics(url: Option<&str>) -> Option<BTreeMap<String, f64>> {
    let text = reqwest::get(url?).await.ok()?.text().await.ok()?;
    Some(
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect(),
    )
}
