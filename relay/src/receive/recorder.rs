//! The recorder thread: takes one [`Record`] per delivered message over a crossbeam channel,
//! writes the CSV row and feeds the latency histograms, so the receiving thread only accounts.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::thread::JoinHandle;

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;

/// One delivered message, as the receiving thread saw it. Plain data: no allocation to send.
#[derive(Clone, Copy, Debug, Default)]
pub struct Record {
    /// Relay sequence (relay mode) or the receiver's own message count (baseline).
    pub sequence: u64,
    pub epoch: u32,
    /// Exchange event time `E` in ns, when the message carries one.
    pub event_time_ns: Option<u64>,
    /// `E` came in microseconds (else milliseconds); only changes how `binance_time` is printed.
    pub event_time_micros: bool,
    pub relay_rx_ns: Option<u64>,
    pub relay_tx_ns: Option<u64>,
    /// The earliest stamp of the datagram on the receiving host and where it came from.
    pub nic: Option<(u64, NicSource)>,
    /// The kernel's software receive stamp (SO_TIMESTAMPING).
    pub socket_ns: Option<u64>,
    /// When the receive call returned the (last) datagram of the message.
    pub app_ns: u64,
    /// When the message was accounted: the receiver's `frankfurt_time`.
    pub done_ns: u64,
    pub payload_len: u32,
    pub fragments: u16,
    pub reordered: bool,
}

/// Which clock gave a message its first stamp on the receiving host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NicSource {
    /// The NIC's hardware receive stamp (SO_TIMESTAMPING raw hardware).
    Hardware,
    /// The eBPF program's stamp (XDP or tc), converted from TAI.
    Ebpf,
    /// The kernel's software stamp, when it came before any eBPF stamp or none exists.
    Software,
}

impl NicSource {
    fn name(self) -> &'static str {
        match self {
            NicSource::Hardware => "hardware",
            NicSource::Ebpf => "ebpf",
            NicSource::Software => "software",
        }
    }
}

/// The CSV header: the seed's six columns first, then ours.
pub const CSV_HEADER: &str = "sequence_id,binance_time,tokyo_time,frankfurt_time,end_to_end_latency_ms,backbone_latency_ms,epoch,relay_send_time,relay_dwell_us,payload_bytes,fragments,reordered,nic_time,nic_source,socket_time,app_time,network_us,kernel_us,application_us";

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
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
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
                self.histogram.value_at_quantile(q) as f64
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

struct NsFigures {
    avg: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    p999: f64,
    stddev: f64,
}

/// The per-message latency split. For every message the parts that exist sum exactly to
/// `frankfurt_time - E` (or `- tokyo_time` without `E`):
/// exchange_to_relay + relay_dwell + network + kernel + application.
#[derive(Default)]
pub struct Split {
    /// `E` -> relay read the bytes.
    pub exchange_to_relay: LatencyStats,
    /// Relay read -> relay send.
    pub relay_dwell: LatencyStats,
    /// Relay send -> first stamp on the receiving host (NIC/eBPF/software).
    pub network: LatencyStats,
    /// First stamp -> the receive call returned.
    pub kernel: LatencyStats,
    /// The kernel part up to the software stamp ...
    pub kernel_to_socket: LatencyStats,
    /// ... and from there until the receive call returned (socket queue + thread wake-up).
    pub socket_to_app: LatencyStats,
    /// The receive call returned -> message accounted.
    pub application: LatencyStats,
}

/// Summaries of the split, for the JSON.
#[derive(Debug, Default, serde::Serialize)]
pub struct SplitSummary {
    pub exchange_to_relay: Option<ComponentSummary>,
    pub relay_dwell: Option<ComponentSummary>,
    pub network: Option<ComponentSummary>,
    pub kernel: Option<ComponentSummary>,
    pub kernel_to_socket: Option<ComponentSummary>,
    pub socket_to_app: Option<ComponentSummary>,
    pub application: Option<ComponentSummary>,
}

impl Split {
    pub fn summary(&self) -> SplitSummary {
        SplitSummary {
            exchange_to_relay: self.exchange_to_relay.component(),
            relay_dwell: self.relay_dwell.component(),
            network: self.network.component(),
            kernel: self.kernel.component(),
            kernel_to_socket: self.kernel_to_socket.component(),
            socket_to_app: self.socket_to_app.component(),
            application: self.application.component(),
        }
    }
}

/// How many messages took their first stamp from each source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NicSourceCounts {
    pub hardware: u64,
    pub ebpf: u64,
    pub software: u64,
    pub none: u64,
}

