//! Sans-io framing on the relay: exchange messages in, wire datagrams out.
//!
//! The framer owns the relay's sequence space (epoch, sequence, upstream generation), packs
//! messages that are ready together into one datagram up to the budget (each keeps its own
//! sequence: the datagram says the first and the count), and splits a message too large for one
//! datagram into fragments. It never holds a message back to wait for another: the caller calls
//! [`Framer::flush`] when its input is drained, and the pack goes out. Datagrams are built in one
//! reused buffer and handed to `emit` as bytes (send time still 0, seal bytes zero): the I/O shell
//! copies them into its send buffers, stamps the send time and seals them.

use relay_wire::{
    flags, fragments, max_block_payload, message_flags, Block, Header, HeartbeatBody, Kind,
    MessageTooLarge, NakRange, UpstreamGap, Writer, HEADER_LEN, MAX_DATAGRAM,
};

use crate::binance::{event_time, TimeUnit};

/// Fits a 1500-byte MTU: 1500 - 20 (IPv4) - 8 (UDP).
pub const DEFAULT_DATAGRAM_BUDGET: usize = 1472;

/// A datagram budget outside what UDP over IPv4 and our headers allow.
#[derive(Debug, thiserror::Error)]
#[error("datagram budget {budget} must be between {} and {MAX_DATAGRAM} bytes", min_budget(*sealed))]
pub struct BadBudget {
    pub budget: usize,
    pub sealed: bool,
}

/// The smallest budget that carries one payload byte per datagram.
fn min_budget(sealed: bool) -> usize {
    HEADER_LEN + relay_wire::BLOCK_HEADER_LEN + if sealed { relay_wire::SEAL_LEN } else { 0 } + 1
}

pub struct Framer {
    epoch: u32,
    generation: u32,
    next_sequence: u64,
    /// Datagram flags every datagram carries ([`flags::SEALED`] when the shell seals them).
    flags: u16,
    max_block: usize,
    time_unit: TimeUnit,
    after_reconnect: bool,
    /// The datagram being built (`len()` is the budget).
    buf: Vec<u8>,
    /// The header of the pack in `buf`, while one is open.
    pack: Option<Header>,
}

