//! Prometheus text exposition (format 0.0.4) of the relay's and the receiver's live figures:
//! counters, gauges and latency histograms (from the same [`LatencyStats`] the summaries use).
//! Pure text building; `--metrics ADDR:PORT` serves it (`relay::metrics`).

use std::fmt::Write as _;

use crate::stats::LatencyStats;

/// Upper bounds of the latency histograms' buckets, in seconds: 10 µs to 10 s (+Inf implied).
pub const LATENCY_BUCKETS_S: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The exposition being written: families one after another, each with its `# HELP` and
/// `# TYPE` once and then its samples.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

fn labels(out: &mut String, labels: &[(&str, &str)], extra: Option<(&str, &str)>) {
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().chain(extra.as_ref()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out.push('}');
}

impl Exposition {
    /// Starts family `name`; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample of the current counter or gauge family.
    pub fn sample(&mut self, name: &str, label_set: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        labels(&mut self.out, label_set, None);
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A counter family with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.family(name, Kind::Counter, help)
            .sample(name, &[], value as f64)
    }

    /// One labelled histogram of the current histogram family, in seconds, from ns samples:
    /// `_bucket` (cumulative, `le`), `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        label_set: &[(&str, &str)],
        stats: &LatencyStats,
    ) -> &mut Self {
        let bucket = format!("{name}_bucket");
        for bound in LATENCY_BUCKETS_S {
            let count = stats.count_at_or_below_ns((bound * 1e9) as u64);
            self.out.push_str(&bucket);
            labels(&mut self.out, label_set, Some(("le", &bound.to_string())));
            let _ = writeln!(self.out, " {count}");
        }
        self.out.push_str(&bucket);
        labels(&mut self.out, label_set, Some(("le", "+Inf")));
        let _ = writeln!(self.out, " {}", stats.count());
        self.out.push_str(name);
        self.out.push_str("_sum");
        labels(&mut self.out, label_set, None);
        let _ = writeln!(self.out, " {}", stats.sum_ns() / 1e9);
        self.out.push_str(name);
        self.out.push_str("_count");
        labels(&mut self.out, label_set, None);
        let _ = writeln!(self.out, " {}", stats.count());
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_cumulative_buckets() {
        let mut stats = LatencyStats::default();
        for us in [5, 20, 20, 300, 2_000_000] {
            stats.record(us * 1000);
        }
        stats.record(-1000); // a clock disagreement: below every bound
        let mut e = Exposition::default();
        e.counter("relay_messages_total", "Messages forwarded.", 42);
        e.family(
            "relay_latency_seconds",
            Kind::Histogram,
            "Latency by component.",
        )
        .histogram(
            "relay_latency_seconds",
            &[("component", "net\"work")],
            &stats,
        );
        let text = e.finish();
        assert!(text.starts_with("# HELP relay_messages_total Messages forwarded.\n# TYPE relay_messages_total counter\nrelay_messages_total 42\n"), "{text}");
        let bucket = |le: &str| {
            let key =
                format!("relay_latency_seconds_bucket{{component=\"net\\\"work\",le=\"{le}\"}} ");
            let line = text
                .lines()
                .find(|l| l.starts_with(&key))
                .unwrap_or_else(|| panic!("{key} in {text}"));
            line[key.len()..].parse::<u64>().unwrap()
        };
        assert_eq!(bucket("0.00001"), 2, "-1 µs and 5 µs");
        assert_eq!(bucket("0.000025"), 4);
        assert_eq!(bucket("0.0005"), 5);
        assert_eq!(bucket("1"), 5);
        assert_eq!(bucket("2.5"), 6);
        assert_eq!(bucket("+Inf"), 6);
        assert!(
            text.contains("relay_latency_seconds_count{component=\"net\\\"work\"} 6\n"),
            "{text}"
        );
        let sum: f64 = text
            .lines()
            .find(|l| l.starts_with("relay_latency_seconds_sum"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 2.000344).abs() < 1e-9, "{sum}");
    }
}
