//! Random permutations, drops, duplicates and garbage: the books always balance, nothing panics.

use super::*;

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
            for d in feed_all(&mut acc, datagram).1 {
                assert_eq!(d.sequence, *seq);
                assert_eq!(d.payload, messages[*seq as usize], "seed {seed} seq {seq}");
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
        // The second epoch of the stream takes over on its second datagram.
        epoch_takeover: Duration::ZERO,
        ..AccountingConfig::default()
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
                buf.extend_from_slice(b"RLAY\x02");
                buf.push(rng.below(6) as u8);
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
            Got::Unavailable => assert_eq!(grew(|c| c.unavailable), 1),
            Got::Dropped(DropReason::Unexpected) => assert_eq!(grew(|c| c.unexpected), 1),
            Got::Dropped(DropReason::AfterClose) => panic!("never closed"),
            Got::Dropped(DropReason::Unsealed | DropReason::BadSeal) => panic!("no key"),
            Got::Dropped(DropReason::SealedWithoutKey) => {
                assert_eq!(grew(|c| c.sealed_without_key), 1)
            }
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
            Got::Dropped(DropReason::UnconfirmedEpoch) => {
                assert_eq!(grew(|c| c.unconfirmed_epoch), 1)
            }
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
        + c.unconfirmed_epoch
        + c.sealed_without_key
        + c.heartbeats
        + c.upstream_gaps
        + c.unavailable
        + c.unexpected
        + oversize_drops;
    assert_eq!(accounted, c.datagrams);
    // Every kind of outcome happened.
    assert!(
        c.messages > 0 && c.fragmented_messages > 0 && c.epochs >= 2 && c.stale_epoch > 0,
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
