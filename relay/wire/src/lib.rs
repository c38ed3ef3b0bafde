//! The relay's UDP wire format, version 2, defined once for the relay, the receiver and the eBPF
//! program.
//!
//! A datagram is a fixed [`HEADER_LEN`]-byte [`Header`], a body of `body_len` bytes and, when the
//! header's [`flags::SEALED`] is set, a [`SEAL_LEN`]-byte seal: the body is then encrypted and the
//! whole datagram authenticated with the shared key (relay-core's `seal` module). A data
//! datagram's body is `count` message [`Block`]s (several small messages packed together,
//! MoldUDP64-style, each with its own sequence number: the header's `sequence` + its index), or a
//! single block holding one fragment of a message too large for one datagram. All integers are little-endian. The
//! layout, the kinds and the validation rules are documented in `relay/PROTOCOL.md`; this crate is
//! `no_std` and allocation-free so the eBPF program can use the offsets and the receiver can decode
//! without copying.
#![no_std]

mod block;
mod control;
pub mod stamp;
mod writer;

pub use block::{Block, Blocks, BLOCK_HEADER_LEN};
pub use control::{HeartbeatBody, NakRange, ProbeReply, Ranges, UpstreamGap, MAX_NAK_RANGES};
pub use writer::{fragments, max_block_payload, Fragment, MessageTooLarge, Writer};

/// First four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"RLAY";
/// Layout version carried in byte 4. A receiver rejects any other value.
pub const VERSION: u8 = 2;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 48;
/// Size of the seal that follows the body when [`flags::SEALED`] is set: an 8-byte nonce counter
/// and a 16-byte AES-256-GCM tag.
pub const SEAL_LEN: usize = 24;
/// Largest UDP payload over IPv4: no datagram is longer.
pub const MAX_DATAGRAM: usize = 65_507;

/// Byte offsets of the header fields (shared with the eBPF program, which reads the datagram
/// directly from the packet).
pub mod offset {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 5;
    pub const FLAGS: usize = 6;
    pub const EPOCH: usize = 8;
    pub const UPSTREAM_GENERATION: usize = 12;
    pub const SEQUENCE: usize = 16;
    pub const RELAY_TX_NS: usize = 24;
    pub const MESSAGE_LEN: usize = 32;
    pub const FRAGMENT_OFFSET: usize = 36;
    pub const FRAGMENT_INDEX: usize = 40;
    pub const FRAGMENT_COUNT: usize = 42;
    pub const COUNT: usize = 44;
    pub const BODY_LEN: usize = 46;
}

/// Datagram flag bits (the header's `flags`). Unknown bits are ignored by receivers of this
/// version.
pub mod flags {
    /// The datagram is a retransmission, sent again in answer to a [`crate::Kind::Nak`].
    pub const RETRANSMISSION: u16 = 1 << 0;
    /// The body is encrypted and a [`crate::SEAL_LEN`]-byte seal follows it.
    pub const SEALED: u16 = 1 << 1;
}

/// Message flag bits (a [`crate::Block`]'s `flags`). Unknown bits are ignored.
pub mod message_flags {
    /// `event_time_ns` holds the exchange event time `E`.
    pub const EVENT_TIME: u16 = 1 << 0;
    /// The exchange sent `E` in microseconds (else milliseconds); `event_time_ns` is ns either way.
    pub const EVENT_TIME_MICROS: u16 = 1 << 1;
    /// The WebSocket message was a binary frame (else text).
    pub const BINARY: u16 = 1 << 2;
    /// First data message forwarded after the relay reconnected to the exchange.
    pub const AFTER_RECONNECT: u16 = 1 << 3;
}

/// What a datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `count` packed messages, or one fragment of a message.
    Data = 0,
    /// Sent on an idle link; `sequence` is the next sequence number the relay will use.
    Heartbeat = 1,
    /// The relay's exchange connection was down; the body is an [`UpstreamGap`].
    UpstreamGap = 2,
    /// Receiver -> relay: please send these sequences again; the body is `count` [`NakRange`]s.
    Nak = 3,
    /// Relay -> receiver: these sequences are no longer kept; the body is `count` [`NakRange`]s.
    Unavailable = 4,
    /// Prober -> reflector (`relay probe`): `epoch` is the prober's session, `sequence` the
    /// probe's, `relay_tx_ns` its send time; the body is padding of at least [`ProbeReply::LEN`].
    Probe = 5,
    /// Reflector -> prober: the probe's `epoch` and `sequence`, `relay_tx_ns` the reflector's
    /// send time; the body a [`ProbeReply`], padded to the probe's length.
    ProbeReply = 6,
}

impl Kind {
    fn from_u8(value: u8) -> Option<Kind> {
        match value {
            0 => Some(Kind::Data),
            1 => Some(Kind::Heartbeat),
            2 => Some(Kind::UpstreamGap),
            3 => Some(Kind::Nak),
            4 => Some(Kind::Unavailable),
            5 => Some(Kind::Probe),
            6 => Some(Kind::ProbeReply),
            _ => None,
        }
    }
}

