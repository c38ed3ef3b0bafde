//! The per-message hot path allocates nothing once warm: framing on the relay, accounting and
//! stamp joining on the receiver. Counted with relay-host's per-thread counting allocator, so
//! the test harness's other threads do not disturb the count.

use relay_core::binance::TimeUnit;
use relay_core::forward::framer::Framer;
use relay_core::receive::accounting::{Accounting, AccountingConfig, Event};
use relay_core::receive::stamp_join::{DatagramKey, StampTable};
use relay_core::wire::stamp::RxStamp;
use relay_host::alloc_count::{allocations_during, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

const TRADE: &[u8] = br#"{"e":"trade","E":1700000000123456,"s":"BTCUSDT","t":12345,"p":"42000.01000000","q":"0.00100000","T":1700000000123400,"m":true,"M":true}"#;

#[test]
fn framing_and_accounting_allocate_nothing_per_message() {
    let mut framer = Framer::new(7, 1472, TimeUnit::Micros, false).unwrap();
    framer.on_upstream_open(None, &mut |_| {});
    let mut accounting = Accounting::new(AccountingConfig::default());
    let mut table = StampTable::new(1 << 16);
    let mut datagram = vec![0u8; 65_536];
    let big: Vec<u8> = TRADE.iter().copied().cycle().take(5000).collect();

    // `count` messages, flushed every `per_read` (the messages of one socket read share
    // datagrams); returns how many the receiver delivered.
    let now = std::time::Instant::now();
    let mut run = |count: u64, payload: &[u8], per_read: u64| {
        let mut delivered = 0u64;
        let mut receive = |bytes: &[u8]| {
            let len = bytes.len();
            datagram[..len].copy_from_slice(bytes);
            relay_core::wire::stamp_relay_tx_ns(&mut datagram[..len], 2);
            let key = DatagramKey::of(&datagram[..len]).unwrap();
            table.insert(&RxStamp {
                sequence: key.sequence,
                time_ns: 1,
                epoch: key.epoch,
                fragment_index: key.fragment_index,
                hook: 1,
                _pad: 0,
                hw_ns: 0,
            });
            assert!(table.take(key).is_some());
            if let Event::Messages { .. } =
                accounting.on_datagram(now, &datagram[..len], &mut |_| {
                    delivered += 1;
                })
            {}
        };
        for i in 1..=count {
            framer
                .frame_message(payload, false, 1, &mut receive)
                .unwrap();
            if i % per_read == 0 {
                framer.flush(&mut receive);
            }
        }
        framer.flush(&mut receive);
        delivered
    };
    // Warm up: reassembly slots grow to the largest message once.
    assert_eq!(run(100, &big, 1), 100);
    assert_eq!(run(100, TRADE, 8), 100);
    let mut delivered = 0;
    let single = allocations_during(|| delivered += run(10_000, TRADE, 1));
    let packed = allocations_during(|| delivered += run(10_000, TRADE, 8));
    let fragmented = allocations_during(|| delivered += run(1_000, &big, 1));
    assert_eq!(delivered, 21_000);
    assert_eq!(single, 0, "one message per datagram");
    assert_eq!(packed, 0, "packed messages");
    assert_eq!(fragmented, 0, "fragmented messages");
}

#[test]
fn the_forwarder_with_its_retransmit_ring_allocates_nothing_per_message() {
    use relay_core::exchange_link::LinkEvent;
    use relay_core::forward::answer::RetransmitConfig;
    use relay_core::forward::Forwarder;
    use std::time::{Duration, Instant};

    let now = Instant::now();
    let framer = Framer::new(7, 1472, TimeUnit::Micros, false).unwrap();
    let config = RetransmitConfig {
        buffer_bytes: 1 << 20,
        ..RetransmitConfig::default()
    };
    let mut forwarder = Forwarder::new(
        framer,
        Duration::from_secs(1),
        Some((&config, 1472)),
        None,
        now,
    );
    let mut sent = 0u64;
    let mut count = |_: &[u8]| sent += 1;
    forwarder.on_event(
        LinkEvent::Open {
            generation: 1,
            gap: None,
        },
        now,
        &mut count,
    );
    let mut run = |n: u64, per_read: u64, count: &mut dyn FnMut(&[u8])| {
        for i in 1..=n {
            let message = LinkEvent::Message {
                payload: TRADE,
                binary: false,
                rx_ns: i,
            };
            forwarder.on_event(message, now, &mut |d| count(d));
            if i % per_read == 0 {
                forwarder.flush(now, &mut |d| count(d));
            }
        }
    };
    // Warm up: the ring wraps once (1 MiB of 1472-byte slots).
    run(2_000, 1, &mut count);
    let allocations = allocations_during(|| run(10_000, 4, &mut count));
    assert_eq!(
        allocations, 0,
        "framing, packing, keeping for retransmission"
    );
    assert_eq!(sent, 2_000 + 2_500);
}
