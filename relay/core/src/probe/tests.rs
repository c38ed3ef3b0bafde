//! A prober and reflectors over seeded in-memory networks on a manual clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::harness::{Network, NetworkConfig, START_NS};
use crate::seal::Secret;

const PROBER: &str = "10.0.0.1:4000";

fn config(targets: usize, count: u64) -> ProberConfig {
    ProberConfig {
        targets: (0..targets).map(|i| format!("reflector-{i}")).collect(),
        count,
        interval: Duration::from_millis(10),
        length: MIN_PROBE_LEN,
        timeout: Duration::from_millis(500),
        epoch: 0xfeed,
    }
}

/// One reflector per target, each behind its own pair of networks (out and back), with the
/// reflector's clock `skew_ns` ahead of the prober's.
struct Mesh {
    start: Instant,
    now: Instant,
    prober: Prober,
    reflectors: Vec<Reflector>,
    out: Vec<Network>,
    back: Vec<Network>,
    skew_ns: i64,
    /// Time the reflector takes between receiving and answering.
    reflector_time: Duration,
}

impl Mesh {
    fn new(
        prober: Prober,
        secret: Option<&Secret>,
        out: NetworkConfig,
        back: NetworkConfig,
    ) -> Mesh {
        let n = prober.summaries().len();
        let now = Instant::now();
        Mesh {
            start: now,
            now,
            prober,
            reflectors: (0..n).map(|_| Reflector::new(secret)).collect(),
            out: (0..n)
                .map(|i| Network::new(out.clone(), 100 + i as u64))
                .collect(),
            back: (0..n)
                .map(|i| Network::new(back.clone(), 200 + i as u64))
                .collect(),
            skew_ns: 0,
            reflector_time: Duration::from_micros(30),
        }
    }

    fn wall(&self, at: Instant) -> u64 {
        START_NS + (at - self.start).as_nanos() as u64
    }

    /// Runs until the prober is done, collecting its records.
    fn run(&mut self) -> Vec<ProbeRecord> {
        let mut records = Vec::new();
        let from: SocketAddr = PROBER.parse().unwrap();
        let mut buf = vec![0u8; 2048];
        let mut reply = vec![0u8; 2048];
        for _ in 0..1_000_000 {
            if self.prober.is_done() {
                return records;
            }
            while let Some((target, len)) =
                self.prober
                    .poll_transmit(self.now, self.wall(self.now), &mut buf)
            {
                self.out[target].send(self.now, &buf[..len]);
            }
            for i in 0..self.reflectors.len() {
                while let Some(probe) = self.out[i].poll_receive(self.now) {
                    let rx = (self.wall(self.now) as i64 + self.skew_ns) as u64;
                    let tx = rx + self.reflector_time.as_nanos() as u64;
                    if let Some(n) = self.reflectors[i].handle(from, &probe, rx, tx, &mut reply) {
                        self.back[i].send(self.now + self.reflector_time, &reply[..n]);
                    }
                }
                while let Some(answer) = self.back[i].poll_receive(self.now) {
                    self.prober.handle_datagram(i, &answer, self.wall(self.now));
                }
            }
            self.prober.handle_timeout(self.now);
            while let Some(r) = self.prober.poll_record() {
                records.push(r);
            }
            let next = [self.prober.poll_timeout()]
                .into_iter()
                .chain(self.out.iter().map(Network::poll_timeout))
                .chain(self.back.iter().map(Network::poll_timeout))
                .flatten()
                .min();
            match next {
                Some(t) if t > self.now => self.now = t,
                Some(_) => {}
                None => return records,
            }
        }
        panic!("the mesh did not finish");
    }
}

fn link(delay_ms: u64) -> NetworkConfig {
    NetworkConfig {
        delay: Duration::from_millis(delay_ms),
        ..NetworkConfig::default()
    }
}

#[test]
fn round_trips_exclude_the_reflectors_time_and_split_into_one_way_delays() {
    let prober = Prober::new(config(1, 50), None).unwrap();
    let mut mesh = Mesh::new(prober, None, link(30), link(50));
    mesh.skew_ns = 2_000_000; // the reflector's clock 2 ms ahead
    let records = mesh.run();
    assert_eq!(records.len(), 50);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert!(!r.lost);
        assert_eq!(
            r.rtt_ns,
            Some(80_000_000),
            "30 + 50 ms, the reflector's 30 µs left out"
        );
        assert_eq!(r.send_delay_ns, Some(32_000_000), "30 ms + the 2 ms skew");
        assert_eq!(r.receive_delay_ns, Some(48_000_000));
        assert_eq!(r.reflector_received, Some(i as u64 + 1));
        assert_eq!(r.sent_ns, START_NS + i as u64 * 10_000_000, "isochronous");
    }
    let s = &mesh.prober.summaries()[0];
    assert_eq!((s.sent, s.received, s.lost), (50, 50, 0));
    assert_eq!(s.loss_pct, Some(0.0));
    let rtt = s.rtt_ms.unwrap();
    assert!(
        (rtt.mean - 80.0).abs() < 1e-9 && rtt.stddev.abs() < 1e-9,
        "{rtt:?}"
    );
    assert!((rtt.p50 - 80.0).abs() < 0.1 && rtt.max == 80.0, "{rtt:?}");
    assert_eq!(s.ipdv_ms.unwrap().max, 0.0);
    assert_eq!(s.ipdv_ms.unwrap().count, 49, "each neighbouring pair once");
    assert!((s.reflector_time_ms.unwrap().mean - 0.03).abs() < 1e-9);
    let line = records[0].json_line();
    assert!(
        line.contains("\"rtt_ns\":80000000") && line.contains("\"lost\":false"),
        "{line}"
    );
}

