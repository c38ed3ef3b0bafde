//! feed-sim -> relay -> receiver on loopback, with the real binaries: what a user runs.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    csv_column, csv_rows, finish, free_udp_port, lossy_hop, summary, wait_until_bound, Workdir,
    RELAY,
};
use feed_sim::{FeedSim, SimConfig};
use relay_core::record::summary::SEED_FIELDS;

fn sim(count: Option<u64>, rate: f64, drop_after: Option<u64>) -> FeedSim {
    FeedSim::start(SimConfig {
        count,
        rate_per_stream: rate,
        drop_after,
        depth_levels: 60,
        log: false,
        ..SimConfig::default()
    })
    .unwrap()
}

#[test]
fn every_message_arrives_once_in_order_with_contiguous_sequence() {
    let per_stream = 300;
    let sim = sim(Some(per_stream), 1000.0, None);
    let run = Workdir::new(sim.ca_pem());
    let port = free_udp_port();
    let receiver = run.backbone_receiver(port, 4.0, "backbone.json", &[]);
    let url = sim.url("/stream?streams=btcusdt@trade/btcusdt@depth/btcusdt@bookTicker");
    let relay = run.relay(&url, &[], &[port], 5.0);
    finish(receiver, "receiver");
    finish(relay, "relay");

    let json = std::fs::read_to_string(run.path("backbone.json")).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&json).unwrap();
    for field in SEED_FIELDS {
        assert!(
            raw.get(field).is_some(),
            "missing seed field {field}: {json}"
        );
    }
    let s = summary(&run.path("backbone.json"));
    let expected = per_stream * 3;
    assert_eq!(s.setup_type, "aws-backbone");
    assert_eq!(s.sample_count, expected);
    assert_eq!(
        (
            s.events_lost,
            s.duplicates,
            s.reordered,
            s.malformed_datagrams
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(
        s.messages_without_event_time, per_stream,
        "bookTicker has no E"
    );
    assert_eq!(s.latency_sample_count, per_stream * 2);
    assert!(
        s.fragmented_messages >= per_stream,
        "60-level depth updates exceed one datagram"
    );
    assert!(s.avg_latency_ms.unwrap() >= 0.0);
    assert!(s.backbone_avg_latency_ms.unwrap() >= 0.0);
    let split = &s.latency_split;
    let count = |part: Option<relay_core::stats::ComponentSummary>| part.map_or(0, |p| p.count);
    assert_eq!(count(split.relay_dwell), expected, "{split:?}");
    assert_eq!(count(split.application), expected, "{split:?}");
    assert_eq!(
        count(split.exchange_to_relay),
        per_stream * 2,
        "only messages with E"
    );
    // Loopback has only the kernel's software stamp; the kernel may switch stamping on a
    // moment after the socket asked for it, and an unstamped message is counted, not guessed.
    let sources = s.nic_time_sources;
    assert_eq!(sources.software + sources.none, expected, "{sources:?}");
    assert!(sources.software > expected / 2, "{sources:?}");
    assert_eq!(count(split.network), sources.software);
    assert_eq!(count(split.kernel), sources.software);

    let json = run.path("backbone.json");
    let column = |name| csv_column(&json, name);
    let (ids, binance, tokyo, frankfurt, e2e) = (
        column("sequence_id"),
        column("binance_time"),
        column("tokyo_time"),
        column("frankfurt_time"),
        column("end_to_end_latency_ms"),
    );
    assert_eq!(ids.len() as u64, expected);
    for i in 0..ids.len() {
        assert_eq!(
            ids[i],
            (i + 1).to_string(),
            "sequence ids are contiguous and in order"
        );
        assert!(
            !tokyo[i].is_empty() && !frankfurt[i].is_empty(),
            "tokyo_time and frankfurt_time present in row {i}"
        );
        assert_eq!(
            binance[i].is_empty(),
            e2e[i].is_empty(),
            "end-to-end latency exactly when binance_time exists"
        );
    }
    assert_eq!(sim.stats().data_messages, expected);
}

#[test]
fn baseline_mode_reads_the_exchange_directly() {
    let per_stream = 200;
    let sim = sim(Some(per_stream), 1000.0, None);
    let run = Workdir::new(sim.ca_pem());
    let json = run.path("baseline.json");
    let url = sim.url("/ws/btcusdt@trade?timeUnit=MICROSECOND");
    let receiver = run.baseline_receiver(&url, 2.5, "baseline.json");
    finish(receiver, "baseline receiver");
    let s = summary(&json);
    assert_eq!(s.setup_type, "baseline");
    assert_eq!(s.sample_count, per_stream);
    assert_eq!(s.latency_sample_count, per_stream);
    assert_eq!(s.backbone_avg_latency_ms, None);
    assert_eq!(csv_rows(&json).len() as u64, per_stream);
    let binance = csv_column(&json, "binance_time");
    assert!(
        binance[0].contains('.'),
        "microsecond E keeps its fraction of a ms: {}",
        binance[0]
    );
    assert!(
        csv_column(&json, "tokyo_time")[0].is_empty(),
        "no tokyo_time without a relay"
    );
}

#[test]
fn fan_out_reaches_two_receivers_with_the_same_sequence() {
    let per_stream = 250;
    let sim = sim(Some(per_stream), 1000.0, None);
    let run = Workdir::new(sim.ca_pem());
    let (a, b) = (free_udp_port(), free_udp_port());
    let first = run.backbone_receiver(a, 3.5, "a.json", &[]);
    let second = run.backbone_receiver(b, 3.5, "b.json", &["--busy-poll"]);
    let relay = run.relay(&sim.url("/ws/btcusdt@aggTrade"), &[], &[a, b], 4.5);
    finish(first, "first receiver");
    finish(second, "second receiver");
    finish(relay, "relay");
    for name in ["a.json", "b.json"] {
        let s = summary(&run.path(name));
        assert_eq!((s.sample_count, s.events_lost), (per_stream, 0), "{name}");
    }
    assert_eq!(
        csv_column(&run.path("a.json"), "epoch"),
        csv_column(&run.path("b.json"), "epoch"),
        "one relay, one epoch, one sequence space"
    );
}

#[test]
fn a_dropped_exchange_connection_is_reported_as_a_reconnect_gap() {
    let sim = sim(None, 400.0, Some(300));
    let run = Workdir::new(sim.ca_pem());
    let port = free_udp_port();
    let receiver = run.backbone_receiver(port, 4.0, "gap.json", &[]);
    let relay = run.relay(&sim.url("/ws/btcusdt@trade"), &[], &[port], 4.5);
    finish(receiver, "receiver");
    finish(relay, "relay");
    let s = summary(&run.path("gap.json"));
    assert!(
        sim.stats().dropped >= 1,
        "the simulator dropped the connection"
    );
    assert!(s.reconnect_gaps >= 1, "{s:?}");
    assert!(s.reconnect_gap_total_ms > 0.0, "{s:?}");
    assert_eq!(
        s.events_lost, 0,
        "the relay's own sequence has no hole: {s:?}"
    );
    assert!(s.sample_count > 300);
}

#[test]
fn garbage_datagrams_are_counted_and_nothing_crashes() {
    let port = free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("garbage.json");
    let mut receiver = Command::new(RELAY)
        .args([
            "receive",
            "--mode",
            "aws-backbone",
            "--listen-address",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string(), "--duration", "1.5", "--output"])
        .arg(&json)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_bound(port, &mut receiver);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let mut garbage: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"hello".to_vec(),
        b"RLAY".to_vec(),
        vec![0xff; 1400],
    ];
    let mut header = b"RLAY".to_vec();
    header.resize(64, 0);
    header[4] = 1; // a version 1 datagram (64-byte header): an older relay
    garbage.push(header.clone());
    header[4] = 9; // unsupported version
    garbage.push(header.clone());
    header.truncate(relay::wire::HEADER_LEN);
    header[4] = relay::wire::VERSION;
    header[5] = 7; // unknown kind
    garbage.push(header);
    let mut rng = relay_core::rng::Rng::new(0x2545);
    for _ in 0..200 {
        let mut d = b"RLAY\x02".to_vec();
        let len = rng.below(200);
        d.extend((0..len).map(|_| rng.next_u64() as u8));
        garbage.push(d);
    }
    for d in &garbage {
        socket.send_to(d, target).unwrap();
    }
    finish(receiver, "receiver");
    let s = summary(&json);
    assert_eq!(s.sample_count, 0);
    assert_eq!(s.malformed_datagrams as usize, garbage.len(), "{s:?}");
    let malformed = s.accounting.clone().unwrap().malformed;
    assert!(
        malformed.unsupported_version >= 2,
        "versions 1 and 9: {malformed:?}"
    );
    assert!(malformed.unknown_kind >= 1, "{malformed:?}");
    // The host's clock state is recorded, and an unsynchronised clock is said to spoil one-way
    // figures (no median here, so a synchronised clock raises no doubt).
    let clock = s.clock.expect("adjtimex is readable without privileges");
    assert_eq!(s.clock_warning.is_some(), !clock.synchronized, "{s:?}");
}

