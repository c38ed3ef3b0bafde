//! Datagrams of any bytes through the decoder and the receiver's accounting, with and without a
//! key: nothing may panic, and every datagram must land in exactly one counter. The input is
//! split into datagrams by a 2-byte length before each, so one input is a whole sequence (epochs,
//! fragments, gaps, reordering) rather than a single datagram.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use relay_core::receive::accounting::{Accounting, AccountingConfig};
use relay_core::seal::Secret;
use relay_core::wire::Header;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, mut rest)) = input.split_first() else {
        return;
    };
    let secret = (mode & 1 == 1).then(|| Secret::new(&[7u8; 32]).expect("32 bytes"));
    let mut accounting = Accounting::new(AccountingConfig {
        window: 64,
        reassembly_slots: 2,
        reassembly_bytes: 1 << 13,
        max_message_len: 1 << 12,
        epoch_takeover: Duration::from_millis(u64::from(mode >> 1)),
        secret,
        ..AccountingConfig::default()
    });
    let start = Instant::now();
    let mut datagrams = 0u64;
    let mut naks = 0usize;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (datagram, tail) = rest[2..].split_at(len);
        rest = tail;
        let now = start + Duration::from_millis(datagrams);
        let _ = Header::decode(datagram);
        accounting.on_datagram(now, datagram, &mut |d| {
            assert!(d.payload.len() <= 1 << 12);
        });
        datagrams += 1;
        accounting.handle_timeout(now, &mut |nak| {
            naks += 1;
            assert!(Header::peek(nak).is_ok(), "a NAK we send is valid");
        });
    }
    accounting.close();
    accounting.finish();
    let c = accounting.counters();
    assert_eq!(c.datagrams, datagrams);
    for s in accounting.epoch_summaries() {
        if s.expected != u64::MAX {
            assert_eq!(
                u128::from(s.delivered) + u128::from(s.lost),
                u128::from(s.expected),
                "{s:?}"
            );
        }
    }
});
