//! Sealed datagrams through the whole pipeline (`--key-file` on both sides): recovery works
//! sealed, and nothing an attacker sends is believed: not unsealed data, not forged seals, not
//! a replayed NAK.

mod util;

use std::time::Duration;

use relay_core::harness::{NetworkConfig, PipelineConfig};
use relay_core::receive::accounting::AccountingConfig;
use relay_core::seal::{Direction, Secret};
use relay_core::wire::{flags, Block, Header, Kind, NakRange, Writer, SEAL_LEN};
use util::{lossy, open, MS};

fn secret(byte: u8) -> Secret {
    Secret::new(&[byte; 32]).unwrap()
}

/// Relay and receiver with `relay` and `receiver` as their keys.
fn keyed(relay: Option<Secret>, receiver: Option<Secret>) -> PipelineConfig {
    PipelineConfig {
        relay_secret: relay,
        accounting: AccountingConfig {
            secret: receiver,
            ..AccountingConfig::default()
        },
        ..PipelineConfig::default()
    }
}

/// A data datagram of the relay's epoch, as an attacker who read one would make it.
fn forged(epoch: u32, sequence: u64, payload: &[u8], flag: u16) -> Vec<u8> {
    let mut buf = vec![0u8; 1472];
    let header = Header {
        flags: flag,
        ..Header::new(Kind::Data, epoch, 1, sequence)
    };
    let mut w = Writer::new(&mut buf, header);
    assert!(w.push_block(Block::default(), payload));
    let len = w.finish();
    buf.truncate(len);
    if flag & flags::SEALED != 0 {
        // A seal of made-up bytes.
        let at = buf.len() - SEAL_LEN;
        buf[at..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
    }
    buf
}

#[test]
fn sealed_over_a_lossy_link_recovery_still_delivers_everything() {
    let mut p = open(PipelineConfig {
        seed: 5,
        network: lossy(0.03),
        uplink: NetworkConfig {
            delay: 20 * MS,
            loss: 0.03,
            ..NetworkConfig::default()
        },
        ..keyed(Some(secret(1)), Some(secret(1)))
    });
    p.publish_trades(2000, Duration::from_micros(500));
    p.run_for(Duration::from_secs(3));
    let c = p.finish().clone();
    assert_eq!((c.messages, c.lost), (2000, 0), "{c:?}");
    assert!(c.retransmitted > 20, "{c:?}");
    assert_eq!(c.unauthenticated(), 0, "{c:?}");
    let answers = p.forwarder.stats().answers;
    assert!(answers.naks > 0, "{answers:?}");
    assert_eq!(
        (answers.naks_unauthenticated, answers.naks_replayed),
        (0, 0),
        "{answers:?}"
    );
}

#[test]
fn with_a_key_nothing_unsealed_or_forged_is_believed() {
    let mut p = open(keyed(Some(secret(1)), Some(secret(1))));
    p.publish_trades(10, MS);
    let epoch = p.emitted[0].epoch;
    let now = p.now();
    // An attacker who read a datagram: the header is in the clear, so the epoch is known.
    p.network
        .send(now, &forged(epoch, 11, br#"{"e":"trade","t":999}"#, 0));
    p.network.send(
        now,
        &forged(epoch, u64::MAX - 1, b"jump the sequence", flags::SEALED),
    );
    p.network.send(now, &forged(0xbad, 1, b"new epoch", 0));
    p.run_for(10 * MS);
    p.publish_trades(10, MS);
    p.run_for(Duration::from_secs(2));
    let c = p.finish().clone();
    assert_eq!(p.received_trade_ids(), (1..=20).collect::<Vec<_>>());
    assert_eq!((c.messages, c.lost, c.epochs), (20, 0, 1), "{c:?}");
    assert_eq!((c.unsealed, c.bad_seal), (2, 1), "{c:?}");
}

#[test]
fn a_receiver_with_another_key_or_none_accepts_nothing_and_says_why() {
    for (receiver, what) in [(Some(secret(2)), "another key"), (None, "no key")] {
        let mut p = open(keyed(Some(secret(1)), receiver));
        p.publish_trades(10, MS);
        p.run_for(Duration::from_secs(2));
        let c = p.finish().clone();
        assert_eq!(c.messages, 0, "{what}: {c:?}");
        let refused = if what == "no key" {
            c.sealed_without_key
        } else {
            c.bad_seal
        };
        assert!(refused >= 10, "{what}: {c:?}");
        assert_eq!(c.unauthenticated(), c.datagrams, "{what}: {c:?}");
    }
    let mut p = open(keyed(None, Some(secret(1))));
    p.publish_trades(10, MS);
    p.run_for(Duration::from_secs(2));
    let c = p.finish().clone();
    assert_eq!(c.messages, 0);
    assert_eq!(c.unsealed, c.datagrams, "{c:?}");
}

#[test]
fn a_keyed_relay_answers_a_sealed_nak_once_and_never_an_unsealed_one() {
    let mut p = open(PipelineConfig {
        network: NetworkConfig {
            delay: 5 * MS,
            ..NetworkConfig::default()
        },
        ..keyed(Some(secret(1)), Some(secret(1)))
    });
    p.publish_trades(10, MS);
    p.run_for(100 * MS);
    let epoch = p.emitted[0].epoch;
    let nak = |flag: u16| {
        let mut buf = vec![0u8; 256];
        let header = Header {
            flags: flag,
            ..Header::new(Kind::Nak, epoch, 0, 3)
        };
        let mut w = Writer::new(&mut buf, header);
        assert!(w.push_range(NakRange { first: 3, len: 4 }));
        let len = w.finish();
        buf.truncate(len);
        buf
    };
    let mut sealed = nak(flags::SEALED);
    assert!(secret(1).sealer(Direction::Receiver).seal(&mut sealed));
    let before = p.forwarder.stats().answers;
    let now = p.now();
    p.uplink.send(now, &nak(0));
    p.uplink.send(now, &sealed);
    // The same NAK again, as an attacker replaying it would send it.
    p.uplink.send(now, &sealed);
    let mut relay_sealed = nak(flags::SEALED);
    assert!(secret(1).sealer(Direction::Relay).seal(&mut relay_sealed));
    p.uplink.send(now, &relay_sealed);
    p.run_for(50 * MS);
    let after = p.forwarder.stats().answers;
    assert_eq!(after.naks - before.naks, 1, "{after:?}");
    assert_eq!(after.retransmitted - before.retransmitted, 4, "{after:?}");
    assert_eq!(after.naks_replayed - before.naks_replayed, 1, "{after:?}");
    assert_eq!(
        after.naks_unauthenticated - before.naks_unauthenticated,
        2,
        "unsealed, and sealed with the relay's direction: {after:?}"
    );
    let c = p.finish().clone();
    assert_eq!(
        (c.messages, c.duplicates, c.unauthenticated()),
        (10, 4, 0),
        "the four answers are duplicates of what arrived: {c:?}"
    );
}
