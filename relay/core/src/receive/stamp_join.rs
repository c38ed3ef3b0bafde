//! Joins the receive stamps of a datagram: the eBPF program's (from its ring, via a
//! [`StampTable`]) with the kernel's (SO_TIMESTAMPING), and picks the first ([`first_stamp`]).
//!
//! The eBPF program writes a stamp before the kernel queues the datagram on the socket, so when a
//! receive call returns, the datagram's stamp is already in the ring: the receive loop drains the
//! ring into this table and takes the stamp of the datagram it holds. The table is a fixed
//! direct-mapped array (no allocation after start); a stamp overwritten before it was taken (the
//! receiver fell far behind) is simply missing, and the message is counted without one.

use relay_wire::stamp::RxStamp;
use relay_wire::{offset, HEADER_LEN, MAGIC};

use crate::record::NicSource;

/// The kernel's stamps of one received datagram (SO_TIMESTAMPING), CLOCK_REALTIME ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStamps {
    /// Taken when the stack first saw the packet.
    pub software: Option<u64>,
    /// The NIC's clock, where the NIC and driver provide one (veth never does).
    pub hardware: Option<u64>,
}

/// What the eBPF program saw of one datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EbpfStamp {
    /// Its stamp, converted from TAI to CLOCK_REALTIME ns.
    pub ns: u64,
    /// The NIC's hardware receive stamp it read from the socket buffer (tc only), if any.
    pub hardware_ns: Option<u64>,
}

/// The first stamp the receiving host put on a datagram: the NIC's clock when it has one (from
/// the socket's SO_TIMESTAMPING, else as the tc program read it), else the earlier of the eBPF
/// stamp and the kernel's software stamp. Which of those two comes first depends on the hook
/// (native XDP runs before the software stamp; generic XDP and tc after it).
pub fn first_stamp(kernel: KernelStamps, ebpf: Option<EbpfStamp>) -> Option<(u64, NicSource)> {
    if let Some(ns) = kernel.hardware.or(ebpf.and_then(|e| e.hardware_ns)) {
        return Some((ns, NicSource::Hardware));
    }
    match (ebpf.map(|e| e.ns), kernel.software) {
        (Some(e), Some(s)) if e <= s => Some((e, NicSource::Ebpf)),
        (_, Some(s)) => Some((s, NicSource::Software)),
        (Some(e), None) => Some((e, NicSource::Ebpf)),
        (None, None) => None,
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    sequence: u64,
    time_ns: u64,
    hw_ns: u64,
    epoch: u32,
    fragment_index: u16,
    hook: u8,
    occupied: bool,
}

/// Where a datagram sits in the relay's sequence space: what its stamp is looked up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramKey {
    pub epoch: u32,
    pub sequence: u64,
    pub fragment_index: u16,
}

impl DatagramKey {
    /// Reads the key straight from a datagram that looks like ours (full validation is the
    /// accounting's job; a bogus key only misses).
    pub fn of(datagram: &[u8]) -> Option<DatagramKey> {
        if datagram.len() < HEADER_LEN || datagram[..4] != MAGIC {
            return None;
        }
        let u64_at =
            |at: usize| u64::from_le_bytes(datagram[at..at + 8].try_into().expect("8 bytes"));
        Some(DatagramKey {
            epoch: u32::from_le_bytes(
                datagram[offset::EPOCH..offset::EPOCH + 4]
                    .try_into()
                    .expect("4 bytes"),
            ),
            sequence: u64_at(offset::SEQUENCE),
            fragment_index: u16::from_le_bytes([
                datagram[offset::FRAGMENT_INDEX],
                datagram[offset::FRAGMENT_INDEX + 1],
            ]),
        })
    }
}

/// A stamp found for a datagram: CLOCK_TAI ns, the hook that took it, and the NIC's hardware
/// stamp when the program found one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundStamp {
    pub tai_ns: u64,
    pub hook: u8,
    pub hardware_ns: Option<u64>,
}

pub struct StampTable {
    slots: Vec<Slot>,
    mask: usize,
}

impl StampTable {
    /// A table of `capacity` slots, rounded up to a power of two.
    pub fn new(capacity: usize) -> StampTable {
        let size = capacity.max(1).next_power_of_two();
        StampTable {
            slots: vec![Slot::default(); size],
            mask: size - 1,
        }
    }

    fn index(&self, sequence: u64, fragment_index: u16) -> usize {
        // Consecutive sequences land in consecutive slots; fragments of one message spread out.
        (sequence.wrapping_add((fragment_index as u64).wrapping_mul(0x9e37_79b9)) as usize)
            & self.mask
    }

    pub fn insert(&mut self, stamp: &RxStamp) {
        let at = self.index(stamp.sequence, stamp.fragment_index);
        self.slots[at] = Slot {
            sequence: stamp.sequence,
            time_ns: stamp.time_ns,
            hw_ns: stamp.hw_ns,
            epoch: stamp.epoch,
            fragment_index: stamp.fragment_index,
            hook: stamp.hook,
            occupied: true,
        };
    }