#[test]
fn with_a_key_only_the_relays_sealed_datagrams_are_believed() {
    let per_stream = 300;
    let sim = sim(Some(per_stream), 1000.0, None);
    let run = Workdir::new(sim.ca_pem());
    let key = run.path("relay.key");
    std::fs::write(&key, [0x3cu8; 32]).unwrap();
    let key = key.to_str().unwrap();
    let port = free_udp_port();
    let receiver = run.backbone_receiver(port, 4.0, "sealed.json", &["--key-file", key]);
    // A forger who knows the format but not the key: unsealed data, and made-up seals.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let mut buf = [0u8; 256];
    for i in 0..40u64 {
        let flags = if i % 2 == 0 {
            0
        } else {
            relay::wire::flags::SEALED
        };
        let header = relay::wire::Header {
            flags,
            ..relay::wire::Header::new(relay::wire::Kind::Data, 0xf0f0, 1, 1 + i)
        };
        let mut w = relay::wire::Writer::new(&mut buf, header);
        assert!(w.push_block(relay::wire::Block::default(), br#"{"e":"trade","t":1}"#));
        let len = w.finish();
        socket.send_to(&buf[..len], target).unwrap();
    }
    let relay = run.relay_with(
        &sim.url("/ws/btcusdt@trade"),
        &[],
        &[port],
        5.0,
        &["--key-file", key],
    );
    let receiver = finish(receiver, "receiver");
    let relay = finish(relay, "relay");
    let s = summary(&run.path("sealed.json"));
    assert_eq!((s.sample_count, s.events_lost), (per_stream, 0), "{s:?}");
    assert!(s.authenticated);
    assert_eq!(s.unauthenticated_datagrams, 40, "{s:?}");
    let c = s.accounting.unwrap();
    assert_eq!((c.unsealed, c.bad_seal), (20, 20), "{c:?}");
    for (what, output) in [("receiver", receiver), ("relay", relay)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("WARNING"), "{what}: {stderr}");
    }
}

#[test]
fn without_a_key_both_sides_warn_and_the_summary_says_unauthenticated() {
    let sim = sim(Some(50), 1000.0, None);
    let run = Workdir::new(sim.ca_pem());
    let port = free_udp_port();
    let receiver = run.backbone_receiver(port, 2.5, "open.json", &[]);
    let relay = run.relay(&sim.url("/ws/btcusdt@trade"), &[], &[port], 3.0);
    let receiver = finish(receiver, "receiver");
    let relay = finish(relay, "relay");
    let s = summary(&run.path("open.json"));
    assert_eq!(s.sample_count, 50);
    assert!(!s.authenticated);
    let stderr = String::from_utf8_lossy(&receiver.stderr);
    assert!(
        stderr.contains("WARNING: no --key-file: anyone"),
        "{stderr}"
    );
    let stderr = String::from_utf8_lossy(&relay.stderr);
    assert!(stderr.contains("WARNING: no --key-file"), "{stderr}");
}

#[test]
fn server_shutdowns_every_second_and_a_half_cost_no_event() {
    // Before the gapless rotation, a serverShutdown every 2 s lost ~23% of the trades.
    let sim = sim(None, 200.0, None);
    let run = Workdir::new(sim.ca_pem());
    let port = free_udp_port();
    let receiver = run.backbone_receiver(port, 7.0, "rotated.json", &[]);
    let baseline = run.baseline_receiver(&sim.url("/ws/ethusdt@trade"), 7.0, "baseline.json");
    let relay = run.relay(
        &sim.url("/stream?streams=btcusdt@trade/btcusdt@aggTrade/btcusdt@depth"),
        &[],
        &[port],
        7.5,
    );
    for _ in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        sim.send_server_shutdown();
    }
    finish(receiver, "receiver");
    let relay = finish(relay, "relay");
    let baseline = finish(baseline, "baseline receiver");
    for (what, output) in [("relay", relay), ("baseline", baseline)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.matches("took over without a gap").count() >= 3,
            "{what}: {stderr}"
        );
    }
    for json in ["rotated.json", "baseline.json"] {
        let s = summary(&run.path(json));
        let exchange = s.exchange.clone().unwrap();
        assert_eq!(s.exchange_events_missed, 0, "{json}: {exchange:?}");
        assert_eq!((s.events_lost, s.duplicates), (0, 0), "{json}: {s:?}");
        assert_eq!(s.reconnect_gaps, 0, "{json}: a rotation is no outage");
        for stream in &exchange.streams {
            assert_eq!(
                stream.connections, 1,
                "{json}: rotations stay in one generation"
            );
            if stream.missed.is_some() {
                // Consecutive ids: every one from the first to the last arrived, once.
                assert_eq!(
                    stream.last_id - stream.first_id + 1,
                    stream.messages,
                    "{json}: {stream:?}"
                );
            }
        }
        assert!(exchange.streams.len() >= if json == "baseline.json" { 1 } else { 3 });
    }
}

