//! Building datagrams in place: a [`Writer`] fills a caller's buffer (no allocation), and
//! [`fragments`] says how a message too large for one datagram is split.

use crate::{Block, Header, NakRange, BLOCK_HEADER_LEN, HEADER_LEN, MAX_DATAGRAM, SEAL_LEN};

/// Builds one datagram in a buffer whose length is the datagram budget.
///
/// The header's `count` and `body_len` are filled in by [`Writer::finish`]; when its flags have
/// [`crate::flags::SEALED`], room for the seal is kept and [`Writer::finish`] leaves [`SEAL_LEN`]
/// zero bytes at the end: the sender seals the datagram once its send time is stamped.
pub struct Writer<'b> {
    buf: &'b mut [u8],
    header: Header,
    len: usize,
}

impl<'b> Writer<'b> {
    /// Starts a datagram with `header` in `buf` (its length is the budget, at most
    /// [`MAX_DATAGRAM`] bytes are used).
    pub fn new(buf: &'b mut [u8], header: Header) -> Writer<'b> {
        let budget = buf.len().min(MAX_DATAGRAM);
        Writer {
            buf: &mut buf[..budget],
            header: Header {
                count: 0,
                body_len: 0,
                ..header
            },
            len: HEADER_LEN,
        }
    }

    /// Continues a datagram begun earlier in the same `buf`, whose header so far (with `count`
    /// and `body_len` as [`Writer::header`] returned them) is `header`.
    pub fn resume(buf: &'b mut [u8], header: Header) -> Writer<'b> {
        let len = HEADER_LEN + header.body_len as usize;
        let mut writer = Writer::new(buf, header);
        writer.header.count = header.count;
        writer.len = len.min(writer.buf.len());
        writer
    }

    /// The header as it stands: `count` and `body_len` up to date.
    pub fn header(&self) -> Header {
        Header {
            body_len: (self.len - HEADER_LEN) as u16,
            ..self.header
        }
    }

    fn seal_room(&self) -> usize {
        if self.header.is_sealed() {
            SEAL_LEN
        } else {
            0
        }
    }

    /// Bytes the body can still take.
    fn free(&self) -> usize {
        (self.buf.len().saturating_sub(self.seal_room()))
            .saturating_sub(self.len)
            .min(u16::MAX as usize - (self.len - HEADER_LEN))
    }

    /// Payload bytes one more block could carry.
    pub fn block_room(&self) -> usize {
        self.free()
            .saturating_sub(BLOCK_HEADER_LEN)
            .min(u16::MAX as usize)
    }

    /// Blocks (or ranges) written so far.
    pub fn count(&self) -> u16 {
        self.header.count
    }

    /// Appends a block with `payload` (`block.len` is set from it); false, and nothing written,
    /// when it does not fit.
    pub fn push_block(&mut self, block: Block, payload: &[u8]) -> bool {
        if BLOCK_HEADER_LEN + payload.len() > self.free() || self.header.count == u16::MAX {
            return false;
        }
        let block = Block {
            len: payload.len() as u16,
            ..block
        };
        block.encode(&mut self.buf[self.len..self.len + BLOCK_HEADER_LEN]);
        let start = self.len + BLOCK_HEADER_LEN;
        self.buf[start..start + payload.len()].copy_from_slice(payload);
        self.len = start + payload.len();
        self.header.count += 1;
        true
    }

    /// Appends a NAK range; false when it does not fit.
    pub fn push_range(&mut self, range: NakRange) -> bool {
        if NakRange::LEN > self.free() || self.header.count as usize >= crate::MAX_NAK_RANGES {
            return false;
        }
        range.encode(&mut self.buf[self.len..self.len + NakRange::LEN]);
        self.len += NakRange::LEN;
        self.header.count += 1;
        true
    }

    /// Appends a control body (a heartbeat has none; an upstream gap its 16 bytes); false when
    /// it does not fit.
    pub fn push_body(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.free() {
            return false;
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }

    /// Appends `len` zero bytes (a probe's padding); false when they do not fit.
    pub fn push_zeros(&mut self, len: usize) -> bool {
        if len > self.free() {
            return false;
        }
        self.buf[self.len..self.len + len].fill(0);
        self.len += len;
        true
    }

    /// Writes the header and returns the datagram: `buf[..len]`, seal bytes (zero) included.
    pub fn finish(self) -> usize {
        let seal_room = self.seal_room();
        let header = self.header();
        header.encode(
            (&mut self.buf[..HEADER_LEN])
                .try_into()
                .expect("HEADER_LEN bytes"),
        );
        self.buf[self.len..self.len + seal_room].fill(0);
        self.len + seal_room
    }
}

/// One fragment of a message: where its bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub index: u16,
    pub count: u16,
    pub offset: u32,
    pub len: u16,
}

/// Too many fragments: the message does not fit the datagram budget even when split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageTooLarge;

/// Largest payload one block may carry under a datagram budget (header, block header and, when
/// `sealed`, the seal included in the budget).
pub const fn max_block_payload(datagram_budget: usize, sealed: bool) -> usize {
    let budget = if datagram_budget > MAX_DATAGRAM {
        MAX_DATAGRAM
    } else {
        datagram_budget
    };
    let overhead = HEADER_LEN + BLOCK_HEADER_LEN + if sealed { SEAL_LEN } else { 0 };
    let room = budget.saturating_sub(overhead);
    if room > u16::MAX as usize {
        u16::MAX as usize
    } else {
        room
    }
}

/// Splits a message of `message_len` bytes into fragments of at most `max_payload` bytes.
/// An empty message is one empty fragment.
pub fn fragments(
    message_len: usize,
    max_payload: usize,
) -> Result<impl Iterator<Item = Fragment>, MessageTooLarge> {
    if max_payload == 0 || message_len > u32::MAX as usize {
        return Err(MessageTooLarge);
    }
    let count = message_len.div_ceil(max_payload).max(1);
    if count > u16::MAX as usize {
        return Err(MessageTooLarge);
    }
    Ok((0..count).map(move |index| {
        let offset = index * max_payload;
        let len = (message_len - offset).min(max_payload);
        Fragment {
            index: index as u16,
            count: count as u16,
            offset: offset as u32,
            len: len as u16,
        }
    }))
}