#[test]
fn loss_is_split_by_direction_and_counted_exactly() {
    let prober = Prober::new(config(1, 200), None).unwrap();
    let mut mesh = Mesh::new(prober, None, link(5), link(5));
    // Scripted: probes 11..=13 lost on the way out, replies 21..=24 on the way back.
    mesh.out[0].drop_after(10, 3);
    mesh.back[0].drop_after(17, 4); // the reflector got 20 by then: replies 21..=24
    let records = mesh.run();
    let lost: Vec<u64> = records.iter().filter(|r| r.lost).map(|r| r.seq).collect();
    assert_eq!(lost, [11, 12, 13, 21, 22, 23, 24]);
    let s = &mesh.prober.summaries()[0];
    assert_eq!((s.sent, s.received, s.lost), (200, 193, 7));
    assert_eq!(s.lost_outbound, Some(3));
    assert_eq!(s.lost_inbound, Some(4));
    assert!((s.loss_pct.unwrap() - 3.5).abs() < 1e-9);
    let r25 = records.iter().find(|r| r.seq == 25).unwrap();
    assert_eq!(r25.reflector_received, Some(22), "25 sent, 3 never arrived");
}

#[test]
fn random_loss_duplicates_and_reordering_keep_the_books() {
    let lossy = NetworkConfig {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(8),
        loss: 0.1,
        duplicate: 0.05,
        fifo: false,
    };
    let prober = Prober::new(config(3, 400), None).unwrap();
    let mut mesh = Mesh::new(prober, None, lossy.clone(), lossy);
    let records = mesh.run();
    assert_eq!(records.len(), 1200, "one record per probe and target");
    for (i, s) in mesh.prober.summaries().iter().enumerate() {
        let out = mesh.out[i].stats();
        let back = mesh.back[i].stats();
        assert_eq!(s.sent, 400);
        assert_eq!(s.received + s.lost, 400, "{s:?}");
        assert_eq!(s.late, 0, "20 ± 8 ms never reaches the 500 ms timeout");
        // Every reply the network delivered twice is a duplicate, unless its probe was lost
        // and the copy was one of those... exact: replies delivered = received + duplicates.
        assert_eq!(back.delivered, s.received + s.duplicates, "{s:?} {back:?}");
        assert!(s.reordered > 0, "jitter 8 ms at 10 ms spacing reorders");
        assert!(out.lost > 20 && back.lost > 20, "{out:?} {back:?}");
        let (o, inb) = (s.lost_outbound.unwrap(), s.lost_inbound.unwrap());
        // The reflector counts duplicated probes too, so the split is a lower bound on the way
        // out; together they are every loss up to the last counted reply.
        assert!(o + inb <= s.lost, "{s:?}");
        assert!(
            s.lost - (o + inb) <= 10,
            "only the last few are unsplit: {s:?}"
        );
        assert!(s.ipdv_ms.unwrap().count > 200);
    }
}

#[test]
fn sealed_probes_need_the_key_and_unsealed_ones_are_refused() {
    let secret = Secret::new(&[7u8; 32]).unwrap();
    let mut c = config(1, 20);
    c.length = MIN_PROBE_LEN + relay_wire::SEAL_LEN;
    let prober = Prober::new(c.clone(), Some(&secret)).unwrap();
    let mut mesh = Mesh::new(prober, Some(&secret), link(1), link(1));
    assert!(mesh.run().iter().all(|r| !r.lost));
    assert_eq!(mesh.reflectors[0].stats().answered, 20);

    // A keyless prober at a keyed reflector: every probe refused, every one lost.
    let mut plain = config(1, 5);
    plain.length = MIN_PROBE_LEN;
    let mut mesh = Mesh::new(
        Prober::new(plain, None).unwrap(),
        Some(&secret),
        link(1),
        link(1),
    );
    assert!(mesh.run().iter().all(|r| r.lost));
    assert_eq!(mesh.reflectors[0].stats().unsealed, 5);

    // Another key: the seal does not open.
    let other = Secret::new(&[8u8; 32]).unwrap();
    let mut mesh = Mesh::new(
        Prober::new(c.clone(), Some(&other)).unwrap(),
        Some(&secret),
        link(1),
        link(1),
    );
    assert!(mesh.run().iter().all(|r| r.lost));
    assert_eq!(mesh.reflectors[0].stats().bad_seal, 20);

    // A keyed prober at a keyless reflector.
    let mut mesh = Mesh::new(
        Prober::new(c, Some(&secret)).unwrap(),
        None,
        link(1),
        link(1),
    );
    assert!(mesh.run().iter().all(|r| r.lost));
    assert_eq!(mesh.reflectors[0].stats().sealed_without_key, 20);
}

