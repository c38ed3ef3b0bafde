//! Latency histograms and their summaries.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies in ns, 3 significant digits, up to 100 s.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Records `ns` (clamped into the histogram's range; negative latencies count as 1 ns).
pub fn record(h: &mut Histogram<u64>, ns: i64) {
    let v = ns.clamp(1, 100_000_000_000) as u64;
    // In range by construction.
    let _ = h.record(v);
}

/// A latency distribution in µs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Percentiles {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Some(Percentiles {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1_000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_microseconds() {
        let mut h = latency_histogram();
        assert_eq!(Percentiles::of(&h), None);
        for ns in 1..=1000i64 {
            record(&mut h, ns * 1_000);
        }
        record(&mut h, -5);
        let p = Percentiles::of(&h).unwrap();
        assert_eq!(p.count, 1001);
        assert!((p.p50_us - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_us - 990.0).abs() < 1.5, "{p:?}");
        assert!((p.max_us - 1000.0).abs() < 1.0, "{p:?}");
    }
}
