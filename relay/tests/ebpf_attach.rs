//! The eBPF receive stamper on a real (virtual) link: for every hook mode, a sender namespace
//! sends relay datagrams (IPv4 and IPv6), foreign UDP and malformed datagrams over a veth pair
//! to a receiver namespace where `RxStamper` is attached, and the stamps and counters are checked.
//! Afterwards nothing may be left on the interface.
//!
//! Needs root (network namespaces, BPF) and the eBPF object. Without either it prints a loud
//! `SKIPPED` line and returns, except under `CI=true`, where it fails.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::privileged;
use relay::receive::rx_time::ebpf::{tai_offset_ns, EbpfCounters, RxStamper};
use relay::wire::stamp::{Hook, RxStamp};
use relay::wire::{Block, Header, Kind, Writer, BLOCK_HEADER_LEN, HEADER_LEN};
use relay_host::clock::realtime_ns;
use relay_host::netns::{enter, Pair, Topology};

/// Relay datagrams over IPv4 and IPv6.
const OURS_V4: u64 = 20_000;
const OURS_V6: u64 = 1_000;
/// UDP datagrams to another port (must be counted as other, never stamped).
const FOREIGN: u64 = 500;
/// Datagrams to our port that are not relay datagrams (must be counted as malformed).
const MALFORMED: u64 = 300;
/// Fraction of our datagrams that must be stamped.
const MIN_STAMPED: f64 = 0.9999;
const PORT: u16 = 47_800;
const EPOCH: u32 = 0x5eed_0001;
const FOREIGN_EPOCH: u32 = 0x0bad_0bad;

#[test]
fn xdp_native_stamps_every_relay_datagram() {
    run(Hook::XdpNative);
}

#[test]
fn xdp_generic_stamps_every_relay_datagram() {
    run(Hook::XdpGeneric);
}

#[test]
fn tc_ingress_stamps_every_relay_datagram() {
    run(Hook::TcIngress);
}

fn run(mode: Hook) {
    // One mode at a time: they share the two cores, and veth drops under contention.
    let Some(_guard) = privileged(&format!("ebpf_attach {mode}")) else {
        return;
    };
    let lab = Lab::new();
    eprintln!(
        "ebpf_attach {mode}: namespaces {} -> {}, {}",
        lab.tx_ns, lab.rx_ns, lab.rx_if
    );

    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let rx_ns = lab.rx_ns.clone();
    let rx_if = lab.rx_if.clone();
    let receiver = thread::spawn(move || {
        enter(&rx_ns).unwrap();
        let mut stamper = match RxStamper::attach(&rx_if, mode, PORT) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready_tx.send(Err(format!("{e:#}")));
                return None;
            }
        };
        // Per-packet program cost for the log (kernel BPF statistics on while the stamper lives).
        if let Err(e) = stamper.enable_program_stats() {
            eprintln!("ebpf_attach {mode}: no program statistics: {e:#}");
        }
        // A socket on the port, as the receiver has, so the stack does not answer with ICMP.
        let _socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, PORT)).unwrap(); // IPv4 too
        ready_tx.send(Ok(())).unwrap();
        sent_rx.recv().unwrap();
        Some(collect(stamper, mode))
    });
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("attaching in {mode}: {e}"),
        Err(_) => panic!("the receiver thread died before attaching"),
    }
    lab.assert_attached(mode);

    let tx_ns = lab.tx_ns.clone();
    let (v4_dst, v6_dst) = (lab.rx_v4, lab.rx_v6);
    let sent = thread::spawn(move || {
        enter(&tx_ns).unwrap();
        send_all(v4_dst, v6_dst)
    })
    .join()
    .expect("sender thread panicked");
    sent_tx.send(()).unwrap();
    let result = receiver
        .join()
        .expect("receiver thread panicked")
        .expect("receiver gave no result");

    result.check(mode, &sent, &lab);
    lab.assert_nothing_attached(mode);
}

/// What the sender did.
struct Sent {
    started_ns: u64,
    /// `relay_tx_ns` of each of our datagrams, indexed by sequence - 1.
    sent_at: Vec<u64>,
}

