//! Two runs side by side: seed 003's comparison (overlay − direct: mean, jitter, loss, tail
//! percentiles) and seed 002's verdicts, exactly as its notebook computes them:
//!
//! * latency: **OPTIMIZED** if the overlay's mean is below the direct path's, **OK** if it is below
//!   `direct + max(20 ms, 15% of direct)`, else **BAD**;
//! * loss, in percent of messages (`events_lost / (sample_count + events_lost) × 100`):
//!   **OPTIMIZED** if lower, **OK** if equal or less than 1 point worse, else **BAD**.
//!
//! Pure computation over [`Figures`]; `relay compare` reads the files and prints
//! [`Comparison::table`] or the JSON, and the lab and the demo print the same table.

use serde::{Deserialize, Serialize};

use crate::record::summary::Summary;

/// The latency tolerance of an OK verdict: at least this many ms ...
pub const OK_LATENCY_MIN_MS: f64 = 20.0;
/// ... or this fraction of the direct path's mean, whichever is larger.
pub const OK_LATENCY_FRACTION: f64 = 0.15;
/// The loss tolerance of an OK verdict, in percentage points.
pub const OK_LOSS_POINTS: f64 = 1.0;

/// Seed 002's three grades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Optimized,
    Ok,
    Bad,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Optimized => "OPTIMIZED",
            Verdict::Ok => "OK",
            Verdict::Bad => "BAD",
        }
    }
}

/// The latency verdict of an overlay mean against the direct mean (ms).
pub fn latency_verdict(direct_mean_ms: f64, overlay_mean_ms: f64) -> Verdict {
    if overlay_mean_ms < direct_mean_ms {
        Verdict::Optimized
    } else if overlay_mean_ms < latency_ok_limit_ms(direct_mean_ms) {
        Verdict::Ok
    } else {
        Verdict::Bad
    }
}

/// The mean below which an overlay is still OK: `direct + max(20 ms, 15% of direct)`.
pub fn latency_ok_limit_ms(direct_mean_ms: f64) -> f64 {
    direct_mean_ms + OK_LATENCY_MIN_MS.max(direct_mean_ms * OK_LATENCY_FRACTION)
}

/// The loss verdict of an overlay loss against the direct loss (both in percent).
pub fn loss_verdict(direct_pct: f64, overlay_pct: f64) -> Verdict {
    if overlay_pct < direct_pct {
        Verdict::Optimized
    } else if overlay_pct - direct_pct < OK_LOSS_POINTS {
        // Equal, or less than one point worse: seed 002 counts both as the same.
        Verdict::Ok
    } else {
        Verdict::Bad
    }
}

/// What the comparison uses of one run: the seed's summary fields (as the seed's own tool wrote
/// them, and the first fields of ours; every other field of a file is ignored) and the loss.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// `setup_type` of a receiver summary (`baseline`, `aws-backbone`, ...).
    #[serde(default)]
    pub setup_type: String,
    pub sample_count: u64,
    pub events_lost: u64,
    /// `events_lost / (sample_count + events_lost) × 100`; absent when nothing was expected.
    #[serde(skip_deserializing)]
    pub loss_pct: Option<f64>,
    pub avg_latency_ms: Option<f64>,
    pub median_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub p99_latency_ms: Option<f64>,
    pub p999_latency_ms: Option<f64>,
    pub jitter_stddev_ms: Option<f64>,
}

/// Why a file cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareInputError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("the probe summary has several targets ({0}): name one with --target")]
    WhichTarget(String),
    #[error("the probe summary has no target {0:?} (it has: {1})")]
    NoSuchTarget(String, String),
}

/// What a comparison reads of one target of a probe summary (RTT as the latency, probes as the
/// messages).
#[derive(Deserialize)]
struct ProbeFields {
    target: String,
    received: u64,
    lost: u64,
    rtt_ms: Option<ProbeRtt>,
}

#[derive(Deserialize)]
struct ProbeRtt {
    mean: f64,
    p50: f64,
    p99: f64,
    stddev: f64,
}

