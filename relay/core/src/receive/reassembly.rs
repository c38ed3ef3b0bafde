//! Reassembly slots for fragmented messages, behind [`super::accounting`]. See the accounting
//! module docs for the semantics.
//!
//! Memory follows what arrived, never what a header claims: a slot keeps its fragments' bytes in
//! arrival order (in-order fragments are the message as they stand; others are put in place
//! once all are in), every slot starts with [`SLOT_PREALLOC`] bytes, and the bytes stored across
//! all slots never exceed the budget: a fragment that would pass it evicts the open slots with
//! the lowest sequences first. A slot that grew past its preallocation gives the memory back as
//! soon as its message is delivered or evicted.

use relay_wire::{max_block_payload, Header, WireError, MAX_DATAGRAM};

use super::accounting::DropReason;

/// Bytes each slot's buffer is allocated with up front: fragmented messages up to this size
/// allocate nothing.
pub(crate) const SLOT_PREALLOC: usize = 64 * 1024;
/// Fragment arrivals each slot has room for up front.
const ARRIVALS_PREALLOC: usize = 64;
/// Words of the per-fragment bitmap: one bit per possible fragment index (`u16`).
const FRAGMENT_WORDS: usize = (u16::MAX as usize).div_ceil(64);

/// The fragment stride (payload bytes of every fragment but the last) implied by one fragment's
/// header and its block's length `len`, if they fit the layout [`relay_wire::fragments`] produces: fragment `i` starts
/// at `i * stride`, all but the last carry exactly `stride` bytes, and the last carries the
/// `1..=stride` remaining ones. With that layout the fragments cover the message exactly once, so
/// a completed slot never exposes stale bytes. Only for `fragment_count > 1`, after
/// [`Header::decode`] (which checked `index < count` and `offset + len <= message_len`).
pub(crate) fn fragment_stride(h: &Header, len: u16) -> Option<u32> {
    // No relay cuts fragments larger than a whole datagram's single block.
    let most = max_block_payload(MAX_DATAGRAM, false) as u64;
    let count = u64::from(h.fragment_count);
    let last = count.checked_sub(1).filter(|&last| last > 0)?;
    let index = u64::from(h.fragment_index);
    let offset = u64::from(h.fragment_offset);
    let len = u64::from(len);
    let message_len = u64::from(h.message_len);
    let stride = if index < last {
        let stride = len;
        let fits = stride > 0
            && stride <= most
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
            && stride <= most
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
    reordered: bool,
    /// Bit `i` set once fragment `i` is stored.
    fragments: Vec<u64>,
    /// The fragments' payloads, in arrival order.
    data: Vec<u8>,
    /// (fragment index, where its payload starts in `data`), in arrival order.
    arrivals: Vec<(u16, u32)>,
    /// Every fragment so far came in index order: `data` is the message's start as it stands.
    in_order: bool,
}

impl Slot {
    /// Forgets the message; a buffer grown past the preallocation is given back.
    fn clear(&mut self) {
        self.in_use = false;
        self.data.clear();
        self.data.shrink_to(SLOT_PREALLOC);
        self.arrivals.clear();
        self.arrivals.shrink_to(ARRIVALS_PREALLOC);
        self.in_order = true;
    }
}

pub(crate) struct Reassembly {
    slots: Vec<Slot>,
    open: usize,
    /// Payload bytes held by open slots, at most `budget`.
    stored: usize,
    budget: usize,
    /// Slots evicted to keep within the budget, until [`Reassembly::take_evicted`].
    evicted: u64,
    /// Where a message whose fragments came out of order is put together.
    assembled: Vec<u8>,
    /// The slot whose message is in `assembled`.
    assembled_for: Option<usize>,
}

impl Reassembly {
    /// `slots` messages at once, holding at most `budget` bytes between them (at least one
    /// `max_message_len` message).
    pub(crate) fn new(slots: usize, max_message_len: usize, budget: usize) -> Self {
        let prealloc = SLOT_PREALLOC.min(max_message_len);
        let slots = (0..slots.max(1))
            .map(|_| Slot {
                in_use: false,
                epoch: 0,
                sequence: 0,
                message_len: 0,
                count: 0,
                stride: 0,
                reordered: false,
                fragments: vec![0; FRAGMENT_WORDS],
                data: Vec::with_capacity(prealloc),
                arrivals: Vec::with_capacity(ARRIVALS_PREALLOC),
                in_order: true,
            })
            .collect();
        Reassembly {
            slots,
            open: 0,
            stored: 0,
            budget: budget.max(max_message_len),
            evicted: 0,
            assembled: Vec::with_capacity(prealloc),
            assembled_for: None,
        }
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
            None => (self.lowest_open(None).unwrap_or(0), true),
        };
        if evicted {
            self.free(index);
        }
        self.open += 1;
        if self.assembled_for == Some(index) {
            self.assembled_for = None;
        }
        let slot = &mut self.slots[index];
        slot.clear();
        slot.in_use = true;
        slot.epoch = h.epoch;
        slot.sequence = h.sequence;
        slot.message_len = h.message_len;
        slot.count = h.fragment_count;
        slot.stride = stride;
        slot.reordered = reordered;
        slot.fragments[..usize::from(h.fragment_count).div_ceil(64)].fill(0);
        (index, evicted)
    }

    /// The open slot with the lowest sequence, other than `except`.
    fn lowest_open(&self, except: Option<usize>) -> Option<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].in_use && Some(i) != except)
            .min_by_key(|&i| self.slots[i].sequence)
    }

    /// Gives an open slot up (its bytes leave the budget).
    fn free(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.in_use {
            self.stored -= slot.data.len();
            self.open -= 1;
            slot.clear();
        }
    }

    /// Stores one fragment (already checked with [`fragment_stride`]) into an open slot.
    pub(crate) fn store(
        &mut self,
        index: usize,
        h: &Header,
        stride: u32,
        payload: &[u8],
    ) -> Result<Stored, DropReason> {
        let slot = &self.slots[index];
        if h.message_len != slot.message_len
            || h.fragment_count != slot.count
            || stride != slot.stride
        {
            return Err(DropReason::Malformed(WireError::BadFragment));
        }
        let i = usize::from(h.fragment_index);
        let bit = 1u64 << (i % 64);
        if slot.fragments[i / 64] & bit != 0 {
            return Err(DropReason::DuplicateFragment);
        }
        while self.stored + payload.len() > self.budget {
            let Some(victim) = self.lowest_open(Some(index)) else {
                // Within a single message: the budget holds one of max_message_len.
                return Err(DropReason::Malformed(WireError::BadFragment));
            };
            self.free(victim);
            self.evicted += 1;
        }
        let slot = &mut self.slots[index];
        let start = u32::try_from(slot.data.len()).unwrap_or(u32::MAX);
        slot.data.extend_from_slice(payload);
        slot.in_order &= i == slot.arrivals.len();
        slot.arrivals.push((h.fragment_index, start));
        slot.fragments[i / 64] |= bit;
        self.stored += payload.len();
        if slot.arrivals.len() < usize::from(slot.count) {
            return Ok(Stored::Partial);
        }
        let reordered = slot.reordered;
        if !slot.in_order {
            self.assemble(index);
        }
        Ok(Stored::Complete { reordered })
    }

    /// Puts the fragments of a complete slot that came out of order in place, in `assembled`.
    fn assemble(&mut self, index: usize) {
        let slot = &self.slots[index];
        let (stride, data) = (slot.stride as usize, &slot.data);
        self.assembled.clear();
        self.assembled.resize(slot.message_len as usize, 0);
        for (k, &(fragment, start)) in slot.arrivals.iter().enumerate() {
            let end = slot
                .arrivals
                .get(k + 1)
                .map_or(data.len(), |&(_, next)| next as usize);
            let at = usize::from(fragment) * stride;
            let bytes = &data[start as usize..end];
            // The layout was checked: every fragment fits where its index says.
            if let Some(target) = self.assembled.get_mut(at..at + bytes.len()) {
                target.copy_from_slice(bytes);
            }
        }
        self.assembled_for = Some(index);
    }

    /// Messages in reassembly.
    pub(crate) fn open_messages(&self) -> usize {
        self.open
    }

    /// Slots evicted to keep within the byte budget since the last call.
    pub(crate) fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// The reassembled message of a slot that just completed (before [`Self::release`]).
    pub(crate) fn message(&self, index: usize) -> &[u8] {
        if self.assembled_for == Some(index) {
            return &self.assembled[..];
        }
        let slot = &self.slots[index];
        &slot.data[..slot.data.len().min(slot.message_len as usize)]
    }

    /// Frees a slot whose message was delivered.
    pub(crate) fn release(&mut self, index: usize) {
        self.free(index);
        if self.assembled_for.take().is_some() {
            self.assembled.clear();
            self.assembled.shrink_to(SLOT_PREALLOC);
        }
    }

    /// Frees every open slot (end of run or of the epoch); returns how many were open, i.e. how
    /// many messages are given up incomplete.
    pub(crate) fn evict_all(&mut self) -> u64 {
        let open = self.open as u64;
        for index in 0..self.slots.len() {
            self.free(index);
        }
        open
    }

    /// Payload bytes held by open slots, and bytes allocated for payloads in all.
    #[cfg(test)]
    fn memory(&self) -> (usize, usize) {
        let allocated =
            self.slots.iter().map(|s| s.data.capacity()).sum::<usize>() + self.assembled.capacity();
        (self.stored, allocated)
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
            frag(0, 2, 0, 65_500, 65_501), // a block no datagram could carry whole
        ] {
            assert_eq!(fragment_stride(&bad.0, bad.1), None, "{bad:?}");
        }
    }

    #[test]
    fn eviction_takes_the_lowest_sequence() {
        let mut r = Reassembly::new(2, 1024, 1 << 20);
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

    /// Stores `payload` as fragment `index` of `count` of message `sequence` (stride `stride`).
    fn put(
        r: &mut Reassembly,
        sequence: u64,
        index: u16,
        count: u16,
        stride: u32,
        len: u32,
        payload: &[u8],
    ) -> Result<Stored, DropReason> {
        let (h, _) = frag(
            index,
            count,
            u32::from(index) * stride,
            payload.len() as u16,
            len,
        );
        let h = Header { sequence, ..h };
        let slot = match r.find(1, sequence) {
            Some(slot) => slot,
            None => r.open(&h, stride, false).0,
        };
        r.store(slot, &h, stride, payload)
    }

    #[test]
    fn memory_follows_what_arrived_not_what_headers_claim() {
        // The attack: fragments of 320 bytes, each claiming a 16 MiB message.
        let mut r = Reassembly::new(64, 16 << 20, 64 << 20);
        let (_, before) = r.memory();
        for sequence in 0..64 {
            let stored = put(&mut r, sequence, 3, 52_429, 320, 16 << 20, &[7; 320]);
            assert_eq!(stored, Ok(Stored::Partial));
        }
        assert_eq!(
            r.memory(),
            (64 * 320, before),
            "nothing allocated for the claims"
        );
        assert_eq!(r.evict_all(), 64);
        assert_eq!(r.memory(), (0, before));
    }

    #[test]
    fn the_byte_budget_evicts_the_lowest_sequences_and_grown_buffers_shrink_back() {
        let stride = 60_000;
        let mut r = Reassembly::new(4, 200_000, 200_000);
        let (_, before) = r.memory();
        // Two 180 KB messages cannot be held at once: the older gives way.
        for index in 0..2 {
            assert_eq!(
                put(&mut r, 10, index, 3, stride, 180_000, &[1; 60_000]),
                Ok(Stored::Partial)
            );
        }
        assert_eq!(
            put(&mut r, 11, 0, 3, stride, 180_000, &[2; 60_000]),
            Ok(Stored::Partial)
        );
        assert_eq!(
            put(&mut r, 11, 1, 3, stride, 180_000, &[2; 60_000]),
            Ok(Stored::Partial)
        );
        assert_eq!(r.take_evicted(), 1);
        assert_eq!(r.find(1, 10), None);
        let slot = r.find(1, 11).unwrap();
        assert_eq!(
            put(&mut r, 11, 2, 3, stride, 180_000, &[2; 60_000]),
            Ok(Stored::Complete { reordered: false })
        );
        assert_eq!(r.message(slot), &[2; 180_000][..]);
        r.release(slot);
        assert_eq!(r.memory(), (0, before), "the grown buffer went back");
    }

    #[test]
    fn fragments_in_any_order_make_the_exact_message() {
        let message: Vec<u8> = (0..2_500u32).map(|i| (i * 7 % 251) as u8).collect();
        let stride = 1_000;
        for order in [
            [0u16, 1, 2],
            [2, 1, 0],
            [1, 2, 0],
            [2, 0, 1],
            [1, 0, 2],
            [0, 2, 1],
        ] {
            let mut r = Reassembly::new(1, 4_096, 4_096);
            let mut last = None;
            for index in order {
                let at = usize::from(index) * stride;
                let part = &message[at..(at + stride).min(message.len())];
                last = Some(put(&mut r, 5, index, 3, stride as u32, 2_500, part).unwrap());
            }
            assert_eq!(last, Some(Stored::Complete { reordered: false }));
            assert_eq!(r.message(r.find(1, 5).unwrap()), &message[..], "{order:?}");
        }
    }
}
