//! The relay pipeline end to end in memory (exchange -> session -> framer -> network ->
//! accounting) on a manual clock: see `relay_core::harness`.

mod util;

use std::time::Duration;

use relay_core::exchange_link::Notice;
use relay_core::forward::answer::RetransmitConfig;
use relay_core::harness::{NetworkConfig, Pipeline, PipelineConfig};
use relay_core::receive::accounting::{AccountingConfig, Counters};
use relay_core::receive::recovery::RecoveryConfig;
use relay_core::wire::{message_flags, Kind};
use util::{lossy, open, without_recovery, MS};

#[test]
fn every_message_arrives_once_in_order() {
    let mut p = open(PipelineConfig::default());
    p.publish_trades(500, MS);
    p.run_for(100 * MS);
    let c = p.finish().clone();
    assert_eq!(p.received_trade_ids(), (1..=500).collect::<Vec<_>>());
    let sequences: Vec<u64> = p.received.iter().map(|r| r.sequence).collect();
    assert_eq!(sequences, (1..=500).collect::<Vec<_>>());
    assert_eq!(
        (c.messages, c.lost, c.duplicates, c.reordered),
        (500, 0, 0, 0)
    );
}

#[test]
fn over_tls_with_subscriptions_paced_under_the_limit() {
    let streams: Vec<String> = (0..401).map(|i| format!("s{i}@trade")).collect();
    let mut p = open(PipelineConfig {
        tls: true,
        subscribe: streams,
        ..PipelineConfig::default()
    });
    p.publish_trades(10, MS);
    p.run_for(Duration::from_secs(1));
    let requests = &p.exchange.log().requests;
    assert_eq!(
        requests.len(),
        3,
        "401 streams in requests of 200: {requests:?}"
    );
    assert!(requests[0].contains(r#""method":"SUBSCRIBE""#) && requests[0].contains(r#""id":1"#));
    assert!(
        p.notices
            .iter()
            .filter(|n| matches!(n, Notice::Reply(_)))
            .count()
            == 3,
        "every request answered: {:?}",
        p.notices
    );
    assert_eq!(p.received_trade_ids(), (1..=10).collect::<Vec<_>>());
}

#[test]
fn an_exchange_drop_is_an_upstream_gap_and_the_sequence_has_no_hole() {
    let mut p = open(PipelineConfig::default());
    p.publish_trades(100, MS);
    let dropped_at = p.now();
    p.exchange.drop_connections();
    // Trades go on while the relay is away: it misses them, and the ids say how many.
    p.publish_trades(50, MS);
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.exchange.log().connections, 2, "{:?}", p.notices);
    p.publish_trades(100, MS);
    p.run_for(100 * MS);
    let c = p.finish().clone();
    assert_eq!(
        (c.messages, c.lost),
        (200, 0),
        "the relay's own sequence has no hole"
    );
    assert_eq!((c.upstream_gaps, c.upstream_generation_changes), (1, 1));
    // The first retry waits the backoff's first delay, 250 ms after the loss.
    assert!(p.notices.contains(&Notice::Retrying {
        delay: Duration::from_millis(250)
    }));
    let gap = p
        .emitted
        .iter()
        .find(|h| h.kind == Kind::UpstreamGap)
        .unwrap();
    assert_eq!(gap.upstream_generation, 2);
    assert_eq!(
        c.upstream_gap_total_ns, 250_000_000,
        "from the loss to the reopen"
    );
    let ids = p.received_trade_ids();
    assert_eq!(ids.len(), 200);
    assert_eq!(ids[99], 100);
    assert_eq!(
        ids[100] - ids[99] - 1,
        50,
        "trades published during the outage never reach the relay; only their ids tell"
    );
    assert!(p.received[100].at - dropped_at >= Duration::from_millis(250));
    let first_after = &p.received[100];
    assert_ne!(first_after.block.flags & message_flags::AFTER_RECONNECT, 0);
    assert_eq!(first_after.upstream_generation, 2);
    assert_eq!(
        p.received[101].block.flags & message_flags::AFTER_RECONNECT,
        0
    );
}

#[test]
fn tail_loss_is_exposed_by_the_heartbeat() {
    let mut p = open(without_recovery(PipelineConfig::default()));
    p.publish_trades(20, MS);
    p.network.drop_next(5);
    p.publish_trades(5, MS);
    p.run_for(500 * MS);
    assert_eq!(
        p.finish().lost,
        0,
        "before a heartbeat the tail cannot be seen"
    );
    p.run_for(Duration::from_secs(1));
    let c = p.finish().clone();
    assert!(c.heartbeats >= 1);
    assert_eq!(
        (c.messages, c.lost),
        (20, 5),
        "the heartbeat's next sequence exposes the tail"
    );
}

#[test]
fn heartbeats_keep_coming_while_the_exchange_is_unreachable() {
    let mut p = open(PipelineConfig {
        reconnect_max_delay: Duration::from_secs(2),
        ..PipelineConfig::default()
    });
    p.publish_trades(3, MS);
    p.refuse_connections = true;
    p.exchange.drop_connections();
    p.run_for(Duration::from_secs(10));
    let beats: Vec<_> = p
        .emitted
        .iter()
        .filter(|h| h.kind == Kind::Heartbeat)
        .collect();
    assert!(
        (9..=10).contains(&beats.len()),
        "one a second: {}",
        beats.len()
    );
    assert!(
        beats.iter().all(|h| h.sequence == 4),
        "announcing the next sequence"
    );
    let retries: Vec<Duration> = p
        .notices
        .iter()
        .filter_map(|n| match n {
            Notice::Retrying { delay } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries[..5],
        [250, 500, 1000, 2000, 2000].map(Duration::from_millis)
    );
    // Were the run to end now, the outage still open would be reported, from the heartbeats.
    p.accounting.finish();
    let open = Duration::from_nanos(p.accounting.counters().upstream_down_at_end_ns);
    assert!(
        (Duration::from_secs(9)..=Duration::from_secs(10)).contains(&open),
        "{open:?}"
    );
    p.refuse_connections = false;
    p.run_for(Duration::from_secs(3));
    p.publish_trades(3, MS);
    p.run_for(10 * MS);
    let c = p.finish().clone();
    assert_eq!((c.messages, c.lost, c.upstream_gaps), (6, 0, 1));
    assert_eq!(c.upstream_down_at_end_ns, 0, "the outage closed");
}

#[test]
fn reordering_within_the_window_is_not_loss() {
    let mut p = open(without_recovery(PipelineConfig {
        network: NetworkConfig {
            jitter: Duration::from_micros(300),
            fifo: false,
            ..NetworkConfig::default()
        },
        ..PipelineConfig::default()
    }));
    p.publish_trades(2000, Duration::from_micros(100));
    p.run_for(100 * MS);
    let c = p.finish().clone();
    assert_eq!((c.messages, c.lost, c.duplicates), (2000, 0, 0));
    assert!(c.reordered > 100, "{c:?}");
    let mut ids = p.received_trade_ids();
    assert_ne!(
        ids,
        (1..=2000).collect::<Vec<_>>(),
        "delivered as they arrived"
    );
    ids.sort();
    assert_eq!(ids, (1..=2000).collect::<Vec<_>>());
}

#[test]
fn loss_and_duplicates_keep_the_books() {
    let mut p = open(without_recovery(PipelineConfig {
        seed: 7,
        network: NetworkConfig {
            loss: 0.03,
            duplicate: 0.02,
            jitter: Duration::from_micros(200),
            fifo: false,
            ..NetworkConfig::default()
        },
        ..PipelineConfig::default()
    }));
    p.publish_trades(3000, Duration::from_micros(200));
    p.run_for(Duration::from_secs(2));
    let c = p.finish().clone();
    let net = p.network.stats();
    let data_sent: u64 = p
        .emitted
        .iter()
        .filter(|h| h.kind == Kind::Data)
        .map(|h| u64::from(h.count))
        .sum();
    assert_eq!(data_sent, 3000);
    assert_eq!(c.messages + c.lost, 3000, "{c:?}");
    assert!(c.lost > 0 && c.duplicates > 0, "{c:?} {net:?}");
    assert_eq!(c.datagrams, net.delivered);
}

#[test]
fn a_close_frame_is_answered_and_pings_are_echoed() {
    let mut p = open(PipelineConfig::default());
    assert!(p
        .exchange
        .send(tungstenite::Message::Ping(b"keepalive".to_vec().into())));
    p.run_for(MS);
    assert_eq!(p.exchange.log().pongs, [b"keepalive".to_vec()]);
    p.exchange.close(1001);
    p.run_for(MS);
    assert_eq!(
        p.exchange.log().client_closes,
        [1001],
        "RFC 6455: the close is echoed"
    );
    assert!(p
        .notices
        .iter()
        .any(|n| matches!(n, Notice::Closed { reason } if reason.contains("1001"))));
}

#[test]
fn stopping_says_goodbye_with_1000() {
    let mut p = open(PipelineConfig::default());
    p.link.stop();
    p.run_for(MS);
    assert_eq!(p.exchange.log().client_closes, [1000]);
    p.exchange.drop_connections();
    p.run_for(Duration::from_secs(5));
    assert_eq!(p.exchange.log().connections, 1, "no reconnect after a stop");
}

/// 26 messages of 10 fragments each; the 21st loses 3 of its fragments on the way.
fn fragments_with_three_lost(recovery: Option<RecoveryConfig>) -> (Pipeline, Counters) {
    let mut p = open(PipelineConfig {
        datagram_budget: 400,
        accounting: AccountingConfig {
            recovery,
            ..AccountingConfig::default()
        },
        ..PipelineConfig::default()
    });
    let big = format!(r#"{{"e":"depthUpdate","E":1,"b":"{}"}}"#, "9".repeat(3000));
    for _ in 0..20 {
        assert!(p.exchange.send(tungstenite::Message::text(big.clone())));
        p.run_for(MS);
    }
    p.network.drop_next(3);
    assert!(p.exchange.send(tungstenite::Message::text(big.clone())));
    p.run_for(MS);
    for _ in 0..5 {
        assert!(p.exchange.send(tungstenite::Message::text(big.clone())));
        p.run_for(MS);
    }
    p.run_for(Duration::from_secs(2));
    let c = p.finish().clone();
    assert!(p.received.iter().all(|r| r.payload == big.as_bytes()));
    (p, c)
}

#[test]
fn large_messages_are_fragmented_and_a_lost_fragment_loses_only_its_message() {
    let (_, c) = fragments_with_three_lost(None);
    assert_eq!(
        (c.messages, c.lost, c.fragmented_messages),
        (25, 1, 25),
        "{c:?}"
    );
    assert_eq!(
        c.incomplete_messages, 1,
        "the damaged message never completes"
    );
}

/// With recovery, the incomplete message is asked for again once the reorder allowance has
/// passed: the relay sends all its fragments, the missing ones complete it, the rest are
/// duplicates of a delivered message.
#[test]
fn a_message_missing_fragments_is_asked_for_again_and_completes() {
    let (p, c) = fragments_with_three_lost(Some(RecoveryConfig::default()));
    assert_eq!(
        (c.messages, c.lost, c.incomplete_messages),
        (26, 0, 0),
        "{c:?}"
    );
    assert_eq!((c.retransmitted, c.retransmissions), (1, 10), "{c:?}");
    let r = p.accounting.recovery().expect("recovery on").stats();
    assert_eq!((r.gaps, r.recovered, r.given_up), (1, 1, 0), "{r:?}");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = |seed| {
        let mut p = open(PipelineConfig {
            seed,
            network: NetworkConfig {
                loss: 0.05,
                duplicate: 0.05,
                jitter: Duration::from_micros(500),
                fifo: false,
                ..NetworkConfig::default()
            },
            ..PipelineConfig::default()
        });
        p.publish_trades(1000, Duration::from_micros(100));
        p.run_for(Duration::from_secs(2));
        (p.finish().clone(), p.received_trade_ids())
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11).1, run(12).1);
}

#[test]
fn a_burst_read_in_one_go_is_packed_and_every_message_keeps_its_sequence() {
    let mut p = open(PipelineConfig::default());
    let ms = p.exchange_ms();
    for _ in 0..50 {
        p.exchange.publish_trade(ms);
    }
    p.run_for(10 * MS);
    let data: Vec<_> = p
        .emitted
        .iter()
        .filter(|h| h.kind == Kind::Data)
        .copied()
        .collect();
    let trade_len =
        relay_core::harness::exchange::trade(1, ms).len() + relay_core::wire::BLOCK_HEADER_LEN;
    let per_datagram = (1472 - relay_core::wire::HEADER_LEN) / trade_len;
    assert_eq!(data.len(), 50usize.div_ceil(per_datagram), "{data:?}");
    assert_eq!(data.iter().map(|h| u64::from(h.count)).sum::<u64>(), 50);
    let c = p.finish().clone();
    assert_eq!(
        (c.messages, c.lost, c.datagrams),
        (50, 0, data.len() as u64)
    );
    assert_eq!(p.received_trade_ids(), (1..=50).collect::<Vec<_>>());
    let sequences: Vec<u64> = p.received.iter().map(|r| r.sequence).collect();
    assert_eq!(sequences, (1..=50).collect::<Vec<_>>());
}

#[test]
fn three_percent_loss_and_reordering_lose_nothing_with_recovery() {
    let mut p = open(PipelineConfig {
        seed: 3,
        network: lossy(0.03),
        uplink: NetworkConfig {
            delay: 20 * MS,
            loss: 0.03,
            ..NetworkConfig::default()
        },
        ..PipelineConfig::default()
    });
    p.publish_trades(3000, Duration::from_micros(500));
    p.run_for(Duration::from_secs(3));
    let c = p.finish().clone();
    let r = p.accounting.recovery_stats().unwrap();
    assert_eq!((c.messages, c.lost), (3000, 0), "{c:?} {r:?}");
    assert!(r.recovered > 50 && r.recovered == c.retransmitted, "{r:?}");
    assert!(r.naks_sent > 0 && r.given_up == 0, "{r:?}");
    let mut ids = p.received_trade_ids();
    ids.sort();
    assert_eq!(ids, (1..=3000).collect::<Vec<_>>(), "every message once");
    let answers = p.forwarder.stats().answers;
    assert!(
        answers.retransmitted >= r.recovered.min(1) && answers.unavailable == 0,
        "{answers:?}"
    );
    // The measured round trip is the two 20 ms links, give or take the jitter.
    let rtt = p.accounting.recovery().unwrap().srtt().unwrap();
    assert!((35..=60).contains(&rtt.as_millis()), "{rtt:?}");
    let fill = p.accounting.recovery().unwrap().gap_to_fill().unwrap();
    assert!(fill.p50_us >= 40_000.0, "a round trip at least: {fill:?}");
}

#[test]
fn without_recovery_what_the_network_drops_is_lost() {
    let mut p = open(PipelineConfig {
        seed: 3,
        network: lossy(0.03),
        accounting: AccountingConfig {
            recovery: None,
            ..AccountingConfig::default()
        },
        ..PipelineConfig::default()
    });
    p.publish_trades(3000, Duration::from_micros(500));
    p.run_for(Duration::from_secs(3));
    let c = p.finish().clone();
    assert!(c.lost > 30 && c.messages + c.lost == 3000, "{c:?}");
    assert_eq!((c.retransmitted, p.forwarder.stats().answers.naks), (0, 0));
}

#[test]
fn tail_loss_is_recovered_after_the_heartbeat() {
    let mut p = open(PipelineConfig::default());
    p.publish_trades(20, MS);
    p.network.drop_next(5);
    p.publish_trades(5, MS);
    p.run_for(Duration::from_secs(2));
    let c = p.finish().clone();
    assert_eq!((c.messages, c.lost, c.retransmitted), (25, 0, 5), "{c:?}");
}

#[test]
fn what_the_relay_no_longer_keeps_is_reported_and_counted_lost() {
    let mut p = open(PipelineConfig {
        // Room for two datagrams: a gap older than that cannot be filled.
        retransmit: Some(RetransmitConfig {
            buffer_bytes: 2 * 1472,
            ..RetransmitConfig::default()
        }),
        network: NetworkConfig {
            delay: 10 * MS,
            ..NetworkConfig::default()
        },
        ..PipelineConfig::default()
    });
    p.publish_trades(10, MS);
    p.network.drop_next(3);
    p.publish_trades(10, MS);
    p.run_for(Duration::from_secs(1));
    let c = p.finish().clone();
    let r = p.accounting.recovery_stats().unwrap();
    assert_eq!((c.messages, c.lost), (17, 3), "{c:?} {r:?}");
    assert!(
        r.unavailable_ranges >= 1 && c.unavailable >= 1,
        "{r:?} {c:?}"
    );
    assert_eq!(p.forwarder.stats().answers.retransmitted, 0);
    assert!(r.naks_sent <= 2, "no more asking once unavailable: {r:?}");
}

#[test]
fn answers_are_rate_limited() {
    let mut p = open(PipelineConfig {
        retransmit: Some(RetransmitConfig {
            // A few datagrams per second at most.
            rate_bytes_per_sec: 2_000,
            ..RetransmitConfig::default()
        }),
        network: NetworkConfig {
            delay: 5 * MS,
            ..NetworkConfig::default()
        },
        ..PipelineConfig::default()
    });
    p.publish_trades(10, MS);
    p.network.drop_next(40);
    p.publish_trades(60, MS);
    p.run_for(Duration::from_millis(200));
    let early = p.forwarder.stats().answers;
    assert!(early.rate_limited > 0, "{early:?}");
    assert!(
        early.retransmitted < 40,
        "the limit holds answers back: {early:?}"
    );
    // Retries fill the rest as the bucket refills, well before the deadline.
    p.run_for(Duration::from_secs(4));
    let c = p.finish().clone();
    assert_eq!((c.messages, c.lost), (70, 0), "{c:?}");
}

#[test]
fn at_the_end_of_a_run_the_gaps_under_way_still_fill_and_later_messages_are_not_counted() {
    let mut p = open(PipelineConfig {
        network: NetworkConfig {
            delay: 50 * MS,
            ..NetworkConfig::default()
        },
        uplink: NetworkConfig {
            delay: 50 * MS,
            ..NetworkConfig::default()
        },
        ..PipelineConfig::default()
    });
    p.publish_trades(10, MS);
    p.network.drop_next(3);
    p.publish_trades(10, MS);
    p.run_for(60 * MS);
    // The run ends while the NAK for the three is on its way.
    let under_way = p.accounting.close();
    assert_eq!(under_way, 1);
    p.publish_trades(5, MS);
    p.run_for(Duration::from_millis(500));
    assert_eq!(p.accounting.under_way(), 0, "filled during the drain");
    let c = p.finish().clone();
    assert_eq!(
        (c.messages, c.lost, c.retransmitted, c.after_close),
        (20, 0, 3, 5),
        "{c:?}"
    );
}
