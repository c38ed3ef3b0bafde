//! The receive stamp record the eBPF program (`relay-ebpf`) writes, one per relay datagram it
//! sees, into a per-CPU ring of slots the receiver reads through shared memory, and the names both
//! sides agree on.
//!
//! # The rings
//!
//! Two `BPF_F_MMAPABLE` array maps, sized by the loader for the host's possible CPUs: [`SLOTS_MAP`]
//! holds [`SLOTS_PER_CPU`] [`RxStamp`]s per CPU (CPU `c`'s are entries `c * SLOTS_PER_CPU ..`),
//! [`HEADS_MAP`] one [`RingHead`] per CPU. On CPU `c` the program writes its stamp into slot
//! `written % SLOTS_PER_CPU`, then stores `written + 1`: one producer per CPU (XDP and tc run in
//! softirq, which does not nest), so no lock and no atomic read-modify-write. The reader keeps a
//! tail per CPU, reads the slots from its tail to `written`, and, having read one, checks that
//! `written` has not meanwhile come a whole ring past it (the slot may have been rewritten under
//! it): such a stamp is dropped and counted as overwritten, as are the stamps of a reader that fell
//! a whole ring behind. The order of the two stores (slot, then head) and of the reader's loads is
//! what x86-64 guarantees (TSO); on a weakly ordered CPU the producer would need a release store,
//! which the BPF instruction set does not have.
//!
//! The kernel writes the record in the host's byte order (`bpfel` on x86_64 and arm64), so the
//! reader decodes it with [`RxStamp::from_ne_bytes`]. The layout is `#[repr(C)]`, 32 bytes, no
//! implicit padding, 8-byte aligned.

/// One relay datagram seen by the eBPF program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxStamp {
    /// The datagram header's `sequence` (offset [`crate::offset::SEQUENCE`]).
    pub sequence: u64,
    /// `bpf_ktime_get_tai_ns()`: **CLOCK_TAI** nanoseconds when the program ran. Subtract the
    /// TAI offset (TAI - REALTIME, 37 s on a PTP host, often 0 on a VM) to compare it with the
    /// header's CLOCK_REALTIME times or a socket timestamp.
    pub time_ns: u64,
    /// The datagram header's `epoch` (offset [`crate::offset::EPOCH`]).
    pub epoch: u32,
    /// The datagram header's `fragment_index` (offset [`crate::offset::FRAGMENT_INDEX`]).
    pub fragment_index: u16,
    /// Which hook ran: a [`Hook::id`].
    pub hook: u8,
    /// Always 0; makes the padding explicit.
    pub _pad: u8,
    /// The NIC's hardware receive stamp (`__sk_buff->hwtstamp`, the NIC's clock in ns) when the
    /// NIC and driver put one on the packet and hardware timestamping is on for the interface;
    /// 0 when there is none (always at XDP, which has no socket buffer to read it from).
    pub hw_ns: u64,
}

impl RxStamp {
    /// Size of one record in bytes.
    pub const SIZE: usize = 32;

    /// Decodes a record as the kernel wrote it (native byte order). `None` if `bytes` is shorter
    /// than [`RxStamp::SIZE`]; extra bytes are ignored.
    pub fn from_ne_bytes(bytes: &[u8]) -> Option<RxStamp> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_ne_bytes(b)
        };
        Some(RxStamp {
            sequence: u64_at(0),
            time_ns: u64_at(8),
            epoch: u32::from_ne_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]),
            fragment_index: u16::from_ne_bytes([bytes[20], bytes[21]]),
            hook: bytes[22],
            _pad: bytes[23],
            hw_ns: u64_at(24),
        })
    }

    /// Encodes the record in native byte order (what the kernel writes); for tests and tools.
    pub fn to_ne_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..8].copy_from_slice(&self.sequence.to_ne_bytes());
        out[8..16].copy_from_slice(&self.time_ns.to_ne_bytes());
        out[16..20].copy_from_slice(&self.epoch.to_ne_bytes());
        out[20..22].copy_from_slice(&self.fragment_index.to_ne_bytes());
        out[22] = self.hook;
        out[23] = self._pad;
        out[24..32].copy_from_slice(&self.hw_ns.to_ne_bytes());
        out
    }
}

// The layout is part of the contract between the program and its reader.
const _: () = assert!(core::mem::size_of::<RxStamp>() == RxStamp::SIZE);
const _: () = assert!(core::mem::align_of::<RxStamp>() == 8);

/// Where in the receive path the program runs (and so where a stamp was taken); the one
/// definition of the hook names and ids for the program, the loader, the receiver's
/// `--ebpf-mode`, the benchmarks and the reports.
///
/// Native XDP runs before the kernel allocates the socket buffer, so a socket software timestamp
/// is *later* than an XDP_NATIVE stamp; XDP generic (skb mode) and tc ingress run after the
/// software receive timestamp is taken, so there the socket timestamp is *earlier*.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Hook {
    /// XDP in the driver (native mode), before the kernel allocates a socket buffer: the
    /// earliest software point.
    XdpNative = hook::XDP_NATIVE,
    /// XDP in generic (skb) mode: works on any interface, runs after the skb is built.
    XdpGeneric = hook::XDP_GENERIC,
    /// tc ingress (tcx on Linux >= 6.6, a clsact filter before): after the skb is built, sees
    /// VLAN-offloaded traffic.
    TcIngress = hook::TC_INGRESS,
}

impl Hook {
    /// Every hook, earliest in the receive path first (the `auto` fallback order).
    pub const ALL: [Hook; 3] = [Hook::XdpNative, Hook::XdpGeneric, Hook::TcIngress];

