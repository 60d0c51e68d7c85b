//! The heartbeat monitor: sends a heartbeat every interval and notices a missed reply.
//!
//! The rule is the one realtime-js and the Swift SDK use: if the previous heartbeat is
//! still unanswered when the next one is due, the connection is dead (a half-open TCP
//! connection looks healthy to the socket layer forever). Several crates send heartbeats
//! and never check the replies; this is the part they leave out.

use std::time::Duration;

use tokio::time::Instant;

/// What the monitor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatEvent {
    /// A heartbeat went out.
    Sent,
    /// Its reply came back `ok` after `latency`.
    Ok {
        /// Round-trip time.
        latency: Duration,
    },
    /// Its reply came back with an error status.
    Error {
        /// Round-trip time.
        latency: Duration,
    },
    /// The previous heartbeat was still unanswered when the next was due: the connection
    /// is closed and re-established.
    Timeout,
}

/// What to do at a heartbeat tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Send a new heartbeat.
    Send,
    /// The last one was never answered: the connection is dead.
    TimedOut,
}

/// Tracks the one heartbeat in flight.
#[derive(Debug, Default)]
pub(crate) struct HeartbeatMonitor {
    pending: Option<(String, Instant)>,
}

impl HeartbeatMonitor {
    /// A heartbeat is due.
    pub(crate) fn on_tick(&mut self) -> Tick {
        match self.pending.take() {
            Some(_) => Tick::TimedOut,
            None => Tick::Send,
        }
    }

    /// A heartbeat with `msg_ref` was sent at `now`.
    pub(crate) fn sent(&mut self, msg_ref: String, now: Instant) {
        self.pending = Some((msg_ref, now));
    }

    /// A `phoenix` reply arrived. Returns the event if it answers the pending heartbeat.
    pub(crate) fn on_reply(
        &mut self,
        msg_ref: &str,
        ok: bool,
        now: Instant,
    ) -> Option<HeartbeatEvent> {
        let (pending_ref, sent_at) = self.pending.as_ref()?;
        if pending_ref != msg_ref {
            return None;
        }
        let latency = now.saturating_duration_since(*sent_at);
        self.pending = None;
        Some(if ok {
            HeartbeatEvent::Ok { latency }
        } else {
            HeartbeatEvent::Error { latency }
        })
    }

    /// The connection closed: nothing is in flight any more.
    pub(crate) fn reset(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_answered_heartbeat_reports_latency_and_the_next_tick_sends() {
        let mut monitor = HeartbeatMonitor::default();
        assert_eq!(monitor.on_tick(), Tick::Send);
        let start = Instant::now();
        monitor.sent("7".into(), start);
        tokio::time::advance(Duration::from_millis(30)).await;
        assert_eq!(
            monitor.on_reply("6", true, Instant::now()),
            None,
            "another ref"
        );
        assert_eq!(
            monitor.on_reply("7", true, Instant::now()),
            Some(HeartbeatEvent::Ok {
                latency: Duration::from_millis(30)
            })
        );
        assert_eq!(monitor.on_tick(), Tick::Send);
    }

    #[test]
    fn an_unanswered_heartbeat_times_out_at_the_next_tick() {
        let mut monitor = HeartbeatMonitor::default();
        assert_eq!(monitor.on_tick(), Tick::Send);
        monitor.sent("1".into(), Instant::now());
        assert_eq!(monitor.on_tick(), Tick::TimedOut);
        assert_eq!(
            monitor.on_tick(),
            Tick::Send,
            "after a timeout the slate is clean"
        );
    }
}