#[test]
fn replies_are_never_longer_than_probes_and_bad_input_is_counted() {
    let from: SocketAddr = PROBER.parse().unwrap();
    let mut reflector = Reflector::new(None);
    let mut out = [0u8; 2048];
    let mut prober = Prober::new(
        ProberConfig {
            length: 700,
            ..config(1, 3)
        },
        None,
    )
    .unwrap();
    let now = Instant::now();
    let mut probe = [0u8; 2048];
    let (_, len) = prober.poll_transmit(now, START_NS, &mut probe).unwrap();
    assert_eq!(len, 700);
    let n = reflector
        .handle(from, &probe[..len], START_NS + 5, START_NS + 9, &mut out)
        .unwrap();
    assert_eq!(n, 700, "the reply is the probe's length");
    let reply = out[..n].to_vec();
    // Garbage, a truncated probe, a reply sent to the reflector.
    assert_eq!(reflector.handle(from, b"hello", 0, 0, &mut out), None);
    assert_eq!(
        reflector.handle(from, &probe[..len - 1], 0, 0, &mut out),
        None
    );
    assert_eq!(reflector.handle(from, &reply, 0, 0, &mut out), None);
    let stats = reflector.stats();
    assert_eq!(
        (stats.malformed, stats.not_a_probe, stats.answered),
        (2, 1, 1)
    );
    // The prober: the reply, the same reply again (a duplicate), garbage, a reply from no target.
    prober.handle_datagram(0, &reply, START_NS + 20);
    prober.handle_datagram(0, &reply, START_NS + 21);
    prober.handle_datagram(0, b"junk", START_NS + 22);
    prober.handle_datagram(7, &reply, START_NS + 23);
    let s = &prober.summaries()[0];
    assert_eq!((s.received, s.duplicates), (1, 1));
    assert_eq!(prober.rejected(), 2, "junk, and a reply from no target");
    let record = prober.poll_record().unwrap();
    assert_eq!(record.rtt_ns, Some(20 - 4));
    for (length, ok) in [
        (MIN_PROBE_LEN - 1, false),
        (MIN_PROBE_LEN, true),
        (MAX_PROBE_LEN + 1, false),
    ] {
        let r = Prober::new(
            ProberConfig {
                length,
                ..config(1, 1)
            },
            None,
        );
        assert_eq!(r.is_ok(), ok, "{length}");
    }
    assert!(Prober::new(config(0, 1), None).is_err());
    assert!(Prober::new(config(1, 0), None).is_err());
}

/// A probe built straight from the wire format (not by a [`Prober`]).
fn probe(epoch: u32, seq: u64) -> Vec<u8> {
    let mut buf = vec![0u8; MIN_PROBE_LEN];
    let mut w = relay_wire::Writer::new(
        &mut buf,
        relay_wire::Header::new(relay_wire::Kind::Probe, epoch, 0, seq),
    );
    assert!(w.push_zeros(relay_wire::ProbeReply::LEN));
    let n = w.finish();
    buf.truncate(n);
    buf
}

/// The reflector's session count in an (unsealed) reply.
fn reflector_count(reply: &[u8]) -> u64 {
    let decoded = relay_wire::Header::decode(reply).unwrap();
    relay_wire::ProbeReply::decode(decoded.body)
        .unwrap()
        .reflector_received
}

#[test]
fn the_reflectors_memory_is_bounded() {
    let mut reflector = Reflector::new(None);
    let mut out = [0u8; 256];
    let from: SocketAddr = PROBER.parse().unwrap();
    for epoch in 0..(MAX_SESSIONS as u32 + 10) {
        assert!(reflector
            .handle(from, &probe(epoch, 1), 1, 2, &mut out)
            .is_some());
    }
    assert_eq!(reflector.stats().sessions_evicted, 10);
    // The most recent sessions are kept: a second probe of the last one counts 2.
    let n = reflector
        .handle(from, &probe(MAX_SESSIONS as u32 + 9, 2), 1, 2, &mut out)
        .unwrap();
    assert_eq!(reflector_count(&out[..n]), 2);
    // The first was forgotten: it starts again at 1.
    let n = reflector
        .handle(from, &probe(0, 2), 1, 2, &mut out)
        .unwrap();
    assert_eq!(reflector_count(&out[..n]), 1);
}
