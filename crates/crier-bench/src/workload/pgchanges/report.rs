//! What a B3 run found: the subscribers' tallies merged, every measured row checked
//! against the subscribers meant to see it, and the result as text, as one JSON line and
//! as a [`Run`] row.

use std::io::{self, Write};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::subscribers::SubStats;
use super::{PgChangesOptions, RlsMode, Timeline};
use crate::failures::{Failures, KEEP_ERRORS};
use crate::report::{Rate, Run};
use crate::stats::{latency_histogram, quantile_ms};

/// The figures of one B3 run: the keys of the JSON line the workload prints, and the
/// `pgchanges` object of its [`Run`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgChangesFigures {
    /// Subscribers that joined (all of them, or the run fails).
    pub subscribers: u64,
    /// The RLS variant: `off`, `all` or `per-user`.
    pub rls: String,
    /// How rows reached the subscribers: `postgres-changes` or `database-broadcasts`
    /// (absent in results from before the choice existed).
    #[serde(default = "postgres_changes")]
    pub via: String,
    /// Distinct users (claims groups).
    pub users: u64,
    /// Whether each subscriber had a topic of its own.
    pub topic_per_subscriber: bool,
    /// Rows per second asked of the writers; 0 is unthrottled.
    pub rate: u64,
    /// Rows per transaction.
    pub rows_per_tx: u64,
    /// Writer connections.
    pub writers: u64,
    /// The measured window asked for, in seconds.
    pub seconds: f64,
    /// The measured window as it was, in seconds.
    pub window_s: f64,
    /// Rows committed in the window.
    pub rows: u64,
    /// Rows committed per second in the window.
    pub write_rate: f64,
    /// Deliveries due for the window's rows (Σ over rows of the subscribers that may
    /// see it).
    pub expected: u64,
    /// Of those, received (first receipts).
    pub received: u64,
    /// `expected - received`: must be 0.
    pub missing: u64,
    /// Rows that reached every subscriber meant to see them.
    pub fully_delivered: u64,
    /// From the window's start to the last measured receipt, in seconds (at least the
    /// window).
    pub delivery_span_s: f64,
    /// Measured deliveries per second of the delivery span.
    pub deliveries_per_s: f64,
    /// Fully delivered rows per second of the delivery span.
    pub changes_per_s: f64,
    /// Every receipt of the run (warm-up included) over the time from the first to the
    /// last: what the pipeline sustains when it lags behind the writers.
    pub sustained_deliveries_per_s: f64,
    /// The same in changes (divided by the deliveries each row is due).
    pub sustained_changes_per_s: f64,
    /// Row `at` (`clock_timestamp()` at the insert) to receipt, percentiles and
    /// maximum, in ms.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p90_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub max_ms: f64,
    /// The payload's `commit_timestamp` (truncated to ms) to receipt, in ms.
    pub commit_p50_ms: f64,
    /// See `commit_p50_ms`.
    pub commit_p99_ms: f64,
    /// Rows received twice by one subscriber.
    pub duplicates: u64,
    /// Rows of an earlier run.
    pub stale: u64,
    /// Rows of another user (`per-user`): must be 0.
    pub unauthorized: u64,
    /// Server CPU from the window's start to the end of the drain, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// The load generator's CPU (subscribers and the writers' client side).
    pub tool_cpu_pct: Option<f64>,
    /// The whole PostgreSQL server's CPU (postmaster and children).
    pub pg_cpu_pct: Option<f64>,
    /// Server CPU-seconds per million deliveries.
    pub server_cpu_s_per_m_deliveries: Option<f64>,
}

/// The run's figures that come from the coordinator rather than the subscribers.
pub(super) struct Totals {
    pub(super) run: u64,
    pub(super) joined: u64,
    pub(super) users: usize,
    pub(super) expected: u64,
    /// The measured write window.
    pub(super) window: Duration,
    pub(super) window_start_wall: i64,
    /// (server, tool, postgres) CPU % from the window's start to the end of the drain.
    pub(super) cpu: [Option<f64>; 3],
    pub(super) cpu_wall: Duration,
    pub(super) failed_rows: u64,
    pub(super) written_total: u64,
    pub(super) written_per_second: Timeline,
    pub(super) writer_failures: Failures,
    pub(super) rss_bytes: Option<u64>,
    pub(super) connect_join_per_sec: f64,
}

