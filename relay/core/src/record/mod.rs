//! What the receiver records per delivered message and what it makes of it: the [`Record`] the
//! receiving thread hands over, its CSV row ([`csv`]), the per-message latency [`split`], and the
//! JSON [`summary`] (with the host's [`clock`] state). Pure computation over plain data: the
//! recorder thread that feeds records through here and writes the file lives in the receiver.

pub mod clock;
pub mod csv;
pub mod exchange_ids;
pub mod split;
pub mod summary;

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::stats::LatencyStats;
use split::Split;

/// One delivered message, as the receiving thread saw it. Plain data: no allocation to send
/// (unless the message itself goes along, for `--serve-ws`).
#[derive(Clone, Debug, Default)]
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
    /// When the message was accounted.
    pub done_ns: u64,
    /// When arbitration across paths passed it on (`--mode both`).
    pub arbitrated_ns: Option<u64>,
    /// When the local endpoint had queued it to its clients (`--serve-ws`).
    pub served_ns: Option<u64>,
    pub payload_len: u32,
    pub fragments: u16,
    pub reordered: bool,
    /// The exchange's identity of the event (stream and id), for A/B arbitration across paths.
    pub event: Option<crate::binance::EventId>,
    /// The message came in the combined-stream wrapper.
    pub wrapped: bool,
    /// The message itself, when the local endpoint serves it (`--serve-ws`).
    pub payload: Option<bytes::Bytes>,
}

impl Record {
    /// The receiver's `frankfurt_time`: when the message left the receiver for the application
    /// (accounted, then arbitrated and served where those happen).
    pub fn frankfurt_ns(&self) -> u64 {
        self.served_ns
            .or(self.arbitrated_ns)
            .unwrap_or(self.done_ns)
    }
}

/// Which clock gave a message its first stamp on the receiving host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    pub fn name(self) -> &'static str {
        match self {
            NicSource::Hardware => "hardware",
            NicSource::Ebpf => "ebpf",
            NicSource::Software => "software",
        }
    }
}

/// How many messages took their first stamp from each source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSourceCounts {
    pub hardware: u64,
    pub ebpf: u64,
    pub software: u64,
    pub none: u64,
}

/// Largest time difference believed between two stamps of one message: an hour. Anything
/// larger (or beyond i64) comes from a broken clock or a forged header and stays out of the
/// figures.
pub const MAX_PLAUSIBLE_NS: u64 = 3_600 * 1_000_000_000;

/// A message whose stamps differ by more than [`MAX_PLAUSIBLE_NS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Implausible;

/// The differences between one message's stamps, in ns; `None` where a stamp is missing.
#[derive(Clone, Copy, Debug, Default)]
struct Latencies {
    end_to_end: Option<i64>,
    backbone: Option<i64>,
    exchange_to_relay: Option<i64>,
    dwell: Option<i64>,
    network: Option<i64>,
    kernel: Option<i64>,
    kernel_to_socket: Option<i64>,
    socket_to_app: Option<i64>,
    application: Option<i64>,
    arbitration: Option<i64>,
    serve: Option<i64>,
}

impl Latencies {
    fn of(r: &Record) -> Result<Latencies, Implausible> {
        let first = r.nic.map(|(ns, _)| ns);
        let (done, app, last) = (Some(r.done_ns), Some(r.app_ns), Some(r.frankfurt_ns()));
        Ok(Latencies {
            end_to_end: diff(last, r.event_time_ns)?,
            backbone: diff(last, r.relay_tx_ns)?,
            exchange_to_relay: diff(r.relay_rx_ns, r.event_time_ns)?,
            dwell: diff(r.relay_tx_ns, r.relay_rx_ns)?,
            network: diff(first, r.relay_tx_ns)?,
            kernel: diff(app, first)?,
            kernel_to_socket: diff(r.socket_ns, first)?,
            socket_to_app: diff(app, r.socket_ns)?,
            application: diff(done, app)?,
            arbitration: diff(r.arbitrated_ns, done)?,
            serve: diff(r.served_ns, r.arbitrated_ns.or(done))?,
        })
    }
}

/// Everything recorded so far: the figures the summary is built from.
#[derive(Default)]
pub struct Recorded {
    pub messages: u64,
    pub without_event_time: u64,
    /// Messages whose stamps were implausible ([`MAX_PLAUSIBLE_NS`]): counted, their latency
    /// cells left empty and kept out of every figure.
    pub implausible_timestamps: u64,
    pub end_to_end: LatencyStats,
    pub backbone: LatencyStats,
    pub split: Split,
    pub nic_sources: NicSourceCounts,
}

