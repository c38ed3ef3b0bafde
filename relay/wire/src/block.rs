//! Message blocks: the body of a data datagram is `count` of them, back to back.

use crate::{put, u16_at, u64_at};

/// Size of a block's header; its payload follows.
pub const BLOCK_HEADER_LEN: usize = 20;

/// Byte offsets within a block.
mod at {
    pub const LEN: usize = 0;
    pub const FLAGS: usize = 2;
    pub const RELAY_RX_NS: usize = 4;
    pub const EVENT_TIME_NS: usize = 12;
}

/// One message (or, in a fragment datagram, one fragment of it) and what the relay knows of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Block {
    /// Payload bytes that follow the block header.
    pub len: u16,
    /// [`crate::message_flags`] bits.
    pub flags: u16,
    /// CLOCK_REALTIME ns when the relay's read of the exchange socket returned the bytes that
    /// completed this message.
    pub relay_rx_ns: u64,
    /// The exchange event time `E` in ns; 0 unless [`crate::message_flags::EVENT_TIME`] is set.
    pub event_time_ns: u64,
}

impl Block {
    /// Writes the block header into the first [`BLOCK_HEADER_LEN`] bytes of `out`.
    pub fn encode(&self, out: &mut [u8]) {
        put(out, at::LEN, &self.len.to_le_bytes());
        put(out, at::FLAGS, &self.flags.to_le_bytes());
        put(out, at::RELAY_RX_NS, &self.relay_rx_ns.to_le_bytes());
        put(out, at::EVENT_TIME_NS, &self.event_time_ns.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Block {
        Block {
            len: u16_at(bytes, at::LEN),
            flags: u16_at(bytes, at::FLAGS),
            relay_rx_ns: u64_at(bytes, at::RELAY_RX_NS),
            event_time_ns: u64_at(bytes, at::EVENT_TIME_NS),
        }
    }

    pub fn has_event_time(&self) -> bool {
        self.flags & crate::message_flags::EVENT_TIME != 0
    }
}

/// The blocks of a body, in order, each with its payload.
#[derive(Clone, Debug)]
pub struct Blocks<'a> {
    body: &'a [u8],
    at: usize,
    left: u16,
}

impl<'a> Blocks<'a> {
    pub(crate) fn new(body: &'a [u8], count: u16) -> Blocks<'a> {
        Blocks {
            body,
            at: 0,
            left: count,
        }
    }

    /// The next block, or `None` when `count` blocks were read or the body ends early.
    pub(crate) fn checked_next(&mut self) -> Option<(Block, &'a [u8])> {
        if self.left == 0 {
            return None;
        }
        let head = self.body.get(self.at..self.at + BLOCK_HEADER_LEN)?;
        let block = Block::decode(head);
        let start = self.at + BLOCK_HEADER_LEN;
        let payload = self.body.get(start..start + block.len as usize)?;
        self.at = start + block.len as usize;
        self.left -= 1;
        Some((block, payload))
    }

    /// Every byte of the body was consumed by the blocks read.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.at == self.body.len()
    }
}

impl<'a> Iterator for Blocks<'a> {
    type Item = (Block, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.checked_next()
    }
}
