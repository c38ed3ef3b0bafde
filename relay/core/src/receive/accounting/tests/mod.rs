//! The accounting fed hand-made and random datagrams: every counter, every drop reason. The
//! builders are here; the tests by topic in the sibling files.

mod fragments;
mod random;
mod sequences;

use super::*;
use crate::rng::Rng;
use relay_wire::HEADER_LEN;

pub(super) const EPOCH: u32 = 0x00e1_0c11;

pub(super) fn encode(header: Header, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        payload_len: payload.len() as u16,
        ..header
    };
    let mut head = [0u8; HEADER_LEN];
    header.encode(&mut head);
    let mut out = head.to_vec();
    out.extend_from_slice(payload);
    out
}

pub(super) fn head(kind: Kind, epoch: u32, generation: u32, sequence: u64) -> Header {
    Header {
        kind,
        flags: 0,
        epoch,
        upstream_generation: generation,
        sequence,
        relay_rx_ns: 1_000 + sequence,
        relay_tx_ns: 2_000 + sequence,
        event_time_ns: 0,
        message_len: 0,
        fragment_offset: 0,
        fragment_index: 0,
        fragment_count: 1,
        payload_len: 0,
    }
}

pub(super) fn payload_of(sequence: u64) -> Vec<u8> {
    format!("{{\"e\":\"trade\",\"t\":{sequence}}}").into_bytes()
}

pub(super) fn data_in(epoch: u32, generation: u32, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        message_len: payload.len() as u32,
        ..head(Kind::Data, epoch, generation, sequence)
    };
    encode(header, payload)
}

pub(super) fn msg(sequence: u64) -> Vec<u8> {
    data_in(EPOCH, 1, sequence, &payload_of(sequence))
}

/// The datagrams of `message` split as the relay does, in index order.
pub(super) fn frags_in(
    epoch: u32,
    sequence: u64,
    message: &[u8],
    max_payload: usize,
) -> Vec<Vec<u8>> {
    relay_wire::fragments(message.len(), max_payload)
        .unwrap()
        .map(|f| {
            let header = Header {
                message_len: message.len() as u32,
                fragment_offset: f.offset,
                fragment_index: f.index,
                fragment_count: f.count,
                relay_tx_ns: 5_000 + u64::from(f.index),
                ..head(Kind::Data, epoch, 1, sequence)
            };
            let start = f.offset as usize;
            encode(header, &message[start..start + usize::from(f.len)])
        })
        .collect()
}

pub(super) fn heartbeat_in(epoch: u32, next: u64) -> Vec<u8> {
    encode(head(Kind::Heartbeat, epoch, 1, next), &[])
}

pub(super) fn gap_in(epoch: u32, generation: u32, down_at_ns: u64, up_at_ns: u64) -> Vec<u8> {
    let gap = UpstreamGap {
        down_at_ns,
        up_at_ns,
    };
    encode(head(Kind::UpstreamGap, epoch, generation, 0), &gap.encode())
}

pub(super) fn bytes_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed | 1);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// An owned view of an [`Event`], so tests can keep it while feeding more.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Got {
    Msg {
        seq: u64,
        reordered: bool,
        fragments: u16,
    },
    Stored,
    Heartbeat(u64),
    Gap(u32),
    Dropped(DropReason),
}

pub(super) fn feed(acc: &mut Accounting, datagram: &[u8]) -> Got {
    match acc.on_datagram(datagram) {
        Event::Message(d) => {
            assert_eq!(d.payload.len(), d.header.message_len as usize);
            Got::Msg {
                seq: d.header.sequence,
                reordered: d.reordered,
                fragments: d.fragments,
            }
        }
        Event::FragmentStored => Got::Stored,
        Event::Heartbeat { next_sequence, .. } => Got::Heartbeat(next_sequence),
        Event::UpstreamGap { generation, .. } => Got::Gap(generation),
        Event::Dropped(reason) => Got::Dropped(reason),
    }
}

pub(super) fn in_order(seq: u64) -> Got {
    Got::Msg {
        seq,
        reordered: false,
        fragments: 1,
    }
}

pub(super) fn late(seq: u64) -> Got {
    Got::Msg {
        seq,
        reordered: true,
        fragments: 1,
    }
}

pub(super) fn accounting() -> Accounting {
    Accounting::new(AccountingConfig::default())
}

pub(super) fn with_window(window: u64) -> Accounting {
    Accounting::new(AccountingConfig {
        window,
        ..AccountingConfig::default()
    })
}

pub(super) fn assert_invariant(acc: &Accounting) {
    let mut delivered = 0;
    for s in acc.epoch_summaries() {
        assert_eq!(s.delivered + s.lost, s.expected, "{s:?}");
        delivered += s.delivered;
    }
    assert_eq!(delivered, acc.counters().messages);
}