impl Figures {
    pub fn of_summary(s: &Summary) -> Figures {
        Figures {
            setup_type: s.setup_type.clone(),
            sample_count: s.sample_count,
            events_lost: s.events_lost,
            loss_pct: None,
            avg_latency_ms: s.avg_latency_ms,
            median_latency_ms: s.median_latency_ms,
            p95_latency_ms: s.p95_latency_ms,
            p99_latency_ms: s.p99_latency_ms,
            p999_latency_ms: s.p999_latency_ms,
            jitter_stddev_ms: s.jitter_stddev_ms,
        }
        .with_loss()
    }

    /// A receiver summary as JSON (ours, or the seed tool's twelve fields), or a probe summary
    /// (`relay probe run --summary`): its only target, or the one named `target`.
    pub fn from_json(text: &str, target: Option<&str>) -> Result<Figures, CompareInputError> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        if let Some(targets) = value.get("targets").and_then(|t| t.as_array()) {
            let names = || {
                targets
                    .iter()
                    .filter_map(|t| t["target"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let chosen = match target {
                Some(name) => targets.iter().find(|t| t["target"] == name),
                None if targets.len() == 1 => targets.first(),
                None => return Err(CompareInputError::WhichTarget(names())),
            };
            let Some(chosen) = chosen else {
                return Err(CompareInputError::NoSuchTarget(
                    target.unwrap_or_default().to_string(),
                    names(),
                ));
            };
            let probe: ProbeFields = serde_json::from_value(chosen.clone())?;
            return Ok(Figures::of_probe(probe));
        }
        Ok(serde_json::from_value::<Figures>(value)?.with_loss())
    }

    fn of_probe(p: ProbeFields) -> Figures {
        let rtt = p.rtt_ms.as_ref();
        Figures {
            setup_type: format!("probe {}", p.target),
            sample_count: p.received,
            events_lost: p.lost,
            loss_pct: None,
            avg_latency_ms: rtt.map(|r| r.mean),
            median_latency_ms: rtt.map(|r| r.p50),
            p95_latency_ms: None,
            p99_latency_ms: rtt.map(|r| r.p99),
            p999_latency_ms: None,
            jitter_stddev_ms: rtt.map(|r| r.stddev),
        }
        .with_loss()
    }

    /// Sets `loss_pct` from the counts.
    fn with_loss(mut self) -> Figures {
        let expected = self.sample_count.saturating_add(self.events_lost);
        self.loss_pct = (expected > 0).then(|| self.events_lost as f64 * 100.0 / expected as f64);
        self
    }
}

/// Overlay minus direct, for one figure both runs have.
fn minus(overlay: Option<f64>, direct: Option<f64>) -> Option<f64> {
    Some(overlay? - direct?)
}

/// The comparison of an overlay run (relay, backbone) with the direct run it is meant to beat.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub direct: Figures,
    pub overlay: Figures,
    /// Seed 003: overlay `avg_latency_ms` − direct `avg_latency_ms` (negative: the overlay is faster).
    pub difference_ms: Option<f64>,
    /// How much faster the overlay's mean is, in percent of the direct mean (negative: slower).
    pub improvement_pct: Option<f64>,
    pub latency_verdict: Option<Verdict>,
    /// The overlay mean below which the latency verdict is at least OK.
    pub latency_ok_below_ms: Option<f64>,
    pub loss_difference_points: Option<f64>,
    pub loss_verdict: Option<Verdict>,
    pub jitter_difference_ms: Option<f64>,
    pub median_difference_ms: Option<f64>,
    pub p95_difference_ms: Option<f64>,
    pub p99_difference_ms: Option<f64>,
    pub p999_difference_ms: Option<f64>,
}

impl Comparison {
    pub fn of(direct: Figures, overlay: Figures) -> Comparison {
        let (d, o) = (&direct, &overlay);
        let means = d.avg_latency_ms.zip(o.avg_latency_ms);
        let losses = d.loss_pct.zip(o.loss_pct);
        Comparison {
            difference_ms: minus(o.avg_latency_ms, d.avg_latency_ms),
            improvement_pct: means
                .filter(|(d, _)| *d > 0.0)
                .map(|(d, o)| (d - o) * 100.0 / d),
            latency_verdict: means.map(|(d, o)| latency_verdict(d, o)),
            latency_ok_below_ms: d.avg_latency_ms.map(latency_ok_limit_ms),
            loss_difference_points: losses.map(|(d, o)| o - d),
            loss_verdict: losses.map(|(d, o)| loss_verdict(d, o)),
            jitter_difference_ms: minus(o.jitter_stddev_ms, d.jitter_stddev_ms),
            median_difference_ms: minus(o.median_latency_ms, d.median_latency_ms),
            p95_difference_ms: minus(o.p95_latency_ms, d.p95_latency_ms),
            p99_difference_ms: minus(o.p99_latency_ms, d.p99_latency_ms),
            p999_difference_ms: minus(o.p999_latency_ms, d.p999_latency_ms),
            direct,
            overlay,
        }
    }

