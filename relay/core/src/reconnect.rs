//! What outlives one exchange connection, as two small state machines the I/O shell drives:
//!
//! * [`Backoff`]: when to try again after a connection (or an attempt) ends. The first retry
//!   waits [`INITIAL_DELAY`]; every further failure doubles the wait up to the configured cap; a
//!   connection that delivered data, or lived [`binance::HEALTHY_CONNECTION`], starts the
//!   doubling over.
//! * [`Upstream`]: how many connections opened (the generation every datagram carries) and since
//!   when the exchange has been out of reach, so the next open can announce the outage as an
//!   [`UpstreamGap`].
//!
//! Both take the time from the caller (`Instant` for timers, CLOCK_REALTIME ns for what goes on
//! the wire) and never read a clock.

use std::time::{Duration, Instant};

use relay_wire::UpstreamGap;

use crate::binance;

/// The first reconnect delay.
pub const INITIAL_DELAY: Duration = Duration::from_millis(250);
/// The default cap of the backoff (the seed's `reconnect_max_delay_secs`).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);

/// The reconnect delay policy (see the module docs).
#[derive(Clone, Debug)]
pub struct Backoff {
    cap: Duration,
    next: Duration,
    attempt_started: Option<Instant>,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// Delays double up to `cap` (never below [`INITIAL_DELAY`]).
    pub fn new(cap: Duration) -> Backoff {
        Backoff {
            cap: cap.max(INITIAL_DELAY),
            next: INITIAL_DELAY,
            attempt_started: None,
            retry_at: None,
        }
    }

    /// A connection attempt starts at `now`.
    pub fn attempt(&mut self, now: Instant) {
        self.attempt_started = Some(now);
        self.retry_at = None;
    }

    /// The connection delivered data: it worked, so the next failure starts the doubling over.
    pub fn delivered(&mut self) {
        self.next = INITIAL_DELAY;
    }

    /// The attempt or the connection ended at `now`: schedules the retry and returns its delay.
    pub fn ended(&mut self, now: Instant) -> Duration {
        let healthy = self.attempt_started.take().is_some_and(|started| {
            now.saturating_duration_since(started) >= binance::HEALTHY_CONNECTION
        });
        if healthy {
            self.next = INITIAL_DELAY;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        self.retry_at = Some(now + delay);
        delay
    }

    /// When to connect again, while a retry is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry_at
    }

    /// True once the scheduled retry is due: connect now (then call [`Backoff::attempt`]).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.retry_at {
            Some(at) if now >= at => {
                self.retry_at = None;
                true
            }
            _ => false,
        }
    }
}

/// The exchange side's generation and outage (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Upstream {
    generation: u32,
    down_since_ns: Option<u64>,
}

impl Upstream {
    /// A WebSocket connection opened at `now_ns`: returns its generation (1 for the first) and,
    /// after an outage, the gap from the moment the exchange was lost to now.
    pub fn opened(&mut self, now_ns: u64) -> (u32, Option<UpstreamGap>) {
        self.generation += 1;
        let gap = self.down_since_ns.take().map(|down_at_ns| UpstreamGap {
            down_at_ns,
            up_at_ns: now_ns,
        });
        (self.generation, gap)
    }

    /// The exchange went out of reach at `now_ns` (the first loss counts: failed attempts that
    /// follow do not move it).
    pub fn lost(&mut self, now_ns: u64) {
        self.down_since_ns.get_or_insert(now_ns);
    }

    /// Connections opened so far.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Since when the exchange has been out of reach, while it is.
    pub fn down_since_ns(&self) -> Option<u64> {
        self.down_since_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_to_the_cap_and_reset_after_a_healthy_connection() {
        let t0 = Instant::now();
        let mut b = Backoff::new(Duration::from_secs(2));
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            b.attempt(now);
            now += 10 * MS;
            let delay = b.ended(now);
            assert_eq!(b.poll_timeout(), Some(now + delay));
            assert!(!b.handle_timeout(now + delay - MS), "not before its time");
            assert!(b.handle_timeout(now + delay));
            assert_eq!(b.poll_timeout(), None, "one retry per ending");
            delays.push(delay.as_millis());
            now += delay;
        }
        assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000]);
        b.attempt(now);
        now += binance::HEALTHY_CONNECTION;
        assert_eq!(
            b.ended(now),
            INITIAL_DELAY,
            "a healthy connection resets the backoff"
        );
        assert_eq!(
            b.ended(now),
            2 * INITIAL_DELAY,
            "an ending without an attempt is a failure"
        );
        b.ended(now);
        b.delivered();
        assert_eq!(b.ended(now), INITIAL_DELAY, "data resets the backoff");
    }

    #[test]
    fn the_cap_never_goes_below_the_first_delay() {
        let mut b = Backoff::new(Duration::ZERO);
        let now = Instant::now();
        assert_eq!(b.ended(now), INITIAL_DELAY);
        assert_eq!(b.ended(now), INITIAL_DELAY);
    }

    #[test]
    fn outages_become_gaps_on_the_next_open() {
        let mut up = Upstream::default();
        assert_eq!(up.opened(100), (1, None));
        up.lost(200);
        up.lost(300);
        let (generation, gap) = up.opened(900);
        assert_eq!(generation, 2);
        assert_eq!(
            gap,
            Some(UpstreamGap {
                down_at_ns: 200,
                up_at_ns: 900
            })
        );
        assert_eq!(up.opened(950), (3, None), "no loss, no gap");
        assert_eq!(up.generation(), 3);
    }
}