/// The decoded fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// [`flags`] bits.
    pub flags: u16,
    /// Random per relay process; a new epoch starts a new sequence space.
    pub epoch: u32,
    /// How many times the relay has (re)connected to the exchange in this epoch, starting at 1.
    pub upstream_generation: u32,
    /// Data: the first block's sequence (block `i` has `sequence + i`). Heartbeat and upstream
    /// gap: the next sequence the relay will use. Nak and unavailable: the lowest sequence named.
    pub sequence: u64,
    /// CLOCK_REALTIME ns just before the datagram was handed to the kernel.
    pub relay_tx_ns: u64,
    /// A fragment's whole message length; 0 when the datagram is not a fragment.
    pub message_len: u32,
    /// Where a fragment's bytes start within its message; 0 when not a fragment.
    pub fragment_offset: u32,
    /// 0-based; 0 when not a fragment.
    pub fragment_index: u16,
    /// 1 when the datagram is not a fragment.
    pub fragment_count: u16,
    /// Data: blocks in the body (1 for a fragment). Nak and unavailable: ranges. Else 0.
    pub count: u16,
    /// Bytes after the header, before the seal.
    pub body_len: u16,
}

/// Why a datagram was rejected. Every variant is counted by the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the magic, or the magic does not match: not ours.
    Foreign,
    /// Our magic, but shorter than the header.
    Truncated,
    /// Our magic with a layout version this build does not speak.
    UnsupportedVersion(u8),
    /// Unknown `kind` byte.
    UnknownKind(u8),
    /// `body_len` (and the seal) disagree with the datagram's actual length.
    LengthMismatch,
    /// Fragment fields are inconsistent (index >= count, zero count, bytes beyond the message
    /// end, a fragment packed with other blocks).
    BadFragment,
    /// The blocks do not tile the body exactly, or `count` is 0 for data.
    BadBlocks,
    /// A control datagram whose body has the wrong size for its kind and count.
    BadControlPayload,
}

impl WireError {
    /// A stable snake_case name for counters and reports.
    pub const fn name(&self) -> &'static str {
        match self {
            WireError::Foreign => "foreign",
            WireError::Truncated => "truncated",
            WireError::UnsupportedVersion(_) => "unsupported_version",
            WireError::UnknownKind(_) => "unknown_kind",
            WireError::LengthMismatch => "length_mismatch",
            WireError::BadFragment => "bad_fragment",
            WireError::BadBlocks => "bad_blocks",
            WireError::BadControlPayload => "bad_control_payload",
        }
    }
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::UnsupportedVersion(v) => write!(f, "unsupported wire version {v}"),
            WireError::UnknownKind(k) => write!(f, "unknown datagram kind {k}"),
            other => f.write_str(other.name()),
        }
    }
}

pub(crate) fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

pub(crate) fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A validated datagram: its header and its body (blocks or a control payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub header: Header,
    pub body: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// The blocks of a data datagram (empty for other kinds). They were validated by
    /// [`Header::decode`], so iterating cannot fail.
    pub fn blocks(&self) -> Blocks<'a> {
        match self.header.kind {
            Kind::Data => Blocks::new(self.body, self.header.count),
            _ => Blocks::new(&[], 0),
        }
    }
}

impl Header {
    /// A header with every field zero but `kind`, `epoch`, `upstream_generation`, `sequence`
    /// and `fragment_count` 1 (not a fragment).
    pub const fn new(kind: Kind, epoch: u32, upstream_generation: u32, sequence: u64) -> Header {
        Header {
            kind,
            flags: 0,
            epoch,
            upstream_generation,
            sequence,
            relay_tx_ns: 0,
            message_len: 0,
            fragment_offset: 0,
            fragment_index: 0,
            fragment_count: 1,
            count: 0,
            body_len: 0,
        }
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        put(out, offset::MAGIC, &MAGIC);
        out[offset::VERSION] = VERSION;
        out[offset::KIND] = self.kind as u8;
        put(out, offset::FLAGS, &self.flags.to_le_bytes());
        put(out, offset::EPOCH, &self.epoch.to_le_bytes());
        put(
            out,
            offset::UPSTREAM_GENERATION,
            &self.upstream_generation.to_le_bytes(),
        );
        put(out, offset::SEQUENCE, &self.sequence.to_le_bytes());
        put(out, offset::RELAY_TX_NS, &self.relay_tx_ns.to_le_bytes());
        put(out, offset::MESSAGE_LEN, &self.message_len.to_le_bytes());
        put(
            out,
            offset::FRAGMENT_OFFSET,
            &self.fragment_offset.to_le_bytes(),
        );
        put(
            out,
            offset::FRAGMENT_INDEX,
            &self.fragment_index.to_le_bytes(),
        );
        put(
            out,
            offset::FRAGMENT_COUNT,
            &self.fragment_count.to_le_bytes(),
        );
        put(out, offset::COUNT, &self.count.to_le_bytes());
        put(out, offset::BODY_LEN, &self.body_len.to_le_bytes());
    }

