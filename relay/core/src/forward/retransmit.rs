//! The relay's retransmit ring: every data datagram it sent, kept for a while so a receiver that
//! missed some can ask for them again (a NAK), bounded by bytes and by age.
//!
//! Datagrams are stored in fixed-size slots of the datagram budget (every datagram the framer
//! makes fits one), preallocated at start: storing copies bytes and never allocates. The oldest
//! slot is overwritten when the ring is full, and a datagram older than the age bound is never
//! sent again (it is reported unavailable instead). Sequences grow with every datagram stored, so
//! a lookup is a binary search.
//!
//! "Preallocated" means written once at start, too: zeroed memory from the allocator is mapped on
//! first write, so the ring's first pass would take a page fault every 4 KiB on the hot path
//! (copying 1472-byte datagrams into a fresh 8 MiB `calloc` on these VMs: 3.2-3.6 ms for the
//! pass, the slowest copy 84-89 µs).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use relay_wire::{Header, Kind};

/// What one stored datagram covers.
#[derive(Clone, Copy, Debug)]
struct Meta {
    first: u64,
    /// Messages it carries (1 for a fragment).
    count: u16,
    at: Instant,
    len: u16,
}

impl Meta {
    fn end(&self) -> u64 {
        self.first.saturating_add(u64::from(self.count))
    }
}

/// The ring (see the module docs).
pub struct RetransmitRing {
    slot_len: usize,
    slots: usize,
    bytes: Vec<u8>,
    /// Oldest first; entry `i` lives in slot `(oldest_slot + i) % slots`.
    meta: VecDeque<Meta>,
    oldest_slot: usize,
    max_age: Duration,
}

impl RetransmitRing {
    /// Room for `capacity_bytes` of datagrams of at most `datagram_budget` bytes each (at least
    /// one), none kept longer than `max_age`; every page of it written now (see the module docs).
    pub fn new(
        capacity_bytes: usize,
        datagram_budget: usize,
        max_age: Duration,
        now: Instant,
    ) -> RetransmitRing {
        let slot_len = datagram_budget.max(1);
        let slots = (capacity_bytes / slot_len).max(1);
        let mut bytes = vec![0; slots * slot_len];
        // black_box: the allocator's zeroes are not known here, so the writes are not elided.
        std::hint::black_box(&mut bytes[..]).fill(0);
        let mut meta = VecDeque::with_capacity(slots);
        let blank = Meta {
            first: 0,
            count: 0,
            at: now,
            len: 0,
        };
        meta.extend(std::iter::repeat_n(blank, slots));
        meta.clear();
        RetransmitRing {
            slot_len,
            slots,
            bytes,
            meta,
            oldest_slot: 0,
            max_age,
        }
    }

    /// Datagrams the ring can hold.
    pub fn capacity(&self) -> usize {
        self.slots
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Keeps a copy of a data datagram sent at `now` (other kinds, and datagrams longer than a
    /// slot, are not kept).
    pub fn store(&mut self, now: Instant, datagram: &[u8]) {
        let Ok(decoded) = Header::decode(datagram) else {
            return;
        };
        let h = decoded.header;
        if h.kind != Kind::Data || datagram.len() > self.slot_len {
            return;
        }
        if self.meta.len() == self.slots {
            self.meta.pop_front();
            self.oldest_slot = (self.oldest_slot + 1) % self.slots;
        }
        let slot = (self.oldest_slot + self.meta.len()) % self.slots;
        let at = slot * self.slot_len;
        self.bytes[at..at + datagram.len()].copy_from_slice(datagram);
        self.meta.push_back(Meta {
            first: h.sequence,
            count: h.count,
            at: now,
            len: datagram.len() as u16,
        });
    }

    /// Hands every kept datagram carrying a sequence of `first..end` to `found` (which returns
    /// false to stop), oldest first, if it is younger than the age bound at `now`. Returns the
    /// sequences of the range that no kept datagram covers, as `first..missing_end` (the ring only
    /// ever loses its oldest, so they are a prefix): empty when the whole range was found.
    pub fn lookup(
        &self,
        now: Instant,
        first: u64,
        end: u64,
        found: &mut impl FnMut(&[u8]) -> bool,
    ) -> (u64, u64) {
        let start = self.meta.partition_point(|m| m.end() <= first);
        let mut covered_from = end;
        let mut i = start;
        while let Some(m) = self.meta.get(i) {
            if m.first >= end {
                break;
            }
            if now.saturating_duration_since(m.at) <= self.max_age {
                covered_from = covered_from.min(m.first.max(first));
                let slot = (self.oldest_slot + i) % self.slots;
                let at = slot * self.slot_len;
                if !found(&self.bytes[at..at + usize::from(m.len)]) {
                    break;
                }
            }
            i += 1;
        }
        (first, covered_from.max(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_wire::{Block, Writer};

    fn datagram(first: u64, count: u16) -> Vec<u8> {
        let mut buf = vec![0u8; 1472];
        let mut w = Writer::new(&mut buf, Header::new(Kind::Data, 1, 1, first));
        for _ in 0..count {
            assert!(w.push_block(Block::default(), b"payload"));
        }
        let len = w.finish();
        buf.truncate(len);
        buf
    }

    fn firsts(ring: &RetransmitRing, now: Instant, first: u64, end: u64) -> (Vec<u64>, (u64, u64)) {
        let mut got = Vec::new();
        let missing = ring.lookup(now, first, end, &mut |d| {
            got.push(Header::decode(d).unwrap().header.sequence);
            true
        });
        (got, missing)
    }

    #[test]
    fn finds_what_it_keeps_and_says_what_it_lost() {
        let t0 = Instant::now();
        let mut ring = RetransmitRing::new(1472 * 4, 1472, Duration::from_secs(5), t0);
        assert_eq!(ring.capacity(), 4);
        // Sequences 1-3, 4-5, 6, 7-10, 11: five datagrams, the first one overwritten.
        for (first, count) in [(1, 3), (4, 2), (6, 1), (7, 4), (11, 1)] {
            ring.store(t0, &datagram(first, count));
        }
        assert_eq!(ring.len(), 4);
        assert_eq!(firsts(&ring, t0, 5, 8), (vec![4, 6, 7], (5, 5)));
        assert_eq!(firsts(&ring, t0, 11, 12), (vec![11], (11, 11)));
        assert_eq!(
            firsts(&ring, t0, 2, 5),
            (vec![4], (2, 4)),
            "1-3 were overwritten"
        );
        assert_eq!(
            firsts(&ring, t0, 12, 20),
            (vec![], (12, 20)),
            "never kept (the forwarder clamps requests to what it sent)"
        );
        // Too old to send again.
        let later = t0 + Duration::from_secs(6);
        assert_eq!(firsts(&ring, later, 4, 8), (vec![], (4, 8)));
        // Control datagrams are not kept.
        let mut buf = vec![0u8; 100];
        let len = Writer::new(&mut buf, Header::new(Kind::Heartbeat, 1, 1, 12)).finish();
        ring.store(t0, &buf[..len]);
        assert_eq!(ring.len(), 4);
    }

    #[test]
    fn the_caller_may_stop_early() {
        let t0 = Instant::now();
        let mut ring = RetransmitRing::new(1472 * 8, 1472, Duration::from_secs(5), t0);
        for first in 1..=5 {
            ring.store(t0, &datagram(first, 1));
        }
        let mut taken = 0;
        ring.lookup(t0, 1, 6, &mut |_| {
            taken += 1;
            taken < 2
        });
        assert_eq!(taken, 2);
    }
}