    pub fn of_summaries(direct: &Summary, overlay: &Summary) -> Comparison {
        Comparison::of(Figures::of_summary(direct), Figures::of_summary(overlay))
    }

    /// The comparison for people: the figures side by side with their difference, then the
    /// verdicts with the numbers they were judged on.
    pub fn table(&self) -> String {
        let (d, o) = (&self.direct, &self.overlay);
        let name = |f: &Figures, fallback: &str| {
            if f.setup_type.is_empty() {
                fallback.to_string()
            } else {
                f.setup_type.clone()
            }
        };
        let mut out = format!(
            "| {:<20} | {:>14} | {:>14} | {:>12} |\n|{:-<22}|{:->16}|{:->16}|{:->14}|\n",
            "figure",
            name(d, "direct"),
            name(o, "overlay"),
            "difference",
            "",
            "",
            "",
            ""
        );
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let signed = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.3}"));
        let mut row = |label: &str, direct: String, overlay: String, difference: String| {
            out.push_str(&format!(
                "| {label:<20} | {direct:>14} | {overlay:>14} | {difference:>12} |\n"
            ));
        };
        row(
            "sample_count",
            d.sample_count.to_string(),
            o.sample_count.to_string(),
            String::new(),
        );
        row(
            "events_lost",
            d.events_lost.to_string(),
            o.events_lost.to_string(),
            String::new(),
        );
        row(
            "loss %",
            ms(d.loss_pct),
            ms(o.loss_pct),
            signed(self.loss_difference_points),
        );
        for (label, direct, overlay, difference) in [
            (
                "avg_latency_ms",
                d.avg_latency_ms,
                o.avg_latency_ms,
                self.difference_ms,
            ),
            (
                "median_latency_ms",
                d.median_latency_ms,
                o.median_latency_ms,
                self.median_difference_ms,
            ),
            (
                "p95_latency_ms",
                d.p95_latency_ms,
                o.p95_latency_ms,
                self.p95_difference_ms,
            ),
            (
                "p99_latency_ms",
                d.p99_latency_ms,
                o.p99_latency_ms,
                self.p99_difference_ms,
            ),
            (
                "p999_latency_ms",
                d.p999_latency_ms,
                o.p999_latency_ms,
                self.p999_difference_ms,
            ),
            (
                "jitter_stddev_ms",
                d.jitter_stddev_ms,
                o.jitter_stddev_ms,
                self.jitter_difference_ms,
            ),
        ] {
            row(label, ms(direct), ms(overlay), signed(difference));
        }
        out.push('\n');
        out.push_str(&self.verdicts());
        out
    }

    /// The two verdicts with the figures they were judged on, one line each.
    pub fn verdicts(&self) -> String {
        let mut out = String::new();
        match (self.latency_verdict, self.difference_ms, self.latency_ok_below_ms) {
            (Some(verdict), Some(difference), Some(limit)) => out.push_str(&format!(
                "latency: {} (difference {difference:+.3} ms{}; OK below {limit:.3} ms)\n",
                verdict.as_str(),
                self.improvement_pct.map_or(String::new(), |p| if p >= 0.0 {
                    format!(", {p:.2}% faster")
                } else {
                    format!(", {:.2}% slower", -p)
                }),
            )),
            _ => out.push_str(
                "latency: not judged (a run has no avg_latency_ms: no messages with an event time)\n",
            ),
        }
        match (self.loss_verdict, self.loss_difference_points) {
            (Some(verdict), Some(points)) => out.push_str(&format!(
                "loss: {} ({points:+.3} points; OK below {OK_LOSS_POINTS} point worse)\n",
                verdict.as_str()
            )),
            _ => out.push_str("loss: not judged (a run expected no messages)\n"),
        }
        out
    }
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