#[test]
fn a_spinning_relay_and_baseline_deliver_everything_through_a_rotation_and_nak() {
    // --idle spin: no io_uring read at all, non-blocking polling on the exchange sockets, the
    // NAK socket and the timers; the baseline likewise with --busy-poll.
    let sim = sim(None, 300.0, None);
    let run = Workdir::new(sim.ca_pem());
    let port = free_udp_port();
    let receiver = run.backbone_receiver(port, 4.0, "spun.json", &[]);
    let mut baseline = Command::new(RELAY);
    baseline
        .args([
            "receive",
            "--mode",
            "baseline",
            "--busy-poll",
            "--duration",
            "4",
        ])
        .args(["--url", &sim.url("/ws/ethusdt@trade"), "--ca-file"])
        .arg(&run.ca)
        .arg("--output")
        .arg(run.path("spun-baseline.json"))
        .stderr(Stdio::piped());
    let baseline = baseline.spawn().unwrap();
    let relay = run.relay_with(
        &sim.url("/ws/btcusdt@trade"),
        &[],
        &[port],
        4.5,
        &["--idle", "spin", "--core", "0"],
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    sim.send_server_shutdown();
    finish(receiver, "receiver");
    finish(baseline, "baseline receiver");
    finish(relay, "relay");
    for json in ["spun.json", "spun-baseline.json"] {
        let s = summary(&run.path(json));
        let exchange = s.exchange.clone().unwrap();
        assert!(s.sample_count > 500, "{json}: {s:?}");
        assert_eq!(
            (s.events_lost, s.exchange_events_missed),
            (0, 0),
            "{json}: {exchange:?}"
        );
        let stream = &exchange.streams[0];
        assert_eq!(
            stream.last_id - stream.first_id + 1,
            stream.messages,
            "{json}: {stream:?}"
        );
    }
}

#[test]
fn runs_where_nothing_arrives_fail_with_a_reason_and_still_write_the_summary() {
    let closed = free_udp_port(); // nothing listens on this TCP port either, as a rule
    let dir = tempfile::tempdir().unwrap();
    let url = format!("ws://127.0.0.1:{closed}/ws/btcusdt@trade");
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &["receive", "--mode", "baseline", "--url", &url],
            "baseline.json",
            "delivered no market data",
        ),
        (
            &[
                "receive",
                "--mode",
                "aws-backbone",
                "--port",
                &closed.to_string(),
            ],
            "backbone.json",
            "no datagram arrived on UDP",
        ),
        (
            &[
                "forward",
                "--url",
                &url,
                "--to",
                "127.0.0.1:9",
                "--duration-secs",
                "1.5",
            ],
            "",
            "delivered no market data",
        ),
    ];
    for (args, json, expected) in cases {
        let mut command = Command::new(RELAY);
        command.args(args);
        if !json.is_empty() {
            command
                .args(["--duration", "1.5", "--output"])
                .arg(dir.path().join(json));
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} should fail: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        if !json.is_empty() {
            let s = summary(&dir.path().join(json));
            assert_eq!(s.sample_count, 0);
            assert!(s.errors.iter().any(|e| e.contains(expected)), "{s:?}");
        }
    }
    let output = Command::new(RELAY)
        .args([
            "receive",
            "--duration",
            "1",
            "--output",
            "/nonexistent/dir/results.json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("cannot write the results next to"),
        "checked before the run: {stderr}"
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["receive", "--key-file", "/nonexistent/relay.key"],
            "cannot read the key file /nonexistent/relay.key",
        ),
        (
            &["forward", "--to", "127.0.0.1:9", "--key-file", "/dev/null"],
            "holds 0 bytes; the shared secret must be 32",
        ),
        (
            &["forward", "--url", "wss://127.0.0.1:1/ws/x"],
            "no receiver",
        ),
        (
            &["forward", "--url", "https://x/ws", "--to", "127.0.0.1:9"],
            "expected wss:// or ws://",
        ),
        (
            &[
                "forward",
                "--to",
                "nonsense",
                "--url",
                "ws://127.0.0.1:1/ws/x",
            ],
            "not HOST:PORT",
        ),
        (
            &["receive", "--duration", "0"],
            "positive number of seconds",
        ),
    ];
    for (args, expected) in cases {
        let output = Command::new(RELAY).args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected),
            "{args:?}: stderr {stderr:?} lacks {expected:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tokyo-config.json");
    std::fs::write(&config, r#"{"frankfurt_prot": 8080}"#).unwrap();
    let output = Command::new(RELAY)
        .arg("forward")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("frankfurt_prot"),
        "{stderr}"
    );
}