/// What the recorder hands back at the end of the run.
#[derive(Default)]
pub struct Recorded {
    pub messages: u64,
    pub without_event_time: u64,
    pub end_to_end: LatencyStats,
    pub backbone: LatencyStats,
    pub split: Split,
    pub nic_sources: NicSourceCounts,
}

/// Starts the recorder writing `csv_path`; it finishes when the sender is dropped.
pub fn spawn(
    csv_path: &Path,
) -> anyhow::Result<(Sender<Record>, JoinHandle<anyhow::Result<Recorded>>)> {
    let file =
        File::create(csv_path).with_context(|| format!("creating {}", csv_path.display()))?;
    let path = csv_path.to_path_buf();
    // Deep enough to ride out a slow disk for a while; a full channel blocks the receiver
    // (its socket buffer then absorbs the burst) rather than dropping a record.
    let (tx, rx) = crossbeam_channel::bounded(1 << 20);
    let handle = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            record_all(rx, BufWriter::with_capacity(1 << 20, file))
                .with_context(|| format!("writing {}", path.display()))
        })
        .context("spawning the recorder thread")?;
    Ok((tx, handle))
}

fn record_all(rx: Receiver<Record>, mut csv: impl Write) -> anyhow::Result<Recorded> {
    writeln!(csv, "{CSV_HEADER}")?;
    let mut out = Recorded::default();
    for r in rx {
        out.messages += 1;
        write!(csv, "{},", r.sequence)?;
        match r.event_time_ns {
            Some(e) if r.event_time_micros => {
                write!(csv, "{}.{:03},", e / 1_000_000, e / 1_000 % 1_000)?
            }
            Some(e) => write!(csv, "{},", e / 1_000_000)?,
            None => write!(csv, ",")?,
        }
        write_opt(&mut csv, r.relay_rx_ns)?;
        write!(csv, "{},", r.done_ns)?;
        let end_to_end = r.event_time_ns.map(|e| r.done_ns as i64 - e as i64);
        match end_to_end {
            Some(ns) => {
                out.end_to_end.record(ns);
                write!(csv, "{:.6},", ns as f64 / 1e6)?;
            }
            None => {
                out.without_event_time += 1;
                write!(csv, ",")?;
            }
        }
        let backbone = r.relay_tx_ns.map(|tx| r.done_ns as i64 - tx as i64);
        match backbone {
            Some(ns) => {
                out.backbone.record(ns);
                write!(csv, "{:.6},", ns as f64 / 1e6)?;
            }
            None => write!(csv, ",")?,
        }
        write!(csv, "{},", r.epoch)?;
        write_opt(&mut csv, r.relay_tx_ns)?;
        let dwell = diff(r.relay_tx_ns, r.relay_rx_ns);
        write_us(&mut csv, dwell)?;
        write!(
            csv,
            "{},{},{},",
            r.payload_len, r.fragments, r.reordered as u8
        )?;
        write_opt(&mut csv, r.nic.map(|(ns, _)| ns))?;
        write!(csv, "{},", r.nic.map_or("", |(_, source)| source.name()))?;
        write_opt(&mut csv, r.socket_ns)?;
        write!(csv, "{},", r.app_ns)?;
        let first = r.nic.map(|(ns, _)| ns);
        let network = diff(first, r.relay_tx_ns);
        let kernel = diff(Some(r.app_ns), first);
        let application = diff(Some(r.done_ns), Some(r.app_ns));
        write_us(&mut csv, network)?;
        write_us(&mut csv, kernel)?;
        match application {
            Some(ns) => writeln!(csv, "{:.3}", ns as f64 / 1e3)?,
            None => writeln!(csv)?,
        }

        let split = &mut out.split;
        record_opt(
            &mut split.exchange_to_relay,
            diff(r.relay_rx_ns, r.event_time_ns),
        );
        record_opt(&mut split.relay_dwell, dwell);
        record_opt(&mut split.network, network);
        record_opt(&mut split.kernel, kernel);
        record_opt(&mut split.kernel_to_socket, diff(r.socket_ns, first));
        record_opt(&mut split.socket_to_app, diff(Some(r.app_ns), r.socket_ns));
        record_opt(&mut split.application, application);
        let sources = &mut out.nic_sources;
        match r.nic.map(|(_, source)| source) {
            Some(NicSource::Hardware) => sources.hardware += 1,
            Some(NicSource::Ebpf) => sources.ebpf += 1,
            Some(NicSource::Software) => sources.software += 1,
            None => sources.none += 1,
        }
    }
    csv.flush()?;
    Ok(out)
}

