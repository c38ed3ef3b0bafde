//! The relay's UDP wire format, defined once for the relay, the receiver and the eBPF program.
//!
//! Every datagram is a fixed [`HEADER_LEN`]-byte header followed by payload bytes. All integers are
//! little-endian. The layout, the kinds and the validation rules are documented in
//! `relay/PROTOCOL.md`; this crate is `no_std` and allocation-free so the eBPF program can use the
//! offsets and the receiver can decode without copying.
#![no_std]

pub mod stamp;

/// First four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"RLAY";
/// Layout version carried in byte 4. A receiver rejects any other value.
pub const VERSION: u8 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 64;

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
    pub const RELAY_RX_NS: usize = 24;
    pub const RELAY_TX_NS: usize = 32;
    pub const EVENT_TIME_NS: usize = 40;
    pub const MESSAGE_LEN: usize = 48;
    pub const FRAGMENT_OFFSET: usize = 52;
    pub const FRAGMENT_INDEX: usize = 56;
    pub const FRAGMENT_COUNT: usize = 58;
    pub const PAYLOAD_LEN: usize = 60;
    pub const RESERVED: usize = 62;
}

/// Header flag bits. Unknown bits are ignored by receivers of this version.
pub mod flags {
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
    /// One exchange message, or one fragment of it.
    Data = 0,
    /// Sent on an idle link; `sequence` is the next sequence number the relay will use.
    Heartbeat = 1,
    /// The relay's exchange connection was down; the payload is an [`UpstreamGap`].
    UpstreamGap = 2,
}

impl Kind {
    fn from_u8(value: u8) -> Option<Kind> {
        match value {
            0 => Some(Kind::Data),
            1 => Some(Kind::Heartbeat),
            2 => Some(Kind::UpstreamGap),
            _ => None,
        }
    }
}

/// The decoded fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub flags: u16,
    /// Random per relay process; a new epoch starts a new sequence space.
    pub epoch: u32,
    /// How many times the relay has (re)connected to the exchange in this epoch, starting at 1.
    pub upstream_generation: u32,
    /// One per forwarded message, shared by all receivers of the relay, starting at 1.
    pub sequence: u64,
    /// CLOCK_REALTIME ns when the relay read the message's bytes from the exchange socket.
    pub relay_rx_ns: u64,
    /// CLOCK_REALTIME ns just before the relay handed this datagram to the kernel.
    pub relay_tx_ns: u64,
    /// Exchange event time `E` in ns, 0 unless [`flags::EVENT_TIME`] is set.
    pub event_time_ns: u64,
    /// Length of the whole message (all fragments).
    pub message_len: u32,
    /// Where this fragment's payload starts within the message.
    pub fragment_offset: u32,
    pub fragment_index: u16,
    pub fragment_count: u16,
    /// Payload bytes following the header in this datagram.
    pub payload_len: u16,
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
    /// `payload_len` disagrees with the datagram's actual length.
    LengthMismatch,
    /// Fragment fields are inconsistent (index >= count, zero count, payload beyond message end).
    BadFragment,
    /// A control datagram whose payload has the wrong size.
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

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

