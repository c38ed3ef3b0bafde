//! `relay receive --serve-udp` to a multicast group, with two consumers joined to it, in a private
//! network namespace (its loopback made multicast-capable): both get every message.
//!
//! Needs root (network namespaces): otherwise a loud SKIPPED line, or a failure under CI=true.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{finish, summary, RELAY};
use relay_host::netns::Topology;

const PER_STREAM: u64 = 300;
const GROUP: &str = "239.255.7.7";
const FEED_PORT: &str = "47910";
const RECEIVER_PORT: &str = "47911";

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_consumers_on_a_multicast_group_get_every_message() {
    let Some(_guard) = relay_host::privileged::guard("multicast serve-udp", None) else {
        return;
    };
    let mut topology = Topology::new().unwrap();
    let ns = topology.namespace("mcast").unwrap();
    run(ns.exec("ip").args(["link", "set", "lo", "multicast", "on"]));
    run(ns
        .exec("ip")
        .args(["route", "add", "224.0.0.0/4", "dev", "lo"]));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let mut sim: Child = ns
        .exec(RELAY)
        .args(["feed-sim", "--listen", "127.0.0.1:9443", "--rate", "500"])
        .args(["--count", &PER_STREAM.to_string(), "--cert-out"])
        .arg(&ca)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ca.exists() {
        assert!(Instant::now() < deadline, "the simulator's CA file");
        std::thread::sleep(Duration::from_millis(20));
    }
    let receiver = |listen: &str, port: &str, secs: &str, out: &Path, extra: &[&str]| {
        ns.exec(RELAY)
            .args(["receive", "--mode", "relay", "--listen-address", listen])
            .args(["--port", port, "--duration", secs])
            .args(extra)
            .arg("--output")
            .arg(out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let consumers: Vec<(Child, std::path::PathBuf)> = ["one", "two"]
        .iter()
        .map(|name| {
            let out = dir.path().join(format!("{name}.json"));
            (receiver(GROUP, FEED_PORT, "6", &out, &[]), out)
        })
        .collect();
    let serving_out = dir.path().join("serving.json");
    let feed = format!("{GROUP}:{FEED_PORT}");
    let serving = receiver(
        "127.0.0.1",
        RECEIVER_PORT,
        "4.5",
        &serving_out,
        &["--serve-udp", &feed],
    );
    std::thread::sleep(Duration::from_millis(500));
    let relay = ns
        .exec(RELAY)
        .args([
            "forward",
            "--url",
            "wss://127.0.0.1:9443/stream?streams=btcusdt@trade/btcusdt@bookTicker",
        ])
        .arg("--ca-file")
        .arg(&ca)
        .args(["--to", &format!("127.0.0.1:{RECEIVER_PORT}")])
        .args(["--duration-secs", "3"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(relay, "relay");
    finish(serving, "the serving receiver");
    let served = summary(&serving_out);
    assert_eq!(served.sample_count, PER_STREAM * 2);
    let udp = served.serve.and_then(|s| s.udp).expect("serve.udp");
    assert_eq!(
        (udp.messages, udp.send_errors),
        (PER_STREAM * 2, 0),
        "{udp:?}"
    );
    for (child, out) in consumers {
        finish(child, "a consumer");
        let s = summary(&out);
        assert_eq!(
            (s.sample_count, s.events_lost, s.duplicates),
            (PER_STREAM * 2, 0, 0),
            "{}: {s:?}",
            out.display()
        );
    }
    let _ = sim.kill();
    let _ = sim.wait();
}
