//! The receiver's use of the eBPF stamper: attach it (with the fallback order native XDP,
//! generic XDP, tc ingress), look up each received datagram's stamp, convert it from TAI to
//! REALTIME, and report how it went. A receiver that cannot attach says why and carries on
//! without the eBPF stamps rather than dying.

use relay_core::receive::stamp_join::{DatagramKey, EbpfStamp, StampTable};
use relay_core::record::summary::EbpfReport;

use super::ebpf::{tai_offset_ns, RxStamper};
use crate::cli::receive::EbpfMode;

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
    pub fn attach(iface: &str, choice: EbpfMode, port: u16) -> NicStamps {
        let mut report = EbpfReport {
            interface: iface.to_string(),
            ..EbpfReport::default()
        };
        match tai_offset_ns() {
            Ok(offset) => report.tai_offset_ns = offset,
            Err(e) => report.errors.push(format!("reading the TAI offset: {e:#}")),
        }
        let mut stamper = None;
        for hook in choice.candidates() {
            match RxStamper::attach(iface, hook, port) {
                Ok(attached) => {
                    eprintln!("receiver: eBPF receive stamps from {hook} on {iface}");
                    report.hook = Some(hook.name().to_string());
                    stamper = Some(attached);
                    break;
                }
                Err(e) => {
                    eprintln!(
                        "receiver: cannot attach the eBPF program at {hook} on {iface}: {e:#}"
                    );
                    report.errors.push(format!("{hook}: {e:#}"));
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

    /// The eBPF stamp of the datagram just received (CLOCK_REALTIME ns, and the NIC's stamp when
    /// the tc program read one). Drains the ring first
    /// (no syscall, no allocation).
    pub fn stamp_of(&mut self, datagram: &[u8]) -> Option<EbpfStamp> {
        let stamper = self.stamper.as_mut()?;
        let table = &mut self.table;
        stamper.drain(&mut |stamp| table.insert(&stamp));
        let found = table.take(DatagramKey::of(datagram)?)?;
        let ns = found
            .tai_ns
            .checked_add_signed(self.report.tai_offset_ns.checked_neg()?)?;
        Some(EbpfStamp {
            ns,
            hardware_ns: found.hardware_ns,
        })
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