/// `--mode both`: the relay's datagrams and a direct connection at once. The relay stops
/// halfway, so the second half of the events comes only directly; every event is still
/// delivered exactly once, and the arbitration says who brought what.
#[test]
fn both_mode_delivers_every_event_once_from_whichever_path_brings_it_first() {
    let sim = sim(None, 200.0, None);
    let run = Workdir::new(sim.ca_pem());
    let port = free_udp_port();
    let url = sim.url("/stream?streams=btcusdt@trade/btcusdt@depth/btcusdt@bookTicker");
    let port_text = port.to_string();
    let mut receiver = run.receiver(
        "both.json",
        &[
            "--mode",
            "both",
            "--listen-address",
            "127.0.0.1",
            "--port",
            &port_text,
            "--duration",
            "4",
            "--url",
            &url,
        ],
    );
    wait_until_bound(port, &mut receiver);
    let relay = run.relay(&url, &[], &[port], 1.5);
    finish(relay, "relay");
    finish(receiver, "receiver");
    let s = summary(&run.path("both.json"));
    assert_eq!(s.setup_type, "both");
    let a = s.arbitration.expect("an arbitration object");
    assert_eq!(
        a.paths.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
        ["relay", "direct"]
    );
    let (relay_path, direct) = (&a.paths[0], &a.paths[1]);
    assert_eq!(s.sample_count, a.events, "each event recorded once");
    assert_eq!(csv_rows(&run.path("both.json")).len() as u64, a.events);
    assert_eq!(relay_path.wins + direct.wins, a.events);
    assert_eq!(
        a.events + a.duplicates_dropped,
        relay_path.copies + direct.copies
    );
    assert!(
        relay_path.copies > 300,
        "the relay ran 1.5 s at 600 msg/s: {a:?}"
    );
    assert!(
        direct.only_on_this_path > 500,
        "after the relay stopped, only the direct path: {a:?}"
    );
    assert!(a.duplicates_dropped >= relay_path.copies - relay_path.only_on_this_path);
    // The relay path's own accounting is there as in aws-backbone mode.
    assert_eq!(s.events_lost, 0);
    assert!(s.accounting.is_some());
}

