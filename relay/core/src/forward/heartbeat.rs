//! When the relay sends a heartbeat: after `interval` without any datagram, so receivers learn the
//! next sequence (and so any tail loss) even when the exchange is quiet or out of reach.

use std::time::{Duration, Instant};

/// The heartbeat policy as a timer the I/O shell polls.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    interval: Duration,
    last_send: Instant,
}

impl Heartbeat {
    /// Starts counting at `now` (as if something had just been sent).
    pub fn new(interval: Duration, now: Instant) -> Heartbeat {
        Heartbeat {
            interval,
            last_send: now,
        }
    }

    /// A datagram went out at `now`: the link is not idle.
    pub fn on_send(&mut self, now: Instant) {
        self.last_send = self.last_send.max(now);
    }

    /// When the link will have been idle for the interval.
    pub fn poll_timeout(&self) -> Instant {
        self.last_send + self.interval
    }

    /// True when a heartbeat is due at `now`; the heartbeat counts as the next send.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if now < self.poll_timeout() {
            return false;
        }
        self.last_send = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_only_after_a_full_idle_interval() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut beat = Heartbeat::new(second, t0);
        assert_eq!(beat.poll_timeout(), t0 + second);
        assert!(!beat.handle_timeout(t0 + second / 2));
        beat.on_send(t0 + second / 2);
        assert!(
            !beat.handle_timeout(t0 + second),
            "data restarted the interval"
        );
        assert!(beat.handle_timeout(t0 + second * 3 / 2));
        assert_eq!(
            beat.poll_timeout(),
            t0 + second * 5 / 2,
            "the beat was a send"
        );
        assert!(!beat.handle_timeout(t0 + second * 2));
        beat.on_send(t0);
        assert_eq!(
            beat.poll_timeout(),
            t0 + second * 5 / 2,
            "time never runs back"
        );
    }
}
