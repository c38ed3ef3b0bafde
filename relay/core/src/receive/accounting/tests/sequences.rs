//! Sequences, epochs, heartbeats and upstream gaps.

use super::*;

#[test]
fn in_order_stream() {
    let mut acc = accounting();
    for seq in 1000..1100 {
        let (event, taken) = feed_all(&mut acc, &msg(seq));
        assert_eq!(event, Event::Messages { delivered: 1 });
        let d = &taken[0];
        assert_eq!(d.payload, payload_of(seq));
        assert_eq!(d.sequence, seq);
        assert_eq!(d.relay_tx_ns, 2_000 + seq);
        assert_eq!(
            d.block,
            Block {
                len: d.payload.len() as u16,
                ..block_of(seq)
            }
        );
        assert!(!d.reordered);
        assert_eq!(d.fragments, 1);
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
    let t0 = Instant::now();
    let s = |secs: u64| t0 + Duration::from_secs(secs);
    let mut acc = accounting();
    for seq in [0, 1, 3] {
        feed_at(&mut acc, t0, &data_in(a, 1, seq, b"x"));
    }
    // Epoch a is alive: one datagram of b changes nothing, nor do more while a speaks.
    assert_eq!(
        feed_at(&mut acc, s(1), &data_in(b, 1, 7, b"y")),
        Got::Dropped(DropReason::UnconfirmedEpoch)
    );
    feed_at(&mut acc, s(2), &heartbeat_in(a, 4));
    assert_eq!(
        feed_at(&mut acc, s(3), &data_in(b, 1, 8, b"y")),
        Got::Dropped(DropReason::UnconfirmedEpoch)
    );
    assert_eq!(acc.counters().epochs, 1);
    // a falls silent after 2 s; 3 s later b's second datagram since confirms it.
    assert_eq!(
        feed_at(&mut acc, s(5), &data_in(b, 1, 9, b"y")),
        in_order(9),
        "the takeover datagram is accounted"
    );
    let counters = acc.counters();
    assert_eq!((counters.epochs, counters.relay_restarts), (2, 1));
    assert_eq!(counters.lost, 1, "2 of epoch a is lost");
    assert_eq!(
        counters.relay_restart_outage_ns, 1_000_000_000,
        "a's last at 2 s, b's first since at 3 s"
    );
    assert_eq!(
        feed_at(&mut acc, s(5), &data_in(a, 1, 2, b"x")),
        Got::Dropped(DropReason::StaleEpoch)
    );
    // b restarted from 1: what it sent while unconfirmed is missing, not before its start.
    assert_eq!(feed_at(&mut acc, s(5), &data_in(b, 1, 8, b"y")), late(8));
    assert_eq!(
        feed_at(&mut acc, s(5), &heartbeat_in(a, 9)),
        Got::Dropped(DropReason::StaleEpoch)
    );
    assert_eq!(
        feed_at(&mut acc, s(6), &data_in(c, 1, 4, b"z")),
        Got::Dropped(DropReason::UnconfirmedEpoch)
    );
    assert_eq!(
        feed_at(&mut acc, s(9), &data_in(c, 1, 5, b"z")),
        in_order(5)
    );
    assert_eq!(
        feed_at(&mut acc, s(9), &gap_in(b, 2, 1, 2)),
        Got::Dropped(DropReason::StaleEpoch)
    );
    acc.finish();
    let counters = acc.counters();
    assert_eq!(
        (
            counters.epochs,
            counters.stale_epoch,
            counters.unconfirmed_epoch,
            counters.relay_restarts,
            counters.messages
        ),
        (3, 3, 3, 2, 6)
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
                base: Some(1),
                expected: 9,
                delivered: 2,
                lost: 7
            },
            EpochSummary {
                epoch: c,
                base: Some(1),
                expected: 5,
                delivered: 1,
                lost: 4
            },
        ]
    );
    assert_invariant(&acc);
}

