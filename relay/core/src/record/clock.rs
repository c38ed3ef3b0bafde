//! The host clock's state, as every summary records it: one-way figures (the exchange's `E` to
//! this host, a probe's send delay) are only as good as the two clocks' agreement, so a summary
//! says what the kernel knew of this host's clock, and whether its figures can be trusted.

use serde::{Deserialize, Serialize};

/// What `adjtimex` reported of this host's clock (read by the shell; see `relay::clock_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockState {
    /// NTP/PTP keeps the clock in sync: `STA_UNSYNC` clear and the state not `TIME_ERROR`.
    pub synchronized: bool,
    /// The kernel's estimated and maximum error, in µs.
    pub est_error_us: i64,
    pub max_error_us: i64,
    /// TAI - UTC, in s (0 when nothing set it).
    pub tai_offset_s: i32,
    /// chrony's estimate of this clock's offset from true time, in µs (`chronyc -c tracking`'s
    /// system time), when chrony runs here.
    pub chrony_offset_us: Option<f64>,
}

/// The system time offset (s, positive: this clock is fast) from one line of
/// `chronyc -c tracking` (CSV: reference id, name, stratum, reference time, system time, ...), in
/// µs; `None` for anything else.
pub fn chrony_offset_us(tracking_csv: &str) -> Option<f64> {
    let line = tracking_csv.lines().next()?;
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() < 14 {
        return None;
    }
    let secs: f64 = fields[4].trim().parse().ok()?;
    secs.is_finite().then_some(secs * 1e6)
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
            chrony_offset_us: None,
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

    #[test]
    fn chronys_offset_is_read_from_its_csv_tracking_line() {
        // As `chronyc -c tracking` prints it (chrony 4.x).
        let line = "A9FEA97B,169.254.169.123,4,1764590000.123456789,-0.000012345,-0.000001000,\
                    0.000004000,-12.345,0.001,0.010,0.000123,0.000456,64.2,Normal\n";
        let us = chrony_offset_us(line).unwrap();
        assert!((us + 12.345).abs() < 1e-9, "{us}");
        assert_eq!(chrony_offset_us("506 Cannot talk to daemon\n"), None);
        assert_eq!(chrony_offset_us(""), None);
        assert_eq!(chrony_offset_us("a,b,c,d,nan,f,g,h,i,j,k,l,m,n"), None);
    }
}
