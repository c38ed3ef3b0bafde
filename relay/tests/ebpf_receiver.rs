//! The receiver with its eBPF stamper attached, end to end: simulator, relay and receiver in a
//! private network namespace over its loopback, the receiver attaching with `--iface lo`.
//! Checks that every delivered message got its eBPF stamp, that the hook fallback works (lo has
//! no native XDP), that the split is computed, and that nothing stays attached afterwards.
//!
//! Needs root and the eBPF object: otherwise a loud SKIPPED line, or a failure under CI=true.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{finish, privileged, summary, RELAY};
use relay_core::record::summary::Summary;
use relay_host::netns::Topology;

const MESSAGES: u64 = 300;
const RECEIVER_PORT: &str = "47900";

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs simulator -> relay -> receiver (with `--iface lo --ebpf-mode <mode>`) in a fresh
/// namespace and returns the receiver's summary and the namespace's `ip -d link show lo` after.
fn relay_through_stamper(tag: &str, mode: &str, extra: &[&str]) -> (Summary, String) {
    let mut topology = Topology::new().unwrap();
    let ns = topology.namespace(tag).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let json = dir.path().join("stamped.json");
    let mut sim = ns.exec(RELAY);
    sim.args(["feed-sim", "--listen", "127.0.0.1:9443", "--rate", "1000"])
        .args(["--count", &MESSAGES.to_string(), "--cert-out"])
        .arg(&ca)
        .stderr(Stdio::null());
    let mut sim: Child = sim.spawn().unwrap();
    wait_for("the simulator's CA file", || ca.exists());

    let receiver = ns
        .exec(RELAY)
        .args([
            "receive",
            "--mode",
            "relay",
            "--listen-address",
            "127.0.0.1",
        ])
        .args([
            "--port",
            RECEIVER_PORT,
            "--duration",
            "3",
            "--iface",
            "lo",
            "--ebpf-mode",
            mode,
        ])
        .args(extra)
        .arg("--output")
        .arg(&json)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the receiver listening", || {
        !run(ns
            .exec("ss")
            .args(["-Huln", &format!("sport = :{RECEIVER_PORT}")]))
        .trim()
        .is_empty()
    });
    let relay = ns
        .exec(RELAY)
        .args([
            "forward",
            "--url",
            "wss://127.0.0.1:9443/ws/btcusdt@trade?timeUnit=MICROSECOND",
        ])
        .arg("--ca-file")
        .arg(&ca)
        .args([
            "--to",
            &format!("127.0.0.1:{RECEIVER_PORT}"),
            "--duration-secs",
            "3.5",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(receiver, "receiver");
    finish(relay, "relay");
    let _ = sim.kill();
    let _ = sim.wait();
    let link = run(ns.exec("ip").args(["-d", "link", "show", "lo"]));
    (summary(Path::new(&json)), link)
}

fn check_stamped(s: &Summary, hook: &str) {
    let ebpf = s.ebpf.as_ref().expect("an ebpf report with --iface");
    assert_eq!(ebpf.hook.as_deref(), Some(hook), "{ebpf:?}");
    assert_eq!((s.sample_count, s.events_lost), (MESSAGES, 0), "{s:?}");
    assert_eq!(
        (ebpf.messages_with_stamp, ebpf.messages_without_stamp),
        (MESSAGES, 0),
        "{ebpf:?}"
    );
    // One stamp per datagram, however many messages it packs: every datagram the receiver
    // accounted was stamped.
    let datagrams = s
        .accounting
        .as_ref()
        .expect("aws-backbone accounting")
        .datagrams;
    assert!(
        ebpf.matched >= datagrams && datagrams > 0,
        "{ebpf:?}, {datagrams} datagrams"
    );
    assert_eq!(ebpf.ring_full, 0);
    let split = &s.latency_split;
    assert_eq!(split.network.map(|c| c.count), Some(MESSAGES), "{split:?}");
    assert_eq!(split.application.map(|c| c.count), Some(MESSAGES));
    // On lo the generic-XDP and tc hooks run after the kernel's software stamp, so the software
    // stamp stays the first one (the eBPF stamp confirms it but does not move the boundary).
    let sources = s.nic_time_sources;
    assert_eq!(sources.software + sources.ebpf, MESSAGES, "{sources:?}");
}

#[test]
fn auto_mode_falls_back_to_generic_xdp_and_stamps_every_message() {
    let Some(_guard) = privileged("ebpf_receiver auto") else {
        return;
    };
    let (s, link) = relay_through_stamper("auto", "auto", &[]);
    check_stamped(&s, "xdp-generic");
    let errors = &s.ebpf.as_ref().unwrap().errors;
    assert!(
        errors.len() == 1 && errors[0].starts_with("xdp-native"),
        "lo has no native XDP: {errors:?}"
    );
    assert!(
        !link.contains("xdp"),
        "the program is detached after the run: {link}"
    );
}

#[test]
fn tc_ingress_stamps_every_message() {
    let Some(_guard) = privileged("ebpf_receiver tc-ingress") else {
        return;
    };
    // With --hw-timestamps: lo has no hardware clock, so the request is refused with the reason,
    // no message has a hardware stamp (the tc program reads `hwtstamp` as 0) and the eBPF and
    // software stamps carry on.
    let (s, _) = relay_through_stamper("tc", "tc-ingress", &["--hw-timestamps"]);
    check_stamped(&s, "tc-ingress");
    assert_eq!(s.ebpf.as_ref().unwrap().errors.len(), 0);
    let hw = s.hardware_timestamps.expect("a hardware_timestamps object");
    assert!(!hw.enabled && hw.interface == "lo", "{hw:?}");
    assert!(
        hw.error
            .as_deref()
            .unwrap()
            .contains("cannot stamp in hardware"),
        "{hw:?}"
    );
    assert_eq!(s.nic_time_sources.hardware, 0);
}

#[test]
fn without_privileges_or_interface_the_receiver_carries_on() {
    // No such interface: the attach fails for every hook, the receiver still measures.
    let work = common::Workdir::new("");
    let json = work.path("no-iface.json");
    let port = common::free_udp_port();
    let receiver = work.backbone_receiver(port, 1.0, "no-iface.json", &["--iface", "no-such-if0"]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for sequence in 1..=3 {
        let mut buf = [0u8; 256];
        let header = relay::wire::Header::new(relay::wire::Kind::Data, 7, 1, sequence);
        let mut w = relay::wire::Writer::new(&mut buf, header);
        assert!(w.push_block(relay::wire::Block::default(), b"{}"));
        let len = w.finish();
        socket.send_to(&buf[..len], ("127.0.0.1", port)).unwrap();
    }
    let output = finish(receiver, "receiver without a usable interface");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("carrying on without eBPF stamps"),
        "{stderr}"
    );
    let s = summary(&json);
    assert_eq!(s.sample_count, 3, "it measured: {s:?}");
    let ebpf = s.ebpf.expect("an ebpf report with --iface");
    assert_eq!(ebpf.hook, None);
    assert_eq!(ebpf.errors.len(), 3, "{ebpf:?}");
}
