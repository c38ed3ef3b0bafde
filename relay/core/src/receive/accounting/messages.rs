//! The messages of a data datagram: each packed block on its own sequence, or one fragment
//! stored until its message is complete (see the accounting module docs, *Sequences* and
//! *Fragments*).

use relay_wire::{Datagram, WireError};

use super::super::reassembly::Stored;
use super::super::sequence::Position;
use super::{Accounting, Delivered, DropReason, Event, OVERSIZE_MEMORY};

impl Accounting {
    /// Counts an oversize message once; returns the drop reason.
    fn oversize(&mut self, epoch: u32, sequence: u64) -> DropReason {
        let key = Some((epoch, sequence));
        if !self.oversize.contains(&key) {
            self.oversize[self.oversize_next] = key;
            self.oversize_next = (self.oversize_next + 1) % OVERSIZE_MEMORY;
            self.counters.oversize_messages += 1;
        }
        DropReason::MessageTooLarge
    }

    /// Places a message's sequence and checks its size; `Err` is the drop (not yet counted).
    fn admit(
        &mut self,
        epoch: u32,
        sequence: u64,
        message_len: usize,
    ) -> Result<Position, DropReason> {
        if self.cutoff.is_some_and(|cutoff| sequence >= cutoff) {
            return Err(DropReason::AfterClose);
        }
        let position = self.sequences.classify(sequence);
        self.sync_lost();
        let position = position?;
        if message_len > self.cfg.max_message_len {
            return Err(self.oversize(epoch, sequence));
        }
        Ok(position)
    }

    /// The messages of a data datagram that is not a fragment, one sequence each.
    pub(super) fn packed(
        &mut self,
        datagram: &Datagram<'_>,
        deliver: &mut impl FnMut(Delivered<'_>),
    ) -> Event {
        let h = &datagram.header;
        let mut delivered = 0u16;
        let mut first_drop = None;
        // Block `i` is `sequence + i`: `account` checked that the last one does not overflow (a
        // `sequence..` range would step past u64::MAX after the last block and panic).
        for (i, (block, payload)) in (0u64..).zip(datagram.blocks()) {
            let sequence = h.sequence + i;
            let position = match self.admit(h.epoch, sequence, payload.len()) {
                Ok(position) => position,
                Err(reason) => {
                    self.count_drop(reason);
                    first_drop.get_or_insert(reason);
                    continue;
                }
            };
            self.sequences.deliver(sequence);
            let reordered = position == Position::Late;
            self.count_delivery(reordered, h.is_retransmission());
            delivered += 1;
            deliver(Delivered {
                epoch: h.epoch,
                sequence,
                upstream_generation: h.upstream_generation,
                block,
                relay_tx_ns: h.relay_tx_ns,
                payload,
                reordered,
                fragments: 1,
                retransmitted: h.is_retransmission(),
            });
        }
        match (delivered, first_drop) {
            (0, Some(reason)) => Event::Dropped(reason),
            (delivered, _) => Event::Messages { delivered },
        }
    }

    fn count_delivery(&mut self, reordered: bool, retransmitted: bool) {
        let c = &mut self.counters;
        c.messages += 1;
        c.reordered += u64::from(reordered);
        c.retransmitted += u64::from(retransmitted);
    }

    /// One fragment (the datagram's one block), stored until its message is complete.
    pub(super) fn fragment(
        &mut self,
        datagram: &Datagram<'_>,
        stride: u32,
        deliver: &mut impl FnMut(Delivered<'_>),
    ) -> Event {
        let header = datagram.header;
        let Some((block, payload)) = datagram.blocks().next() else {
            return self.dropped(DropReason::Malformed(WireError::BadBlocks));
        };
        let position = match self.admit(header.epoch, header.sequence, header.message_len as usize)
        {
            Ok(position) => position,
            // A fragment of a message already delivered: the rest of an answer to a NAK for it
            // (the relay sends every fragment of it), or one the network doubled.
            Err(DropReason::Duplicate) => return self.dropped(DropReason::DuplicateFragment),
            Err(reason) => return self.dropped(reason),
        };
        let slot = match self.reassembly.find(header.epoch, header.sequence) {
            Some(slot) => slot,
            None => {
                let (slot, evicted) =
                    self.reassembly
                        .open(&header, stride, position == Position::Late);
                self.counters.incomplete_messages += u64::from(evicted);
                self.fragment_opened = Some((header.epoch, header.sequence));
                slot
            }
        };
        let stored = self.reassembly.store(slot, &header, stride, payload);
        self.counters.incomplete_messages += self.reassembly.take_evicted();
        let reordered = match stored {
            Ok(Stored::Partial) => {
                self.counters.fragments += 1;
                return Event::FragmentStored;
            }
            Ok(Stored::Complete { reordered }) => reordered,
            Err(reason) => return self.dropped(reason),
        };
        self.sequences.deliver(header.sequence);
        self.counters.fragments += 1;
        self.counters.fragmented_messages += 1;
        self.count_delivery(reordered, header.is_retransmission());
        deliver(Delivered {
            epoch: header.epoch,
            sequence: header.sequence,
            upstream_generation: header.upstream_generation,
            block,
            relay_tx_ns: header.relay_tx_ns,
            payload: self.reassembly.message(slot),
            reordered,
            fragments: header.fragment_count,
            retransmitted: header.is_retransmission(),
        });
        self.reassembly.release(slot);
        Event::Messages { delivered: 1 }
    }
}
