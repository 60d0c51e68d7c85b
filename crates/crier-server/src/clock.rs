//! The wall clock, behind a seam.
//!
//! Timers (idle, heartbeat, token expiry, flow control) run on tokio's clock, which tests
//! pause and advance. Token claims (`exp`, `nbf`) are wall-clock seconds written by
//! another machine, so checking them needs the wall clock, and a test on paused time
//! needs that clock to move with tokio's. [`SystemClock`] is the real one;
//! [`TokioClock`] starts at a given wall time and then follows tokio's clock.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a node reads the wall time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall time.
    fn now(&self) -> SystemTime;

    /// The current wall time in Unix seconds (0 before 1970).
    fn unix_now(&self) -> i64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    /// The tokio instant at which the wall clock reads `unix` seconds (now, when that is
    /// past): when a token with that `exp` expires.
    fn instant_at(&self, unix: i64) -> tokio::time::Instant {
        let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
        let remaining = at.duration_since(self.now()).unwrap_or_default();
        tokio::time::Instant::now() + remaining
    }
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock that reads `start` when created and then advances with tokio's clock, so
/// tests on paused time (`tokio::time::pause`, `advance`) see tokens expire on time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: SystemTime,
    started: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start` now (on tokio's clock).
    pub fn starting_at(start: SystemTime) -> Self {
        TokioClock {
            start,
            started: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.start + self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_with_paused_time() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = TokioClock::starting_at(start);
        assert_eq!(clock.unix_now(), 1_000);
        tokio::time::advance(Duration::from_millis(2_500)).await;
        assert_eq!(clock.unix_now(), 1_002);
        let expiry = clock.instant_at(1_010);
        assert_eq!(
            expiry - tokio::time::Instant::now(),
            Duration::from_millis(7_500)
        );
        assert_eq!(
            clock.instant_at(900),
            tokio::time::Instant::now(),
            "a past time is now"
        );
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.unix_now() > 1_577_836_800);
    }
}