/// Two relays, each on its own port and its own lossy route (each drops every 5th datagram, one
/// from 0.8 s to 1.3 s, the other from 1.6 s to 2.1 s, so no event is lost on both), no recovery:
/// the receiver arbitrates them as two paths with their own sequence spaces, and the arbitrated
/// stream misses nothing.
#[test]
fn two_relays_on_two_lossy_routes_arbitrate_into_one_complete_stream() {
    let sim = sim(None, 200.0, None);
    let run = Workdir::new(sim.ca_pem());
    let (a, b) = (free_udp_port(), free_udp_port());
    let (a_text, b_text) = (a.to_string(), b.to_string());
    let mut receiver = run.receiver(
        "two.json",
        &[
            "--mode",
            "relay",
            "--listen-address",
            "127.0.0.1",
            "--port",
            &a_text,
            "--port",
            &b_text,
            "--duration",
            "4",
            "--no-recovery",
        ],
    );
    wait_until_bound(a, &mut receiver);
    wait_until_bound(b, &mut receiver);
    let stop = Arc::new(AtomicBool::new(false));
    let window = |from: f64| {
        move |seen: u64, at: Duration| {
            seen.is_multiple_of(5) && (from..from + 0.5).contains(&at.as_secs_f64())
        }
    };
    let (hop_a, dropped_a) = lossy_hop(a, stop.clone(), window(0.8));
    let (hop_b, dropped_b) = lossy_hop(b, stop.clone(), window(1.6));
    let url = sim.url("/stream?streams=btcusdt@trade/btcusdt@bookTicker");
    let relays = [hop_a, hop_b].map(|hop| run.relay(&url, &[], &[hop], 2.5));
    for relay in relays {
        finish(relay, "relay");
    }
    stop.store(true, Ordering::Relaxed);
    let dropped = [dropped_a.join().unwrap(), dropped_b.join().unwrap()];
    finish(receiver, "receiver");
    let s = summary(&run.path("two.json"));
    let arb = s.arbitration.expect("an arbitration object");
    let names: Vec<&str> = arb.paths.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(names, [format!("relay:{a}"), format!("relay:{b}")]);
    for (path, dropped) in arb.paths.iter().zip(dropped) {
        assert!(dropped > 10, "{dropped}");
        assert!(
            path.events_lost.is_some_and(|lost| lost > 0) && path.copies > 300,
            "each relay lost what its route dropped: {path:?}"
        );
        assert!(path.wins > 0 && path.only_on_this_path > 0, "{path:?}");
    }
    assert_eq!(
        arb.events_missing_where_all_paths_delivered, 0,
        "whatever one route dropped, the other brought: {arb:?}"
    );
    assert_eq!(s.sample_count, arb.events);
    assert_eq!(
        s.events_lost,
        arb.paths[0].events_lost.unwrap(),
        "the summary's accounting is the first relay's"
    );
}

