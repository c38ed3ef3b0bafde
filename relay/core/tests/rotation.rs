//! Gapless exchange rotation: on `serverShutdown` and before Binance's 24 h limit the relay opens
//! the new connection first, and switches once both deliver the same events; receivers see no
//! gap and no duplicate. An unplanned loss still reconnects with backoff, which starts over once
//! a connection delivers.

mod util;

use std::time::Duration;

use relay_core::exchange_link::{Notice, RotationReason};
use relay_core::harness::{Pipeline, PipelineConfig};
use util::{open, MS};

/// Every trade published reached the receiver once, in order, with contiguous sequences.
fn assert_every_trade_once(p: &mut Pipeline) {
    let published = p.exchange.log().published;
    let c = p.finish().clone();
    assert_eq!(
        p.received_trade_ids(),
        (1..=published).collect::<Vec<_>>(),
        "every trade once, in order"
    );
    assert_eq!(
        (c.messages, c.lost, c.duplicates),
        (published, 0, 0),
        "{c:?}"
    );
    assert_eq!(c.upstream_gaps, 0, "a rotation is no outage: {c:?}");
}

#[test]
fn server_shutdown_rotates_to_a_new_connection_without_a_gap_or_a_duplicate() {
    let mut p = open(PipelineConfig::default());
    p.publish_trades(10, MS);
    let ms = p.exchange_ms();
    assert!(p.exchange.server_shutdown(ms));
    // Trades keep coming while the new connection opens: both connections deliver them.
    p.publish_trades(50, MS);
    assert!(
        p.notices.contains(&Notice::Rotating {
            reason: RotationReason::ServerShutdown
        }),
        "{:?}",
        p.notices
    );
    assert!(
        p.notices
            .iter()
            .any(|n| matches!(n, Notice::Rotated { .. })),
        "{:?}",
        p.notices
    );
    assert_eq!(p.exchange.open_connections(), 1, "the old one is closed");
    assert_eq!(p.exchange.log().connections, 2);
    assert_eq!(p.exchange.log().client_closes, [1000], "politely");
    p.publish_trades(10, MS);
    assert_every_trade_once(&mut p);
    assert!(
        !p.notices
            .iter()
            .any(|n| matches!(n, Notice::Retrying { .. })),
        "no backoff for a planned shutdown: {:?}",
        p.notices
    );
}

#[test]
fn the_connection_is_rotated_before_the_age_limit() {
    let mut p = open(PipelineConfig {
        rotate_after: Duration::from_secs(2),
        ..PipelineConfig::default()
    });
    // Five seconds of trades: two rotations.
    p.publish_trades(5000, MS);
    let rotations = p
        .notices
        .iter()
        .filter(|n| {
            matches!(
                n,
                Notice::Rotating {
                    reason: RotationReason::Age
                }
            )
        })
        .count();
    assert_eq!(rotations, 2, "{:?}", p.notices);
    assert_eq!(p.exchange.log().connections, 3);
    assert_every_trade_once(&mut p);
}

#[test]
fn when_the_old_connection_goes_first_the_new_one_takes_over_without_a_gap() {
    let mut p = open(PipelineConfig::default());
    p.publish_trades(10, MS);
    let ms = p.exchange_ms();
    assert!(p.exchange.server_shutdown_on(0, ms));
    p.run_for(10 * MS);
    assert_eq!(p.exchange.open_connections(), 2, "both open, overlapping");
    // The exchange closes the old connection before the new one caught up (nothing new was
    // published, so no stream could switch).
    p.exchange.drop_connection(0);
    p.run_for(10 * MS);
    p.publish_trades(10, MS);
    assert_every_trade_once(&mut p);
}

#[test]
fn an_unplanned_loss_backs_off_and_data_resets_the_backoff() {
    let mut p = open(PipelineConfig::default());
    let delays = |p: &Pipeline| -> Vec<u128> {
        p.notices
            .iter()
            .filter_map(|n| match n {
                Notice::Retrying { delay } => Some(delay.as_millis()),
                _ => None,
            })
            .collect()
    };
    for _ in 0..3 {
        p.publish_trades(5, MS);
        p.exchange.drop_connections();
        p.run_for(Duration::from_secs(3));
        assert!(p.exchange.is_open());
    }
    assert_eq!(
        delays(&p),
        [250, 250, 250],
        "every connection delivered: the backoff starts over each time"
    );
    p.publish_trades(5, MS);
    p.refuse_connections = true;
    p.exchange.drop_connections();
    p.run_for(Duration::from_secs(3));
    assert_eq!(
        delays(&p)[3..],
        [250, 500, 1000, 2000],
        "failures still double"
    );
}