impl Header {
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
        put(out, offset::RELAY_RX_NS, &self.relay_rx_ns.to_le_bytes());
        put(out, offset::RELAY_TX_NS, &self.relay_tx_ns.to_le_bytes());
        put(
            out,
            offset::EVENT_TIME_NS,
            &self.event_time_ns.to_le_bytes(),
        );
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
        put(out, offset::PAYLOAD_LEN, &self.payload_len.to_le_bytes());
        put(out, offset::RESERVED, &[0, 0]);
    }

    /// Validates a whole datagram and returns its header and payload.
    pub fn decode(datagram: &[u8]) -> Result<(Header, &[u8]), WireError> {
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
            relay_rx_ns: u64_at(datagram, offset::RELAY_RX_NS),
            relay_tx_ns: u64_at(datagram, offset::RELAY_TX_NS),
            event_time_ns: u64_at(datagram, offset::EVENT_TIME_NS),
            message_len: u32_at(datagram, offset::MESSAGE_LEN),
            fragment_offset: u32_at(datagram, offset::FRAGMENT_OFFSET),
            fragment_index: u16_at(datagram, offset::FRAGMENT_INDEX),
            fragment_count: u16_at(datagram, offset::FRAGMENT_COUNT),
            payload_len: u16_at(datagram, offset::PAYLOAD_LEN),
        };
        let payload = &datagram[HEADER_LEN..];
        if payload.len() != header.payload_len as usize {
            return Err(WireError::LengthMismatch);
        }
        match kind {
            Kind::Data => header.check_fragment()?,
            Kind::Heartbeat if !payload.is_empty() => return Err(WireError::BadControlPayload),
            Kind::UpstreamGap if payload.len() != UpstreamGap::LEN => {
                return Err(WireError::BadControlPayload)
            }
            _ => {}
        }
        Ok((header, payload))
    }

    fn check_fragment(&self) -> Result<(), WireError> {
        let end = self.fragment_offset as u64 + self.payload_len as u64;
        let consistent = self.fragment_count > 0
            && self.fragment_index < self.fragment_count
            && end <= self.message_len as u64
            && (self.fragment_count > 1
                || (self.fragment_offset == 0 && end == self.message_len as u64));
        if consistent {
            Ok(())
        } else {
            Err(WireError::BadFragment)
        }
    }

    pub fn has_event_time(&self) -> bool {
        self.flags & flags::EVENT_TIME != 0
    }
}

/// Overwrites the send timestamp of an encoded datagram, so one encoded buffer can be stamped
/// again for each destination just before it is sent.
pub fn stamp_relay_tx_ns(datagram: &mut [u8], relay_tx_ns: u64) {
    put(datagram, offset::RELAY_TX_NS, &relay_tx_ns.to_le_bytes());
}

/// Payload of a [`Kind::UpstreamGap`] datagram: when the relay lost and regained the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamGap {
    /// CLOCK_REALTIME ns when the previous connection ended.
    pub down_at_ns: u64,
    /// CLOCK_REALTIME ns when the new connection delivered its handshake.
    pub up_at_ns: u64,
}

impl UpstreamGap {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        put(&mut out, 0, &self.down_at_ns.to_le_bytes());
        put(&mut out, 8, &self.up_at_ns.to_le_bytes());
        out
    }

    pub fn decode(payload: &[u8]) -> Result<UpstreamGap, WireError> {
        if payload.len() != Self::LEN {
            return Err(WireError::BadControlPayload);
        }
        Ok(UpstreamGap {
            down_at_ns: u64_at(payload, 0),
            up_at_ns: u64_at(payload, 8),
        })
    }
}

/// One fragment of a message: where its bytes are and what the header says about them.
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

