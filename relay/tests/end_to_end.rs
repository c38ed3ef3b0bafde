//! feed-sim -> relay -> receiver on loopback, with the real binaries: what a user runs.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};

use common::{csv_rows, finish, free_udp_port, summary, wait_until_bound, Workdir, RELAY};
use relay::feed_sim::{FeedSim, SimConfig};
use serde_json::Value;

const SEED_FIELDS: [&str; 12] = [
    "setup_type",
    "sample_count",
    "events_lost",
    "avg_latency_ms",
    "median_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "min_latency_ms",
    "max_latency_ms",
    "jitter_stddev_ms",
    "backbone_avg_latency_ms",
    "backbone_median_latency_ms",
];

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

    let s = summary(&run.path("backbone.json"));
    for field in SEED_FIELDS {
        assert!(s.get(field).is_some(), "missing seed field {field}: {s}");
    }
    let expected = per_stream * 3;
    assert_eq!(s["setup_type"], "aws-backbone");
    assert_eq!(s["sample_count"], expected);
    assert_eq!(s["events_lost"], 0);
    assert_eq!(s["duplicates"], 0);
    assert_eq!(s["reordered"], 0);
    assert_eq!(s["malformed_datagrams"], 0);
    assert_eq!(
        s["messages_without_event_time"], per_stream,
        "bookTicker has no E"
    );
    assert_eq!(s["latency_sample_count"], per_stream * 2);
    assert!(
        s["fragmented_messages"].as_u64().unwrap() >= per_stream,
        "60-level depth updates exceed one datagram"
    );
    assert!(s["avg_latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(s["backbone_avg_latency_ms"].as_f64().unwrap() >= 0.0);
    let split = &s["latency_split"];
    for part in ["relay_dwell", "application"] {
        assert_eq!(
            split[part]["count"], expected,
            "{part} for every message: {split}"
        );
    }
    assert_eq!(
        split["exchange_to_relay"]["count"],
        per_stream * 2,
        "only messages with E"
    );
    // Loopback has only the kernel's software stamp; the kernel may switch stamping on a
    // moment after the socket asked for it, and an unstamped message is counted, not guessed.
    let sources = &s["nic_time_sources"];
    let stamped = sources["software"].as_u64().unwrap();
    assert_eq!(
        stamped + sources["none"].as_u64().unwrap(),
        expected,
        "{sources}"
    );
    assert!(stamped > expected / 2, "{sources}");
    assert_eq!(split["network"]["count"], stamped);
    assert_eq!(split["kernel"]["count"], stamped);

    let rows = csv_rows(&run.path("backbone.json"));
    assert_eq!(rows.len() as u64, expected);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row[0],
            (i + 1).to_string(),
            "sequence ids are contiguous and in order"
        );
        assert!(
            !row[2].is_empty() && !row[3].is_empty(),
            "tokyo_time and frankfurt_time present: {row:?}"
        );
        assert_eq!(
            row[1].is_empty(),
            row[4].is_empty(),
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
    assert_eq!(s["setup_type"], "baseline");
    assert_eq!(s["sample_count"], per_stream);
    assert_eq!(s["latency_sample_count"], per_stream);
    assert_eq!(s["backbone_avg_latency_ms"], Value::Null);
    let rows = csv_rows(&json);
    assert_eq!(rows.len() as u64, per_stream);
    assert!(
        rows[0][1].contains('.'),
        "microsecond E keeps its fraction of a ms: {:?}",
        rows[0]
    );
    assert!(rows[0][2].is_empty(), "no tokyo_time without a relay");
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
        assert_eq!(s["sample_count"], per_stream, "{name}");
        assert_eq!(s["events_lost"], 0, "{name}");
    }
    let epochs_a: Vec<String> = csv_rows(&run.path("a.json"))
        .into_iter()
        .map(|r| r[6].clone())
        .collect();
    let epochs_b: Vec<String> = csv_rows(&run.path("b.json"))
        .into_iter()
        .map(|r| r[6].clone())
        .collect();
    assert_eq!(
        epochs_a, epochs_b,
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
    assert!(s["reconnect_gaps"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["reconnect_gap_total_ms"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(
        s["events_lost"], 0,
        "the relay's own sequence has no hole: {s}"
    );
    assert!(s["sample_count"].as_u64().unwrap() > 300);
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
    header[4] = 9; // unsupported version
    garbage.push(header.clone());
    header[4] = 1;
    header[5] = 7; // unknown kind
    garbage.push(header);
    let mut rng = relay::rng::Rng::new(0x2545);
    for _ in 0..200 {
        let mut d = b"RLAY\x01".to_vec();
        let len = rng.below(200);
        d.extend((0..len).map(|_| rng.next_u64() as u8));
        garbage.push(d);
    }
    for d in &garbage {
        socket.send_to(d, target).unwrap();
    }
    finish(receiver, "receiver");
    let s = summary(&json);
    assert_eq!(s["sample_count"], 0);
    assert_eq!(
        s["malformed_datagrams"].as_u64().unwrap() as usize,
        garbage.len(),
        "{s}"
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let cases: [(&[&str], &str); 4] = [
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