impl Framer {
    /// A framer for `epoch` whose datagrams are at most `datagram_budget` bytes; with `sealed`
    /// each is marked [`flags::SEALED`] and keeps room for the seal the shell adds.
    pub fn new(
        epoch: u32,
        datagram_budget: usize,
        time_unit: TimeUnit,
        sealed: bool,
    ) -> Result<Framer, BadBudget> {
        let max_block = max_block_payload(datagram_budget, sealed);
        if max_block == 0 || datagram_budget > MAX_DATAGRAM {
            return Err(BadBudget {
                budget: datagram_budget,
                sealed,
            });
        }
        Ok(Framer {
            epoch,
            generation: 0,
            next_sequence: 1,
            flags: if sealed { flags::SEALED } else { 0 },
            max_block,
            time_unit,
            after_reconnect: false,
            buf: vec![0; datagram_budget],
            pack: None,
        })
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The sequence number the next message will get (what heartbeats announce).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    fn header(&self, kind: Kind, sequence: u64) -> Header {
        Header {
            flags: self.flags,
            ..Header::new(kind, self.epoch, self.generation, sequence)
        }
    }

    /// A new exchange connection is open. After a reconnect, `gap` says how long the exchange was
    /// out of reach; it is announced so receivers account the hole instead of never seeing it.
    pub fn on_upstream_open(&mut self, gap: Option<UpstreamGap>, emit: &mut impl FnMut(&[u8])) {
        // What was read on the old connection goes out under the old generation.
        self.flush(emit);
        self.generation += 1;
        self.after_reconnect = self.generation > 1;
        if let Some(gap) = gap {
            self.control(Kind::UpstreamGap, &gap.encode(), emit);
        }
    }

    /// Frames one exchange message: into the open pack if it fits there, else a new one (the
    /// full pack goes out first); a message too large for one datagram goes out as fragments at
    /// once. Returns its sequence.
    pub fn frame_message(
        &mut self,
        payload: &[u8],
        binary: bool,
        relay_rx_ns: u64,
        emit: &mut impl FnMut(&[u8]),
    ) -> Result<u64, MessageTooLarge> {
        let block = self.block(payload, binary, relay_rx_ns);
        let sequence = self.next_sequence;
        if payload.len() <= self.max_block {
            if !self.push_to_pack(block, payload) {
                self.flush(emit);
                let pushed = self.push_to_pack(block, payload);
                debug_assert!(pushed, "a message within max_block fits an empty pack");
            }
        } else {
            let parts = fragments(payload.len(), self.max_block)?;
            self.flush(emit);
            for part in parts {
                let header = Header {
                    message_len: payload.len() as u32,
                    fragment_offset: part.offset,
                    fragment_index: part.index,
                    fragment_count: part.count,
                    ..self.header(Kind::Data, sequence)
                };
                let start = part.offset as usize;
                let mut writer = Writer::new(&mut self.buf, header);
                let pushed = writer.push_block(block, &payload[start..start + part.len as usize]);
                debug_assert!(pushed, "a fragment within max_block fits a datagram");
                let len = writer.finish();
                emit(&self.buf[..len]);
            }
        }
        self.after_reconnect = false;
        self.next_sequence += 1;
        Ok(sequence)
    }

    fn block(&self, payload: &[u8], binary: bool, relay_rx_ns: u64) -> Block {
        let mut block = Block {
            len: 0,
            flags: 0,
            relay_rx_ns,
            event_time_ns: 0,
        };
        if binary {
            block.flags |= message_flags::BINARY;
        }
        if self.after_reconnect {
            block.flags |= message_flags::AFTER_RECONNECT;
        }
        if let Some(ns) = event_time(payload).and_then(|raw| self.time_unit.to_ns(raw)) {
            block.event_time_ns = ns;
            block.flags |= message_flags::EVENT_TIME;
            if self.time_unit == TimeUnit::Micros {
                block.flags |= message_flags::EVENT_TIME_MICROS;
            }
        }
        block
    }

    /// Adds a block to the open pack (opening one if none is); false when it does not fit.
    fn push_to_pack(&mut self, block: Block, payload: &[u8]) -> bool {
        let header = match self.pack {
            Some(header) => header,
            None => self.header(Kind::Data, self.next_sequence),
        };
        let mut writer = match self.pack {
            Some(_) => Writer::resume(&mut self.buf, header),
            None => Writer::new(&mut self.buf, header),
        };
        if !writer.push_block(block, payload) {
            return false;
        }
        self.pack = Some(writer.header());
        true
    }

    /// Sends the open pack, if any: the caller's input is drained.
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        if let Some(header) = self.pack.take() {
            let len = Writer::resume(&mut self.buf, header).finish();
            emit(&self.buf[..len]);
        }
    }

    /// A heartbeat for an idle link: announces the next sequence so receivers see tail loss.
    /// With `upstream_down_since_ns`, the heartbeat says the exchange has been out of reach
    /// since then.
    pub fn heartbeat(&mut self, upstream_down_since_ns: Option<u64>, emit: &mut impl FnMut(&[u8])) {
        self.flush(emit);
        match upstream_down_since_ns {
            Some(ns) => self.control(Kind::Heartbeat, &HeartbeatBody::encode(ns), emit),
            None => self.control(Kind::Heartbeat, &[], emit),
        }
    }

    /// Tells a receiver that these sequences are no longer kept (at most
    /// [`relay_wire::MAX_NAK_RANGES`] of them go in one notice).
    pub fn unavailable(&mut self, ranges: &[NakRange], emit: &mut impl FnMut(&[u8])) {
        let Some(lowest) = ranges.iter().map(|r| r.first).min() else {
            return;
        };
        let header = self.header(Kind::Unavailable, lowest);
        let mut writer = Writer::new(&mut self.buf, header);
        for range in ranges {
            if !writer.push_range(*range) {
                break;
            }
        }
        let len = writer.finish();
        emit(&self.buf[..len]);
    }

    fn control(&mut self, kind: Kind, body: &[u8], emit: &mut impl FnMut(&[u8])) {
        let header = self.header(kind, self.next_sequence);
        let mut writer = Writer::new(&mut self.buf, header);
        let pushed = writer.push_body(body);
        debug_assert!(pushed, "control bodies fit the smallest budget");
        let len = writer.finish();
        emit(&self.buf[..len]);
    }
}

#[cfg(test)]
mod tests;