    /// The [`RxStamp::hook`] value of stamps taken here.
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// The hook a [`RxStamp::hook`] value names, if any.
    pub const fn from_id(id: u8) -> Option<Hook> {
        match id {
            hook::XDP_NATIVE => Some(Hook::XdpNative),
            hook::XDP_GENERIC => Some(Hook::XdpGeneric),
            hook::TC_INGRESS => Some(Hook::TcIngress),
            _ => None,
        }
    }

    /// The stable name (`xdp-native`, `xdp-generic`, `tc-ingress`): command lines, JSON, reports.
    pub const fn name(self) -> &'static str {
        match self {
            Hook::XdpNative => "xdp-native",
            Hook::XdpGeneric => "xdp-generic",
            Hook::TcIngress => "tc-ingress",
        }
    }

    /// The hook called `name` (exactly as [`Hook::name`] spells it).
    pub fn from_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }

    /// The program in the object that attaches here.
    pub const fn program(self) -> &'static str {
        match self {
            Hook::XdpNative | Hook::XdpGeneric => XDP_PROGRAM,
            Hook::TcIngress => TC_PROGRAM,
        }
    }
}

impl core::fmt::Display for Hook {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The raw [`RxStamp::hook`] values (what the program writes; [`Hook`] is the typed view).
pub mod hook {
    /// XDP in driver (native) mode.
    pub const XDP_NATIVE: u8 = 1;
    /// XDP in generic (skb) mode.
    pub const XDP_GENERIC: u8 = 2;
    /// tc ingress (tcx on Linux >= 6.6, a clsact filter before).
    pub const TC_INGRESS: u8 = 3;
}

/// Indices into the program's per-CPU counter array ([`COUNTERS_MAP`]).
///
/// A relay datagram that was stamped (our port, magic, version 2, at least a header long) has no
/// counter: its CPU's [`RingHead::written`] counts those.
pub mod counter {
    /// Any other packet: not IPv4/IPv6 + UDP, a non-first IP fragment, or UDP to another port.
    pub const OTHER: u32 = 0;
    /// UDP to our port that is not a relay datagram: shorter than a header, wrong magic or version.
    pub const MALFORMED: u32 = 1;
    /// A relay datagram whose stamp could not be written (no ring for the CPU it ran on). The
    /// reader adds the stamps it found overwritten before it could read them.
    pub const RING_FULL: u32 = 2;
    /// Number of counters.
    pub const COUNT: u32 = 3;
}

/// Name of the per-CPU `u64` array of [`counter`]s.
pub const COUNTERS_MAP: &str = "RX_COUNTERS";
/// Stamps each CPU's ring holds (a power of two): 1 MiB per CPU, 32 ms of stamps at a million
/// datagrams a second on one CPU.
pub const SLOTS_PER_CPU: u32 = 1 << 15;
/// Name of the array map of every CPU's [`SLOTS_PER_CPU`] slots.
pub const SLOTS_MAP: &str = "RX_SLOTS";
/// Name of the array map of one [`RingHead`] per CPU.
pub const HEADS_MAP: &str = "RX_HEADS";

/// How many stamps one CPU has written (the next one goes into slot `written % SLOTS_PER_CPU`);
/// a cache line of its own, so CPUs writing their heads do not share one.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingHead {
    pub written: u64,
    pub _pad: [u64; 7],
}

const _: () = assert!(core::mem::size_of::<RingHead>() == 64);
/// Global (`u16`, host order) the loader sets to the UDP destination port to stamp.
pub const DEST_PORT_GLOBAL: &str = "DEST_PORT";
/// Global (`u8`) the loader sets to [`hook::XDP_NATIVE`] or [`hook::XDP_GENERIC`] for the XDP
/// program (an XDP program cannot see which mode it was attached in).
pub const XDP_HOOK_GLOBAL: &str = "XDP_HOOK";
/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "relay_xdp";
/// Name of the tc classifier in the object.
pub const TC_PROGRAM: &str = "relay_tc";

const _: () = assert!(SLOTS_PER_CPU.is_power_of_two());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_in_native_order() {
        let stamp = RxStamp {
            sequence: 0x0102_0304_0506_0708,
            time_ns: 1_700_000_000_123_456_789,
            epoch: 0xdead_beef,
            fragment_index: 7,
            hook: hook::TC_INGRESS,
            _pad: 0,
            hw_ns: 1_700_000_000_123_400_000,
        };
        let bytes = stamp.to_ne_bytes();
        assert_eq!(RxStamp::from_ne_bytes(&bytes), Some(stamp));
        assert_eq!(RxStamp::from_ne_bytes(&bytes[..31]), None);
    }

    #[test]
    fn hook_names_and_ids_round_trip() {
        for (hook, name, id) in [
            (Hook::XdpNative, "xdp-native", 1),
            (Hook::XdpGeneric, "xdp-generic", 2),
            (Hook::TcIngress, "tc-ingress", 3),
        ] {
            assert_eq!((hook.name(), hook.id()), (name, id));
            assert_eq!(Hook::from_name(name), Some(hook));
            assert_eq!(Hook::from_id(id), Some(hook));
        }
        assert_eq!(Hook::from_id(0), None);
        assert_eq!(Hook::from_name("xdp"), None);
        assert_eq!(Hook::XdpGeneric.program(), XDP_PROGRAM);
        assert_eq!(Hook::TcIngress.program(), TC_PROGRAM);
    }
}
