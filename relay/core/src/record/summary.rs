//! The receiver's JSON summary: the seed's fields, with the seed's names and meaning, then ours.
//! Defined once: the receiver writes it, the lab and the tests read it back with serde.

use serde::{Deserialize, Serialize};

use super::clock::ClockState;
use super::exchange_ids::ExchangeReport;
use super::split::SplitSummary;
use super::{NicSourceCounts, Recorded};
use crate::receive::accounting::Counters;
use crate::receive::arbitration::ArbitrationSummary;
use crate::receive::recovery::Recovery;
use crate::serve::ServeSummary;
use crate::stats::{ComponentSummary, LatencySummary};

/// The seed experiment's fields, in its order; every summary has them.
pub const SEED_FIELDS: [&str; 12] = [
    "setup_type",
    "sample_count",
    "events_lost",
    "avg_latency_ms",
    "median_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "min_latency_ms",
    "max_latency_ms",
    "jitter_stddev_ms",
    "backbone_avg_latency_ms",
    "backbone_median_latency_ms",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// "baseline" or "aws-backbone".
    pub setup_type: String,
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
    /// Messages whose stamps differ by more than an hour (a broken clock or a forged header):
    /// delivered and counted, but their latencies are in no figure and no CSV cell.
    pub implausible_timestamps: u64,
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
    /// Times a new relay epoch took over (a relay restart), and the outages summed: the old
    /// epoch's last datagram to the new one's first, as received (aws-backbone mode).
    pub relay_restarts: u64,
    pub relay_restart_outage_ms: f64,
    pub malformed_datagrams: u64,
    /// Datagrams the receiving host's kernel dropped because the socket's receive buffer was full
    /// (SO_RXQ_OVFL): lost before any accounting saw them (recovery asks for them like any gap).
    pub kernel_receive_drops: u64,
    /// The receive buffer the kernel actually gave the socket (SO_RCVBUF read back).
    pub recv_buffer_bytes: Option<u64>,
    /// Whether what was received is known to come from the relay (aws-backbone: datagrams
    /// sealed with `--key-file`; baseline: wss://). When false, anyone could have injected data.
    pub authenticated: bool,
    /// Datagrams dropped for their seal: unsealed or not opening with the key, or sealed while
    /// the receiver has no key.
    pub unauthenticated_datagrams: u64,
    /// Messages that went missing and arrived again by recovery (not in `events_lost`).
    pub recovered: u64,
    /// Events the exchange sent that never reached us because no exchange connection was there
    /// to get them (counted from the exchange's own trade ids across reconnects; per stream in
    /// `exchange`). A gapless rotation adds nothing.
    pub exchange_events_missed: u64,
    /// The exchange was out of reach when the run ended, for this long (an outage still open:
    /// the events it cost cannot be counted yet).
    pub exchange_outage_open_ms: Option<f64>,
    pub duration_secs: f64,
    /// Every counter of the datagram accounting (aws-backbone mode only).
    pub accounting: Option<Counters>,
    /// The eBPF receive stamper: hook, errors, program counters (with `--iface` only).
    pub ebpf: Option<EbpfReport>,
    /// Gap recovery (aws-backbone mode, unless `--no-recovery`).
    pub recovery: Option<RecoverySummary>,
    /// Per exchange stream: messages, ids, connections and events missed.
    pub exchange: Option<ExchangeReport>,
    /// What went wrong in the run, in words a person can act on: the exchange or the relay never
    /// delivered anything, the CSV could not be written. Empty when all went well; the receiver
    /// exits non-zero otherwise (after writing this summary).
    pub errors: Vec<String>,
    /// This host's clock as the kernel reported it at the end of the run (absent when it could
    /// not be read).
    pub clock: Option<ClockState>,
    /// `--mode both`: how the paths fared against each other (wins, margins, events only one
    /// path delivered).
    pub arbitration: Option<ArbitrationSummary>,
    /// `--serve-ws`: the local endpoint's clients and what they were sent.
    pub serve: Option<ServeSummary>,
    /// `--hw-timestamps`: whether the NIC stamps received packets, and why not.
    pub hardware_timestamps: Option<HardwareStamps>,
    /// Why the latency figures (one-way: the exchange's clock against this one) cannot be
    /// trusted, when they cannot: the clock is not synchronised, or its error estimate is larger
    /// than the median latency.
    pub clock_warning: Option<String>,
}

