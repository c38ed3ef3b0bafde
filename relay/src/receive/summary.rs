//! The JSON summary: the seed's fields, with the seed's names and meaning, then ours.

use serde::Serialize;

use super::accounting::Counters;
use super::recorder::{LatencySummary, NicSourceCounts, Recorded, SplitSummary};
use super::{EbpfReport, Outcome};

#[derive(Debug, Serialize)]
pub struct Summary {
    /// "baseline" or "aws-backbone".
    pub setup_type: &'static str,
    /// Messages delivered (complete, once each).
    pub sample_count: u64,
    /// Relay sequence numbers that never arrived (0 in baseline: a direct WebSocket has none).
    pub events_lost: u64,
    /// Exchange event time `E` -> receiver; over messages that carry `E` only.
    pub avg_latency_ms: Option<f64>,
    pub median_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub p99_latency_ms: Option<f64>,
    pub min_latency_ms: Option<f64>,
    pub max_latency_ms: Option<f64>,
    pub jitter_stddev_ms: Option<f64>,
    /// Relay send -> receiver (aws-backbone mode only).
    pub backbone_avg_latency_ms: Option<f64>,
    pub backbone_median_latency_ms: Option<f64>,

    pub p999_latency_ms: Option<f64>,
    pub latency_sample_count: u64,
    pub messages_without_event_time: u64,
    pub negative_latency_samples: u64,
    pub backbone: Option<LatencySummary>,
    /// Per-message latency split in µs; the parts of each message sum to its end-to-end latency.
    pub latency_split: SplitSummary,
    /// Which stamp each message's `network`/`kernel` boundary came from.
    pub nic_time_sources: NicSourceCounts,
    pub duplicates: u64,
    pub reordered: u64,
    pub fragmented_messages: u64,
    pub reconnect_gaps: u64,
    pub reconnect_gap_total_ms: f64,
    pub malformed_datagrams: u64,
    pub duration_secs: f64,
    /// Every counter of the datagram accounting (aws-backbone mode only).
    pub accounting: Option<Counters>,
    /// The eBPF receive stamper: hook, errors, program counters (with `--iface` only).
    pub ebpf: Option<EbpfReport>,
}

/// Reconnects seen and how long the exchange was out of reach, in total.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reconnects {
    pub count: u64,
    pub total_ns: u64,
}

impl Summary {
    pub fn build(
        setup_type: &'static str,
        recorded: &Recorded,
        outcome: Outcome,
        duration_secs: f64,
    ) -> Summary {
        let accounting = outcome.counters.as_ref();
        let reconnects = outcome.reconnects;
        let e2e = recorded.end_to_end.summary();
        let backbone = recorded.backbone.summary();
        let pick = |f: fn(&LatencySummary) -> f64| e2e.as_ref().map(f);
        Summary {
            setup_type,
            sample_count: recorded.messages,
            events_lost: accounting.map_or(0, |c| c.lost),
            avg_latency_ms: pick(|s| s.avg_ms),
            median_latency_ms: pick(|s| s.median_ms),
            p95_latency_ms: pick(|s| s.p95_ms),
            p99_latency_ms: pick(|s| s.p99_ms),
            min_latency_ms: pick(|s| s.min_ms),
            max_latency_ms: pick(|s| s.max_ms),
            jitter_stddev_ms: pick(|s| s.stddev_ms),
            backbone_avg_latency_ms: backbone.map(|s| s.avg_ms),
            backbone_median_latency_ms: backbone.map(|s| s.median_ms),
            p999_latency_ms: pick(|s| s.p999_ms),
            latency_sample_count: e2e.map_or(0, |s| s.count),
            messages_without_event_time: recorded.without_event_time,
            negative_latency_samples: e2e.map_or(0, |s| s.negative),
            backbone,
            latency_split: recorded.split.summary(),
            nic_time_sources: recorded.nic_sources,
            duplicates: accounting.map_or(0, |c| c.duplicates),
            reordered: accounting.map_or(0, |c| c.reordered),
            fragmented_messages: accounting.map_or(0, |c| c.fragmented_messages),
            reconnect_gaps: reconnects.count,
            reconnect_gap_total_ms: reconnects.total_ns as f64 / 1e6,
            malformed_datagrams: accounting.map_or(0, |c| c.malformed.total()),
            duration_secs,
            accounting: outcome.counters.clone(),
            ebpf: outcome.ebpf,
        }
    }
}
