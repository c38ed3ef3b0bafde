//! Preallocated reassembly slots for fragmented messages, behind [`super::accounting`]. See the
//! accounting module docs for the semantics.

use relay_wire::{Header, WireError};

use super::accounting::DropReason;

/// Bytes each slot's buffer is allocated with up front; a larger message grows it once (and the
/// slot keeps the larger buffer).
const SLOT_PREALLOC: usize = 64 * 1024;
/// Words of the per-fragment bitmap: one bit per possible fragment index (`u16`).
const FRAGMENT_WORDS: usize = (u16::MAX as usize).div_ceil(64);

/// The fragment stride (payload bytes of every fragment but the last) implied by one fragment's
/// header and its block's length `len`, if they fit the layout [`relay_wire::fragments`] produces: fragment `i` starts
/// at `i * stride`, all but the last carry exactly `stride` bytes, and the last carries the
/// `1..=stride` remaining ones. With that layout the fragments cover the message exactly once, so
/// a completed slot never exposes stale bytes. Only for `fragment_count > 1`, after
/// [`Header::decode`] (which checked `index < count` and `offset + len <= message_len`).
pub(crate) fn fragment_stride(h: &Header, len: u16) -> Option<u32> {
    let count = u64::from(h.fragment_count);
    let last = count.checked_sub(1).filter(|&last| last > 0)?;
    let index = u64::from(h.fragment_index);
    let offset = u64::from(h.fragment_offset);
    let len = u64::from(len);
    let message_len = u64::from(h.message_len);
    let stride = if index < last {
        let stride = len;
        let fits = stride > 0
            && offset == index * stride
            && message_len > last * stride
            && message_len <= count * stride;
        fits.then_some(stride)?
    } else {
        if offset % last != 0 {
            return None;
        }
        let stride = offset / last;
        let fits = stride > 0
            && stride <= u64::from(u16::MAX)
            && len >= 1
            && len <= stride
            && offset + len == message_len;
        fits.then_some(stride)?
    };
    u32::try_from(stride).ok()
}

/// What storing one fragment did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    Partial,
    /// Every fragment is in; the message was late (reordered) when its first fragment came.
    Complete {
        reordered: bool,
    },
}

struct Slot {
    in_use: bool,
    epoch: u32,
    sequence: u64,
    message_len: u32,
    count: u16,
    stride: u32,
    received: u32,
    reordered: bool,
    /// Bit `i` set once fragment `i` is stored.
    fragments: Vec<u64>,
    /// `len() >= message_len`; only the first `message_len` bytes belong to the message.
    buf: Vec<u8>,
}

pub(crate) struct Reassembly {
    slots: Vec<Slot>,
    open: usize,
}

impl Reassembly {
    pub(crate) fn new(slots: usize, max_message_len: usize) -> Self {
        let prealloc = SLOT_PREALLOC.min(max_message_len);
        let slots = (0..slots.max(1))
            .map(|_| Slot {
                in_use: false,
                epoch: 0,
                sequence: 0,
                message_len: 0,
                count: 0,
                stride: 0,
                received: 0,
                reordered: false,
                fragments: vec![0; FRAGMENT_WORDS],
                buf: vec![0; prealloc],
            })
            .collect();
        Reassembly { slots, open: 0 }
    }

    pub(crate) fn find(&self, epoch: u32, sequence: u64) -> Option<usize> {
        if self.open == 0 {
            return None;
        }
        self.slots
            .iter()
            .position(|s| s.in_use && s.epoch == epoch && s.sequence == sequence)
    }

    /// Opens a slot for the message of `h` (first fragment seen). When every slot is busy the one
    /// with the lowest sequence is evicted; the second value says so.
    pub(crate) fn open(&mut self, h: &Header, stride: u32, reordered: bool) -> (usize, bool) {
        let (index, evicted) = match self.slots.iter().position(|s| !s.in_use) {
            Some(free) => (free, false),
            None => {
                let lowest = (0..self.slots.len())
                    .min_by_key(|&i| self.slots[i].sequence)
                    .unwrap_or(0);
                (lowest, true)
            }
        };
        if !evicted {
            self.open += 1;
        }
        let slot = &mut self.slots[index];
        slot.in_use = true;
        slot.epoch = h.epoch;
        slot.sequence = h.sequence;
        slot.message_len = h.message_len;
        slot.count = h.fragment_count;
        slot.stride = stride;
        slot.received = 0;
        slot.reordered = reordered;
        slot.fragments[..usize::from(h.fragment_count).div_ceil(64)].fill(0);
        let len = h.message_len as usize;
        if slot.buf.len() < len {
            slot.buf.resize(len, 0);
        }
        (index, evicted)
    }