/// Largest payload one datagram may carry under a datagram budget (header included in the budget).
pub const fn max_payload(datagram_budget: usize) -> usize {
    let room = datagram_budget.saturating_sub(HEADER_LEN);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            kind: Kind::Data,
            flags: flags::EVENT_TIME | flags::EVENT_TIME_MICROS,
            epoch: 0xdead_beef,
            upstream_generation: 3,
            sequence: 0x0102_0304_0506_0708,
            relay_rx_ns: 1_700_000_000_000_000_001,
            relay_tx_ns: 1_700_000_000_000_000_999,
            event_time_ns: 1_699_999_999_999_000_000,
            message_len: 5,
            fragment_offset: 0,
            fragment_index: 0,
            fragment_count: 1,
            payload_len: 5,
        }
    }

    fn datagram(header: &Header, payload: &[u8]) -> ([u8; 256], usize) {
        let mut buf = [0u8; 256];
        let mut head = [0u8; HEADER_LEN];
        header.encode(&mut head);
        buf[..HEADER_LEN].copy_from_slice(&head);
        buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        (buf, HEADER_LEN + payload.len())
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let header = sample();
        let (buf, len) = datagram(&header, b"hello");
        let (decoded, payload) = Header::decode(&buf[..len]).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(payload, b"hello");
        assert!(decoded.has_event_time());
    }

    #[test]
    fn fields_sit_at_documented_offsets() {
        let (buf, _) = datagram(&sample(), b"hello");
        assert_eq!(&buf[offset::MAGIC..4], b"RLAY");
        assert_eq!(buf[offset::VERSION], VERSION);
        assert_eq!(u64_at(&buf, offset::SEQUENCE), 0x0102_0304_0506_0708);
        assert_eq!(u16_at(&buf, offset::FRAGMENT_INDEX), 0);
        assert_eq!(u16_at(&buf, offset::PAYLOAD_LEN), 5);
    }

    #[test]
    fn restamping_changes_only_send_time() {
        let (mut buf, len) = datagram(&sample(), b"hello");
        stamp_relay_tx_ns(&mut buf[..len], 42);
        let (decoded, _) = Header::decode(&buf[..len]).unwrap();
        assert_eq!(
            decoded,
            Header {
                relay_tx_ns: 42,
                ..sample()
            }
        );
    }

    #[test]
    fn rejects_malformed_datagrams() {
        let (buf, len) = datagram(&sample(), b"hello");
        assert_eq!(Header::decode(&[]), Err(WireError::Foreign));
        assert_eq!(Header::decode(b"GET / HTTP/1.1"), Err(WireError::Foreign));
        assert_eq!(
            Header::decode(&buf[..HEADER_LEN - 1]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Header::decode(&buf[..len - 1]),
            Err(WireError::LengthMismatch)
        );
        assert_eq!(
            Header::decode(&buf[..len + 1]),
            Err(WireError::LengthMismatch)
        );

        let mut bad = buf;
        bad[offset::VERSION] = 2;
        assert_eq!(
            Header::decode(&bad[..len]),
            Err(WireError::UnsupportedVersion(2))
        );
        let mut bad = buf;
        bad[offset::KIND] = 9;
        assert_eq!(Header::decode(&bad[..len]), Err(WireError::UnknownKind(9)));

        for broken in [
            Header {
                fragment_count: 0,
                ..sample()
            },
            Header {
                fragment_index: 1,
                ..sample()
            },
            Header {
                message_len: 4,
                ..sample()
            },
            Header {
                message_len: 9,
                ..sample()
            },
            Header {
                fragment_count: 2,
                fragment_index: 1,
                fragment_offset: 7,
                message_len: 9,
                ..sample()
            },
        ] {
            let (buf, len) = datagram(&broken, b"hello");
            assert_eq!(
                Header::decode(&buf[..len]),
                Err(WireError::BadFragment),
                "{broken:?}"
            );
        }
    }

    #[test]
    fn control_payloads_are_checked() {
        let heartbeat = Header {
            kind: Kind::Heartbeat,
            payload_len: 0,
            message_len: 0,
            ..sample()
        };
        let (buf, len) = datagram(&heartbeat, b"");
        assert!(Header::decode(&buf[..len]).is_ok());
        let (buf, len) = datagram(
            &Header {
                payload_len: 1,
                ..heartbeat
            },
            b"x",
        );
        assert_eq!(
            Header::decode(&buf[..len]),
            Err(WireError::BadControlPayload)
        );

        let gap = UpstreamGap {
            down_at_ns: 10,
            up_at_ns: 20,
        };
        let header = Header {
            kind: Kind::UpstreamGap,
            payload_len: UpstreamGap::LEN as u16,
            ..sample()
        };
        let (buf, len) = datagram(&header, &gap.encode());
        let (_, payload) = Header::decode(&buf[..len]).unwrap();
        assert_eq!(UpstreamGap::decode(payload), Ok(gap));
        assert_eq!(
            UpstreamGap::decode(&payload[1..]),
            Err(WireError::BadControlPayload)
        );
    }

    #[test]
    fn fragments_cover_the_message_exactly_once() {
        for (len, max) in [
            (0usize, 10usize),
            (1, 10),
            (10, 10),
            (11, 10),
            (25, 10),
            (1408 * 3, 1408),
        ] {
            let mut next = 0usize;
            for (seen, f) in fragments(len, max).unwrap().enumerate() {
                assert_eq!(f.offset as usize, next);
                assert!(f.len as usize <= max);
                assert_eq!(f.index as usize, seen);
                next += f.len as usize;
                assert_eq!(f.count as usize, len.div_ceil(max).max(1));
            }
            assert_eq!(next, len);
        }
        assert!(fragments(10, 0).is_err());
        assert!(fragments(u16::MAX as usize + 1, 1).is_err());
        assert_eq!(max_payload(1472), 1408);
        assert_eq!(max_payload(10), 0);
    }
}
