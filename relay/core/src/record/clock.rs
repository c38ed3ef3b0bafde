//! The host clock's state, as every summary records it: one-way figures (the exchange's `E` to
//! this host, a probe's send delay) are only as good as the two clocks' agreement, so a summary
//! says what the kernel knew of this host's clock, and whether its figures can be trusted.

use serde::{Deserialize, Serialize};

/// What `adjtimex` reported of this host's clock (read by the shell; see `relay::clock_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockState {
    /// NTP/PTP keeps the clock in sync: `STA_UNSYNC` clear and the state not `TIME_ERROR`.
    pub synchronized: bool,
    /// The kernel's estimated and maximum error, in µs.
    pub est_error_us: i64,
    pub max_error_us: i64,
    /// TAI - UTC, in s (0 when nothing set it).
    pub tai_offset_s: i32,
}

impl ClockState {
    /// Why one-way figures of about `typical_ms` (a median) measured against this clock cannot be
    /// trusted, or `None` when they can (as far as this host knows: the other host's clock is
    /// its own matter).
    pub fn one_way_doubt(&self, typical_ms: Option<f64>) -> Option<String> {
        if !self.synchronized {
            return Some(
                "this host's clock is not synchronised (adjtimex): one-way latencies are only as \
                 good as the two clocks' agreement"
                    .to_string(),
            );
        }
        let error_ms = self.est_error_us as f64 / 1000.0;
        match typical_ms {
            Some(t) if error_ms > t.abs() => Some(format!(
                "this host's clock error estimate ({error_ms:.3} ms) is larger than the median \
                 one-way latency ({t:.3} ms)"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubt_when_unsynchronised_or_the_error_exceeds_the_figure() {
        let synced = ClockState {
            synchronized: true,
            est_error_us: 500,
            max_error_us: 1000,
            tai_offset_s: 37,
        };
        assert_eq!(synced.one_way_doubt(Some(120.0)), None);
        assert_eq!(synced.one_way_doubt(None), None);
        let doubt = synced.one_way_doubt(Some(0.2)).unwrap();
        assert!(
            doubt.contains("(0.500 ms) is larger than the median one-way latency (0.200 ms)"),
            "{doubt}"
        );
        let unsynced = ClockState {
            synchronized: false,
            ..synced
        };
        assert!(unsynced
            .one_way_doubt(Some(120.0))
            .unwrap()
            .contains("not synchronised"));
    }
}
