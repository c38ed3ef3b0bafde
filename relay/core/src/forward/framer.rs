//! Sans-io framing on the relay: exchange messages in, wire headers out.
//!
//! The framer owns the relay's sequence space (epoch, sequence, upstream generation) and the
//! fragmentation rule; the I/O shell only copies header and payload into a send buffer and stamps
//! the send time.

use relay_wire::{flags, fragments, max_payload, Header, Kind, MessageTooLarge, UpstreamGap};

use crate::binance::{event_time, TimeUnit};

/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Fits a 1500-byte MTU: 1500 - 20 (IPv4) - 8 (UDP).
pub const DEFAULT_DATAGRAM_BUDGET: usize = 1472;

/// A datagram budget outside what UDP over IPv4 and our header allow.
#[derive(Debug, thiserror::Error)]
#[error("datagram budget {budget} must be between {} and {MAX_DATAGRAM} bytes", relay_wire::HEADER_LEN + 1)]
pub struct BadBudget {
    pub budget: usize,
}

pub struct Framer {
    epoch: u32,
    generation: u32,
    next_sequence: u64,
    max_payload: usize,
    time_unit: TimeUnit,
    after_reconnect: bool,
}

impl Framer {
    pub fn new(
        epoch: u32,
        datagram_budget: usize,
        time_unit: TimeUnit,
    ) -> Result<Framer, BadBudget> {
        let room = max_payload(datagram_budget);
        if room == 0 || datagram_budget > MAX_DATAGRAM {
            return Err(BadBudget {
                budget: datagram_budget,
            });
        }
        Ok(Framer {
            epoch,
            generation: 0,
            next_sequence: 1,
            max_payload: room,
            time_unit,
            after_reconnect: false,
        })
    }