    /// Stores one fragment (already checked with [`fragment_stride`]) into an open slot.
    pub(crate) fn store(
        &mut self,
        index: usize,
        h: &Header,
        stride: u32,
        payload: &[u8],
    ) -> Result<Stored, DropReason> {
        let slot = &mut self.slots[index];
        if h.message_len != slot.message_len
            || h.fragment_count != slot.count
            || stride != slot.stride
        {
            return Err(DropReason::Malformed(WireError::BadFragment));
        }
        let i = usize::from(h.fragment_index);
        let word = &mut slot.fragments[i / 64];
        let bit = 1u64 << (i % 64);
        if *word & bit != 0 {
            return Err(DropReason::DuplicateFragment);
        }
        let start = h.fragment_offset as usize;
        let Some(target) = slot.buf.get_mut(start..start + payload.len()) else {
            // Unreachable after `fragment_stride` and the checks above; refuse rather than panic.
            return Err(DropReason::Malformed(WireError::BadFragment));
        };
        target.copy_from_slice(payload);
        *word |= bit;
        slot.received += 1;
        if slot.received == u32::from(slot.count) {
            Ok(Stored::Complete {
                reordered: slot.reordered,
            })
        } else {
            Ok(Stored::Partial)
        }
    }

    /// Frees a slot. Its bytes stay readable through [`Self::message`] until it is reopened.
    pub(crate) fn release(&mut self, index: usize) {
        if self.slots[index].in_use {
            self.slots[index].in_use = false;
            self.open -= 1;
        }
    }

    /// The reassembled message of a slot that just completed.
    pub(crate) fn message(&self, index: usize) -> &[u8] {
        let slot = &self.slots[index];
        &slot.buf[..slot.message_len as usize]
    }

    /// Frees every open slot (end of run or of the epoch); returns how many were open, i.e. how
    /// many messages are given up incomplete.
    pub(crate) fn evict_all(&mut self) -> u64 {
        let open = self.open as u64;
        for slot in &mut self.slots {
            slot.in_use = false;
        }
        self.open = 0;
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_wire::Kind;

    /// A fragment's header and its block's length.
    fn frag(index: u16, count: u16, offset: u32, len: u16, message_len: u32) -> (Header, u16) {
        let header = Header {
            message_len,
            fragment_offset: offset,
            fragment_index: index,
            fragment_count: count,
            count: 1,
            ..Header::new(Kind::Data, 1, 1, 5)
        };
        (header, len)
    }

    #[test]
    fn stride_follows_the_wire_layout() {
        for (len, max) in [
            (11usize, 10usize),
            (20, 10),
            (25, 10),
            (1408 * 3 + 1, 1408),
            (2, 1),
        ] {
            for f in relay_wire::fragments(len, max).unwrap() {
                let (h, block_len) = frag(f.index, f.count, f.offset, f.len, len as u32);
                assert_eq!(fragment_stride(&h, block_len), Some(max as u32), "{h:?}");
            }
        }
        for bad in [
            frag(0, 2, 0, 0, 10),          // empty non-last fragment
            frag(0, 2, 0, 4, 10),          // stride 4 cannot reach 10 in two fragments
            frag(0, 3, 0, 4, 8),           // stride 4: 8 bytes need two fragments, not three
            frag(1, 3, 5, 4, 12),          // offset is not index * stride
            frag(2, 3, 7, 3, 10),          // last offset not a multiple of the count - 1
            frag(2, 3, 8, 2, 11),          // last fragment does not end the message
            frag(2, 3, 4, 3, 7),           // last fragment longer than the stride
            frag(1, 2, 0, 5, 5),           // last fragment at offset 0: stride 0
            frag(0, 1, 0, 5, 5),           // single datagrams have no stride
            frag(1, 2, 70_000, 1, 70_001), // stride above a datagram's payload limit
        ] {
            assert_eq!(fragment_stride(&bad.0, bad.1), None, "{bad:?}");
        }
    }

    #[test]
    fn eviction_takes_the_lowest_sequence() {
        let mut r = Reassembly::new(2, 1024);
        let (h, _) = frag(0, 2, 0, 4, 6);
        let (a, evicted) = r.open(&Header { sequence: 9, ..h }, 4, false);
        assert!(!evicted);
        let (b, evicted) = r.open(&Header { sequence: 7, ..h }, 4, false);
        assert!(!evicted);
        let (c, evicted) = r.open(&Header { sequence: 8, ..h }, 4, false);
        assert!(evicted);
        assert_eq!(c, b);
        assert_ne!(a, b);
        assert_eq!(r.find(1, 7), None);
        assert_eq!(r.find(1, 8), Some(c));
        assert_eq!(r.evict_all(), 2);
        assert_eq!(r.find(1, 9), None);
    }
}