/// What gap recovery did (the summary's `recovery` object).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySummary {
    /// Ranges of missing sequences noticed.
    pub gaps: u64,
    pub naks_sent: u64,
    pub ranges_requested: u64,
    /// Messages delivered from a retransmission.
    pub recovered: u64,
    /// Ranges the relay no longer kept.
    pub unavailable_ranges: u64,
    /// Gaps given up (deadline, or too many open): their messages are in `events_lost`.
    pub given_up: u64,
    /// NAKs that could not be sent (no relay address yet, or a socket error).
    pub nak_send_errors: u64,
    /// NAK -> first retransmission, smoothed.
    pub round_trip_ms: Option<f64>,
    /// Gap noticed -> filled by a retransmission, µs.
    pub gap_to_fill: Option<ComponentSummary>,
}

impl RecoverySummary {
    pub fn of(recovery: &Recovery, nak_send_errors: u64) -> RecoverySummary {
        let s = recovery.stats();
        RecoverySummary {
            gaps: s.gaps,
            naks_sent: s.naks_sent,
            ranges_requested: s.ranges_requested,
            recovered: s.recovered,
            unavailable_ranges: s.unavailable_ranges,
            given_up: s.given_up,
            nak_send_errors,
            round_trip_ms: recovery.srtt().map(|d| d.as_secs_f64() * 1e3),
            gap_to_fill: recovery.gap_to_fill(),
        }
    }
}

/// `--hw-timestamps`: whether the NIC stamps every received packet (the summary's
/// `hardware_timestamps` object). Which messages took a hardware stamp is in
/// `nic_time_sources.hardware`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareStamps {
    pub interface: String,
    /// The driver stamps every received packet.
    pub enabled: bool,
    /// The receive filter the driver granted (1 = all packets), when the request went through.
    pub rx_filter: Option<u32>,
    /// Why there are no hardware stamps, when there are none.
    pub error: Option<String>,
}

/// How the eBPF receive stamper went (the summary's `ebpf` object).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbpfReport {
    pub interface: String,
    /// The hook in use (`xdp-native`, `xdp-generic`, `tc-ingress`), or null if none attached.
    pub hook: Option<String>,
    /// Why a hook could not be used (every failed attempt, in order).
    pub errors: Vec<String>,
    /// TAI - REALTIME applied to the stamps, in ns.
    pub tai_offset_ns: i64,
    /// The program's own counters (summed over CPUs).
    pub matched: u64,
    pub other: u64,
    pub malformed: u64,
    pub ring_full: u64,
    /// Delivered messages whose completing datagram had / had no eBPF stamp.
    pub messages_with_stamp: u64,
    pub messages_without_stamp: u64,
}

/// Reconnects seen and how long the exchange was out of reach, in total.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reconnects {
    pub count: u64,
    pub total_ns: u64,
}

/// What a receive mode hands back besides the records.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The datagram accounting (aws-backbone mode).
    pub counters: Option<Counters>,
    pub reconnects: Reconnects,
    /// How the eBPF stamper went, when an interface was given.
    pub ebpf: Option<EbpfReport>,
    pub recovery: Option<RecoverySummary>,
    /// See [`Summary::authenticated`].
    pub authenticated: bool,
    /// What went wrong in the run (see [`Summary::errors`]).
    pub errors: Vec<String>,
    /// The exchange's ids, as delivered.
    pub exchange: Option<ExchangeReport>,
    /// See [`Summary::exchange_outage_open_ms`].
    pub exchange_outage_open_ns: Option<u64>,
    /// See [`Summary::kernel_receive_drops`] and [`Summary::recv_buffer_bytes`].
    pub kernel_receive_drops: u64,
    pub recv_buffer_bytes: Option<u64>,
    /// See [`Summary::clock`].
    pub clock: Option<ClockState>,
    /// See [`Summary::arbitration`].
    pub arbitration: Option<ArbitrationSummary>,
    /// See [`Summary::serve`].
    pub serve: Option<ServeSummary>,
    /// See [`Summary::hardware_timestamps`].
    pub hardware_timestamps: Option<HardwareStamps>,
}

