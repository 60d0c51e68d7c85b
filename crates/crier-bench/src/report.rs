//! Result rows: one [`Run`] per measured phase, printed as a table and written as JSON
//! (`{"runs": [...]}`) for `bench/run` to gather.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::BenchError;
use crate::workload::pgchanges::PgChangesFigures;

/// A publish rate: messages per second, or as fast as deliveries come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Open loop: this many messages per second, whatever happens.
    PerSec(f64),
    /// Closed loop: a fixed number of messages per subscriber in flight.
    Max,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(Rate::PerSec(rate)),
            _ => Err(format!(
                "rate {s:?} is neither a positive number nor \"max\""
            )),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::PerSec(rate) => write!(f, "{rate}"),
            Rate::Max => f.write_str("max"),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Rate::PerSec(rate) => serializer.serialize_f64(*rate),
            Rate::Max => serializer.serialize_str("max"),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(f64),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(rate) => Ok(Rate::PerSec(rate)),
            Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// One measured phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// `B1` (single-topic fan-out), `B2` (virtual users), `B3` (postgres changes) or
    /// `memory` (idle connections).
    pub workload: String,
    /// The server's name (`crier`, `raw-ws`, `ws`, `socket.io`, `nats`).
    pub server: String,
    /// Subscribers (B1, B3), virtual users (B2) or connections (memory).
    pub subscribers: u64,
    /// The publish rate asked for (B1: of the one publisher; B2: per virtual user and
    /// topic; B3: rows per second of all writers, `max` when unthrottled).
    pub rate: Rate,
    /// Size of each payload object (B3: of each row's body), in bytes.
    pub payload_bytes: usize,
    /// Messages published (B3: rows committed) per second in the measured window.
    pub publishes_per_sec: f64,
    /// Messages delivered to subscribers per second in the measured window.
    pub deliveries_per_sec: f64,
    /// Deliveries received / deliveries expected for the window's publications.
    pub delivery_ratio: f64,
    /// Publish→receive (B3: row `at`→receive) latency percentiles and maximum, in ms.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p95_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub max_ms: f64,
    /// The server's resident memory at the end of the window.
    pub rss_bytes: Option<u64>,
    /// Server memory growth per joined connection while idle.
    pub idle_rss_per_conn_bytes: Option<f64>,
    /// Server CPU in the window, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server CPU-seconds per million deliveries.
    pub server_cpu_s_per_m_deliveries: Option<f64>,
    /// The load generator's CPU (all its processes), percent of one core.
    pub tool_cpu_pct: Option<f64>,
    /// Connections opened and subscribed per second during the ramp.
    pub connect_join_per_sec: f64,
    /// Connections that failed to open or subscribe.
    pub failed_joins: u64,
    /// Connections lost after joining (closed by the server, errors).
    pub lost_connections: u64,
    /// Length of the measured window, in seconds.
    pub seconds: f64,
    /// B2 only: why the ramp stopped after this step (`p99`, `delivery`, `max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_because: Option<String>,
    /// Failure messages worth reading, with counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// B3 only: the postgres-changes figures (RLS variant, missing, stale and
    /// unauthorized deliveries, PostgreSQL's CPU, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgchanges: Option<PgChangesFigures>,
    /// Other processes' CPU in the window (other nodes of a cluster, Redis), percent of
    /// one core, by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub peer_cpu_pct: std::collections::BTreeMap<String, f64>,
}

/// Prints runs as an aligned table.
pub fn print_table(runs: &[Run], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<7} {:<9} {:>6} {:>5} {:>6} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>9}",
        "load",
        "server",
        "subs",
        "rate",
        "bytes",
        "pub/s",
        "deliv/s",
        "deliv%",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "cpu%",
        "tool%",
        "RSS/conn"
    )?;
    for run in runs {
        let rss = run
            .idle_rss_per_conn_bytes
            .map_or("-".to_owned(), |b| format!("{:.1}K", b / 1024.0));
        writeln!(
            out,
            "{:<7} {:<9} {:>6} {:>5} {:>6} {:>9.0} {:>11.0} {:>8.3} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>6} {:>9}",
            run.workload,
            run.server,
            run.subscribers,
            run.rate.to_string(),
            run.payload_bytes,
            run.publishes_per_sec,
            run.deliveries_per_sec,
            run.delivery_ratio * 100.0,
            run.p50_ms,
            run.p95_ms,
            run.p99_ms,
            run.max_ms,
            run.server_cpu_pct
                .map_or("-".to_owned(), |c| format!("{c:.0}")),
            run.tool_cpu_pct
                .map_or("-".to_owned(), |c| format!("{c:.0}")),
            rss,
        )?;
        for problem in &run.problems {
            writeln!(out, "        ! {problem}")?;
        }
    }
    Ok(())
}

/// Writes `{"runs": [...]}` to `path` (`-` for stdout).
pub fn write_json(runs: &[Run], path: &Path) -> Result<(), BenchError> {
    let json =
        serde_json::to_string_pretty(&serde_json::json!({ "runs": runs })).expect("runs serialize");
    if path == Path::new("-") {
        println!("{json}");
        return Ok(());
    }
    std::fs::write(path, json + "\n").map_err(|source| BenchError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_and_write_as_numbers_or_max() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("10".parse::<Rate>(), Ok(Rate::PerSec(10.0)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert_eq!(serde_json::to_string(&Rate::Max).unwrap(), "\"max\"");
        assert_eq!(serde_json::to_string(&Rate::PerSec(2.5)).unwrap(), "2.5");
        assert_eq!(serde_json::from_str::<Rate>("\"max\"").unwrap(), Rate::Max);
        assert_eq!(
            serde_json::from_str::<Rate>("10").unwrap(),
            Rate::PerSec(10.0)
        );
    }
}
