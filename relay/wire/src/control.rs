//! Control bodies: a heartbeat's upstream state, the upstream gap, the ranges of a NAK or an
//! unavailable notice, and a probe reply's stamps.

use crate::{put, u32_at, u64_at, WireError};

/// Body of a [`crate::Kind::UpstreamGap`] datagram: when the relay lost and regained the exchange.
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

    pub fn decode(body: &[u8]) -> Result<UpstreamGap, WireError> {
        if body.len() != Self::LEN {
            return Err(WireError::BadControlPayload);
        }
        Ok(UpstreamGap {
            down_at_ns: u64_at(body, 0),
            up_at_ns: u64_at(body, 8),
        })
    }
}

/// Body of a [`crate::Kind::Heartbeat`]: empty while the relay's exchange connection is up, else
/// the 8-byte CLOCK_REALTIME ns since which it has been down (an outage still open).
pub struct HeartbeatBody;

impl HeartbeatBody {
    /// The body's length while the exchange is out of reach.
    pub const DOWN_LEN: usize = 8;

    pub fn encode(down_since_ns: u64) -> [u8; Self::DOWN_LEN] {
        down_since_ns.to_le_bytes()
    }

    /// `Ok(None)`: the exchange is up; `Ok(Some(ns))`: down since `ns`.
    pub fn decode(body: &[u8]) -> Result<Option<u64>, WireError> {
        match body.len() {
            0 => Ok(None),
            Self::DOWN_LEN => Ok(Some(u64_at(body, 0))),
            _ => Err(WireError::BadControlPayload),
        }
    }
}

/// The first bytes of a [`crate::Kind::ProbeReply`]'s body (the rest, up to the probe's length, is
/// zero padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeReply {
    /// The probe's `relay_tx_ns`, echoed.
    pub probe_tx_ns: u64,
    /// CLOCK_REALTIME ns when the reflector received the probe.
    pub reflector_rx_ns: u64,
    /// Probes of this session (prober address and epoch) the reflector has received, this one
    /// included.
    pub reflector_received: u64,
}

impl ProbeReply {
    pub const LEN: usize = 24;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        put(&mut out, 0, &self.probe_tx_ns.to_le_bytes());
        put(&mut out, 8, &self.reflector_rx_ns.to_le_bytes());
        put(&mut out, 16, &self.reflector_received.to_le_bytes());
        out
    }

    /// The reply's stamps from its body (padding after them is ignored).
    pub fn decode(body: &[u8]) -> Result<ProbeReply, WireError> {
        if body.len() < Self::LEN {
            return Err(WireError::BadControlPayload);
        }
        Ok(ProbeReply {
            probe_tx_ns: u64_at(body, 0),
            reflector_rx_ns: u64_at(body, 8),
            reflector_received: u64_at(body, 16),
        })
    }
}

/// Most ranges one NAK or unavailable datagram carries.
pub const MAX_NAK_RANGES: usize = 64;

/// `len` consecutive sequences from `first` (a NAK's request, or what is no longer kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NakRange {
    pub first: u64,
    pub len: u32,
}

impl NakRange {
    pub const LEN: usize = 12;

    pub fn encode(&self, out: &mut [u8]) {
        put(out, 0, &self.first.to_le_bytes());
        put(out, 8, &self.len.to_le_bytes());
    }

    /// One past the last sequence of the range (`None` if that overflows).
    pub fn end(&self) -> Option<u64> {
        self.first.checked_add(u64::from(self.len))
    }
}

/// The ranges of a validated NAK or unavailable body.
#[derive(Clone, Debug)]
pub struct Ranges<'a> {
    body: &'a [u8],
}

impl<'a> Ranges<'a> {
    /// A body of exactly `count` (1..=[`MAX_NAK_RANGES`]) ranges, each non-empty and not
    /// overflowing.
    pub(crate) fn check(body: &'a [u8], count: u16) -> Result<Ranges<'a>, WireError> {
        let count = count as usize;
        if count == 0 || count > MAX_NAK_RANGES || body.len() != count * NakRange::LEN {
            return Err(WireError::BadControlPayload);
        }
        let ranges = Ranges { body };
        if ranges.clone().any(|r| r.len == 0 || r.end().is_none()) {
            return Err(WireError::BadControlPayload);
        }
        Ok(ranges)
    }

    /// The ranges of a NAK or unavailable datagram's body (validated by [`crate::Header::decode`]).
    pub fn of(body: &'a [u8]) -> Ranges<'a> {
        Ranges { body }
    }
}

impl Iterator for Ranges<'_> {
    type Item = NakRange;

    fn next(&mut self) -> Option<NakRange> {
        let bytes = self.body.get(..NakRange::LEN)?;
        self.body = &self.body[NakRange::LEN..];
        Some(NakRange {
            first: u64_at(bytes, 0),
            len: u32_at(bytes, 8),
        })
    }
}
