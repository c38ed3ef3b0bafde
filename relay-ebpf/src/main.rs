//! Receiver-side eBPF program: stamps every relay datagram at XDP or tc ingress.
//!
//! Both programs share one parser: Ethernet (one optional 802.1Q/802.1ad tag) -> IPv4 (any IHL,
//! first fragment only) or IPv6 (UDP as the first next header) -> UDP to `DEST_PORT` -> the relay
//! header (magic `RLAY`, version 2). For a relay datagram (one stamp per datagram, however many
//! messages it packs) it writes a
//! [`RxStamp`](relay_wire::stamp::RxStamp) with `bpf_ktime_get_tai_ns()` (and, at tc, the NIC's
//! hardware receive stamp `__sk_buff->hwtstamp` when there is one) into its CPU's ring of slots
//! (`RX_SLOTS`, `RX_HEADS`: mmapped by the reader, which polls; no lock, no wake-up; the layout is
//! in `relay_wire::stamp`); the ring's head is the count of stamps written. Every other packet is
//! counted in the per-CPU `RX_COUNTERS`, and every packet is passed on: XDP_PASS, and
//! TC_ACT_UNSPEC for tc (pass, and let any tc program after this one run too).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{xdp_action, BPF_F_MMAPABLE, TC_ACT_UNSPEC},
    helpers::generated::{bpf_get_smp_processor_id, bpf_ktime_get_tai_ns},
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray},
    programs::{TcContext, XdpContext},
    EbpfContext, Global,
};
use aya_log_ebpf::{info, warn};
use relay_wire::{
    offset,
    stamp::{counter, hook, RingHead, RxStamp, SLOTS_PER_CPU},
    HEADER_LEN, MAGIC, VERSION,
};

/// UDP destination port to stamp (host byte order); set by the loader. 0 stamps nothing.
#[unsafe(no_mangle)]
static DEST_PORT: Global<u16> = Global::new(0);

/// The XDP program's hook id (`hook::XDP_NATIVE` or `hook::XDP_GENERIC`); set by the loader.
#[unsafe(no_mangle)]
static XDP_HOOK: Global<u8> = Global::new(hook::XDP_NATIVE);

/// Every CPU's ring of `SLOTS_PER_CPU` stamps (the loader sizes it for the host's CPUs).
#[map]
static RX_SLOTS: Array<RxStamp> = Array::with_max_entries(SLOTS_PER_CPU, BPF_F_MMAPABLE);

/// Every CPU's count of stamps written (also the count of relay datagrams it stamped).
#[map]
static RX_HEADS: Array<RingHead> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Per-CPU counters, indexed by `relay_wire::stamp::counter`.
#[map]
static RX_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
const IPPROTO_UDP: u8 = 17;
/// Enough linear bytes for the deepest header stack we parse (tagged Ethernet, IPv4 with the
/// largest options, UDP, relay header): what the tc program pulls into the linear area when the
/// datagram is longer than what is linear.
const MAX_PARSE_LEN: u32 = (ETH_HLEN + VLAN_HLEN + 60 + UDP_HLEN + HEADER_LEN) as u32;

/// What the parser found.
enum Parsed {
    /// A relay datagram: the fields for the stamp.
    Ours {
        sequence: u64,
        epoch: u32,
        fragment_index: u16,
        time_ns: u64,
    },
    /// Not UDP to our port.
    Other,
    /// UDP to our port but not a relay datagram (`len` is the UDP payload length).
    Malformed { len: u16 },
    /// Our port and long enough according to UDP, but the bytes are not all in the linear area
    /// the program can read (tc only: pull and parse again).
    NotLinear,
}

/// Returns a pointer to `N` bytes at `data + at` if they lie before `data_end`.
#[inline(always)]
fn bytes_at<const N: usize>(data: usize, data_end: usize, at: usize) -> Option<*const [u8; N]> {
    let start = data + at;
    if start + N > data_end {
        return None;
    }
    Some(start as *const [u8; N])
}