impl Recorded {
    /// Writes the CSV header line.
    pub fn write_header(csv: &mut impl Write) -> io::Result<()> {
        writeln!(csv, "{}", csv::header())
    }

    /// Accounts one record and writes its CSV row.
    pub fn record(&mut self, r: &Record, csv: &mut impl Write) -> io::Result<()> {
        self.messages += 1;
        write!(csv, "{},", r.sequence)?;
        match r.event_time_ns {
            Some(e) if r.event_time_micros => {
                write!(csv, "{}.{:03},", e / 1_000_000, e / 1_000 % 1_000)?
            }
            Some(e) => write!(csv, "{},", e / 1_000_000)?,
            None => write!(csv, ",")?,
        }
        write_opt(csv, r.relay_rx_ns)?;
        write!(csv, "{},", r.frankfurt_ns())?;
        if r.event_time_ns.is_none() {
            self.without_event_time += 1;
        }
        let l = Latencies::of(r).unwrap_or_else(|Implausible| {
            self.implausible_timestamps += 1;
            Latencies::default()
        });
        write_ms(csv, l.end_to_end)?;
        write_ms(csv, l.backbone)?;
        write!(csv, "{},", r.epoch)?;
        write_opt(csv, r.relay_tx_ns)?;
        write_us(csv, l.dwell)?;
        write!(
            csv,
            "{},{},{},",
            r.payload_len, r.fragments, r.reordered as u8
        )?;
        write_opt(csv, r.nic.map(|(ns, _)| ns))?;
        write!(csv, "{},", r.nic.map_or("", |(_, source)| source.name()))?;
        write_opt(csv, r.socket_ns)?;
        write!(csv, "{},", r.app_ns)?;
        write_us(csv, l.network)?;
        write_us(csv, l.kernel)?;
        write_us(csv, l.application)?;
        write_us(csv, l.arbitration)?;
        match l.serve {
            Some(ns) => writeln!(csv, "{:.3}", ns as f64 / 1e3)?,
            None => writeln!(csv)?,
        }

        record_opt(&mut self.end_to_end, l.end_to_end);
        record_opt(&mut self.backbone, l.backbone);
        let split = &mut self.split;
        record_opt(&mut split.exchange_to_relay, l.exchange_to_relay);
        record_opt(&mut split.relay_dwell, l.dwell);
        record_opt(&mut split.network, l.network);
        record_opt(&mut split.kernel, l.kernel);
        record_opt(&mut split.kernel_to_socket, l.kernel_to_socket);
        record_opt(&mut split.socket_to_app, l.socket_to_app);
        record_opt(&mut split.application, l.application);
        record_opt(&mut split.arbitration, l.arbitration);
        record_opt(&mut split.serve, l.serve);
        let sources = &mut self.nic_sources;
        match r.nic.map(|(_, source)| source) {
            Some(NicSource::Hardware) => sources.hardware += 1,
            Some(NicSource::Ebpf) => sources.ebpf += 1,
            Some(NicSource::Software) => sources.software += 1,
            None => sources.none += 1,
        }
        Ok(())
    }
}

/// `later - earlier` in ns when both stamps exist (`Ok(None)` when one is missing), checked:
/// never an overflow, never beyond [`MAX_PLAUSIBLE_NS`] either way.
fn diff(later: Option<u64>, earlier: Option<u64>) -> Result<Option<i64>, Implausible> {
    let (Some(later), Some(earlier)) = (later, earlier) else {
        return Ok(None);
    };
    let ns = i128::from(later) - i128::from(earlier);
    if ns.unsigned_abs() > u128::from(MAX_PLAUSIBLE_NS) {
        return Err(Implausible);
    }
    Ok(i64::try_from(ns).ok())
}

fn record_opt(stats: &mut LatencyStats, value: Option<i64>) {
    if let Some(ns) = value {
        stats.record(ns);
    }
}

/// A ns difference as a ms CSV cell (empty when absent).
fn write_ms(csv: &mut impl Write, value: Option<i64>) -> std::io::Result<()> {
    match value {
        Some(ns) => write!(csv, "{:.6},", ns as f64 / 1e6),
        None => write!(csv, ","),
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
mod tests;
