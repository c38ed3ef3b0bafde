//! Latency statistics, defined once for the receiver, the lab and the benchmarks: a summary of a
//! distribution in ms ([`LatencySummary`], the seed's figures) or µs ([`ComponentSummary`]),
//! computed either streaming ([`LatencyStats`]: exact mean, standard deviation, min and max plus
//! an hdrhistogram for percentiles, bounded memory for runs of any length) or exactly from all
//! samples ([`exact`]: nearest-rank percentiles, for the lab's ground truth at µs resolution).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency the histograms hold (1 hour, in ns); larger values saturate.
const MAX_TRACKED_NS: u64 = 3_600_000_000_000;

/// Exact mean/stddev/min/max plus an hdrhistogram for percentiles, in ns.
pub struct LatencyStats {
    count: u64,
    negative: u64,
    mean: f64,
    m2: f64,
    min: i64,
    max: i64,
    histogram: Histogram<u64>,
}

/// Percentiles and moments of one latency component, in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub avg_ms: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub stddev_ms: f64,
    /// Samples below zero (clocks out of sync); in avg/min/max/stddev, not in the percentiles.
    pub negative: u64,
}

/// One latency component in µs (the split's parts are µs-scale; ms would hide them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentSummary {
    pub count: u64,
    pub avg_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub min_us: f64,
    pub max_us: f64,
    /// Samples below zero (clock disagreement); in avg/min/max, not in the percentiles.
    pub negative: u64,
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats {
            count: 0,
            negative: 0,
            mean: 0.0,
            m2: 0.0,
            min: i64::MAX,
            max: i64::MIN,
            histogram: Histogram::new_with_max(MAX_TRACKED_NS, 3).expect("valid histogram bounds"),
        }
    }
}

/// ns to ms, rounded to the microsecond.
fn ns_to_ms(ns: f64) -> f64 {
    (ns / 1_000.0).round() / 1_000.0
}

impl LatencyStats {
    pub fn record(&mut self, latency_ns: i64) {
        self.count += 1;
        let delta = latency_ns as f64 - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (latency_ns as f64 - self.mean);
        self.min = self.min.min(latency_ns);
        self.max = self.max.max(latency_ns);
        if latency_ns < 0 {
            self.negative += 1;
        } else {
            self.histogram
                .saturating_record((latency_ns as u64).min(MAX_TRACKED_NS));
        }
    }

    /// The same figures in µs, rounded to the nanosecond.
    pub fn component(&self) -> Option<ComponentSummary> {
        let s = self.summary_ns()?;
        let us = |ns: f64| (ns).round() / 1000.0;
        Some(ComponentSummary {
            count: self.count,
            avg_us: us(s.avg),
            p50_us: us(s.p50),
            p95_us: us(s.p95),
            p99_us: us(s.p99),
            p999_us: us(s.p999),
            min_us: us(self.min as f64),
            max_us: us(self.max as f64),
            negative: self.negative,
        })
    }

    fn summary_ns(&self) -> Option<NsFigures> {
        if self.count == 0 {
            return None;
        }
        let quantile = |q: f64| {
            if self.histogram.is_empty() {
                f64::NAN
            } else {
                // A bucket's reported value is its highest; never above the exact maximum.
                (self.histogram.value_at_quantile(q) as f64).min(self.max as f64)
            }
        };
        Some(NsFigures {
            avg: self.mean,
            p50: quantile(0.5),
            p95: quantile(0.95),
            p99: quantile(0.99),
            p999: quantile(0.999),
            // Population standard deviation, as the seed's jitter_stddev_ms.
            stddev: (self.m2 / self.count as f64).sqrt(),
        })
    }

    /// The histogram of the non-negative samples, in ns (for interval logs).
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// Samples recorded (negative ones included).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of every sample in ns (exact mean times count).
    pub fn sum_ns(&self) -> f64 {
        self.mean * self.count as f64
    }

    /// Samples at or below `ns` (negative samples are below every bound); the histogram's
    /// resolution (3 significant digits) decides a sample right at the bound.
    pub fn count_at_or_below_ns(&self, ns: u64) -> u64 {
        let ns = ns.min(MAX_TRACKED_NS);
        self.negative + self.histogram.count_between(0, ns)
    }