fn send_all(v4_dst: Ipv4Addr, v6_dst: Ipv6Addr) -> Sent {
    let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let v6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap();
    let ours_v4 = SocketAddr::new(IpAddr::V4(v4_dst), PORT);
    let ours_v6 = SocketAddr::new(IpAddr::V6(v6_dst), PORT);
    let other_port = SocketAddr::new(IpAddr::V4(v4_dst), PORT + 1);
    // The pair's neighbours are static: no burst queued behind ARP/ND overflows the veth ring.
    let mut buf = [0u8; DATAGRAM_LEN];
    let started_ns = realtime_ns();
    let total = OURS_V4 + OURS_V6;
    let mut sent_at = Vec::with_capacity(total as usize);
    let mut foreign = 0;
    let mut malformed = 0;
    for sequence in 1..=total {
        let now = realtime_ns();
        let len = datagram(&mut buf, EPOCH, sequence, now);
        let to = if sequence <= OURS_V4 {
            ours_v4
        } else {
            ours_v6
        };
        let socket = if sequence <= OURS_V4 { &v4 } else { &v6 };
        sent_at.push(now);
        send(socket, &buf[..len], to);
        // Interleave the traffic that must not be stamped.
        if sequence % 40 == 0 && foreign < FOREIGN {
            let len = datagram(&mut buf, FOREIGN_EPOCH, total + sequence, now);
            send(&v4, &buf[..len], other_port);
            foreign += 1;
        }
        if sequence % 60 == 0 && malformed < MALFORMED {
            let bad = bad_datagram(malformed, &mut buf);
            send(&v4, bad, ours_v4);
            malformed += 1;
        }
        // veth queues are short (256 frames); pace so the kernel, not the test, sets the rate.
        if sequence % 32 == 0 {
            thread::sleep(Duration::from_micros(50));
        }
    }
    assert_eq!(foreign, FOREIGN, "test bug: not all foreign datagrams sent");
    assert_eq!(
        malformed, MALFORMED,
        "test bug: not all malformed datagrams sent"
    );
    Sent {
        started_ns,
        sent_at,
    }
}

fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    // The local stack may briefly refuse with ENOBUFS; retry rather than lose a datagram.
    for _ in 0..1000 {
        match socket.send_to(bytes, to) {
            Ok(_) => return,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                thread::sleep(Duration::from_micros(100))
            }
            Err(e) => panic!("sending to {to}: {e}"),
        }
    }
    panic!("sending to {to}: ENOBUFS for 100 ms");
}

/// A relay datagram of this test: one 32-byte fragment of a three-fragment message.
const DATAGRAM_LEN: usize = HEADER_LEN + BLOCK_HEADER_LEN + 32;

/// A well-formed relay datagram; `fragment_index` is `sequence % 3` so it can be checked.
fn datagram(buf: &mut [u8; DATAGRAM_LEN], epoch: u32, sequence: u64, now: u64) -> usize {
    let payload = 32u32;
    let header = Header {
        relay_tx_ns: now,
        message_len: 3 * payload,
        fragment_offset: (sequence % 3) as u32 * payload,
        fragment_index: (sequence % 3) as u16,
        fragment_count: 3,
        ..Header::new(Kind::Data, epoch, 1, sequence)
    };
    let block = Block {
        relay_rx_ns: now,
        ..Block::default()
    };
    let mut writer = Writer::new(buf, header);
    assert!(writer.push_block(block, &[b'x'; 32]));
    writer.finish()
}

/// Datagrams to our port that the program must count as malformed: truncated headers, a wrong
/// magic, a wrong version, in turn.
fn bad_datagram(n: u64, buf: &mut [u8; DATAGRAM_LEN]) -> &[u8] {
    datagram(buf, FOREIGN_EPOCH, u64::MAX - n, 0);
    match n % 4 {
        0 => &buf[..20],
        1 => &buf[..HEADER_LEN - 1],
        2 => {
            buf[0] = b'X';
            &buf[..]
        }
        _ => {
            buf[relay::wire::offset::VERSION] = 1;
            &buf[..]
        }
    }
}

/// What the receiver saw.
struct Collected {
    stamps: Vec<RxStamp>,
    counters: EbpfCounters,
    now_ns: u64,
    tai_offset_ns: i64,
    program_stats: Option<(u64, u64)>,
}

