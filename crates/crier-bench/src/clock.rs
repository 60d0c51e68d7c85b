//! One clock for every process of a run.
//!
//! Publishers stamp each payload with the time they sent it and subscribers subtract it
//! from the time they read it. When a run is split over several processes, those two
//! readings come from different processes, so the clock must be system-wide and
//! monotonic: `CLOCK_MONOTONIC`, which `std::time::Instant` uses but does not expose.

use rustix::time::{ClockId, clock_gettime};

/// Microseconds on the system's monotonic clock (comparable across processes).
pub fn now_us() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards() {
        let a = now_us();
        let b = now_us();
        assert!(b >= a);
        assert!(a > 0);
    }
}