    /// Validates what can be checked without opening a seal: magic, version, kind and the length
    /// (header + `body_len` + the seal if [`flags::SEALED`]). The body of a sealed datagram is
    /// still encrypted here; [`Header::decode`] it once opened.
    pub fn peek(datagram: &[u8]) -> Result<Header, WireError> {
        if datagram.len() < MAGIC.len() || datagram[..MAGIC.len()] != MAGIC {
            return Err(WireError::Foreign);
        }
        if datagram.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let version = datagram[offset::VERSION];
        if version != VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let kind_byte = datagram[offset::KIND];
        let kind = Kind::from_u8(kind_byte).ok_or(WireError::UnknownKind(kind_byte))?;
        let header = Header {
            kind,
            flags: u16_at(datagram, offset::FLAGS),
            epoch: u32_at(datagram, offset::EPOCH),
            upstream_generation: u32_at(datagram, offset::UPSTREAM_GENERATION),
            sequence: u64_at(datagram, offset::SEQUENCE),
            relay_tx_ns: u64_at(datagram, offset::RELAY_TX_NS),
            message_len: u32_at(datagram, offset::MESSAGE_LEN),
            fragment_offset: u32_at(datagram, offset::FRAGMENT_OFFSET),
            fragment_index: u16_at(datagram, offset::FRAGMENT_INDEX),
            fragment_count: u16_at(datagram, offset::FRAGMENT_COUNT),
            count: u16_at(datagram, offset::COUNT),
            body_len: u16_at(datagram, offset::BODY_LEN),
        };
        if datagram.len() != header.datagram_len() {
            return Err(WireError::LengthMismatch);
        }
        Ok(header)
    }

    /// Bytes of the whole datagram this header describes (seal included).
    pub fn datagram_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize + if self.is_sealed() { SEAL_LEN } else { 0 }
    }

    /// Validates a whole datagram (see PROTOCOL.md for the rules, in order) and splits it. A
    /// sealed datagram must be opened first: its body is checked as it stands.
    pub fn decode(datagram: &[u8]) -> Result<Datagram<'_>, WireError> {
        let header = Header::peek(datagram)?;
        let body = &datagram[HEADER_LEN..HEADER_LEN + header.body_len as usize];
        match header.kind {
            Kind::Data => header.check_data(body)?,
            Kind::Heartbeat if header.count != 0 => return Err(WireError::BadControlPayload),
            Kind::Heartbeat => {
                HeartbeatBody::decode(body)?;
            }
            Kind::UpstreamGap if body.len() != UpstreamGap::LEN || header.count != 0 => {
                return Err(WireError::BadControlPayload)
            }
            Kind::UpstreamGap => {}
            Kind::Nak | Kind::Unavailable => {
                Ranges::check(body, header.count)?;
            }
            Kind::Probe | Kind::ProbeReply if body.len() < ProbeReply::LEN || header.count != 0 => {
                return Err(WireError::BadControlPayload)
            }
            Kind::Probe | Kind::ProbeReply => {}
        }
        if header.kind != Kind::Data && !header.is_whole() {
            return Err(WireError::BadFragment);
        }
        Ok(Datagram { header, body })
    }

    /// Not a fragment: the fragment fields are all at their neutral values.
    fn is_whole(&self) -> bool {
        self.fragment_count == 1
            && self.fragment_index == 0
            && self.fragment_offset == 0
            && self.message_len == 0
    }

    fn check_data(&self, body: &[u8]) -> Result<(), WireError> {
        if self.count == 0 {
            return Err(WireError::BadBlocks);
        }
        let mut blocks = Blocks::new(body, self.count);
        let mut first_len = 0;
        for i in 0..self.count {
            let (block, _) = blocks.checked_next().ok_or(WireError::BadBlocks)?;
            if i == 0 {
                first_len = block.len;
            }
        }
        if !blocks.is_exhausted() {
            return Err(WireError::BadBlocks);
        }
        if self.is_whole() {
            return Ok(());
        }
        let end = u64::from(self.fragment_offset) + u64::from(first_len);
        let consistent = self.count == 1
            && self.fragment_count > 1
            && self.fragment_index < self.fragment_count
            && end <= u64::from(self.message_len);
        if consistent {
            Ok(())
        } else {
            Err(WireError::BadFragment)
        }
    }

    /// The datagram is one fragment of a larger message.
    pub fn is_fragment(&self) -> bool {
        self.fragment_count > 1
    }

    /// The body is encrypted and a seal follows it ([`flags::SEALED`]).
    pub fn is_sealed(&self) -> bool {
        self.flags & flags::SEALED != 0
    }

    pub fn is_retransmission(&self) -> bool {
        self.flags & flags::RETRANSMISSION != 0
    }
}

/// Marks an encoded datagram as a retransmission (before it is sealed).
pub fn mark_retransmission(datagram: &mut [u8]) {
    let flags = u16_at(datagram, offset::FLAGS) | flags::RETRANSMISSION;
    put(datagram, offset::FLAGS, &flags.to_le_bytes());
}

/// Overwrites the send timestamp of an encoded datagram (before it is sealed).
pub fn stamp_relay_tx_ns(datagram: &mut [u8], relay_tx_ns: u64) {
    put(datagram, offset::RELAY_TX_NS, &relay_tx_ns.to_le_bytes());
}

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;