fn collect(mut stamper: RxStamper, mode: Hook) -> Collected {
    assert_eq!(stamper.hook(), mode);
    let expected = OURS_V4 + OURS_V6 + MALFORMED;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stamps = Vec::with_capacity((OURS_V4 + OURS_V6) as usize);
    // Drain while waiting, as a receiver would; stop when the counters stop moving.
    let mut last = EbpfCounters::default();
    let mut quiet_since = Instant::now();
    loop {
        stamper.drain(&mut |s| stamps.push(s));
        let counters = stamper.counters().unwrap();
        if counters != last {
            last = counters;
            quiet_since = Instant::now();
        }
        let seen = counters.matched + counters.ring_full + counters.malformed;
        if (seen >= expected && quiet_since.elapsed() > Duration::from_millis(200))
            || quiet_since.elapsed() > Duration::from_secs(2)
            || Instant::now() > deadline
        {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    stamper.drain(&mut |s| stamps.push(s));
    let counters = stamper.counters().unwrap();
    let program_stats = stamper.program_stats();
    let now_ns = realtime_ns();
    drop(stamper);
    Collected {
        stamps,
        counters,
        now_ns,
        tai_offset_ns: tai_offset_ns().unwrap(),
        program_stats,
    }
}

impl Collected {
    fn check(&self, mode: Hook, sent: &Sent, lab: &Lab) {
        let total = OURS_V4 + OURS_V6;
        let c = self.counters;
        let cost = match self.program_stats {
            Some((ns, runs)) if runs > 0 => {
                format!("{:.0} ns per run over {runs} runs", ns as f64 / runs as f64)
            }
            _ => "n/a".into(),
        };
        eprintln!(
            "ebpf_attach {mode}: {} stamps; counters {c:?}; program cost {cost}",
            self.stamps.len()
        );
        let mut seen = vec![false; total as usize];
        let mut inversions = 0u64;
        let mut previous = 0u64;
        for stamp in &self.stamps {
            assert_eq!(
                stamp.epoch, EPOCH,
                "{mode}: a datagram that must not be stamped was: {stamp:?}"
            );
            assert!(
                (1..=total).contains(&stamp.sequence),
                "{mode}: stamp with a sequence never sent: {stamp:?}"
            );
            let index = (stamp.sequence - 1) as usize;
            assert!(!seen[index], "{mode}: stamped twice: {stamp:?}");
            seen[index] = true;
            assert_eq!(stamp.fragment_index as u64, stamp.sequence % 3, "{stamp:?}");
            assert_eq!(stamp.hook, mode.id(), "{stamp:?}");
            assert_eq!(stamp._pad, 0, "{stamp:?}");
            // CLOCK_TAI -> CLOCK_REALTIME; between this datagram's send and the end of the run.
            let realtime = stamp.time_ns as i64 - self.tai_offset_ns;
            let sent_at = sent.sent_at[index] as i64;
            assert!(
                realtime >= sent_at && realtime >= sent.started_ns as i64,
                "{mode}: stamp {} ns before its datagram was sent: {stamp:?}",
                sent_at - realtime
            );
            assert!(
                realtime <= self.now_ns as i64,
                "{mode}: stamp in the future: {stamp:?}"
            );
            if stamp.time_ns < previous {
                inversions += 1;
            }
            previous = stamp.time_ns;
        }
        let stamped = seen.iter().filter(|s| **s).count() as u64;
        let fraction = stamped as f64 / total as f64;
        eprintln!(
            "ebpf_attach {mode}: stamped {stamped}/{total} ({:.4}%), {inversions} time inversions in ring order",
            fraction * 100.0
        );
        if stamped < total {
            let missing: Vec<u64> = (1..=total)
                .filter(|seq| !seen[(*seq - 1) as usize])
                .take(20)
                .collect();
            eprintln!(
                "ebpf_attach {mode}: missing sequences (first 20): {missing:?}\n{}",
                lab.link_stats()
            );
        }
        assert!(
            fraction >= MIN_STAMPED,
            "{mode}: only {stamped} of {total} relay datagrams stamped; counters {c:?}"
        );
        assert_eq!(c.matched, stamped, "{mode}: matched counter vs stamps read");
        assert_eq!(c.ring_full, 0, "{mode}: ring full");
        assert_eq!(
            c.malformed, MALFORMED,
            "{mode}: malformed datagrams to our port"
        );
        assert!(
            c.other >= FOREIGN,
            "{mode}: foreign datagrams must count as other: {c:?}"
        );
    }
}

/// Two namespaces (IPv6 on) joined by a veth pair; deleted (with the pair) on drop, panics
/// included.
struct Lab {
    _topology: Topology,
    tx_ns: String,
    rx_ns: String,
    rx_if: String,
    rx_v4: Ipv4Addr,
    rx_v6: Ipv6Addr,
}

impl Lab {
    fn new() -> Lab {
        let mut topology = Topology::new().unwrap();
        let tx = topology.namespace_v6("tx").unwrap();
        let rx = topology.namespace_v6("rx").unwrap();
        let Pair { name, left, right } = topology.pair("rly-pair", 88, &tx, &rx).unwrap();
        Lab {
            _topology: topology,
            tx_ns: left.netns.name,
            rx_ns: right.netns.name,
            rx_if: name,
            rx_v4: right.addr,
            rx_v6: right.addr_v6.expect("both ends have IPv6"),
        }
    }

    /// Packet and drop counts of both ends, to tell link drops from program misses.
    fn link_stats(&self) -> String {
        let tx = ip_output(&["-n", &self.tx_ns, "-s", "link", "show", "dev", &self.rx_if]);
        let rx = ip_output(&["-n", &self.rx_ns, "-s", "link", "show", "dev", &self.rx_if]);
        format!("{tx}{rx}")
    }

    /// Whether an XDP program shows on the receiving interface, and how many tcx ingress programs
    /// it has (None where tcx cannot be queried).
    fn attached(&self) -> (bool, Option<usize>) {
        let link = ip_output(&["-n", &self.rx_ns, "-d", "link", "show", "dev", &self.rx_if]);
        let xdp =
            link.contains("prog/xdp") || link.contains("xdpgeneric") || link.contains(" xdp ");
        // tcx links do not show in `tc filter`: ask the kernel from inside the namespace.
        let rx_ns = self.rx_ns.clone();
        let rx_if = self.rx_if.clone();
        let tcx = thread::spawn(move || {
            enter(&rx_ns).unwrap();
            aya::programs::SchedClassifier::query_tcx(
                &rx_if,
                aya::programs::tc::TcAttachType::Ingress,
            )
            .map(|(_, programs)| programs.len())
        })
        .join()
        .unwrap();
        (xdp, tcx.ok())
    }

    fn assert_attached(&self, mode: Hook) {
        let (xdp, tcx) = self.attached();
        match mode {
            Hook::XdpNative | Hook::XdpGeneric => {
                assert!(
                    xdp,
                    "{mode}: no XDP program on the interface while attached"
                )
            }
            Hook::TcIngress => {
                let filters = self.tc_filters();
                assert!(
                    tcx == Some(1) || !filters.trim().is_empty(),
                    "{mode}: neither a tcx program nor a tc filter while attached"
                );
            }
        }
    }

    fn tc_filters(&self) -> String {
        command_output(
            "tc",
            &[
                "-n",
                &self.rx_ns,
                "filter",
                "show",
                "dev",
                &self.rx_if,
                "ingress",
            ],
        )
    }

    fn assert_nothing_attached(&self, mode: Hook) {
        let (xdp, tcx) = self.attached();
        assert!(
            !xdp,
            "{mode}: an XDP program is still attached after drop:\n{}",
            ip_output(&["-n", &self.rx_ns, "-d", "link", "show", "dev", &self.rx_if])
        );
        let filters = self.tc_filters();
        assert!(
            filters.trim().is_empty(),
            "{mode}: tc filters left after drop:\n{filters}"
        );
        assert!(
            tcx.unwrap_or(0) == 0,
            "{mode}: {tcx:?} tcx programs left after drop"
        );
    }
}

fn ip_output(args: &[&str]) -> String {
    command_output("ip", args)
}

fn command_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