impl Summary {
    /// The summary of a run; `errors` adds to the outcome's (the recorder's, say).
    pub fn build(
        setup_type: &str,
        recorded: &Recorded,
        outcome: Outcome,
        duration_secs: f64,
        errors: &[String],
    ) -> Summary {
        let accounting = outcome.counters.as_ref();
        let reconnects = outcome.reconnects;
        let e2e = recorded.end_to_end.summary();
        let backbone = recorded.backbone.summary();
        let pick = |f: fn(&LatencySummary) -> f64| e2e.as_ref().map(f);
        Summary {
            setup_type: setup_type.to_string(),
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
            implausible_timestamps: recorded.implausible_timestamps,
            negative_latency_samples: e2e.map_or(0, |s| s.negative),
            backbone,
            latency_split: recorded.split.summary(),
            nic_time_sources: recorded.nic_sources,
            duplicates: accounting.map_or(0, |c| c.duplicates),
            reordered: accounting.map_or(0, |c| c.reordered),
            fragmented_messages: accounting.map_or(0, |c| c.fragmented_messages),
            reconnect_gaps: reconnects.count,
            reconnect_gap_total_ms: reconnects.total_ns as f64 / 1e6,
            relay_restarts: accounting.map_or(0, |c| c.relay_restarts),
            relay_restart_outage_ms: accounting
                .map_or(0.0, |c| c.relay_restart_outage_ns as f64 / 1e6),
            malformed_datagrams: accounting.map_or(0, |c| c.malformed.total()),
            kernel_receive_drops: outcome.kernel_receive_drops,
            recv_buffer_bytes: outcome.recv_buffer_bytes,
            authenticated: outcome.authenticated,
            unauthenticated_datagrams: accounting.map_or(0, Counters::unauthenticated),
            recovered: outcome.recovery.as_ref().map_or(0, |r| r.recovered),
            exchange_events_missed: outcome.exchange.as_ref().map_or(0, |e| e.events_missed),
            exchange_outage_open_ms: outcome.exchange_outage_open_ns.map(|ns| ns as f64 / 1e6),
            duration_secs,
            accounting: outcome.counters.clone(),
            ebpf: outcome.ebpf,
            recovery: outcome.recovery,
            exchange: outcome.exchange,
            errors: outcome.errors.iter().chain(errors).cloned().collect(),
            clock: outcome.clock,
            arbitration: outcome.arbitration,
            serve: outcome.serve,
            hardware_timestamps: outcome.hardware_timestamps,
            clock_warning: outcome
                .clock
                .and_then(|c| c.one_way_doubt(pick(|s| s.median_ms))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    #[test]
    fn written_and_read_back_with_the_seed_fields_first() {
        let mut recorded = Recorded::default();
        let record = Record {
            sequence: 1,
            event_time_ns: Some(1_000_000),
            relay_tx_ns: Some(2_000_000),
            done_ns: 5_000_000,
            ..Record::default()
        };
        recorded.record(&record, &mut std::io::sink()).unwrap();
        let outcome = Outcome {
            counters: Some(Counters {
                messages: 1,
                lost: 2,
                ..Counters::default()
            }),
            ..Outcome::default()
        };
        let summary = Summary::build("aws-backbone", &recorded, outcome, 1.5, &[]);
        let json = serde_json::to_string_pretty(&summary).unwrap();
        let at = |field: &str| json.find(&format!("\"{field}\":")).unwrap();
        let positions: Vec<usize> = SEED_FIELDS.iter().map(|f| at(f)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert!(
            positions[SEED_FIELDS.len() - 1] < at("p999_latency_ms"),
            "{json}"
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["events_lost"], 2);
        assert_eq!(value["avg_latency_ms"], 4.0);
        assert_eq!(value["backbone_avg_latency_ms"], 3.0);
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, summary);
        let typo = json.replacen("sample_count", "sample_cuont", 1);
        assert!(
            serde_json::from_str::<Summary>(&typo).is_err(),
            "unknown fields are refused"
        );
    }
}