/// The result of a B3 run.
#[derive(Debug)]
pub struct PgChangesReport {
    /// The figures (the JSON line, and the `pgchanges` object of [`Self::run`]).
    pub figures: PgChangesFigures,
    run_id: u64,
    body_bytes: usize,
    p95_ms: f64,
    /// `commit_timestamp` to receipt at p90 and at most, in ms (text only).
    commit_p90_ms: f64,
    commit_max_ms: f64,
    written_total: u64,
    failed_rows: u64,
    receipts: u64,
    receipt_span_s: f64,
    cpu_wall_s: f64,
    unmeasured: u64,
    /// The first few rows not fully delivered: (seq, subscribers that missed it).
    incomplete: Vec<(u64, u64)>,
    ended: Failures,
    writer_failures: Failures,
    other: Vec<String>,
    written_per_second: Timeline,
    delivered_per_second: Timeline,
    rss_bytes: Option<u64>,
    connect_join_per_sec: f64,
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

impl PgChangesReport {
    /// Merges the subscribers' tallies and checks every measured row.
    pub(super) fn build(
        shape: &PgChangesOptions,
        subs: &[SubStats],
        measured_rows: &[u64],
        expected_for: impl Fn(u64) -> u64,
        totals: Totals,
    ) -> PgChangesReport {
        let mut at_latency = latency_histogram();
        let mut commit_latency = latency_histogram();
        let (mut received, mut unmeasured, mut duplicates, mut stale, mut unauthorized) =
            (0, 0, 0, 0, 0);
        let (mut receipts, mut last_receipt) = (0, 0);
        let (mut first_any, mut last_any) = (i64::MAX, 0);
        let mut delivered_per_second = Timeline::default();
        let mut other = Vec::new();
        let mut ended = Failures::default();
        for sub in subs {
            receipts += sub.receipts;
            if sub.receipts > 0 {
                first_any = first_any.min(sub.first_any_us);
                last_any = last_any.max(sub.last_any_us);
            }
            at_latency.add(&sub.at_latency_us).expect("same bounds");
            commit_latency
                .add(&sub.commit_latency_us)
                .expect("same bounds");
            received += sub.measured;
            unmeasured += sub.unmeasured;
            duplicates += sub.duplicates;
            stale += sub.stale;
            unauthorized += sub.unauthorized;
            last_receipt = last_receipt.max(sub.last_receipt_us);
            delivered_per_second.merge(&sub.per_second);
            if other.len() < KEEP_ERRORS {
                other.extend(sub.other.iter().cloned());
            }
            if let Some(why) = &sub.ended {
                ended.record(format!("subscriber ended early: {why}"));
            }
        }

        // A row is fully delivered when every subscriber meant to see it did.
        let per_user = shape.rls == RlsMode::PerUser;
        let users = totals.users as u64;
        let (mut fully_delivered, mut incomplete) = (0, Vec::new());
        for &seq in measured_rows {
            let got = subs
                .iter()
                .filter(|s| (!per_user || s.user as u64 == seq % users) && s.seen.contains(seq))
                .count() as u64;
            let want = expected_for(seq);
            if got == want {
                fully_delivered += 1;
            } else if incomplete.len() < KEEP_ERRORS {
                incomplete.push((seq, want.saturating_sub(got)));
            }
        }

        let rows = measured_rows.len() as u64;
        let window = totals.window.as_secs_f64().max(1e-9);
        let span_us = last_receipt - totals.window_start_wall;
        let span = if span_us > 0 {
            totals.window.max(Duration::from_micros(span_us as u64))
        } else {
            totals.window
        }
        .as_secs_f64()
        .max(1e-9);
        let receipt_span = if last_any > first_any {
            (last_any - first_any) as f64 / 1e6
        } else {
            0.0
        };
        let sustained = receipts as f64 / receipt_span.max(1e-9);
        let fanout = totals.expected as f64 / rows.max(1) as f64;
        let [server_cpu, tool_cpu, pg_cpu] = totals.cpu;
        let cpu_wall = totals.cpu_wall.as_secs_f64();
        let server_cpu_per_m =
            server_cpu.map(|pct| pct / 100.0 * cpu_wall / (received.max(1) as f64 / 1e6));
        let ms = |h: &Histogram<u64>, q: f64| round(quantile_ms(h, q), 3);
        let figures = PgChangesFigures {
            subscribers: totals.joined,
            rls: shape.rls.name().to_owned(),
            via: shape.via.name().to_owned(),
            users,
            topic_per_subscriber: shape.topic_per_subscriber,
            rate: shape.rate,
            rows_per_tx: shape.rows_per_tx.max(1) as u64,
            writers: shape.writers.max(1) as u64,
            seconds: shape.seconds,
            window_s: round(window, 3),
            rows,
            write_rate: round(rows as f64 / window, 0),
            expected: totals.expected,
            received,
            missing: totals.expected.saturating_sub(received),
            fully_delivered,
            delivery_span_s: round(span, 3),
            deliveries_per_s: round(received as f64 / span, 0),
            changes_per_s: round(fully_delivered as f64 / span, 0),
            sustained_deliveries_per_s: round(sustained, 0),
            sustained_changes_per_s: round(sustained / fanout.max(1e-9), 0),
            p50_ms: ms(&at_latency, 0.5),
            p90_ms: ms(&at_latency, 0.9),
            p99_ms: ms(&at_latency, 0.99),
            max_ms: round(at_latency.max() as f64 / 1000.0, 3),
            commit_p50_ms: ms(&commit_latency, 0.5),
            commit_p99_ms: ms(&commit_latency, 0.99),
            duplicates,
            stale,
            unauthorized,
            server_cpu_pct: server_cpu.map(|v| round(v, 3)),
            tool_cpu_pct: tool_cpu.map(|v| round(v, 3)),
            pg_cpu_pct: pg_cpu.map(|v| round(v, 3)),
            server_cpu_s_per_m_deliveries: server_cpu_per_m.map(|v| round(v, 3)),
        };
        PgChangesReport {
            figures,
            run_id: totals.run,
            body_bytes: shape.body_bytes,
            p95_ms: ms(&at_latency, 0.95),
            commit_p90_ms: ms(&commit_latency, 0.9),
            commit_max_ms: round(commit_latency.max() as f64 / 1000.0, 3),
            written_total: totals.written_total,
            failed_rows: totals.failed_rows,
            receipts,
            receipt_span_s: receipt_span,
            cpu_wall_s: cpu_wall,
            unmeasured,
            incomplete,
            ended,
            writer_failures: totals.writer_failures,
            other,
            written_per_second: totals.written_per_second,
            delivered_per_second,
            rss_bytes: totals.rss_bytes,
            connect_join_per_sec: totals.connect_join_per_sec,
        }
    }

