//! Limits: the tenant-wide rate counters, the per-channel presence window and the
//! connection cap.

mod rate;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use rate::RateCounter;

use crate::config::Limits;

/// The tenant-wide counters every socket shares.
#[derive(Debug)]
pub(crate) struct TenantCounters {
    pub(crate) joins: RateCounter,
    pub(crate) events: RateCounter,
    pub(crate) presence_events: RateCounter,
}

impl TenantCounters {
    pub(crate) fn new(limits: &Limits) -> Self {
        TenantCounters {
            joins: RateCounter::per_second(limits.max_joins_per_second),
            events: RateCounter::per_second(limits.max_events_per_second),
            presence_events: RateCounter::per_second(limits.max_presence_events_per_second),
        }
    }
}

/// The presence-push limit of one channel: at most `max_calls` per fixed window that
/// starts at the first push after the previous window ended (Supabase's rule).
#[derive(Debug)]
pub(crate) struct PresenceWindow {
    max_calls: u32,
    window: Duration,
    count: u32,
    resets_at: Option<Instant>,
}

impl PresenceWindow {
    pub(crate) fn new(max_calls: u32, window: Duration) -> Self {
        PresenceWindow {
            max_calls,
            window,
            count: 0,
            resets_at: None,
        }
    }

    /// Records a push; false when it is over the limit.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        match self.resets_at {
            Some(resets_at) if now <= resets_at => {
                if self.count >= self.max_calls {
                    return false;
                }
                self.count += 1;
                true
            }
            _ => {
                self.count = 1;
                self.resets_at = Some(now + self.window);
                true
            }
        }
    }
}

/// Caps concurrent connections: a semaphore with one permit per connection, held for the
/// life of a socket.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimiter {
    slots: Arc<Semaphore>,
    max: usize,
}

/// Held for the life of a socket; releases its slot on drop.
pub(crate) type ConnectionPermit = OwnedSemaphorePermit;

impl ConnectionLimiter {
    /// A limiter of `max` connections (capped at the most permits a semaphore holds,
    /// which no machine's file limit comes near).
    pub(crate) fn new(max: usize) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        ConnectionLimiter {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Takes a slot, or `None` when the server is full.
    pub(crate) fn try_acquire(&self) -> Option<ConnectionPermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }

    /// Connections open now.
    pub(crate) fn current(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn presence_window_allows_max_calls_per_window() {
        let mut window = PresenceWindow::new(5, Duration::from_secs(30));
        let start = Instant::now();
        for _ in 0..5 {
            assert!(window.allow(start));
        }
        assert!(!window.allow(start + Duration::from_secs(29)));
        assert!(
            window.allow(start + Duration::from_secs(31)),
            "a new window starts"
        );
    }

    #[test]
    fn connection_permits_are_released_on_drop() {
        let limiter = ConnectionLimiter::new(2);
        let a = limiter.try_acquire().unwrap();
        let _b = limiter.try_acquire().unwrap();
        assert!(limiter.try_acquire().is_none());
        drop(a);
        assert_eq!(limiter.current(), 1);
        assert!(limiter.try_acquire().is_some());
    }
}