#[inline(always)]
fn be16(data: usize, data_end: usize, at: usize) -> Option<u16> {
    bytes_at::<2>(data, data_end, at).map(|p| u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn parse(data: usize, data_end: usize) -> Parsed {
    // Ethernet, one optional VLAN tag.
    let Some(mut ethertype) = be16(data, data_end, 12) else {
        return Parsed::Other;
    };
    let mut l3 = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let Some(inner) = be16(data, data_end, ETH_HLEN + 2) else {
            return Parsed::Other;
        };
        ethertype = inner;
        l3 += VLAN_HLEN;
    }

    // IPv4 or IPv6 carrying UDP.
    let l4 = if ethertype == ETH_P_IP {
        let Some(ip) = bytes_at::<IPV4_MIN_HLEN>(data, data_end, l3) else {
            return Parsed::Other;
        };
        let ip = unsafe { &*ip };
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
        if ip[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN || ip[9] != IPPROTO_UDP || fragment_offset != 0 {
            return Parsed::Other;
        }
        l3 + ihl
    } else if ethertype == ETH_P_IPV6 {
        let Some(ip) = bytes_at::<IPV6_HLEN>(data, data_end, l3) else {
            return Parsed::Other;
        };
        // Next header: extension headers (fragments included) are left alone.
        if unsafe { (*ip)[6] } != IPPROTO_UDP {
            return Parsed::Other;
        }
        l3 + IPV6_HLEN
    } else {
        return Parsed::Other;
    };

    // UDP to our port.
    let Some(udp) = bytes_at::<UDP_HLEN>(data, data_end, l4) else {
        return Parsed::Other;
    };
    let udp = unsafe { &*udp };
    if u16::from_be_bytes([udp[2], udp[3]]) != DEST_PORT.load() {
        return Parsed::Other;
    }
    // Stamp as soon as the packet is known to be for us.
    let time_ns = unsafe { bpf_ktime_get_tai_ns() };
    let len = u16::from_be_bytes([udp[4], udp[5]]).saturating_sub(UDP_HLEN as u16);
    if (len as usize) < HEADER_LEN {
        return Parsed::Malformed { len };
    }

    // The relay header.
    let payload = l4 + UDP_HLEN;
    let Some(header) = bytes_at::<HEADER_LEN>(data, data_end, payload) else {
        return Parsed::NotLinear;
    };
    let header = unsafe { &*header };
    let field = |at: usize| header[at];
    if [
        field(offset::MAGIC),
        field(offset::MAGIC + 1),
        field(offset::MAGIC + 2),
        field(offset::MAGIC + 3),
    ] != MAGIC
        || field(offset::VERSION) != VERSION
    {
        return Parsed::Malformed { len };
    }
    let mut sequence = [0u8; 8];
    sequence.copy_from_slice(&header[offset::SEQUENCE..offset::SEQUENCE + 8]);
    let mut epoch = [0u8; 4];
    epoch.copy_from_slice(&header[offset::EPOCH..offset::EPOCH + 4]);
    Parsed::Ours {
        sequence: u64::from_le_bytes(sequence),
        epoch: u32::from_le_bytes(epoch),
        fragment_index: u16::from_le_bytes([
            field(offset::FRAGMENT_INDEX),
            field(offset::FRAGMENT_INDEX + 1),
        ]),
        time_ns,
    }
}

/// Adds one to this CPU's counter `index` and returns the new value.
#[inline(always)]
fn bump(index: u32) -> u64 {
    match RX_COUNTERS.get_ptr_mut(index) {
        Some(slot) => unsafe {
            *slot += 1;
            *slot
        },
        None => 0,
    }
}

/// Writes the stamp into this CPU's next slot, field by field, then moves the CPU's head past it
/// (the reader relies on that order: volatile stores, kept in order by the compiler and, on
/// x86-64, by the CPU). The head is also the count of stamps written. False when the maps have
/// no ring for this CPU.
#[inline(always)]
fn publish(
    sequence: u64,
    time_ns: u64,
    epoch: u32,
    fragment_index: u16,
    hook: u8,
    hw_ns: u64,
) -> bool {
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(head) = RX_HEADS.get_ptr_mut(cpu) else {
        return false;
    };
    let written = unsafe { core::ptr::read_volatile(&(*head).written) };
    let index = cpu
        .wrapping_mul(SLOTS_PER_CPU)
        .wrapping_add(written as u32 & (SLOTS_PER_CPU - 1));
    let Some(slot) = RX_SLOTS.get_ptr_mut(index) else {
        return false;
    };
    unsafe {
        core::ptr::write_volatile(&mut (*slot).sequence, sequence);
        core::ptr::write_volatile(&mut (*slot).time_ns, time_ns);
        core::ptr::write_volatile(&mut (*slot).epoch, epoch);
        core::ptr::write_volatile(&mut (*slot).fragment_index, fragment_index);
        core::ptr::write_volatile(&mut (*slot).hook, hook);
        core::ptr::write_volatile(&mut (*slot).hw_ns, hw_ns);
        core::ptr::write_volatile(&mut (*head).written, written.wrapping_add(1));
    }
    true
}

/// Counts and records one parse result. Diagnostics are logged at most once per CPU per kind
/// (when the per-CPU counter becomes 1), never per packet.
#[inline(always)]
fn record<C: EbpfContext>(ctx: &C, parsed: Parsed, hook: u8, hw_ns: u64) {
    match parsed {
        Parsed::Ours {
            sequence,
            epoch,
            fragment_index,
            time_ns,
        } => {
            if !publish(sequence, time_ns, epoch, fragment_index, hook, hw_ns)
                && bump(counter::RING_FULL) == 1
            {
                warn!(
                    ctx,
                    "no stamp ring for this CPU, stamps are being dropped (first at sequence {})",
                    sequence
                );
            }
        }
        Parsed::Other => {
            bump(counter::OTHER);
        }
        Parsed::Malformed { len } => {
            if bump(counter::MALFORMED) == 1 {
                info!(
                    ctx,
                    "first malformed datagram to our port ({} payload bytes)", len
                );
            }
        }
        Parsed::NotLinear => {
            // Only reachable from XDP (tc pulls first): a packet whose UDP length promises more
            // than the frame holds.
            if bump(counter::MALFORMED) == 1 {
                info!(
                    ctx,
                    "first datagram to our port shorter than its UDP length"
                );
            }
        }
    }
}

#[xdp]
pub fn relay_xdp(ctx: XdpContext) -> u32 {
    let parsed = parse(ctx.data(), ctx.data_end());
    record(&ctx, parsed, XDP_HOOK.load(), 0);
    xdp_action::XDP_PASS
}

#[classifier]
pub fn relay_tc(ctx: TcContext) -> i32 {
    let mut parsed = parse(ctx.data(), ctx.data_end());
    if matches!(parsed, Parsed::NotLinear) {
        // The header is in the skb but not in its linear part: make it linear and look again.
        let len = if ctx.len() < MAX_PARSE_LEN {
            ctx.len()
        } else {
            MAX_PARSE_LEN
        };
        parsed = if ctx.pull_data(len).is_ok() {
            match parse(ctx.data(), ctx.data_end()) {
                Parsed::NotLinear => Parsed::Malformed { len: 0 },
                again => again,
            }
        } else {
            Parsed::Malformed { len: 0 }
        };
    }
    // The NIC's receive stamp, when it put one on the packet (0 when not).
    let hw_ns = unsafe { (*ctx.skb.skb).hwtstamp };
    record(&ctx, parsed, hook::TC_INGRESS, hw_ns);
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible, so the program may call every helper the kernel offers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
