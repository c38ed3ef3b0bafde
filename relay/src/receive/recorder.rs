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
    /// CLOCK_REALTIME ns when the message was complete at the receiver.
    pub receive_ns: u64,
    pub payload_len: u32,
    pub fragments: u16,
    pub reordered: bool,
}

/// The CSV header: the seed's six columns first, then ours.
pub const CSV_HEADER: &str = "sequence_id,binance_time,tokyo_time,frankfurt_time,end_to_end_latency_ms,backbone_latency_ms,epoch,relay_send_time,relay_dwell_us,payload_bytes,fragments,reordered";

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

    pub fn summary(&self) -> Option<LatencySummary> {
        if self.count == 0 {
            return None;
        }
        let quantile = |q: f64| {
            if self.histogram.is_empty() {
                f64::NAN
            } else {
                ns_to_ms(self.histogram.value_at_quantile(q) as f64)
            }
        };
        // Population standard deviation, as the seed's jitter_stddev_ms.
        let stddev = (self.m2 / self.count as f64).sqrt();
        Some(LatencySummary {
            count: self.count,
            avg_ms: ns_to_ms(self.mean),
            median_ms: quantile(0.5),
            p95_ms: quantile(0.95),
            p99_ms: quantile(0.99),
            p999_ms: quantile(0.999),
            min_ms: ns_to_ms(self.min as f64),
            max_ms: ns_to_ms(self.max as f64),
            stddev_ms: ns_to_ms(stddev),
            negative: self.negative,
        })
    }
}

/// What the recorder hands back at the end of the run.
#[derive(Default)]
pub struct Recorded {
    pub messages: u64,
    pub without_event_time: u64,
    pub end_to_end: LatencyStats,
    pub backbone: LatencyStats,
    pub relay_dwell: LatencyStats,
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
        write!(csv, "{},", r.receive_ns)?;
        let end_to_end = r.event_time_ns.map(|e| r.receive_ns as i64 - e as i64);
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
        let backbone = r.relay_tx_ns.map(|tx| r.receive_ns as i64 - tx as i64);
        match backbone {
            Some(ns) => {
                out.backbone.record(ns);
                write!(csv, "{:.6},", ns as f64 / 1e6)?;
            }
            None => write!(csv, ",")?,
        }
        write!(csv, "{},", r.epoch)?;
        write_opt(&mut csv, r.relay_tx_ns)?;
        match (r.relay_rx_ns, r.relay_tx_ns) {
            (Some(rx_ns), Some(tx_ns)) => {
                let dwell = tx_ns as i64 - rx_ns as i64;
                out.relay_dwell.record(dwell);
                write!(csv, "{:.3},", dwell as f64 / 1e3)?;
            }
            _ => write!(csv, ",")?,
        }
        writeln!(
            csv,
            "{},{},{}",
            r.payload_len, r.fragments, r.reordered as u8
        )?;
    }
    csv.flush()?;
    Ok(out)
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
    fn csv_rows_carry_the_seed_columns() {
        let (tx, rx) = crossbeam_channel::unbounded();
        tx.send(Record {
            sequence: 1,
            epoch: 7,
            event_time_ns: Some(1_704_672_345_123_000_000),
            relay_rx_ns: Some(1_704_672_345_234_000_000),
            relay_tx_ns: Some(1_704_672_345_234_010_000),
            receive_ns: 1_704_672_345_456_000_000,
            payload_len: 100,
            fragments: 1,
            ..Record::default()
        })
        .unwrap();
        tx.send(Record {
            sequence: 2,
            receive_ns: 5,
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
            "1,1704672345123,1704672345234000000,1704672345456000000,333.000000,221.990000,7,1704672345234010000,10.000,100,1,0"
        );
        assert_eq!(lines[2], "2,,,5,,,0,,,0,0,0");
        assert_eq!(recorded.messages, 2);
        assert_eq!(recorded.without_event_time, 1);
        assert_eq!(recorded.end_to_end.summary().unwrap().avg_ms, 333.0);
    }
}
