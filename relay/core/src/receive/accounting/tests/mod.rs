//! The accounting fed hand-made and random datagrams: every counter, every drop reason. The
//! builders are here; the tests by topic in the sibling files.

mod fragments;
mod random;
mod sequences;

use super::*;
use std::time::Instant;

use crate::rng::Rng;
use relay_wire::{Writer, BLOCK_HEADER_LEN, HEADER_LEN};

pub(super) const EPOCH: u32 = 0x00e1_0c11;

/// The block the builders give message `sequence`.
pub(super) fn block_of(sequence: u64) -> Block {
    Block {
        relay_rx_ns: sequence.wrapping_add(1_000),
        ..Block::default()
    }
}

/// A datagram with `header`: one block of `payload` for data, `payload` as the body otherwise.
pub(super) fn encode(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN + BLOCK_HEADER_LEN + payload.len()];
    let mut writer = Writer::new(&mut buf, header);
    let pushed = match header.kind {
        Kind::Data => writer.push_block(block_of(header.sequence), payload),
        _ => writer.push_body(payload),
    };
    assert!(pushed);
    let len = writer.finish();
    buf.truncate(len);
    buf
}

pub(super) fn head(kind: Kind, epoch: u32, generation: u32, sequence: u64) -> Header {
    Header {
        relay_tx_ns: sequence.wrapping_add(2_000),
        ..Header::new(kind, epoch, generation, sequence)
    }
}

pub(super) fn payload_of(sequence: u64) -> Vec<u8> {
    format!("{{\"e\":\"trade\",\"t\":{sequence}}}").into_bytes()
}

pub(super) fn data_in(epoch: u32, generation: u32, sequence: u64, payload: &[u8]) -> Vec<u8> {
    encode(head(Kind::Data, epoch, generation, sequence), payload)
}

pub(super) fn msg(sequence: u64) -> Vec<u8> {
    data_in(EPOCH, 1, sequence, &payload_of(sequence))
}

/// One datagram packing the messages `first..first + count`.
pub(super) fn packed(first: u64, count: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 65_507];
    let mut writer = Writer::new(&mut buf, head(Kind::Data, EPOCH, 1, first));
    for sequence in (0..count).map(|i| first.wrapping_add(i)) {
        assert!(writer.push_block(block_of(sequence), &payload_of(sequence)));
    }
    let len = writer.finish();
    buf.truncate(len);
    buf
}

/// The datagrams of `message` split as the relay does, in index order (one plain datagram when
/// it fits one).
pub(super) fn frags_in(
    epoch: u32,
    sequence: u64,
    message: &[u8],
    max_payload: usize,
) -> Vec<Vec<u8>> {
    relay_wire::fragments(message.len(), max_payload)
        .unwrap()
        .map(|f| {
            if f.count == 1 {
                let header = Header {
                    relay_tx_ns: 5_000,
                    ..head(Kind::Data, epoch, 1, sequence)
                };
                return encode(header, message);
            }
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

/// An owned view of an [`Event`] of a datagram of one message, so tests can keep it.
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
    Unavailable,
    Dropped(DropReason),
}

/// A delivered message, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Taken {
    pub sequence: u64,
    pub payload: Vec<u8>,
    pub reordered: bool,
    pub fragments: u16,
    pub relay_tx_ns: u64,
    pub block: Block,
}

/// Feeds one datagram; returns its event and the messages it delivered.
pub(super) fn feed_all(acc: &mut Accounting, datagram: &[u8]) -> (Event, Vec<Taken>) {
    feed_all_at(acc, Instant::now(), datagram)
}

/// [`feed_all`] at `now`.
pub(super) fn feed_all_at(
    acc: &mut Accounting,
    now: Instant,
    datagram: &[u8],
) -> (Event, Vec<Taken>) {
    let mut taken = Vec::new();
    let event = acc.on_datagram(now, datagram, &mut |d| {
        taken.push(Taken {
            sequence: d.sequence,
            payload: d.payload.to_vec(),
            reordered: d.reordered,
            fragments: d.fragments,
            relay_tx_ns: d.relay_tx_ns,
            block: d.block,
        })
    });
    match event {
        Event::Messages { delivered } => assert_eq!(usize::from(delivered), taken.len()),
        _ => assert!(taken.is_empty(), "{event:?} delivered {taken:?}"),
    }
    (event, taken)
}

/// Feeds a datagram of at most one message.
pub(super) fn feed(acc: &mut Accounting, datagram: &[u8]) -> Got {
    feed_at(acc, Instant::now(), datagram)
}

/// [`feed`] at `now`.
pub(super) fn feed_at(acc: &mut Accounting, now: Instant, datagram: &[u8]) -> Got {
    let (event, taken) = feed_all_at(acc, now, datagram);
    match event {
        Event::Messages { .. } => {
            assert_eq!(taken.len(), 1, "feed is for datagrams of one message");
            let d = &taken[0];
            Got::Msg {
                seq: d.sequence,
                reordered: d.reordered,
                fragments: d.fragments,
            }
        }
        Event::FragmentStored => Got::Stored,
        Event::Heartbeat { next_sequence, .. } => Got::Heartbeat(next_sequence),
        Event::UpstreamGap { generation, .. } => Got::Gap(generation),
        Event::Unavailable { .. } => Got::Unavailable,
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
