//! The attacks that issue 9 found against the release receiver, replayed against the real
//! binary on loopback while a relay forwards real data, without a key (with one, none of these
//! datagrams would get past the seal; see `end_to_end.rs`). None of them may hide real data,
//! crash the receiver, grow its memory with what headers claim, or reach the figures.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{finish, free_udp_port, summary, Workdir};
use feed_sim::{FeedSim, SimConfig};
use relay::wire::{message_flags, Block, Header, Kind, Writer};

fn datagram(header: Header, block: Block, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1472];
    let mut w = Writer::new(&mut buf, header);
    assert!(w.push_block(block, payload));
    let len = w.finish();
    buf.truncate(len);
    buf
}

/// The resident set of process `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn forged_epochs_claimed_sizes_and_forged_timestamps_change_nothing_real() {
    let trades = 400;
    let sim = FeedSim::start(SimConfig {
        count: Some(trades),
        rate_per_stream: 100.0,
        log: false,
        ..SimConfig::default()
    })
    .unwrap();
    let run = Workdir::new(sim.ca_pem());
    let port = free_udp_port();
    let receiver = run.backbone_receiver(port, 7.0, "attacked.json", &[]);
    let receiver_pid = receiver.id();
    let mut relay = run.relay(&sim.url("/ws/btcusdt@trade"), &[], &[port], 8.0);
    // The attacker read one datagram: it knows the epoch (here, from the relay's own words).
    let mut stderr = BufReader::new(relay.stderr.take().unwrap());
    let mut line = String::new();
    let epoch = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the relay said nothing"
        );
        if let Some(rest) = line.strip_prefix("relay: epoch 0x") {
            break u32::from_str_radix(&rest[..8], 16).unwrap();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    std::thread::sleep(Duration::from_millis(500));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let before = rss_kib(receiver_pid).unwrap();
    // 1. A new made-up epoch on every datagram.
    for i in 0..5_000u32 {
        let h = Header::new(Kind::Data, 0x5000_0000 + i, 1, 1);
        socket
            .send_to(&datagram(h, Block::default(), b"{}"), to)
            .unwrap();
    }
    // 2. Fragments of 320 bytes of the real epoch, each claiming a 16 MiB message.
    for i in 0..64u64 {
        let h = Header {
            message_len: 16 << 20,
            fragment_offset: 320,
            fragment_index: 1,
            fragment_count: 52_429,
            ..Header::new(Kind::Data, epoch, 1, 5_000 + i)
        };
        socket
            .send_to(&datagram(h, Block::default(), &[0x41; 320]), to)
            .unwrap();
    }
    // 3. Timestamps that overflow any i64 difference.
    let forged_times = Block {
        flags: message_flags::EVENT_TIME,
        relay_rx_ns: u64::MAX - 1,
        event_time_ns: u64::MAX,
        ..Block::default()
    };
    let h = Header::new(Kind::Data, epoch, 1, 6_000);
    socket
        .send_to(&datagram(h, forged_times, br#"{"e":"trade"}"#), to)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut peak = before;
    while Instant::now() < deadline {
        peak = peak.max(rss_kib(receiver_pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    finish(receiver, "receiver");
    let _ = relay.wait();
    let s = summary(&run.path("attacked.json"));
    let c = s.accounting.clone().unwrap();
    assert_eq!(c.epochs, 1, "no made-up epoch took over: {c:?}");
    assert_eq!(c.unconfirmed_epoch, 5_000, "{c:?}");
    assert!(
        s.sample_count >= trades,
        "every real trade arrived: {} of {trades}",
        s.sample_count
    );
    assert!(
        peak < before + 64 * 1024,
        "64 claims of 16 MiB: RSS {before} KiB -> {peak} KiB"
    );
    assert_eq!(s.implausible_timestamps, 1, "{s:?}");
    let min = s.min_latency_ms.unwrap();
    assert!(min >= 0.0 && s.max_latency_ms.unwrap() < 60_000.0, "{s:?}");
}