    /// Takes the stamp of `key` out of the table, if it is there.
    pub fn take(&mut self, key: DatagramKey) -> Option<FoundStamp> {
        let at = self.index(key.sequence, key.fragment_index);
        let slot = &mut self.slots[at];
        let hit = slot.occupied
            && slot.sequence == key.sequence
            && slot.epoch == key.epoch
            && slot.fragment_index == key.fragment_index;
        if !hit {
            return None;
        }
        slot.occupied = false;
        Some(FoundStamp {
            tai_ns: slot.time_ns,
            hook: slot.hook,
            hardware_ns: (slot.hw_ns != 0).then_some(slot.hw_ns),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_wire::stamp::hook;
    use relay_wire::{Header, Kind};

    #[test]
    fn the_first_stamp_wins_and_hardware_beats_all() {
        let kernel = |software, hardware| KernelStamps { software, hardware };
        let ebpf = |ns| {
            Some(EbpfStamp {
                ns,
                hardware_ns: None,
            })
        };
        assert_eq!(
            first_stamp(kernel(Some(10), Some(5)), ebpf(1)),
            Some((5, NicSource::Hardware))
        );
        // The tc program's hardware stamp, when the socket's is missing.
        let with_hw = Some(EbpfStamp {
            ns: 9,
            hardware_ns: Some(4),
        });
        assert_eq!(
            first_stamp(kernel(Some(10), None), with_hw),
            Some((4, NicSource::Hardware))
        );
        assert_eq!(
            first_stamp(kernel(Some(10), Some(5)), with_hw),
            Some((5, NicSource::Hardware)),
            "the socket's own hardware stamp first"
        );
        assert_eq!(
            first_stamp(kernel(Some(10), None), ebpf(9)),
            Some((9, NicSource::Ebpf))
        );
        assert_eq!(
            first_stamp(kernel(Some(10), None), ebpf(11)),
            Some((10, NicSource::Software))
        );
        assert_eq!(
            first_stamp(kernel(None, None), ebpf(11)),
            Some((11, NicSource::Ebpf))
        );
        assert_eq!(
            first_stamp(kernel(Some(10), None), None),
            Some((10, NicSource::Software))
        );
        assert_eq!(first_stamp(kernel(None, None), None), None);
    }

    fn stamp(sequence: u64, fragment_index: u16, time_ns: u64) -> RxStamp {
        RxStamp {
            sequence,
            time_ns,
            epoch: 5,
            fragment_index,
            hook: hook::XDP_NATIVE,
            _pad: 0,
            hw_ns: 0,
        }
    }

    fn key(sequence: u64, fragment_index: u16) -> DatagramKey {
        DatagramKey {
            epoch: 5,
            sequence,
            fragment_index,
        }
    }

    #[test]
    fn stamps_are_found_once_by_their_exact_key() {
        let mut table = StampTable::new(1000);
        for seq in 1..=1024 {
            table.insert(&stamp(seq, 0, seq * 10));
        }
        table.insert(&RxStamp {
            hw_ns: 66,
            hook: hook::TC_INGRESS,
            ..stamp(7, 1, 71)
        });
        assert_eq!(
            table.take(key(7, 1)),
            Some(FoundStamp {
                tai_ns: 71,
                hook: hook::TC_INGRESS,
                hardware_ns: Some(66),
            })
        );
        assert_eq!(
            table.take(key(7, 0)),
            Some(FoundStamp {
                tai_ns: 70,
                hook: hook::XDP_NATIVE,
                hardware_ns: None,
            })
        );
        assert_eq!(table.take(key(7, 0)), None, "taken once");
        assert_eq!(
            table.take(DatagramKey {
                epoch: 6,
                ..key(8, 0)
            }),
            None,
            "other epoch"
        );
        assert_eq!(table.take(key(2000, 0)), None, "never stamped");
    }

    #[test]
    fn an_overwritten_stamp_is_missing_not_wrong() {
        let mut table = StampTable::new(16);
        table.insert(&stamp(1, 0, 10));
        table.insert(&stamp(17, 0, 170));
        assert_eq!(table.take(key(1, 0)), None);
        assert_eq!(table.take(key(17, 0)).map(|s| s.tai_ns), Some(170));
    }

    #[test]
    fn keys_are_read_from_the_header_offsets() {
        let header = Header {
            message_len: 10,
            fragment_index: 3,
            fragment_count: 4,
            ..Header::new(Kind::Data, 5, 1, 99)
        };
        let mut datagram = [0u8; HEADER_LEN];
        header.encode(&mut datagram);
        assert_eq!(DatagramKey::of(&datagram), Some(key(99, 3)));
        assert_eq!(DatagramKey::of(&datagram[..HEADER_LEN - 1]), None);
        assert_eq!(
            DatagramKey::of(b"not ours at all, but long enough to hold a header ............."),
            None
        );
    }
}
