//! What a probe run found, per target: `relay probe run --summary`'s `targets`.

use serde::Serialize;

use crate::stats::LatencyStats;

/// A distribution in ms: irtt's figures (p90 among them), from the exact moments and the
/// histogram's percentiles.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Figures {
    pub count: u64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
}

impl Figures {
    /// `None` without samples.
    pub fn of(stats: &LatencyStats) -> Option<Figures> {
        let s = stats.summary()?;
        Some(Figures {
            count: s.count,
            min: s.min_ms,
            p50: s.median_ms,
            p90: stats.quantile_ms(0.90)?,
            p99: s.p99_ms,
            max: s.max_ms,
            mean: s.avg_ms,
            stddev: s.stddev_ms,
        })
    }
}

/// One target's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetSummary {
    pub target: String,
    pub sent: u64,
    /// Replies matched to their probe in time.
    pub received: u64,
    /// Probes without a reply within the timeout.
    pub lost: u64,
    pub loss_pct: Option<f64>,
    /// Of the losses up to the reply with the reflector's highest count: lost on the way to the
    /// reflector (it never counted them) and on the way back. Absent without any reply.
    pub lost_outbound: Option<u64>,
    pub lost_inbound: Option<u64>,
    /// A second reply to an answered probe.
    pub duplicates: u64,
    /// Replies after their probe was declared lost (not in `received` or the figures).
    pub late: u64,
    /// Replies that arrived after a reply to a later probe.
    pub reordered: u64,
    /// Replies naming a probe this run never sent, or another run's session.
    pub unexpected: u64,
    /// Round trip without the reflector's time.
    pub rtt_ms: Option<Figures>,
    /// One-way delays (sent -> reflector, reflector -> received): only as good as the two
    /// clocks' agreement.
    pub send_delay_ms: Option<Figures>,
    pub receive_delay_ms: Option<Figures>,
    /// |RTT difference| of probes next to each other in sequence (RFC 3393's IPDV, absolute).
    pub ipdv_ms: Option<Figures>,
    /// Reflector receive -> reflector send.
    pub reflector_time_ms: Option<Figures>,
}

/// The summary for people: one row per target.
pub fn table(targets: &[TargetSummary]) -> String {
    let ms = |f: Option<Figures>, pick: fn(&Figures) -> f64| {
        f.map_or("-".to_string(), |f| format!("{:.3}", pick(&f)))
    };
    let mut out = String::from(
        "| target | sent | received | loss % (lost out / back) | RTT min | p50 | p90 | p99 | max ms | IPDV p50 ms | dup | late |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for t in targets {
        let split = match (t.lost_outbound, t.lost_inbound) {
            (Some(o), Some(i)) => format!(" ({o} / {i})"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            t.target,
            t.sent,
            t.received,
            t.loss_pct.map_or("-".to_string(), |p| format!("{p:.2}")),
            split,
            ms(t.rtt_ms, |f| f.min),
            ms(t.rtt_ms, |f| f.p50),
            ms(t.rtt_ms, |f| f.p90),
            ms(t.rtt_ms, |f| f.p99),
            ms(t.rtt_ms, |f| f.max),
            ms(t.ipdv_ms, |f| f.p50),
            t.duplicates,
            t.late,
        ));
    }
    out
}