/// `later - earlier` in ns when both stamps exist.
fn diff(later: Option<u64>, earlier: Option<u64>) -> Option<i64> {
    Some(later? as i64 - earlier? as i64)
}

fn record_opt(stats: &mut LatencyStats, value: Option<i64>) {
    if let Some(ns) = value {
        stats.record(ns);
    }
}

/// A ns difference as a µs CSV cell (empty when absent).
fn write_us(csv: &mut impl Write, value: Option<i64>) -> std::io::Result<()> {
    match value {
        Some(ns) => write!(csv, "{:.3},", ns as f64 / 1e3),
        None => write!(csv, ","),
    }
}

fn write_opt(csv: &mut impl Write, value: Option<u64>) -> std::io::Result<()> {
    match value {
        Some(v) => write!(csv, "{v},"),
        None => write!(csv, ","),
    }
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
    fn split_parts_sum_to_end_to_end() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let e = 1_000_000_000u64;
        tx.send(Record {
            event_time_ns: Some(e),
            relay_rx_ns: Some(e + 1_000_000),
            relay_tx_ns: Some(e + 1_000_500),
            nic: Some((e + 119_000_500, NicSource::Software)),
            socket_ns: Some(e + 119_000_500),
            app_ns: e + 119_031_000,
            done_ns: e + 119_031_400,
            ..Record::default()
        })
        .unwrap();
        drop(tx);
        let recorded = record_all(rx, std::io::sink()).unwrap();
        let s = recorded.split.summary();
        let parts = [
            s.exchange_to_relay,
            s.relay_dwell,
            s.network,
            s.kernel,
            s.application,
        ];
        let sum: f64 = parts.iter().map(|p| p.unwrap().avg_us).sum();
        // frankfurt_time - E = 119_031_400 ns, to the nanosecond.
        assert!((sum - 119_031.4).abs() < 1e-9, "{sum}");
        assert_eq!(recorded.end_to_end.summary().unwrap().avg_ms, 119.031);
        assert_eq!(s.kernel_to_socket.unwrap().avg_us, 0.0);
    }

    #[test]
    fn csv_rows_carry_the_seed_columns() {
        let (tx, rx) = crossbeam_channel::unbounded();
        tx.send(Record {
            sequence: 1,
            epoch: 7,
            event_time_ns: Some(1_704_672_345_123_000_000),
            relay_rx_ns: Some(1_704_672_345_234_000_000),
            relay_tx_ns: Some(1_704_672_345_234_010_000),
            nic: Some((1_704_672_345_455_000_000, NicSource::Ebpf)),
            socket_ns: Some(1_704_672_345_455_000_200),
            app_ns: 1_704_672_345_455_900_000,
            done_ns: 1_704_672_345_456_000_000,
            payload_len: 100,
            fragments: 1,
            ..Record::default()
        })
        .unwrap();
        tx.send(Record {
            sequence: 2,
            app_ns: 4,
            done_ns: 5,
            event_time_micros: true,
            ..Record::default()
        })
        .unwrap();
        drop(tx);
        let mut csv = Vec::new();
        let recorded = record_all(rx, &mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(
            lines[1],
            "1,1704672345123,1704672345234000000,1704672345456000000,333.000000,221.990000,7,1704672345234010000,10.000,100,1,0,\
             1704672345455000000,ebpf,1704672345455000200,1704672345455900000,220990.000,900.000,100.000"
        );
        assert_eq!(lines[2], "2,,,5,,,0,,,0,0,0,,,,4,,,0.001");
        assert_eq!(recorded.messages, 2);
        assert_eq!(recorded.without_event_time, 1);
        assert_eq!(recorded.end_to_end.summary().unwrap().avg_ms, 333.0);
        let split = recorded.split.summary();
        let part = |c: Option<ComponentSummary>| c.unwrap().p50_us;
        assert_eq!(split.exchange_to_relay.unwrap().avg_us, 111_000.0);
        assert_eq!(split.relay_dwell.unwrap().avg_us, 10.0);
        assert_eq!(split.network.unwrap().avg_us, 220_990.0);
        assert_eq!(split.kernel.unwrap().avg_us, 900.0);
        assert_eq!(split.kernel_to_socket.unwrap().avg_us, 0.2);
        assert_eq!(split.socket_to_app.unwrap().avg_us, 899.8);
        assert_eq!(split.application.unwrap().count, 2);
        assert!((part(split.kernel) - 900.0).abs() < 1.0);
        assert_eq!(
            recorded.nic_sources,
            NicSourceCounts {
                ebpf: 1,
                none: 1,
                ..NicSourceCounts::default()
            }
        );
    }
}