/// `--serve-udp`: a receiver sends what it delivers on as relay datagrams; a second receiver
/// behind a hop that drops every 20th of them takes them as it takes a relay's, NAKs what the hop
/// dropped, and ends with every message, in the first receiver's order.
#[test]
fn a_receiver_serves_its_stream_as_datagrams_to_another_receiver() {
    let per_stream = 400;
    let sim = sim(Some(per_stream), 400.0, None);
    let run = Workdir::new(sim.ca_pem());
    let (first, second) = (free_udp_port(), free_udp_port());
    let downstream = run.backbone_receiver(second, 5.0, "second.json", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let (hop, dropped) = lossy_hop(second, stop.clone(), |seen, _| seen.is_multiple_of(20));
    let upstream = run.backbone_receiver(
        first,
        4.0,
        "first.json",
        &["--serve-udp", &format!("127.0.0.1:{hop}")],
    );
    let url = sim.url("/stream?streams=btcusdt@trade/btcusdt@depth/btcusdt@bookTicker");
    let relay = run.relay(&url, &[], &[first], 3.0);
    finish(relay, "relay");
    finish(upstream, "the serving receiver");
    finish(downstream, "the downstream receiver");
    stop.store(true, Ordering::Relaxed);
    let dropped = dropped.join().unwrap();
    let (a, b) = (
        summary(&run.path("first.json")),
        summary(&run.path("second.json")),
    );
    let feed = a.serve.and_then(|s| s.udp).expect("a serve.udp object");
    assert_eq!(a.sample_count, per_stream * 3);
    assert_eq!(feed.messages, a.sample_count);
    assert!(
        dropped > 0 && feed.naks > 0 && feed.retransmitted > 0,
        "{feed:?}"
    );
    assert_eq!(
        (b.sample_count, b.events_lost, b.duplicates),
        (a.sample_count, 0, 0),
        "{b:?}"
    );
    assert!(b.recovered > 0, "{b:?}");
    // The feed's own sequence numbers, one per delivered message, in delivery order; the
    // events are the first receiver's, in its order.
    let ids = common::csv_sequence_ids(&run.path("second.json"));
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, (1..=a.sample_count).collect::<Vec<_>>());
    let times = |json: &str| csv_column(&run.path(json), "binance_time");
    let mut by_sequence: Vec<(u64, String)> = ids.into_iter().zip(times("second.json")).collect();
    by_sequence.sort();
    let second: Vec<String> = by_sequence.into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        times("first.json"),
        second,
        "the same events in the same order"
    );
    assert_eq!(
        b.latency_split.relay_dwell.map(|c| c.count),
        Some(a.sample_count)
    );
}

/// `--mode both` with the relay on a combined-stream URL and the direct path on a raw one: the
/// same event cannot be matched across the two forms, and the receiver says so and fails rather
/// than deliver every event twice in silence.
#[test]
fn both_mode_refuses_mixed_url_forms_with_the_reason() {
    let sim = sim(None, 200.0, None);
    let run = Workdir::new(sim.ca_pem());
    let port = free_udp_port();
    let port_text = port.to_string();
    let raw = sim.url("/ws/btcusdt@trade");
    let mut receiver = run.receiver(
        "mixed.json",
        &[
            "--mode",
            "both",
            "--listen-address",
            "127.0.0.1",
            "--port",
            &port_text,
            "--duration",
            "2",
            "--url",
            &raw,
        ],
    );
    wait_until_bound(port, &mut receiver);
    let relay = run.relay(&sim.url("/stream?streams=btcusdt@trade"), &[], &[port], 1.5);
    finish(relay, "relay");
    let output = receiver.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("combined-stream wrapper") && stderr.contains("same URL form"),
        "{stderr}"
    );
    let s = summary(&run.path("mixed.json"));
    assert!(
        s.errors.iter().any(|e| e.contains("cannot be matched")),
        "{:?}",
        s.errors
    );
}
