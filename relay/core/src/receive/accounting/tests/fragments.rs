//! Fragments: reassembly, eviction, duplicates, inconsistent fields, oversize messages.

use super::*;

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
    let (event, taken) = feed_all(&mut acc, &frags[order[4]]);
    assert_eq!(event, Event::Messages { delivered: 1 });
    let d = &taken[0];
    assert_eq!(d.payload, message);
    assert_eq!((d.sequence, d.fragments), (1, 5));
    // Its first fragment came right after 0: in order, even though 2 completed first.
    assert!(!d.reordered);
    // The completing datagram's send stamp, and the message's block.
    assert_eq!(d.relay_tx_ns, 5_000 + order[4] as u64);
    assert_eq!(d.block.relay_rx_ns, 1_001);
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
        Got::Dropped(DropReason::DuplicateFragment)
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
    // After delivery, a fragment of the same sequence (the rest of an answer to a NAK, say) is
    // a duplicate fragment, not a duplicate message, and opens no slot.
    assert_eq!(
        feed(&mut acc, &frags[0]),
        Got::Dropped(DropReason::DuplicateFragment)
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
        (2, 0, 3, 0)
    );
    assert_invariant(&acc);
}

#[test]
fn inconsistent_fragment_fields_are_malformed() {
    let mut acc = accounting();
    let message = bytes_pattern(25, 4);
    let frags = frags_in(EPOCH, 0, &message, 10);
    assert_eq!(feed(&mut acc, &frags[0]), Got::Stored);
    let base = Header::decode(&frags[1]).unwrap().header;
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
    let (_, taken) = feed_all(&mut acc, &frags[2]);
    assert_eq!(taken[0].payload, message);
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
