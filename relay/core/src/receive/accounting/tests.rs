//! The accounting fed hand-made and random datagrams: every counter, every drop reason.

use super::*;
use crate::rng::Rng;
use relay_wire::HEADER_LEN;

const EPOCH: u32 = 0x00e1_0c11;

fn encode(header: Header, payload: &[u8]) -> Vec<u8> {
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

fn head(kind: Kind, epoch: u32, generation: u32, sequence: u64) -> Header {
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

fn payload_of(sequence: u64) -> Vec<u8> {
    format!("{{\"e\":\"trade\",\"t\":{sequence}}}").into_bytes()
}

fn data_in(epoch: u32, generation: u32, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        message_len: payload.len() as u32,
        ..head(Kind::Data, epoch, generation, sequence)
    };
    encode(header, payload)
}

fn msg(sequence: u64) -> Vec<u8> {
    data_in(EPOCH, 1, sequence, &payload_of(sequence))
}

/// The datagrams of `message` split as the relay does, in index order.
fn frags_in(epoch: u32, sequence: u64, message: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
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

fn heartbeat_in(epoch: u32, next: u64) -> Vec<u8> {
    encode(head(Kind::Heartbeat, epoch, 1, next), &[])
}

fn gap_in(epoch: u32, generation: u32, down_at_ns: u64, up_at_ns: u64) -> Vec<u8> {
    let gap = UpstreamGap {
        down_at_ns,
        up_at_ns,
    };
    encode(head(Kind::UpstreamGap, epoch, generation, 0), &gap.encode())
}

fn bytes_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed | 1);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// An owned view of an [`Event`], so tests can keep it while feeding more.
#[derive(Debug, PartialEq, Eq)]
enum Got {
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

fn feed(acc: &mut Accounting, datagram: &[u8]) -> Got {
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

fn in_order(seq: u64) -> Got {
    Got::Msg {
        seq,
        reordered: false,
        fragments: 1,
    }
}

fn late(seq: u64) -> Got {
    Got::Msg {
        seq,
        reordered: true,
        fragments: 1,
    }
}

fn accounting() -> Accounting {
    Accounting::new(AccountingConfig::default())
}

fn with_window(window: u64) -> Accounting {
    Accounting::new(AccountingConfig {
        window,
        ..AccountingConfig::default()
    })
}

fn assert_invariant(acc: &Accounting) {
    let mut delivered = 0;
    for s in acc.epoch_summaries() {
        assert_eq!(s.delivered + s.lost, s.expected, "{s:?}");
        delivered += s.delivered;
    }
    assert_eq!(delivered, acc.counters().messages);
}

#[test]
fn in_order_stream() {
    let mut acc = accounting();
    for seq in 1000..1100 {
        let datagram = msg(seq);
        match acc.on_datagram(&datagram) {
            Event::Message(d) => {
                assert_eq!(d.payload, &payload_of(seq)[..]);
                assert_eq!(d.header.sequence, seq);
                assert_eq!(d.header.relay_tx_ns, 2_000 + seq);
                assert!(!d.reordered);
                assert_eq!(d.fragments, 1);
            }
            other => panic!("{other:?}"),
        }
    }
    acc.finish();
    let c = acc.counters();
    assert_eq!(
        (c.datagrams, c.messages, c.lost, c.reordered, c.epochs),
        (100, 100, 0, 0, 1)
    );
    let summary: Vec<_> = acc.epoch_summaries().collect();
    assert_eq!(
        summary,
        [EpochSummary {
            epoch: EPOCH,
            base: Some(1000),
            expected: 100,
            delivered: 100,
            lost: 0
        }]
    );
}

#[test]
fn loss_in_the_middle() {
    let mut acc = accounting();
    for seq in (0..100).filter(|s| !(50..53).contains(s)) {
        assert_eq!(feed(&mut acc, &msg(seq)), in_order(seq));
    }
    // Missing, not lost yet: they may still arrive.
    assert_eq!(acc.counters().lost, 0);
    acc.finish();
    assert_eq!(acc.counters().lost, 3);
    assert_eq!(acc.counters().messages, 97);
    assert_invariant(&acc);
}

#[test]
fn loss_counted_when_it_leaves_the_window() {
    let mut acc = with_window(64);
    for seq in (0..200).filter(|&s| s != 10) {
        feed(&mut acc, &msg(seq));
        // After 73 the window is 10..74; after 74 it is 11..75 and 10 is given up.
        assert_eq!(acc.counters().lost, u64::from(seq >= 74), "after {seq}");
    }
    assert_eq!(feed(&mut acc, &msg(10)), Got::Dropped(DropReason::TooOld));
    acc.finish();
    assert_eq!(acc.counters().lost, 1);
    assert_invariant(&acc);
}

#[test]
fn tail_loss_detected_via_heartbeat_at_finish() {
    let mut acc = accounting();
    for seq in 0..10 {
        feed(&mut acc, &msg(seq));
    }
    assert_eq!(feed(&mut acc, &heartbeat_in(EPOCH, 15)), Got::Heartbeat(15));
    assert_eq!(acc.counters().lost, 0);
    // 12 was declared sent by the heartbeat: it arrives late.
    assert_eq!(feed(&mut acc, &msg(12)), late(12));
    // An older heartbeat does not move anything back.
    assert_eq!(feed(&mut acc, &heartbeat_in(EPOCH, 3)), Got::Heartbeat(3));
    acc.finish();
    let c = acc.counters();
    assert_eq!(
        (c.messages, c.lost, c.heartbeats, c.reordered),
        (11, 4, 2, 1)
    );
    assert_eq!(acc.epoch_summaries().next().unwrap().expected, 15);
    assert_invariant(&acc);
    // finish is idempotent.
    acc.finish();
    assert_eq!(acc.counters().lost, 4);
}

#[test]
fn reorder_within_window_is_not_loss() {
    let mut acc = accounting();
    assert_eq!(feed(&mut acc, &msg(0)), in_order(0));
    assert_eq!(feed(&mut acc, &msg(1)), in_order(1));
    assert_eq!(feed(&mut acc, &msg(3)), in_order(3));
    assert_eq!(feed(&mut acc, &msg(4)), in_order(4));
    assert_eq!(feed(&mut acc, &msg(2)), late(2));
    acc.finish();
    let c = acc.counters();
    assert_eq!((c.messages, c.reordered, c.lost), (5, 1, 0));
    assert_invariant(&acc);
}

#[test]
fn duplicates_including_of_a_reordered_one() {
    let mut acc = accounting();
    feed(&mut acc, &msg(0));
    assert_eq!(feed(&mut acc, &msg(0)), Got::Dropped(DropReason::Duplicate));
    feed(&mut acc, &msg(2));
    assert_eq!(feed(&mut acc, &msg(1)), late(1));
    assert_eq!(feed(&mut acc, &msg(1)), Got::Dropped(DropReason::Duplicate));
    assert_eq!(feed(&mut acc, &msg(2)), Got::Dropped(DropReason::Duplicate));
    acc.finish();
    let c = acc.counters();
    assert_eq!(
        (c.messages, c.duplicates, c.reordered, c.lost),
        (3, 3, 1, 0)
    );
    assert_invariant(&acc);
}

#[test]
fn too_old() {
    let mut acc = with_window(64);
    feed(&mut acc, &msg(0));
    feed(&mut acc, &msg(100));
    // The window is now 37..=100; 1..=36 were given up when it moved.
    assert_eq!(acc.counters().lost, 36);
    assert_eq!(feed(&mut acc, &msg(30)), Got::Dropped(DropReason::TooOld));
    assert_eq!(feed(&mut acc, &msg(36)), Got::Dropped(DropReason::TooOld));
    assert_eq!(feed(&mut acc, &msg(37)), late(37));
    acc.finish();
    let c = acc.counters();
    assert_eq!((c.too_old, c.messages, c.lost), (2, 3, 98));
    assert_invariant(&acc);
    assert_eq!(
        AccountingConfig {
            window: 100,
            ..Default::default()
        }
        .effective()
        .window,
        128
    );
    assert_eq!(with_window(1).config().window, 64);
}

#[test]
fn before_start() {
    let mut acc = accounting();
    assert_eq!(feed(&mut acc, &msg(100)), in_order(100));
    assert_eq!(
        feed(&mut acc, &msg(99)),
        Got::Dropped(DropReason::BeforeStart)
    );
    assert_eq!(
        feed(&mut acc, &msg(0)),
        Got::Dropped(DropReason::BeforeStart)
    );
    assert_eq!(
        feed(&mut acc, &msg(100)),
        Got::Dropped(DropReason::Duplicate)
    );
    acc.finish();
    let c = acc.counters();
    assert_eq!((c.before_start, c.lost, c.messages), (2, 0, 1));
    assert_invariant(&acc);

    // A heartbeat first sets the base to its next sequence.
    let mut acc = accounting();
    assert_eq!(feed(&mut acc, &heartbeat_in(EPOCH, 50)), Got::Heartbeat(50));
    assert_eq!(
        feed(&mut acc, &msg(49)),
        Got::Dropped(DropReason::BeforeStart)
    );
    assert_eq!(feed(&mut acc, &msg(50)), in_order(50));
    acc.finish();
    assert_eq!(acc.epoch_summaries().next().unwrap().base, Some(50));
    assert_invariant(&acc);
}

#[test]
fn epoch_change_and_stale_epoch() {
    let (a, b, c) = (0xa, 0xb, 0xc);
    let mut acc = accounting();
    for seq in [0, 1, 3] {
        feed(&mut acc, &data_in(a, 1, seq, b"x"));
    }
    assert_eq!(acc.counters().lost, 0);
    assert_eq!(feed(&mut acc, &data_in(b, 1, 7, b"y")), in_order(7));
    assert_eq!(acc.counters().lost, 1, "2 of epoch a is lost");
    assert_eq!(acc.counters().epochs, 2);
    assert_eq!(
        feed(&mut acc, &data_in(a, 1, 2, b"x")),
        Got::Dropped(DropReason::StaleEpoch)
    );
    assert_eq!(feed(&mut acc, &data_in(b, 1, 8, b"y")), in_order(8));
    assert_eq!(feed(&mut acc, &heartbeat_in(c, 4)), Got::Heartbeat(4));
    assert_eq!(
        feed(&mut acc, &data_in(b, 1, 9, b"y")),
        Got::Dropped(DropReason::StaleEpoch)
    );
    assert_eq!(
        feed(&mut acc, &heartbeat_in(a, 9)),
        Got::Dropped(DropReason::StaleEpoch)
    );
    assert_eq!(
        feed(&mut acc, &gap_in(b, 2, 1, 2)),
        Got::Dropped(DropReason::StaleEpoch)
    );
    assert_eq!(feed(&mut acc, &data_in(c, 1, 4, b"z")), in_order(4));
    acc.finish();
    let counters = acc.counters();
    assert_eq!(
        (
            counters.epochs,
            counters.stale_epoch,
            counters.lost,
            counters.messages
        ),
        (3, 4, 1, 6)
    );
    let summaries: Vec<_> = acc.epoch_summaries().collect();
    assert_eq!(
        summaries,
        [
            EpochSummary {
                epoch: a,
                base: Some(0),
                expected: 4,
                delivered: 3,
                lost: 1
            },
            EpochSummary {
                epoch: b,
                base: Some(7),
                expected: 2,
                delivered: 2,
                lost: 0
            },
            EpochSummary {
                epoch: c,
                base: Some(4),
                expected: 1,
                delivered: 1,
                lost: 0
            },
        ]
    );
    assert_invariant(&acc);
}

#[test]
fn fragmented_message_reassembled_from_shuffled_fragments() {
    let mut acc = accounting();
    let message = bytes_pattern(5_000, 7);
    let frags = frags_in(EPOCH, 1, &message, 1_000);
    assert_eq!(frags.len(), 5);
    feed(&mut acc, &msg(0));
    let order = [3, 0, 4, 2, 1];
    for &i in &order[..4] {
        assert_eq!(feed(&mut acc, &frags[i]), Got::Stored);
    }
    // A single message in between is not disturbed.
    assert_eq!(feed(&mut acc, &msg(2)), in_order(2));
    match acc.on_datagram(&frags[order[4]]) {
        Event::Message(d) => {
            assert_eq!(d.payload, &message[..]);
            assert_eq!(d.fragments, 5);
            // Its first fragment came right after 0: in order, even though 2 completed first.
            assert!(!d.reordered);
            let h = d.header;
            assert_eq!(
                (
                    h.sequence,
                    h.fragment_index,
                    h.fragment_count,
                    h.fragment_offset,
                    h.payload_len,
                    h.message_len
                ),
                (1, 0, 5, 0, 0, 5_000)
            );
            // The completing datagram's send stamp.
            assert_eq!(h.relay_tx_ns, 5_000 + order[4] as u64);
        }
        other => panic!("{other:?}"),
    }
    // A fragmented message whose first fragment comes after a later sequence is reordered.
    let late_message = bytes_pattern(2_500, 8);
    let frags = frags_in(EPOCH, 3, &late_message, 1_000);
    assert_eq!(feed(&mut acc, &msg(4)), in_order(4));
    assert_eq!(feed(&mut acc, &frags[2]), Got::Stored);
    assert_eq!(feed(&mut acc, &frags[0]), Got::Stored);
    assert_eq!(
        feed(&mut acc, &frags[1]),
        Got::Msg {
            seq: 3,
            reordered: true,
            fragments: 3
        }
    );
    acc.finish();
    let c = acc.counters();
    assert_eq!(
        (
            c.messages,
            c.fragmented_messages,
            c.fragments,
            c.reordered,
            c.lost
        ),
        (5, 2, 8, 1, 0)
    );
    assert_eq!(c.incomplete_messages, 0);
    assert_invariant(&acc);
}

#[test]
fn missing_fragment_loses_the_message_and_evicts_the_slot() {
    let mut acc = accounting();
    let message = bytes_pattern(2_500, 9);
    let frags = frags_in(EPOCH, 0, &message, 1_000);
    assert_eq!(feed(&mut acc, &frags[0]), Got::Stored);
    assert_eq!(feed(&mut acc, &frags[2]), Got::Stored);
    for seq in 1..5 {
        assert_eq!(feed(&mut acc, &msg(seq)), in_order(seq));
    }
    acc.finish();
    let c = acc.counters();
    assert_eq!(
        (
            c.messages,
            c.lost,
            c.incomplete_messages,
            c.fragments,
            c.fragmented_messages
        ),
        (4, 1, 1, 2, 0)
    );
    assert_invariant(&acc);
    // The slot is gone: the missing fragment now finds the sequence given up.
    assert_eq!(
        feed(&mut acc, &frags[1]),
        Got::Dropped(DropReason::Duplicate)
    );
}

#[test]
fn full_slots_evict_the_lowest_sequence() {
    let mut acc = Accounting::new(AccountingConfig {
        reassembly_slots: 2,
        ..AccountingConfig::default()
    });
    let messages: Vec<Vec<u8>> = (0..3).map(|seq| bytes_pattern(15, seq + 1)).collect();
    let frags: Vec<Vec<Vec<u8>>> = messages
        .iter()
        .enumerate()
        .map(|(seq, m)| frags_in(EPOCH, seq as u64, m, 10))
        .collect();
    assert_eq!(feed(&mut acc, &frags[0][0]), Got::Stored);
    assert_eq!(feed(&mut acc, &frags[1][0]), Got::Stored);
    assert_eq!(acc.counters().incomplete_messages, 0);
    assert_eq!(feed(&mut acc, &frags[2][0]), Got::Stored);
    assert_eq!(acc.counters().incomplete_messages, 1, "sequence 0 evicted");
    assert_eq!(
        feed(&mut acc, &frags[1][1]),
        Got::Msg {
            seq: 1,
            reordered: false,
            fragments: 2
        }
    );
    // Sequence 0 starts over in a new slot and can never complete: no partial delivery.
    assert_eq!(feed(&mut acc, &frags[0][1]), Got::Stored);
    acc.finish();
    let c = acc.counters();
    assert_eq!((c.messages, c.lost, c.incomplete_messages), (1, 2, 3));
    assert_invariant(&acc);
}

#[test]
fn duplicate_fragments() {
    let mut acc = accounting();
    let message = bytes_pattern(25, 3);
    let frags = frags_in(EPOCH, 0, &message, 10);
    assert_eq!(feed(&mut acc, &frags[1]), Got::Stored);
    assert_eq!(
        feed(&mut acc, &frags[1]),
        Got::Dropped(DropReason::DuplicateFragment)
    );
    assert_eq!(feed(&mut acc, &frags[0]), Got::Stored);
    assert_eq!(
        feed(&mut acc, &frags[2]),
        Got::Msg {
            seq: 0,
            reordered: false,
            fragments: 3
        }
    );
    // After delivery, a fragment of the same sequence is a duplicate and opens no slot.
    assert_eq!(
        feed(&mut acc, &frags[0]),
        Got::Dropped(DropReason::Duplicate)
    );
    acc.finish();
    let c = acc.counters();
    assert_eq!(
        (
            c.duplicate_fragments,
            c.duplicates,
            c.fragments,
            c.incomplete_messages
        ),
        (1, 1, 3, 0)
    );
    assert_invariant(&acc);
}

#[test]
fn inconsistent_fragment_fields_are_malformed() {
    let mut acc = accounting();
    let message = bytes_pattern(25, 4);
    let frags = frags_in(EPOCH, 0, &message, 10);
    assert_eq!(feed(&mut acc, &frags[0]), Got::Stored);
    let base = Header::decode(&frags[1]).unwrap().0;
    let bad = DropReason::Malformed(WireError::BadFragment);
    // Each fits the layout on its own but disagrees with the first fragment of the message.
    let other_len = Header {
        message_len: 26,
        ..base
    };
    assert_eq!(
        feed(&mut acc, &encode(other_len, &[0; 10])),
        Got::Dropped(bad)
    );
    let other_count = Header {
        fragment_count: 4,
        message_len: 35,
        ..base
    };
    assert_eq!(
        feed(&mut acc, &encode(other_count, &[0; 10])),
        Got::Dropped(bad)
    );
    let other_stride = Header {
        fragment_offset: 9,
        ..base
    };
    assert_eq!(
        feed(&mut acc, &encode(other_stride, &[0; 9])),
        Got::Dropped(bad)
    );
    // Fields that do not fit the layout at all, even from a new epoch, change nothing.
    let gap_in_layout = Header {
        fragment_offset: 11,
        epoch: 77,
        ..base
    };
    assert_eq!(
        feed(&mut acc, &encode(gap_in_layout, &[0; 10])),
        Got::Dropped(bad)
    );
    assert_eq!(acc.counters().epochs, 1);
    assert_eq!(acc.counters().malformed.bad_fragment, 4);
    // The genuine fragments still complete the message, byte-exact.
    assert_eq!(feed(&mut acc, &frags[1]), Got::Stored);
    match acc.on_datagram(&frags[2]) {
        Event::Message(d) => assert_eq!(d.payload, &message[..]),
        other => panic!("{other:?}"),
    }
    assert_eq!(acc.counters().malformed.total(), 4);
}

#[test]
fn oversize_messages_are_dropped_once_and_lost() {
    let mut acc = Accounting::new(AccountingConfig {
        max_message_len: 100,
        ..AccountingConfig::default()
    });
    assert_eq!(feed(&mut acc, &msg(0)), in_order(0));
    let big = bytes_pattern(200, 5);
    let single = data_in(EPOCH, 1, 1, &big);
    assert_eq!(
        feed(&mut acc, &single),
        Got::Dropped(DropReason::MessageTooLarge)
    );
    assert_eq!(
        feed(&mut acc, &single),
        Got::Dropped(DropReason::MessageTooLarge)
    );
    let bigger = bytes_pattern(300, 6);
    for frag in frags_in(EPOCH, 2, &bigger, 100) {
        assert_eq!(
            feed(&mut acc, &frag),
            Got::Dropped(DropReason::MessageTooLarge)
        );
    }
    assert_eq!(feed(&mut acc, &msg(3)), in_order(3));
    acc.finish();
    let c = acc.counters();
    assert_eq!(
        (c.oversize_messages, c.lost, c.messages, c.fragments),
        (2, 2, 2, 0)
    );
    assert_invariant(&acc);
}

#[test]
fn upstream_gaps_are_deduplicated_and_generations_counted() {
    let mut acc = accounting();
    feed(&mut acc, &data_in(EPOCH, 1, 0, b"a"));
    assert_eq!(acc.counters().upstream_generation_changes, 0);
    assert_eq!(feed(&mut acc, &gap_in(EPOCH, 2, 100, 350)), Got::Gap(2));
    assert_eq!(
        feed(&mut acc, &gap_in(EPOCH, 2, 100, 350)),
        Got::Dropped(DropReason::Duplicate)
    );
    assert_eq!(acc.counters().upstream_generation_changes, 1);
    feed(&mut acc, &data_in(EPOCH, 2, 1, b"b"));
    // Generations 3 and 4 happened; their gap datagrams were lost, the header shows it.
    feed(&mut acc, &data_in(EPOCH, 4, 2, b"c"));
    // An older header (reordered) does not count anything.
    feed(&mut acc, &data_in(EPOCH, 3, 3, b"d"));
    assert_eq!(acc.counters().upstream_generation_changes, 3);
    // A gap whose clocks went backwards adds 0 time but still counts.
    assert_eq!(feed(&mut acc, &gap_in(EPOCH, 4, 500, 400)), Got::Gap(4));
    let c = acc.counters();
    assert_eq!(
        (c.upstream_gaps, c.upstream_gap_total_ns, c.duplicates),
        (2, 250, 1)
    );
    // A new epoch starts its generation from whatever it shows, and gaps are keyed per epoch.
    feed(&mut acc, &data_in(EPOCH + 1, 1, 0, b"e"));
    assert_eq!(
        feed(&mut acc, &gap_in(EPOCH + 1, 2, 1_000, 2_000)),
        Got::Gap(2)
    );
    let c = acc.counters();
    assert_eq!(
        (
            c.upstream_gaps,
            c.upstream_gap_total_ns,
            c.upstream_generation_changes
        ),
        (3, 1_250, 4)
    );
    // Gap datagrams are not messages.
    assert_eq!(c.messages, 5);
}

/// Random permutation, drops and duplicates of single-datagram messages.
#[test]
fn random_permutation_drops_and_duplicates_keep_the_books() {
    const N: u64 = 10_000;
    for seed in [1u64, 2, 3, 0xfeed] {
        let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut sent = Vec::new();
        let mut survivors = 1u64;
        let mut copies_extra = 0u64;
        for seq in 1..N {
            let copies = if rng.chance(10) {
                0
            } else if rng.chance(5) {
                2
            } else {
                1
            };
            survivors += u64::from(copies > 0);
            copies_extra += u64::from(copies > 1);
            sent.extend(std::iter::repeat_n(seq, copies));
        }
        rng.shuffle(&mut sent);
        // Sequence 0 first, so the base is 0 and nothing is before the start.
        sent.insert(0, 0);

        let mut acc = accounting();
        let mut seen = vec![false; N as usize];
        let mut highest = 0u64;
        let mut expect_reordered = 0u64;
        for &seq in &sent {
            let got = feed(&mut acc, &msg(seq));
            if seen[seq as usize] {
                assert_eq!(got, Got::Dropped(DropReason::Duplicate));
            } else {
                let reordered = seq < highest;
                expect_reordered += u64::from(reordered);
                assert_eq!(
                    got,
                    Got::Msg {
                        seq,
                        reordered,
                        fragments: 1
                    },
                    "seed {seed}"
                );
            }
            seen[seq as usize] = true;
            highest = highest.max(seq + 1);
        }
        feed(&mut acc, &heartbeat_in(EPOCH, N));
        acc.finish();
        let c = acc.counters();
        assert_eq!(c.messages, survivors, "seed {seed}");
        assert_eq!(c.lost, N - survivors, "seed {seed}");
        assert_eq!(c.duplicates, copies_extra, "seed {seed}");
        assert_eq!(c.reordered, expect_reordered, "seed {seed}");
        assert_eq!(c.messages + c.lost, N);
        assert_invariant(&acc);
    }
}

/// Random drops, duplicates and bounded local reordering of fragmented and single messages.
#[test]
fn random_fragments_keep_the_books() {
    const N: u64 = 3_000;
    const DISPLACEMENT: u64 = 16;
    for seed in [11u64, 12, 13] {
        let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let messages: Vec<Vec<u8>> = (0..N)
            .map(|seq| bytes_pattern(1 + rng.below(400) as usize, seq + seed))
            .collect();
        // (sort key, sequence, fragment datagram)
        let mut sent: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        let (mut complete, mut partial, mut extra) = (0u64, 0u64, 0u64);
        let mut position = 0u64;
        for (seq, message) in messages.iter().enumerate() {
            let frags = frags_in(EPOCH, seq as u64, message, 100);
            let mut arrived = 0;
            for frag in &frags {
                // Sequence 0's first fragment always arrives first, to fix the base.
                let copies = if position == 0 {
                    1
                } else if rng.chance(3) {
                    0
                } else if rng.chance(3) {
                    2
                } else {
                    1
                };
                arrived += usize::from(copies > 0);
                extra += u64::from(copies > 1);
                for _ in 0..copies {
                    let key = if position == 0 {
                        0
                    } else {
                        position + 1 + rng.below(DISPLACEMENT)
                    };
                    sent.push((key, seq as u64, frag.clone()));
                }
                position += 1;
            }
            if arrived == frags.len() {
                complete += 1;
            } else if arrived > 0 {
                partial += 1;
            }
        }
        sent.sort_by_key(|(key, _, _)| *key);

        let mut acc = accounting();
        let mut delivered = vec![false; N as usize];
        for (_, seq, datagram) in &sent {
            if let Event::Message(d) = acc.on_datagram(datagram) {
                assert_eq!(d.header.sequence, *seq);
                assert_eq!(
                    d.payload,
                    &messages[*seq as usize][..],
                    "seed {seed} seq {seq}"
                );
                assert!(!delivered[*seq as usize]);
                delivered[*seq as usize] = true;
            }
        }
        feed(&mut acc, &heartbeat_in(EPOCH, N));
        acc.finish();
        let c = acc.counters();
        assert_eq!(c.messages, complete, "seed {seed}");
        assert_eq!(c.lost, N - complete, "seed {seed}");
        assert_eq!(c.incomplete_messages, partial, "seed {seed}");
        assert_eq!(c.duplicates + c.duplicate_fragments, extra, "seed {seed}");
        assert!(
            c.fragmented_messages > 0 && c.reordered > 0 && partial > 0,
            "{c:?}"
        );
        assert_eq!(c.malformed.total() + c.too_old + c.before_start, 0);
        assert_invariant(&acc);
    }
}

/// A small window with wide reordering: late arrivals below the window are too old, and the
/// books still balance.
#[test]
fn random_reordering_beyond_a_small_window() {
    const N: u64 = 10_000;
    let mut rng = Rng::new(0x5eed);
    let mut sent: Vec<(u64, u64)> = (0..N)
        .filter(|_| !rng.chance(5))
        .map(|seq| (seq, seq))
        .collect();
    for (key, _) in sent.iter_mut().skip(1) {
        *key += rng.below(200);
    }
    sent.sort();
    let survivors = sent.len() as u64;
    let mut acc = with_window(64);
    for &(_, seq) in &sent {
        feed(&mut acc, &msg(seq));
    }
    feed(&mut acc, &heartbeat_in(EPOCH, N));
    acc.finish();
    let c = acc.counters();
    assert!(c.too_old > 0 && c.reordered > 0, "{c:?}");
    assert_eq!(c.messages + c.too_old, survivors);
    assert_eq!(c.messages + c.lost, N);
    assert_invariant(&acc);
}

/// Garbage of every sort never panics, and every datagram lands in exactly one counter.
#[test]
fn garbage_never_panics_and_is_always_counted() {
    let mut rng = Rng::new(0xbad_5eed);
    let mut valid: Vec<Vec<u8>> = Vec::new();
    for epoch in [EPOCH, EPOCH + 1] {
        for seq in 0..300u64 {
            match seq % 10 {
                0 => valid.extend(frags_in(epoch, seq, &bytes_pattern(250, seq), 100)),
                1 => valid.push(heartbeat_in(epoch, seq + 1)),
                2 => valid.push(gap_in(epoch, 1 + (seq % 7) as u32, seq, seq * 3)),
                3 => valid.push(data_in(epoch, 1, seq, &bytes_pattern(5_000, seq))),
                _ => valid.push(msg(seq)),
            }
        }
    }
    let cfg = AccountingConfig {
        window: 256,
        reassembly_slots: 4,
        max_message_len: 4_000,
    };
    let mut acc = Accounting::new(cfg);
    let mut oversize_drops = 0u64;
    let mut buf = Vec::new();
    for round in 0..44_000 {
        // A flipped epoch bit starts a new epoch and makes the real one stale from then on, and
        // a flipped high sequence bit moves the window far ahead (both are believed), so those
        // fields are only flipped in the last rounds.
        let flip_any = round >= 40_000;
        buf.clear();
        // The stream in order (wrapping around: the first epoch goes stale), sometimes a
        // nearby datagram instead (reordered, duplicated).
        let jitter = if rng.chance(80) {
            0
        } else {
            rng.below(40) as usize
        };
        let pick = (round + valid.len() + jitter - 20.min(jitter)) % valid.len();
        let source = &valid[pick];
        match rng.below(5) {
            0 => buf.extend_from_slice(source),
            1 => buf.extend_from_slice(&source[..rng.below(source.len() as u64 + 1) as usize]),
            2 => {
                buf.extend_from_slice(source);
                for _ in 0..1 + rng.below(3) {
                    let bit = rng.below(buf.len() as u64 * 8);
                    let byte = (bit / 8) as usize;
                    if flip_any || !(8..24).contains(&byte) {
                        buf[byte] ^= 1 << (bit % 8);
                    }
                }
            }
            3 => {
                // Our magic and version, then noise: reaches the deeper checks.
                buf.extend_from_slice(b"RLAY\x01");
                buf.push(rng.below(4) as u8);
                for _ in 0..rng.below(200) {
                    buf.push(rng.next_u64() as u8);
                }
            }
            _ => {
                for _ in 0..rng.below(200) {
                    buf.push(rng.next_u64() as u8);
                }
            }
        }
        let before = acc.counters().clone();
        let event = feed(&mut acc, &buf);
        let after = acc.counters().clone();
        assert_eq!(after.datagrams, before.datagrams + 1);
        let grew = |f: fn(&Counters) -> u64| f(&after) - f(&before);
        match event {
            Got::Msg { fragments, .. } => {
                assert_eq!(grew(|c| c.messages), 1);
                assert_eq!(grew(|c| c.fragmented_messages), u64::from(fragments > 1));
            }
            Got::Stored => assert_eq!(grew(|c| c.fragments), 1),
            Got::Heartbeat(_) => assert_eq!(grew(|c| c.heartbeats), 1),
            Got::Gap(_) => assert_eq!(grew(|c| c.upstream_gaps), 1),
            Got::Dropped(DropReason::Malformed(e)) => {
                assert_eq!(grew(|c| c.malformed.total()), 1);
                let name = serde_json::to_value(&after.malformed).unwrap()[e.name()]
                    .as_u64()
                    .unwrap();
                let was = serde_json::to_value(&before.malformed).unwrap()[e.name()]
                    .as_u64()
                    .unwrap();
                assert_eq!(name, was + 1, "{e:?}");
            }
            Got::Dropped(DropReason::Duplicate) => assert_eq!(grew(|c| c.duplicates), 1),
            Got::Dropped(DropReason::DuplicateFragment) => {
                assert_eq!(grew(|c| c.duplicate_fragments), 1)
            }
            Got::Dropped(DropReason::TooOld) => assert_eq!(grew(|c| c.too_old), 1),
            Got::Dropped(DropReason::BeforeStart) => assert_eq!(grew(|c| c.before_start), 1),
            Got::Dropped(DropReason::StaleEpoch) => assert_eq!(grew(|c| c.stale_epoch), 1),
            Got::Dropped(DropReason::MessageTooLarge) => {
                assert!(grew(|c| c.oversize_messages) <= 1);
                oversize_drops += 1;
            }
        }
        if round % 5_000 == 0 {
            acc.finish();
        }
    }
    acc.finish();
    let c = acc.counters();
    // Every datagram is in exactly one of these.
    let accounted = (c.messages - c.fragmented_messages)
        + c.fragments
        + c.malformed.total()
        + c.duplicates
        + c.duplicate_fragments
        + c.too_old
        + c.before_start
        + c.stale_epoch
        + c.heartbeats
        + c.upstream_gaps
        + oversize_drops;
    assert_eq!(accounted, c.datagrams);
    // Every kind of outcome happened.
    assert!(
        c.messages > 0 && c.fragmented_messages > 0 && c.epochs > 2 && c.stale_epoch > 0,
        "{c:?}"
    );
    assert!(
        c.malformed.foreign > 0 && c.malformed.truncated > 0 && c.malformed.length_mismatch > 0,
        "{c:?}"
    );
    assert!(
        c.malformed.bad_fragment > 0 && c.malformed.unknown_kind > 0,
        "{c:?}"
    );
    assert!(
        c.malformed.unsupported_version > 0 && c.malformed.bad_control_payload > 0,
        "{c:?}"
    );
    assert!(c.oversize_messages > 0 && c.duplicates > 0, "{c:?}");
    for s in acc.epoch_summaries() {
        if s.expected != u64::MAX {
            assert_eq!(
                u128::from(s.delivered) + u128::from(s.lost),
                u128::from(s.expected),
                "{s:?}"
            );
        }
    }
}