    /// The result as a `B3` row of `crier bench` results: latency is the row's `at` to
    /// receipt, publications are committed rows, the rate is the writers' (`max` when
    /// unthrottled) and the payload size is the body's.
    pub fn run(&self) -> Run {
        let f = &self.figures;
        Run {
            workload: "B3".into(),
            server: "crier".into(),
            subscribers: f.subscribers,
            rate: if f.rate == 0 {
                Rate::Max
            } else {
                Rate::PerSec(f.rate as f64)
            },
            payload_bytes: self.body_bytes,
            publishes_per_sec: f.write_rate,
            deliveries_per_sec: f.deliveries_per_s,
            delivery_ratio: if f.expected == 0 {
                0.0
            } else {
                f.received as f64 / f.expected as f64
            },
            p50_ms: f.p50_ms,
            p95_ms: self.p95_ms,
            p99_ms: f.p99_ms,
            max_ms: f.max_ms,
            rss_bytes: self.rss_bytes,
            idle_rss_per_conn_bytes: None,
            server_cpu_pct: f.server_cpu_pct,
            server_cpu_s_per_m_deliveries: f.server_cpu_s_per_m_deliveries,
            tool_cpu_pct: f.tool_cpu_pct,
            connect_join_per_sec: self.connect_join_per_sec,
            failed_joins: 0,
            lost_connections: self.ended.count,
            seconds: f.window_s,
            stopped_because: None,
            problems: self.anomalies(),
            pgchanges: Some(f.clone()),
            peer_cpu_pct: Default::default(),
        }
    }

    /// One line per thing that must not happen, for the `Run`'s problems.
    fn anomalies(&self) -> Vec<String> {
        let f = &self.figures;
        let mut out = Vec::new();
        if f.missing > 0 {
            out.push(format!("{} deliveries missing", f.missing));
        }
        if f.unauthorized > 0 {
            out.push(format!("{} unauthorized deliveries", f.unauthorized));
        }
        if self.failed_rows > 0 {
            out.push(format!("{} rows failed to commit", self.failed_rows));
        }
        let samples = self.ended.samples().into_iter();
        let samples = samples.chain(self.writer_failures.samples());
        out.extend(samples.map(|(message, n)| format!("{n}x {message}")));
        out
    }

