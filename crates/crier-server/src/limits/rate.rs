//! A rolling-average rate counter with Supabase Realtime's semantics.
//!
//! Events are counted into fixed buckets (5 s by default, 12 kept: one minute); the rate
//! is the average per second over the kept buckets plus the current one, and a limit is
//! over while that average is at or above it. This is deliberately not a token bucket
//! (`governor`): Supabase's limits are averages that admit a burst far above the limit
//! as long as the minute's average stays below it (a reconnect storm after a deploy, say),
//! they count bulk amounts at once (one broadcast to 1,000 subscribers is 1,000 events),
//! and they stay tripped until the average falls. A GCRA limiter would refuse those bursts
//! and could not express the hysteresis, so the counter is written here, on atomics, with
//! tokio's clock so it runs under paused time in tests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Counts events and reports their average rate over a rolling window.
#[derive(Debug)]
pub struct RateCounter {
    limit: f64,
    tick: Duration,
    max_buckets: usize,
    /// Events in the bucket being filled.
    current: AtomicU64,
    /// Nanoseconds since `origin` at which the current bucket ends; read without the lock
    /// so the common case (no bucket boundary crossed) costs one atomic load.
    next_roll_nanos: AtomicU64,
    origin: Instant,
    /// Sum and count of the completed buckets, mirrored from `completed` so that reading
    /// the rate (several times per broadcast, from every core) takes no lock.
    completed_sum: AtomicU64,
    completed_len: AtomicU64,
    completed: Mutex<Completed>,
}

#[derive(Debug, Default)]
struct Completed {
    buckets: VecDeque<u64>,
    sum: u64,
}

impl RateCounter {
    /// A counter with Supabase's tenant window: 5 s buckets, one minute kept.
    pub fn per_second(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(5), 12)
    }

    /// A counter with `max_buckets` buckets of `tick` each.
    pub fn new(limit: u32, tick: Duration, max_buckets: usize) -> Self {
        let origin = Instant::now();
        RateCounter {
            limit: f64::from(limit),
            tick,
            max_buckets: max_buckets.max(1),
            current: AtomicU64::new(0),
            next_roll_nanos: AtomicU64::new(tick.as_nanos() as u64),
            origin,
            completed_sum: AtomicU64::new(0),
            completed_len: AtomicU64::new(0),
            completed: Mutex::new(Completed::default()),
        }
    }

    /// Adds `n` events.
    pub fn add(&self, n: u64) {
        self.roll();
        self.current.fetch_add(n, Ordering::Relaxed);
    }

    /// The average events per second over the window.
    pub fn rate(&self) -> f64 {
        self.rate_with(0)
    }

    /// The rate if `extra` more events were added now.
    fn rate_with(&self, extra: u64) -> f64 {
        self.roll();
        let total = self.completed_sum.load(Ordering::Acquire)
            + self.current.load(Ordering::Relaxed)
            + extra;
        let buckets = self.completed_len.load(Ordering::Acquire) + 1;
        total as f64 / buckets as f64 / self.tick.as_secs_f64()
    }

    /// True while the average is at or above the limit.
    pub fn is_over_limit(&self) -> bool {
        self.rate() >= self.limit
    }

    /// True if adding `n` more events now would put the average at or above the limit.
    pub fn would_exceed(&self, n: u64) -> bool {
        self.rate_with(n) > self.limit
    }

    /// Moves full buckets into the window once their tick has passed.
    fn roll(&self) {
        let elapsed = self.origin.elapsed().as_nanos() as u64;
        if elapsed < self.next_roll_nanos.load(Ordering::Acquire) {
            return;
        }
        let mut completed = self.completed.lock();
        let next_roll = self.next_roll_nanos.load(Ordering::Acquire);
        if elapsed < next_roll {
            return; // another thread rolled while we waited for the lock
        }
        let tick = self.tick.as_nanos() as u64;
        let ticks_passed = (elapsed - next_roll) / tick + 1;
        let first = self.current.swap(0, Ordering::AcqRel);
        let push = |completed: &mut Completed, count: u64| {
            completed.buckets.push_back(count);
            completed.sum += count;
            if completed.buckets.len() > self.max_buckets {
                let old = completed.buckets.pop_front().unwrap_or(0);
                completed.sum -= old;
            }
        };
        push(&mut completed, first);
        // Idle ticks are empty buckets; more than a window's worth all look the same.
        for _ in 1..ticks_passed.min(self.max_buckets as u64 + 1) {
            push(&mut completed, 0);
        }
        self.completed_sum.store(completed.sum, Ordering::Release);
        self.completed_len
            .store(completed.buckets.len() as u64, Ordering::Release);
        self.next_roll_nanos
            .store(next_roll + ticks_passed * tick, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_in_the_first_bucket_trips_at_the_limit() {
        let counter = RateCounter::per_second(10);
        counter.add(49);
        assert!(
            !counter.is_over_limit(),
            "49 events in a 5 s bucket is 9.8/s"
        );
        counter.add(1);
        assert!(counter.is_over_limit(), "50 events in a 5 s bucket is 10/s");
    }

    #[tokio::test(start_paused = true)]
    async fn average_spreads_over_the_window_and_clears() {
        let counter = RateCounter::per_second(10);
        counter.add(50);
        assert!(counter.is_over_limit());
        tokio::time::advance(Duration::from_secs(5)).await;
        // 50 events over two buckets (10 s) is 5/s.
        assert!(!counter.is_over_limit());
        assert!((counter.rate() - 5.0).abs() < 1e-9);
        // A minute later the burst has left the window.
        tokio::time::advance(Duration::from_secs(65)).await;
        assert_eq!(counter.rate(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_big_burst_is_admitted_when_the_minute_is_quiet() {
        let counter = RateCounter::per_second(100);
        tokio::time::advance(Duration::from_secs(60)).await;
        // 12 quiet buckets + the current one: 6,000 events over 65 s is ~92/s.
        counter.add(6000);
        assert!(!counter.is_over_limit());
        assert!(counter.would_exceed(600));
    }
}
