//! Relay restarts and forged epochs through the whole pipeline: a restarted relay takes over
//! once the old one is silent, and nothing it sent meanwhile is lost or uncounted; a blind forger
//! cannot take the receiver away from a live relay.

mod util;

use std::time::Duration;

use relay_core::harness::{Pipeline, PipelineConfig};
use relay_core::wire::{Block, Header, Kind, Writer};
use util::{open, without_recovery, MS};

const RESTARTED: u32 = 0x2222_2222;

/// 200 trades, a relay restart, then 4000 more trades over 4 s (the takeover comes 3 s after the
/// old relay's last datagram).
fn restart_mid_stream(p: &mut Pipeline) {
    p.publish_trades(200, MS);
    p.restart_relay(RESTARTED);
    p.run_for(20 * MS);
    assert!(p.exchange.is_open(), "the new relay connected");
    p.publish_trades(4000, MS);
    p.run_for(Duration::from_secs(2));
}

#[test]
fn a_restarted_relay_takes_over_and_what_it_sent_meanwhile_is_recovered() {
    let mut p = open(PipelineConfig::default());
    restart_mid_stream(&mut p);
    let c = p.finish().clone();
    let mut ids = p.received_trade_ids();
    ids.sort();
    assert_eq!(ids, (1..=4200).collect::<Vec<_>>(), "every trade once");
    assert_eq!((c.messages, c.lost), (4200, 0), "{c:?}");
    assert_eq!((c.epochs, c.relay_restarts), (2, 1), "{c:?}");
    assert!(
        c.unconfirmed_epoch > 2000,
        "about 3 s of the new relay's traffic waited for the takeover: {c:?}"
    );
    assert!(c.retransmitted >= 2000, "and came back by recovery: {c:?}");
    let outage = Duration::from_nanos(c.relay_restart_outage_ns);
    assert!(
        (15 * MS..=100 * MS).contains(&outage),
        "the old relay's last datagram to the new one's first: {outage:?}"
    );
    let new: Vec<u64> = p
        .received
        .iter()
        .filter(|r| r.epoch == RESTARTED)
        .map(|r| r.sequence)
        .collect();
    assert!(new.contains(&1), "the new epoch is accounted from 1");
    assert_eq!(new.len(), 4000);
}

#[test]
fn without_recovery_what_waited_for_the_takeover_is_counted_lost() {
    let mut p = open(without_recovery(PipelineConfig::default()));
    restart_mid_stream(&mut p);
    let c = p.finish().clone();
    assert_eq!(c.relay_restarts, 1);
    assert!(c.lost > 2000, "{c:?}");
    assert_eq!(c.messages + c.lost, 4200, "nothing uncounted: {c:?}");
}

#[test]
fn a_forged_epoch_seen_first_is_overtaken_by_the_relay() {
    let mut p = open(PipelineConfig::default());
    let mut buf = vec![0u8; 256];
    let mut w = Writer::new(&mut buf, Header::new(Kind::Data, 0xbad, 1, 1));
    assert!(w.push_block(Block::default(), b"forged"));
    let len = w.finish();
    let now = p.now();
    p.network.send(now, &buf[..len]);
    p.run_for(MS);
    p.publish_trades(4000, MS);
    p.run_for(Duration::from_secs(2));
    let c = p.finish().clone();
    let mut ids = p.received_trade_ids();
    ids.sort();
    assert_eq!(ids, (1..=4000).collect::<Vec<_>>(), "every real trade once");
    assert_eq!((c.epochs, c.relay_restarts, c.lost), (2, 1, 0), "{c:?}");
}