#[test]
fn a_blind_forger_beside_a_live_relay_never_takes_over() {
    let t0 = Instant::now();
    let mut acc = accounting();
    let mut rng = Rng::new(7);
    for i in 0..10_000u64 {
        let at = t0 + Duration::from_millis(i);
        assert_eq!(feed_at(&mut acc, at, &msg(i + 1)), in_order(i + 1));
        // A new made-up epoch on every datagram, and a persistent one.
        let forged = data_in(rng.next_u64() as u32 | 1 << 31, 1, i, b"forged");
        assert_eq!(
            feed_at(&mut acc, at, &forged),
            Got::Dropped(DropReason::UnconfirmedEpoch)
        );
        feed_at(&mut acc, at, &data_in(0xf0f0, 1, i, b"forged"));
    }
    let c = acc.counters();
    assert_eq!((c.messages, c.epochs, c.lost), (10_000, 1, 0), "{c:?}");
    assert_eq!(c.unconfirmed_epoch, 20_000);
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
    // (It takes over once the first has been silent long enough.)
    let later = Instant::now() + Duration::from_secs(10);
    feed_at(&mut acc, later, &data_in(EPOCH + 1, 1, 1, b"e"));
    assert_eq!(
        feed_at(&mut acc, later, &data_in(EPOCH + 1, 1, 2, b"f")),
        in_order(2)
    );
    assert_eq!(
        feed_at(&mut acc, later, &gap_in(EPOCH + 1, 2, 1_000, 2_000)),
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

#[test]
fn packed_messages_are_accounted_one_by_one() {
    let mut acc = accounting();
    let (event, taken) = feed_all(&mut acc, &packed(10, 5));
    assert_eq!(event, Event::Messages { delivered: 5 });
    let seqs: Vec<u64> = taken.iter().map(|t| t.sequence).collect();
    assert_eq!(seqs, [10, 11, 12, 13, 14]);
    assert!(taken.iter().all(|t| t.payload == payload_of(t.sequence)));
    // A repeat of part of it: the new messages are delivered, the old ones counted.
    let (event, taken) = feed_all(&mut acc, &packed(13, 4));
    assert_eq!(event, Event::Messages { delivered: 2 });
    assert_eq!(
        taken.iter().map(|t| t.sequence).collect::<Vec<_>>(),
        [15, 16]
    );
    assert_eq!(
        feed_all(&mut acc, &packed(10, 3)).0,
        Event::Dropped(DropReason::Duplicate),
        "every message a duplicate"
    );
    // A gap inside the stream, filled later by a pack that arrives out of order.
    assert_eq!(
        feed_all(&mut acc, &packed(20, 2)).0,
        Event::Messages { delivered: 2 }
    );
    let (_, late) = feed_all(&mut acc, &packed(17, 3));
    assert!(late.iter().all(|t| t.reordered));
    acc.finish();
    let c = acc.counters();
    assert_eq!(
        (c.datagrams, c.messages, c.duplicates, c.reordered, c.lost),
        (5, 12, 5, 3, 0)
    );
    assert_invariant(&acc);
    // The last sequence of a pack may not overflow.
    let mut acc = accounting();
    assert_eq!(
        feed(&mut acc, &packed(u64::MAX - 1, 3)),
        Got::Dropped(DropReason::Malformed(WireError::BadBlocks))
    );
    assert_eq!(acc.counters().epochs, 0);
}

#[test]
fn control_datagrams_meant_for_the_relay_are_unexpected() {
    let mut acc = accounting();
    let mut buf = vec![0u8; 200];
    let mut writer = Writer::new(&mut buf, head(Kind::Nak, EPOCH, 1, 5));
    assert!(writer.push_range(relay_wire::NakRange { first: 5, len: 2 }));
    let len = writer.finish();
    assert_eq!(
        feed(&mut acc, &buf[..len]),
        Got::Dropped(DropReason::Unexpected)
    );
    buf[5] = Kind::Unavailable as u8;
    assert_eq!(feed(&mut acc, &buf[..len]), Got::Unavailable);
    let c = acc.counters();
    assert_eq!((c.unexpected, c.unavailable, c.epochs), (1, 1, 1));
    // Probes and their replies (relay probe) are for reflectors and probers: a receiver drops
    // them before they can touch its epoch.
    for kind in [Kind::Probe, Kind::ProbeReply] {
        let mut writer = Writer::new(&mut buf, head(kind, EPOCH + 1, 0, 1));
        assert!(writer.push_zeros(relay_wire::ProbeReply::LEN));
        let len = writer.finish();
        assert_eq!(
            feed(&mut acc, &buf[..len]),
            Got::Dropped(DropReason::Unexpected)
        );
    }
    let c = acc.counters();
    assert_eq!((c.unexpected, c.epochs), (3, 1));
}

#[test]
fn the_last_sequence_there_is_is_accounted_without_overflow() {
    // Found by the `datagram` fuzz target: a data datagram at sequence u64::MAX panicked in
    // builds with overflow checks.
    let mut acc = accounting();
    assert_eq!(
        feed_all(&mut acc, &packed(u64::MAX, 1)).0,
        Event::Messages { delivered: 1 }
    );
    let mut acc = accounting();
    assert_eq!(
        feed_all(&mut acc, &packed(u64::MAX - 1, 2)).0,
        Event::Messages { delivered: 2 }
    );
    assert_eq!(
        feed_all(&mut acc, &packed(u64::MAX, 1)).0,
        Event::Dropped(DropReason::Duplicate)
    );
    assert_eq!(
        feed_all(&mut acc, &packed(u64::MAX, 2)).0,
        Event::Dropped(DropReason::Malformed(WireError::BadBlocks)),
        "a block past u64::MAX"
    );
    acc.finish();
}
