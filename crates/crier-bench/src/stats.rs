//! What a worker counts: per measurement epoch, messages sent (and the deliveries they
//! should cause), messages received and their latency.
//!
//! Every payload carries the epoch its sender was in, and both sides tally by that tag,
//! so a delivery ratio is exact even though workers switch epochs at slightly different
//! moments: a message is counted in its sender's epoch wherever it lands.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::payload::Stamp;

/// Latencies above this (in µs) are recorded as this; a minute is a failed run anyway.
const MAX_LATENCY_US: u64 = 60_000_000;

/// An empty latency histogram in µs: 1 µs to a minute, three significant digits. Every
/// tally uses these bounds, so any two can be added together.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// The value at `quantile` of a µs histogram, in milliseconds (0 when it is empty).
pub fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// One epoch's tallies.
#[derive(Debug, Clone)]
pub struct EpochStats {
    /// Messages published.
    pub sent: u64,
    /// Deliveries those publications should cause (Σ recipients), where the sender
    /// knows its recipients.
    pub expected: u64,
    /// Messages received.
    pub received: u64,
    /// Publish→receive latency in µs.
    pub latency_us: Histogram<u64>,
    /// Clock reading of the first and last publication.
    pub first_sent_us: Option<u64>,
    /// See `first_sent_us`.
    pub last_sent_us: Option<u64>,
}

impl Default for EpochStats {
    fn default() -> Self {
        EpochStats {
            sent: 0,
            expected: 0,
            received: 0,
            latency_us: latency_histogram(),
            first_sent_us: None,
            last_sent_us: None,
        }
    }
}

impl EpochStats {
    /// Adds another worker's tallies.
    pub fn merge(&mut self, other: &EpochStats) {
        self.sent += other.sent;
        self.expected += other.expected;
        self.received += other.received;
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share bounds");
        self.first_sent_us = min_some(self.first_sent_us, other.first_sent_us);
        self.last_sent_us = self.last_sent_us.max(other.last_sent_us);
    }

    /// Latency at `quantile`, in milliseconds (0 when nothing was received).
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        quantile_ms(&self.latency_us, quantile)
    }

    /// The worst latency, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }

    /// The wire form, for reports from worker processes.
    pub fn to_wire(&self) -> EpochReport {
        EpochReport {
            sent: self.sent,
            expected: self.expected,
            received: self.received,
            latency_us: self
                .latency_us
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
            first_sent_us: self.first_sent_us,
            last_sent_us: self.last_sent_us,
        }
    }

    /// Rebuilds tallies from their wire form.
    pub fn from_wire(report: &EpochReport) -> EpochStats {
        let mut latency_us = latency_histogram();
        for &(value, count) in &report.latency_us {
            latency_us.saturating_record_n(value, count);
        }
        EpochStats {
            sent: report.sent,
            expected: report.expected,
            received: report.received,
            latency_us,
            first_sent_us: report.first_sent_us,
            last_sent_us: report.last_sent_us,
        }
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// [`EpochStats`] as sent between processes: the histogram as (value, count) pairs of
/// its non-empty buckets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochReport {
    /// See [`EpochStats::sent`].
    pub sent: u64,
    /// See [`EpochStats::expected`].
    pub expected: u64,
    /// See [`EpochStats::received`].
    pub received: u64,
    /// Non-empty latency buckets: (µs, count).
    pub latency_us: Vec<(u64, u64)>,
    /// See [`EpochStats::first_sent_us`].
    pub first_sent_us: Option<u64>,
    /// See [`EpochStats::last_sent_us`].
    pub last_sent_us: Option<u64>,
}

/// A worker's tallies, shared by its connection tasks (one thread, so a `RefCell`).
#[derive(Debug, Default)]
pub struct Recorder {
    epochs: BTreeMap<u32, EpochStats>,
    /// The epoch stamped on messages sent now.
    pub current_epoch: u32,
    /// Messages received in any epoch (the fan-out publisher paces itself on this).
    pub received_total: u64,
    /// Messages sent in any epoch.
    pub sent_total: u64,
}

impl Recorder {
    /// Counts one publication that should reach `recipients` connections.
    pub fn sent(&mut self, epoch: u32, recipients: u64, at_us: u64) {
        let stats = self.epochs.entry(epoch).or_default();
        stats.sent += 1;
        stats.expected += recipients;
        stats.first_sent_us.get_or_insert(at_us);
        stats.last_sent_us = Some(at_us);
        self.sent_total += 1;
    }

    /// Counts one received message.
    pub fn received(&mut self, stamp: Stamp, now_us: u64) {
        let stats = self.epochs.entry(stamp.epoch).or_default();
        stats.received += 1;
        stats
            .latency_us
            .saturating_record(now_us.saturating_sub(stamp.sent_us).max(1));
        self.received_total += 1;
    }

    /// The tallies of `epoch` so far.
    pub fn epoch(&self, epoch: u32) -> EpochStats {
        self.epochs.get(&epoch).cloned().unwrap_or_default()
    }

    /// Forgets epochs before `epoch` (long ramps would otherwise keep every histogram).
    pub fn forget_before(&mut self, epoch: u32) {
        self.epochs = self.epochs.split_off(&epoch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_survive_the_wire_and_merge() {
        let mut a = Recorder::default();
        a.sent(1, 6, 100);
        a.sent(1, 6, 200);
        for (sent, now) in [(100, 1_100), (100, 2_100), (200, 3_200)] {
            a.received(
                Stamp {
                    sent_us: sent,
                    seq: 0,
                    epoch: 1,
                },
                now,
            );
        }
        let wire = a.epoch(1).to_wire();
        let json = serde_json::to_string(&wire).unwrap();
        let back = EpochStats::from_wire(&serde_json::from_str(&json).unwrap());
        assert_eq!((back.sent, back.expected, back.received), (2, 12, 3));
        assert_eq!(back.latency_us.len(), 3);
        assert!((back.latency_ms(0.5) - 2.0).abs() < 0.01);

        let mut merged = EpochStats::default();
        merged.merge(&back);
        merged.merge(&back);
        assert_eq!(merged.received, 6);
        assert_eq!(
            (merged.first_sent_us, merged.last_sent_us),
            (Some(100), Some(200))
        );
        assert!((merged.max_ms() - 3.0).abs() < 0.01);
    }

    #[test]
    fn old_epochs_can_be_forgotten() {
        let mut r = Recorder::default();
        r.sent(1, 1, 1);
        r.sent(2, 1, 1);
        r.forget_before(2);
        assert_eq!(r.epoch(1).sent, 0);
        assert_eq!(r.epoch(2).sent, 1);
        assert_eq!(r.sent_total, 2);
    }
}
