//! The receiver's use of the eBPF stamper: attach it (with the fallback order native XDP,
//! generic XDP, tc ingress), look up each received datagram's stamp, convert it from TAI to
//! REALTIME, and report how it went. A receiver that cannot attach says why and carries on
//! without the eBPF stamps rather than dying.

use serde::Serialize;

use super::ebpf::{tai_offset_ns, HookMode, RxStamper};
use super::stamp_table::{DatagramKey, StampTable};

/// `--ebpf-mode`: one hook, or `auto` to try them from the earliest down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EbpfModeChoice {
    /// Native XDP, else generic XDP, else tc ingress.
    Auto,
    XdpNative,
    XdpGeneric,
    TcIngress,
}

impl EbpfModeChoice {
    fn candidates(self) -> &'static [HookMode] {
        match self {
            EbpfModeChoice::Auto => &[
                HookMode::XdpNative,
                HookMode::XdpGeneric,
                HookMode::TcIngress,
            ],
            EbpfModeChoice::XdpNative => &[HookMode::XdpNative],
            EbpfModeChoice::XdpGeneric => &[HookMode::XdpGeneric],
            EbpfModeChoice::TcIngress => &[HookMode::TcIngress],
        }
    }
}

/// How the eBPF side went, for the JSON summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EbpfReport {
    pub interface: String,
    /// The hook in use (`xdp-native`, `xdp-generic`, `tc-ingress`), or null if none attached.
    pub hook: Option<&'static str>,
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

/// Ring entries are drained after every receive; the table only needs to bridge the gap between
/// the program writing a stamp and the socket returning that datagram.
const TABLE_SLOTS: usize = 1 << 16;

pub struct NicStamps {
    stamper: Option<RxStamper>,
    table: StampTable,
    report: EbpfReport,
}

impl NicStamps {
    /// Attaches to `iface` for UDP `port`; on failure prints why on stderr and keeps going.
    pub fn attach(iface: &str, choice: EbpfModeChoice, port: u16) -> NicStamps {
        let mut report = EbpfReport {
            interface: iface.to_string(),
            ..EbpfReport::default()
        };
        match tai_offset_ns() {
            Ok(offset) => report.tai_offset_ns = offset,
            Err(e) => report.errors.push(format!("reading the TAI offset: {e:#}")),
        }
        let mut stamper = None;
        for &mode in choice.candidates() {
            match RxStamper::attach(iface, mode, port) {
                Ok(attached) => {
                    eprintln!("receiver: eBPF receive stamps from {mode} on {iface}");
                    report.hook = Some(mode.name());
                    stamper = Some(attached);
                    break;
                }
                Err(e) => {
                    eprintln!(
                        "receiver: cannot attach the eBPF program at {mode} on {iface}: {e:#}"
                    );
                    report.errors.push(format!("{mode}: {e:#}"));
                }
            }
        }
        if stamper.is_none() {
            eprintln!("receiver: carrying on without eBPF stamps (kernel software stamps only)");
        }
        NicStamps {
            stamper,
            table: StampTable::new(TABLE_SLOTS),
            report,
        }
    }

    /// The eBPF stamp of the datagram just received, as CLOCK_REALTIME ns. Drains the ring first
    /// (no syscall, no allocation).
    pub fn stamp_of(&mut self, datagram: &[u8]) -> Option<u64> {
        let stamper = self.stamper.as_mut()?;
        let table = &mut self.table;
        stamper.drain(&mut |stamp| table.insert(&stamp));
        let found = table.take(DatagramKey::of(datagram)?)?;
        Some((found.tai_ns as i64 - self.report.tai_offset_ns) as u64)
    }

    /// Counts a delivered message by whether its datagram had a stamp.
    pub fn count_message(&mut self, stamped: bool) {
        if self.stamper.is_none() {
            return;
        }
        if stamped {
            self.report.messages_with_stamp += 1;
        } else {
            self.report.messages_without_stamp += 1;
        }
    }

    /// The final report; detaches the program (dropping the stamper).
    pub fn finish(mut self) -> EbpfReport {
        if let Some(stamper) = self.stamper.take() {
            match stamper.counters() {
                Ok(c) => {
                    self.report.matched = c.matched;
                    self.report.other = c.other;
                    self.report.malformed = c.malformed;
                    self.report.ring_full = c.ring_full;
                }
                Err(e) => self
                    .report
                    .errors
                    .push(format!("reading the program's counters: {e:#}")),
            }
        }
        self.report
    }
}