    /// The `q` quantile (0..=1) of the non-negative samples in ms (a histogram bucket's highest
    /// value, never above the exact maximum); `None` without such samples.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.histogram.is_empty() {
            return None;
        }
        let ns = (self.histogram.value_at_quantile(q) as f64).min(self.max as f64);
        Some(ns_to_ms(ns))
    }

    pub fn summary(&self) -> Option<LatencySummary> {
        let s = self.summary_ns()?;
        Some(LatencySummary {
            count: self.count,
            avg_ms: ns_to_ms(s.avg),
            median_ms: ns_to_ms(s.p50),
            p95_ms: ns_to_ms(s.p95),
            p99_ms: ns_to_ms(s.p99),
            p999_ms: ns_to_ms(s.p999),
            min_ms: ns_to_ms(self.min as f64),
            max_ms: ns_to_ms(self.max as f64),
            stddev_ms: ns_to_ms(s.stddev),
            negative: self.negative,
        })
    }
}

/// Exact figures of ns samples (nearest-rank percentiles); sorts them. Empty: `None`.
pub fn exact(samples: &mut [i64]) -> Option<ComponentSummary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    let at = |q: f64| samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64;
    let sum: i128 = samples.iter().map(|&s| i128::from(s)).sum();
    let us = |ns: f64| ns.round() / 1000.0;
    Some(ComponentSummary {
        count: n as u64,
        avg_us: us((sum as f64) / n as f64),
        p50_us: us(at(0.50)),
        p95_us: us(at(0.95)),
        p99_us: us(at(0.99)),
        p999_us: us(at(0.999)),
        min_us: us(samples[0] as f64),
        max_us: us(samples[n - 1] as f64),
        negative: samples.iter().filter(|&&s| s < 0).count() as u64,
    })
}

struct NsFigures {
    avg: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    p999: f64,
    stddev: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_hand_computation() {
        let mut stats = LatencyStats::default();
        for ms_value in [10i64, 20, 30, 40] {
            stats.record(ms_value * 1_000_000);
        }
        let s = stats.summary().unwrap();
        assert_eq!(s.count, 4);
        assert_eq!(s.avg_ms, 25.0);
        assert_eq!((s.min_ms, s.max_ms), (10.0, 40.0));
        assert!((s.stddev_ms - 11.180340).abs() < 1e-3, "{}", s.stddev_ms);
        assert!((s.median_ms - 20.0).abs() < 0.05, "{}", s.median_ms);
        assert!((s.p99_ms - 40.0).abs() < 0.05, "{}", s.p99_ms);
        assert!(LatencyStats::default().summary().is_none());
    }

    #[test]
    fn negative_latencies_are_counted_not_hidden() {
        let mut stats = LatencyStats::default();
        stats.record(-5_000_000);
        stats.record(5_000_000);
        let s = stats.summary().unwrap();
        assert_eq!(s.negative, 1);
        assert_eq!(s.min_ms, -5.0);
        assert_eq!(s.avg_ms, 0.0);
    }

    #[test]
    fn percentiles_never_exceed_the_maximum() {
        let mut stats = LatencyStats::default();
        for _ in 0..1000 {
            stats.record(67_201);
        }
        let c = stats.component().unwrap();
        assert_eq!(c.max_us, 67.201);
        assert!(c.p999_us <= c.max_us && c.p50_us <= c.max_us, "{c:?}");
    }

    #[test]
    fn exact_uses_nearest_rank() {
        let mut samples: Vec<i64> = (1..=100).rev().map(|v| v * 1000).collect();
        let s = exact(&mut samples).unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(
            (s.p50_us, s.p95_us, s.p99_us, s.p999_us),
            (50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!((s.min_us, s.max_us, s.avg_us), (1.0, 100.0, 50.5));
        assert_eq!(s.negative, 0);
        assert_eq!(exact(&mut []), None);
        let s = exact(&mut [-1500, 500]).unwrap();
        assert_eq!((s.negative, s.min_us, s.avg_us), (1, -1.5, -0.5));
    }
}
