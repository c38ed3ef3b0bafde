//! The relay's whole forward path allocates nothing per message once warm: the framer, the
//! forwarder with its retransmit ring, and the UDP fan-out's stamp, seal and `sendmmsg`, sealed
//! or not. Nor does it take a page fault: the ring's first pass writes memory written at start. (The core's own test, `relay/core/tests/hot_path_allocations.rs`, covers the framer and
//! the receiver's accounting on their own.)

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use relay::forward::fanout::{udp_socket, Fanout, SocketOptions};
use relay_core::binance::TimeUnit;
use relay_core::exchange_link::LinkEvent;
use relay_core::forward::answer::RetransmitConfig;
use relay_core::forward::framer::Framer;
use relay_core::forward::Forwarder;
use relay_core::seal::{Direction, Secret};
use relay_host::alloc_count::{allocations_during, page_faults_during, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

const TRADE: &[u8] = br#"{"e":"trade","E":1700000000123456,"s":"BTCUSDT","t":12345,"p":"42000.01000000","q":"0.00100000","T":1700000000123400,"m":true,"M":true}"#;

#[test]
fn framing_keeping_sealing_and_sending_allocate_nothing_per_message() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = receiver.local_addr().unwrap();
    let secret = Secret::new(&[9u8; 32]).unwrap();
    tokio_uring::start(async {
        for sealed in [false, true] {
            let now = Instant::now();
            let framer = Framer::new(7, 1472, TimeUnit::Micros, sealed).unwrap();
            // Above glibc's largest mmap threshold (32 MiB), so the ring is freshly mapped memory
            // as in a relay process, not heap memory some earlier `calloc` already wrote.
            let retransmit = RetransmitConfig {
                buffer_bytes: 40 << 20,
                ..RetransmitConfig::default()
            };
            let key = sealed.then_some(&secret);
            let mut forwarder = Forwarder::new(
                framer,
                Duration::from_secs(1),
                Some((&retransmit, 1472)),
                key,
                now,
            );
            let socket = udp_socket(&[to], &SocketOptions::default()).unwrap();
            let sealer = key.map(|s| s.sealer(Direction::Relay));
            let mut fanout = Fanout::new(socket, vec![to], sealer);
            let open = LinkEvent::Open {
                generation: 1,
                gap: None,
            };
            forwarder.on_event(open, now, &mut |d| fanout.send(d));
            // `count` messages, a read of `per_read` at a time (its last pack goes out at the
            // flush, the full ones as they fill).
            let mut run = |count: u64, per_read: u64| {
                for i in 0..count {
                    let message = LinkEvent::Message {
                        payload: TRADE,
                        binary: false,
                        rx_ns: 1_700_000_000_000_000_000 + i,
                    };
                    forwarder.on_event(message, now, &mut |d| fanout.send(d));
                    if i % per_read == per_read - 1 {
                        forwarder.flush(now, &mut |d| fanout.send(d));
                    }
                }
            };
            run(100, 10); // warm: pools, the socket's buffers, the stack
                          // The ring's first pass: 40 MiB of 1472-byte slots is 28,489; this sends > 30,000.
            let faults = page_faults_during(|| run(150_000, 10));
            assert_eq!(
                faults, 0,
                "page faults on the ring's first pass, sealed: {sealed}"
            );
            let during = allocations_during(|| run(20_000, 10));
            assert_eq!(during, 0, "sealed: {sealed}");
            let stats = fanout.stats();
            assert!(
                stats.datagrams_sent >= 34_000 && stats.send_errors == 0,
                "{stats:?}"
            );
        }
    });
}