    /// Writes the report as text, ending with the figures as one JSON line.
    pub fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        let f = &self.figures;
        let rate_label = if f.rate == 0 {
            "unthrottled".to_owned()
        } else {
            f.rate.to_string()
        };
        let topics = if f.topic_per_subscriber {
            "one topic each"
        } else {
            "one topic"
        };
        let fmt_opt = |value: Option<f64>, digits: usize| {
            value.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
        };
        writeln!(out)?;
        writeln!(
            out,
            "pgchanges: {} subscribers ({topics}), via {}, rls {}, {} users, rate {rate_label}, {} rows/tx, {} writers, {} s measured ({:.2} s actual)",
            f.subscribers, f.via, f.rls, f.users, f.rows_per_tx, f.writers, f.seconds, f.window_s
        )?;
        writeln!(
            out,
            "  rows written (run/window)  {:>10} / {}",
            self.written_total, f.rows
        )?;
        writeln!(out, "  rows failed                {:>10}", self.failed_rows)?;
        writeln!(
            out,
            "  write rate (window)        {:>10.0} rows/s",
            f.write_rate
        )?;
        writeln!(out, "  deliveries expected        {:>10}", f.expected)?;
        writeln!(out, "  deliveries received        {:>10}", f.received)?;
        writeln!(out, "  deliveries missing         {:>10}", f.missing)?;
        writeln!(
            out,
            "  rows fully delivered       {:>10} of {}",
            f.fully_delivered, f.rows
        )?;
        writeln!(
            out,
            "  delivery span              {:>10.2} s (window start → last receipt)",
            f.delivery_span_s
        )?;
        writeln!(
            out,
            "  deliveries/s               {:>10.0}",
            f.deliveries_per_s
        )?;
        writeln!(
            out,
            "  changes/s fully delivered  {:>10.0}",
            f.changes_per_s
        )?;
        writeln!(
            out,
            "  sustained (all receipts)   {:>10.0} deliveries/s = {:.0} changes/s ({} receipts over {:.2} s)",
            f.sustained_deliveries_per_s,
            f.sustained_changes_per_s,
            self.receipts,
            self.receipt_span_s
        )?;
        writeln!(
            out,
            "  latency at→client   p50 {:.2} / p90 {:.2} / p99 {:.2} / max {:.2} ms",
            f.p50_ms, f.p90_ms, f.p99_ms, f.max_ms
        )?;
        writeln!(
            out,
            "  latency commit_ts→client p50 {:.2} / p90 {:.2} / p99 {:.2} / max {:.2} ms (ms-truncated)",
            f.commit_p50_ms, self.commit_p90_ms, f.commit_p99_ms, self.commit_max_ms
        )?;
        writeln!(
            out,
            "  duplicates / stale / unauthorized / warm-up  {} / {} / {} / {}",
            f.duplicates, f.stale, f.unauthorized, self.unmeasured
        )?;
        writeln!(
            out,
            "  CPU over {:.2} s (1 core = 100%): server {}%, tool {}%, postgres {}%",
            self.cpu_wall_s,
            fmt_opt(f.server_cpu_pct, 1),
            fmt_opt(f.tool_cpu_pct, 1),
            fmt_opt(f.pg_cpu_pct, 1)
        )?;
        writeln!(
            out,
            "  server CPU-s per 1M deliveries {}",
            fmt_opt(f.server_cpu_s_per_m_deliveries, 3)
        )?;
        writeln!(
            out,
            "  rows committed per second:   {}",
            self.written_per_second
        )?;
        writeln!(
            out,
            "  deliveries per second:       {}",
            self.delivered_per_second
        )?;
        print_failures(out, "ANOMALY: subscribers lost", &self.ended)?;
        if f.missing > 0 {
            writeln!(out, "ANOMALY: {} deliveries missing", f.missing)?;
            // The body identifies a row in the table, to check that it did commit.
            for (seq, subscribers) in &self.incomplete {
                writeln!(
                    out,
                    "  row body '{}:{seq}:…' missed by {subscribers} subscribers",
                    self.run_id
                )?;
            }
        }
        if f.unauthorized > 0 {
            writeln!(out, "ANOMALY: {} unauthorized deliveries", f.unauthorized)?;
        }
        if !self.other.is_empty() {
            writeln!(out, "subscribers received unexpected frames (first few):")?;
            for frame in &self.other {
                writeln!(out, "  {frame}")?;
            }
        }
        print_failures(out, "ANOMALY: writer failures", &self.writer_failures)?;
        #[derive(Serialize)]
        struct Line<'a> {
            mode: &'static str,
            #[serde(flatten)]
            figures: &'a PgChangesFigures,
        }
        let line = Line {
            mode: "pgchanges",
            figures: f,
        };
        writeln!(
            out,
            "{}",
            serde_json::to_string(&line).expect("figures serialize")
        )
    }
}

/// `label: count` and the kept messages, when there were failures.
fn print_failures(out: &mut dyn Write, label: &str, failures: &Failures) -> io::Result<()> {
    if failures.count == 0 {
        return Ok(());
    }
    writeln!(out, "{label}: {}", failures.count)?;
    for (message, n) in failures.samples() {
        writeln!(out, "  {n:>6} x {message}")?;
    }
    Ok(())
}

fn postgres_changes() -> String {
    "postgres-changes".to_owned()
}
