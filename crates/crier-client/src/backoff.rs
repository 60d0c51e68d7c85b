//! Capped, jittered exponential backoff, for reconnects and channel rejoins.
//!
//! Jitter matters more than the curve: when a server restarts, every client reconnects at
//! once, and without jitter they all come back in the same millisecond, again and again.

use std::time::Duration;

/// A backoff schedule: `initial * multiplier^attempt`, capped at `max`, then scaled down by
/// a random factor in `[1 - jitter, 1]`.
///
/// ```
/// use std::time::Duration;
/// use crier_client::Backoff;
///
/// let policy = Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(10), ..Backoff::RECONNECT };
/// assert_eq!(policy.base_delay(0), Duration::from_millis(500));
/// assert_eq!(policy.base_delay(10), Duration::from_secs(10));
/// let jittered = policy.delay(3);
/// assert!(jittered <= Duration::from_secs(4) && jittered >= Duration::from_secs(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry, before jitter.
    pub initial: Duration,
    /// Growth per attempt.
    pub multiplier: f64,
    /// The largest delay, before jitter.
    pub max: Duration,
    /// How much of each delay is random: 0 for none, 1 for "anywhere from 0 to the delay".
    pub jitter: f64,
}

impl Backoff {
    /// Reconnects: 1 s, 2 s, 4 s ... capped at 30 s, each up to 25 % shorter at random.
    pub const RECONNECT: Backoff = Backoff {
        initial: Duration::from_secs(1),
        multiplier: 2.0,
        max: Duration::from_secs(30),
        jitter: 0.25,
    };

    /// Channel rejoins after an error: 1 s, 2 s, 4 s ... capped at 30 s, up to 25 % shorter.
    pub const REJOIN: Backoff = Backoff::RECONNECT;

    /// Rejoins refused by a rate limit: start at 5 s, capped at 60 s.
    pub const RATE_LIMITED: Backoff = Backoff {
        initial: Duration::from_secs(5),
        multiplier: 2.0,
        max: Duration::from_secs(60),
        jitter: 0.25,
    };

    /// The delay before the given retry (0 is the first), without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let delay = self.initial.as_secs_f64() * factor;
        Duration::from_secs_f64(delay.min(self.max.as_secs_f64()))
    }

    /// The delay before the given retry, with jitter drawn from `unit` (in `[0, 1)`).
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let jitter = self.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter * unit.clamp(0.0, 1.0);
        self.base_delay(attempt).mul_f64(scale)
    }

    /// The delay before the given retry, with random jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::RECONNECT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_doubles_up_to_the_cap() {
        let backoff = Backoff::RECONNECT;
        let secs: Vec<f64> = (0..8)
            .map(|a| backoff.base_delay(a).as_secs_f64())
            .collect();
        assert_eq!(secs, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        assert_eq!(backoff.base_delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let backoff = Backoff::RECONNECT;
        for attempt in 0..10 {
            let base = backoff.base_delay(attempt);
            assert_eq!(backoff.delay_with(attempt, 0.0), base);
            assert_eq!(backoff.delay_with(attempt, 1.0), base.mul_f64(0.75));
            for _ in 0..200 {
                let delay = backoff.delay(attempt);
                assert!(
                    delay <= base && delay >= base.mul_f64(0.75),
                    "{delay:?} vs {base:?}"
                );
            }
        }
    }

    #[test]
    fn rate_limited_rejoins_back_off_longer() {
        assert!(Backoff::RATE_LIMITED.base_delay(0) > Backoff::REJOIN.base_delay(0));
        assert_eq!(
            Backoff::RATE_LIMITED.base_delay(10),
            Duration::from_secs(60)
        );
    }
}