    /// The sequence number the next message will get (what heartbeats announce).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    fn header(&self, kind: Kind) -> Header {
        Header {
            kind,
            flags: 0,
            epoch: self.epoch,
            upstream_generation: self.generation,
            sequence: self.next_sequence,
            relay_rx_ns: 0,
            relay_tx_ns: 0,
            event_time_ns: 0,
            message_len: 0,
            fragment_offset: 0,
            fragment_index: 0,
            fragment_count: 1,
            payload_len: 0,
        }
    }

    /// A new exchange connection is open. After a reconnect, `gap` says how long the exchange was
    /// out of reach; it is announced so receivers account the hole instead of never seeing it.
    pub fn on_upstream_open(
        &mut self,
        gap: Option<UpstreamGap>,
        emit: &mut impl FnMut(&Header, &[u8]),
    ) {
        self.generation += 1;
        self.after_reconnect = self.generation > 1;
        if let Some(gap) = gap {
            let header = Header {
                payload_len: UpstreamGap::LEN as u16,
                ..self.header(Kind::UpstreamGap)
            };
            emit(&header, &gap.encode());
        }
    }

    /// Frames one exchange message, emitting one datagram per fragment. Returns its sequence.
    pub fn frame_message(
        &mut self,
        payload: &[u8],
        binary: bool,
        relay_rx_ns: u64,
        emit: &mut impl FnMut(&Header, &[u8]),
    ) -> Result<u64, MessageTooLarge> {
        let parts = fragments(payload.len(), self.max_payload)?;
        let mut base = self.header(Kind::Data);
        base.relay_rx_ns = relay_rx_ns;
        base.message_len = payload.len() as u32;
        if binary {
            base.flags |= flags::BINARY;
        }
        if self.after_reconnect {
            base.flags |= flags::AFTER_RECONNECT;
        }
        if let Some(ns) = event_time(payload).and_then(|raw| self.time_unit.to_ns(raw)) {
            base.event_time_ns = ns;
            base.flags |= flags::EVENT_TIME;
            if self.time_unit == TimeUnit::Micros {
                base.flags |= flags::EVENT_TIME_MICROS;
            }
        }
        for part in parts {
            let header = Header {
                fragment_offset: part.offset,
                fragment_index: part.index,
                fragment_count: part.count,
                payload_len: part.len,
                ..base
            };
            let start = part.offset as usize;
            emit(&header, &payload[start..start + part.len as usize]);
        }
        self.after_reconnect = false;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        Ok(sequence)
    }

    /// A heartbeat for an idle link: announces the next sequence so receivers see tail loss.
    pub fn heartbeat(&self, emit: &mut impl FnMut(&Header, &[u8])) {
        emit(&self.header(Kind::Heartbeat), &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(framer: &mut Framer, payload: &[u8]) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        framer
            .frame_message(payload, false, 7, &mut |h, p| out.push((*h, p.to_vec())))
            .unwrap();
        out
    }

    #[test]
    fn sequences_are_contiguous_from_one() {
        let mut framer = Framer::new(9, DEFAULT_DATAGRAM_BUDGET, TimeUnit::Millis).unwrap();
        framer.on_upstream_open(None, &mut |_, _| panic!("no gap on the first connection"));
        for expected in 1..=3 {
            let out = collect(&mut framer, b"{\"u\":1}");
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].0.sequence, expected);
            assert_eq!(out[0].0.epoch, 9);
            assert_eq!(out[0].0.upstream_generation, 1);
        }
        let mut beat = None;
        framer.heartbeat(&mut |h, p| beat = Some((*h, p.len())));
        let (h, len) = beat.unwrap();
        assert_eq!((h.kind, h.sequence, len), (Kind::Heartbeat, 4, 0));
    }

    #[test]
    fn event_time_is_carried_in_ns_with_its_unit() {
        let mut framer = Framer::new(1, DEFAULT_DATAGRAM_BUDGET, TimeUnit::Micros).unwrap();
        let out = collect(
            &mut framer,
            br#"{"e":"trade","E":1700000000123456,"s":"BTCUSDT"}"#,
        );
        let h = out[0].0;
        assert!(h.has_event_time());
        assert_ne!(h.flags & flags::EVENT_TIME_MICROS, 0);
        assert_eq!(h.event_time_ns, 1_700_000_000_123_456_000);
        assert_eq!(h.relay_rx_ns, 7);

        let out = collect(&mut framer, br#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#);
        assert!(
            !out[0].0.has_event_time(),
            "bookTicker has no E; none may be invented"
        );
        assert_eq!(out[0].0.event_time_ns, 0);
    }

    #[test]
    fn large_messages_split_and_decode() {
        let mut framer = Framer::new(1, 200, TimeUnit::Millis).unwrap();
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let out = collect(&mut framer, &payload);
        assert_eq!(out.len(), 1000usize.div_ceil(200 - relay_wire::HEADER_LEN));
        let mut rebuilt = vec![0u8; payload.len()];
        for (header, part) in &out {
            let mut datagram = [0u8; relay_wire::HEADER_LEN].to_vec();
            header.encode((&mut datagram[..]).try_into().unwrap());
            datagram.extend_from_slice(part);
            assert!(datagram.len() <= 200);
            let (decoded, bytes) = Header::decode(&datagram).unwrap();
            assert_eq!(decoded.sequence, 1);
            let at = decoded.fragment_offset as usize;
            rebuilt[at..at + bytes.len()].copy_from_slice(bytes);
        }
        assert_eq!(rebuilt, payload);
    }

    #[test]
    fn reconnect_is_announced_and_flagged() {
        let mut framer = Framer::new(1, DEFAULT_DATAGRAM_BUDGET, TimeUnit::Millis).unwrap();
        framer.on_upstream_open(None, &mut |_, _| {});
        collect(&mut framer, b"a");
        let mut gap = Vec::new();
        let notice = UpstreamGap {
            down_at_ns: 10,
            up_at_ns: 30,
        };
        framer.on_upstream_open(Some(notice), &mut |h, p| gap.push((*h, p.to_vec())));
        assert_eq!(gap.len(), 1);
        assert_eq!(gap[0].0.kind, Kind::UpstreamGap);
        assert_eq!(gap[0].0.upstream_generation, 2);
        assert_eq!(UpstreamGap::decode(&gap[0].1).unwrap(), notice);
        let first = collect(&mut framer, b"b");
        assert_ne!(first[0].0.flags & flags::AFTER_RECONNECT, 0);
        let second = collect(&mut framer, b"c");
        assert_eq!(second[0].0.flags & flags::AFTER_RECONNECT, 0);
        assert_eq!(
            second[0].0.sequence, 3,
            "sequence continues across reconnects"
        );
    }

    #[test]
    fn budget_is_validated() {
        assert!(Framer::new(1, relay_wire::HEADER_LEN, TimeUnit::Millis).is_err());
        assert!(Framer::new(1, MAX_DATAGRAM + 1, TimeUnit::Millis).is_err());
        assert!(Framer::new(1, relay_wire::HEADER_LEN + 1, TimeUnit::Millis).is_ok());
    }
}
