//! The bench's measuring ends: the UDP receiver every forwarder sends to, the UDP floor's
//! sender, and the direct TLS WebSocket reader (the floor without any forwarder).
//!
//! Receive time is CLOCK_REALTIME taken as the receive call returns, before anything is decoded;
//! every datagram of one `recvmmsg` batch (or every message of one socket read) gets that stamp.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use relay_core::binance::{event_time, Endpoint, CLIENT_MESSAGES_PER_SEC};
use relay_core::receive::accounting::{Accounting, AccountingConfig};
use relay_core::session::{Session, SessionConfig, SessionEvent};
use relay_core::stats::{ComponentSummary, LatencyStats};
use relay_core::tls;
use relay_host::clock::realtime_ns;
use relay_wire::MAGIC;

use crate::sleep_floor::{Handoff, PASS_MAGIC};
use crate::sock;

/// First bytes of a UDP floor probe: magic, sequence (u64 LE), send time (u64 LE, ns).
pub const FLOOR_MAGIC: [u8; 4] = *b"UDPF";
pub const FLOOR_LEN: usize = 24;

/// How much a run should receive and for how long to wait.
#[derive(Clone, Debug)]
pub struct Expect {
    /// Messages the source sends.
    pub messages: u64,
    /// Planned sending time (messages / rate).
    pub run_time: Duration,
    /// Wait this long for the first message (the forwarder connecting).
    pub first_timeout: Duration,
    /// After the planned end, wait this much longer for stragglers.
    pub drain: Duration,
    /// The first messages are counted but left out of the latency figures (connection warm-up).
    pub warmup_messages: u64,
}

impl Expect {
    pub fn new(rate: u64, secs: f64) -> Expect {
        let messages = ((rate as f64 * secs).round() as u64).max(1);
        Expect {
            messages,
            run_time: Duration::from_secs_f64(secs),
            first_timeout: Duration::from_secs(10),
            drain: Duration::from_millis(1000),
            warmup_messages: (messages / 50).clamp(10, 5_000),
        }
    }
}

/// What a receiving end measured.
pub struct Collected {
    pub received: u64,
    pub duplicates: u64,
    /// Receive calls that returned data (recvmmsg batches, or socket reads).
    pub receive_calls: u64,
    /// UDP datagrams received (0 for the direct read, which has none).
    pub datagrams: u64,
    pub first_ns: Option<u64>,
    pub last_ns: u64,
    /// Source time -> receive.
    pub latency: LatencyStats,
    /// Relay read -> receive (wire datagrams only).
    pub hop: LatencyStats,
    /// Relay read -> relay send (wire datagrams only).
    pub dwell: LatencyStats,
    /// The sleeping floor's stream could not be decrypted or decoded (bytes lost or reordered).
    pub stream_error: Option<String>,
    /// Relay send -> receive (wire datagrams only): the UDP leg, the kernel's and the receiver's.
    pub leg: LatencyStats,
    /// How the relay's reads left it (wire datagrams only).
    pub reads: ReadShape,
    warmup: u64,
}

/// How a relay's reads left it, from the stamps its datagrams carry: one read of the exchange is
/// one `relay_rx_ns`, one datagram of it one `relay_tx_ns`. Over the measured messages: reads,
/// messages, datagrams, and the time from one send stamp to the next of the same read (the send
/// before it, and the decoding and packing of the next datagram's messages).
#[derive(Default)]
pub struct ReadShape {
    pub reads: u64,
    pub messages: u64,
    pub datagrams: u64,
    pub send_gap: LatencyStats,
    /// The read and send stamps of the last message seen.
    last: Option<(u64, u64)>,
}

impl ReadShape {
    /// One message, read at `rx_ns` and sent at `tx_ns`. Datagrams of one read arrive in the
    /// order they were sent; one that arrives behind a later one counts with that one.
    fn message(&mut self, rx_ns: u64, tx_ns: u64) {
        self.messages += 1;
        match self.last {
            Some((rx, tx)) if rx == rx_ns => {
                if tx_ns > tx {
                    self.datagrams += 1;
                    self.send_gap.record((tx_ns - tx) as i64);
                    self.last = Some((rx, tx_ns));
                }
            }
            _ => {
                self.reads += 1;
                self.datagrams += 1;
                self.last = Some((rx_ns, tx_ns));
            }
        }
    }
}

impl Collected {
    fn new(warmup: u64) -> Collected {
        Collected {
            received: 0,
            duplicates: 0,
            receive_calls: 0,
            datagrams: 0,
            first_ns: None,
            last_ns: 0,
            stream_error: None,
            latency: LatencyStats::default(),
            hop: LatencyStats::default(),
            dwell: LatencyStats::default(),
            leg: LatencyStats::default(),
            reads: ReadShape::default(),
            warmup,
        }
    }

    /// One delivered message received at `recv_ns`, sent by the source at `source_ns`.
    fn message(&mut self, recv_ns: u64, source_ns: Option<u64>) -> bool {
        self.received += 1;
        self.first_ns.get_or_insert(recv_ns);
        self.last_ns = recv_ns;
        let measured = self.received > self.warmup;
        if let Some(src) = source_ns.filter(|_| measured) {
            self.latency.record(recv_ns as i64 - src as i64);
        }
        measured
    }

    /// Messages per second between the first and the last arrival.
    pub fn achieved_rate(&self) -> f64 {
        match self.first_ns {
            Some(first) if self.received > 1 && self.last_ns > first => {
                (self.received - 1) as f64 * 1e9 / (self.last_ns - first) as f64
            }
            _ => 0.0,
        }
    }

    pub fn latency(&self) -> Option<ComponentSummary> {
        self.latency.component()
    }

    pub fn hop(&self) -> Option<ComponentSummary> {
        self.hop.component()
    }

    pub fn dwell(&self) -> Option<ComponentSummary> {
        self.dwell.component()
    }

    pub fn leg(&self) -> Option<ComponentSummary> {
        self.leg.component()
    }
}

/// Decodes datagrams of every format the bench receives.
struct Decoder {
    accounting: Accounting,
    floor_seen: Vec<u64>,
    /// The sleeping floor's session, which decrypts the TLS records it passes on.
    stream: Option<Session>,
}

impl Decoder {
    fn new(expected: u64, stream: Option<Session>) -> Decoder {
        Decoder {
            stream,
            // The bench receiver only measures: it never asks for anything again.
            accounting: Accounting::new(AccountingConfig {
                recovery: None,
                ..AccountingConfig::default()
            }),
            floor_seen: vec![0; (expected as usize).div_ceil(64)],
        }
    }

    fn datagram(&mut self, c: &mut Collected, d: &[u8], recv_ns: u64) {
        c.datagrams += 1;
        if d.starts_with(&MAGIC) {
            let duplicates = self.accounting.counters().duplicates;
            self.accounting.on_datagram(Instant::now(), d, &mut |m| {
                let b = m.block;
                let e = b.has_event_time().then_some(b.event_time_ns);
                if c.message(recv_ns, e) {
                    c.hop.record(recv_ns as i64 - b.relay_rx_ns as i64);
                    c.dwell.record(m.relay_tx_ns as i64 - b.relay_rx_ns as i64);
                    c.reads.message(b.relay_rx_ns, m.relay_tx_ns);
                    // Over the same messages as the latency, so its quantiles bound the latency's.
                    if e.is_some() {
                        c.leg.record(recv_ns as i64 - m.relay_tx_ns as i64);
                    }
                }
            });
            c.duplicates += self.accounting.counters().duplicates - duplicates;
        } else if let Some(records) = d.strip_prefix(&PASS_MAGIC) {
            let Some(session) = &mut self.stream else {
                c.stream_error
                    .get_or_insert_with(|| "passed-on bytes without a session".into());
                return;
            };
            if c.stream_error.is_some() {
                return;
            }
            let result = session.handle_input(records, Instant::now(), &mut |e| {
                if let SessionEvent::Data { payload, .. } = e {
                    let e = event_time(payload).and_then(|us| us.checked_mul(1_000));
                    c.message(recv_ns, e);
                }
            });
            if let Err(e) = result {
                c.stream_error = Some(format!("the passed-on stream: {e}"));
            }
        } else if d.starts_with(&FLOOR_MAGIC) && d.len() >= FLOOR_LEN {
            let seq = u64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
            let sent = u64::from_le_bytes(d[16..24].try_into().expect("8 bytes"));
            let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
            match self.floor_seen.get_mut(word) {
                Some(w) if *w & bit != 0 => c.duplicates += 1,
                Some(w) => {
                    *w |= bit;
                    c.message(recv_ns, Some(sent));
                }
                // A sequence past the run's: not one of this run's probes.
                None => {}
            }
        } else {
            // A forwarder's raw payload: the exchange message as the simulator sent it, with `E`
            // in microseconds.
            let e = event_time(d).and_then(|us| us.checked_mul(1_000));
            c.message(recv_ns, e);
        }
    }
}

/// The UDP socket every forwarder sends to.
pub struct UdpReceiver {
    socket: UdpSocket,
}

const BATCH: usize = 32;
const SLOT: usize = 65_536;
const RECV_POLL: Duration = Duration::from_millis(20);

impl UdpReceiver {
    /// Binds 127.0.0.1 on a free port with a 32 MiB receive buffer (forced past rmem_max when
    /// running as root), so a short stall of the receiver does not show up as forwarder loss.
    pub fn bind() -> anyhow::Result<UdpReceiver> {
        UdpReceiver::bind_on(std::net::Ipv4Addr::LOCALHOST)
    }

    /// [`UdpReceiver::bind`] on `ip` (a veth end, in the namespace the calling thread is in).
    pub fn bind_on(ip: std::net::Ipv4Addr) -> anyhow::Result<UdpReceiver> {
        let socket = UdpSocket::bind((ip, 0)).context("binding the bench receiver")?;
        // Best effort: without it the run still measures, with a smaller margin.
        let _ = relay_host::sock::set_receive_buffer(&socket, 32 << 20);
        socket.set_read_timeout(Some(RECV_POLL))?;
        Ok(UdpReceiver { socket })
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("bound socket")
    }

    /// Throws away whatever is queued (a previous run's stragglers).
    pub fn drain(&self) {
        let mut buf = [0u8; 2048];
        let _ = self.socket.set_nonblocking(true);
        while self.socket.recv(&mut buf).is_ok() {}
        let _ = self.socket.set_nonblocking(false);
    }

    /// Receives until `expect.messages` arrived, the deadline passed, or `stop` is set.
    pub fn run(&self, expect: &Expect, stop: &AtomicBool) -> Collected {
        self.run_with(expect, stop, &mut || {})
    }

    /// [`UdpReceiver::run`], calling `on_first` once, when the first datagram has arrived.
    pub fn run_with(
        &self,
        expect: &Expect,
        stop: &AtomicBool,
        on_first: &mut dyn FnMut(),
    ) -> Collected {
        self.receive(expect, stop, on_first, None)
    }

    /// [`UdpReceiver::run_with`] for the sleeping floor: its datagrams carry the TLS records of
    /// `handoff`'s session, which decrypts them here. The messages its handshake already read
    /// count as delivered, without a latency.
    pub fn run_passed_on(
        &self,
        expect: &Expect,
        stop: &AtomicBool,
        on_first: &mut dyn FnMut(),
        handoff: Handoff,
    ) -> Collected {
        let rest = Expect {
            messages: expect.messages.saturating_sub(handoff.handshake_messages),
            ..expect.clone()
        };
        let mut c = self.receive(&rest, stop, on_first, Some(handoff.session));
        c.received += handoff.handshake_messages;
        c
    }

    fn receive(
        &self,
        expect: &Expect,
        stop: &AtomicBool,
        on_first: &mut dyn FnMut(),
        stream: Option<Session>,
    ) -> Collected {
        let mut c = Collected::new(expect.warmup_messages);
        let mut decoder = Decoder::new(expect.messages, stream);
        let mut bufs = vec![0u8; BATCH * SLOT];
        // `_iov` stays alive: the headers point into it (and bufs is never resized).
        let (_iov, mut hdrs) = sock::mmsg_slots(&mut bufs, SLOT, BATCH);
        let fd = self.socket.as_raw_fd();
        let started = Instant::now();
        let mut first_at: Option<Instant> = None;
        while c.received < expect.messages && !stop.load(Ordering::Relaxed) {
            let deadline = match first_at {
                Some(t) => t + expect.run_time + expect.drain,
                None => started + expect.first_timeout,
            };
            if Instant::now() >= deadline {
                break;
            }
            // SAFETY: hdrs/iov/bufs are live and sized as declared.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            let recv_ns = realtime_ns();
            if n <= 0 {
                continue; // timeout (SO_RCVTIMEO), EINTR: look at the deadline again
            }
            if first_at.is_none() {
                first_at = Some(Instant::now());
                on_first();
            }
            c.receive_calls += 1;
            for (i, h) in hdrs.iter().take(n as usize).enumerate() {
                let len = (h.msg_len as usize).min(SLOT);
                decoder.datagram(&mut c, &bufs[i * SLOT..i * SLOT + len], recv_ns);
            }
        }
        c
    }
}

/// Sends `count` floor probes to `target` at `rate` per second (paced against the clock, each
/// stamped just before its send).
pub fn udp_floor_send(target: SocketAddr, rate: u64, count: u64) -> io::Result<u64> {
    let socket = udp_to(target)?;
    let mut buf = [0u8; 128];
    buf[..4].copy_from_slice(&FLOOR_MAGIC);
    let start = Instant::now();
    let step = 1.0 / rate.max(1) as f64;
    let mut sent = 0;
    for seq in 0..count {
        let due = start + Duration::from_secs_f64(seq as f64 * step);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        buf[8..16].copy_from_slice(&seq.to_le_bytes());
        buf[16..24].copy_from_slice(&realtime_ns().to_le_bytes());
        // The size of a small market-data datagram: header + a trade payload.
        if socket.send(&buf[..128]).is_ok() {
            sent += 1;
        }
    }
    Ok(sent)
}

/// A UDP socket connected to `target`: bound on loopback for a loopback receiver, on any address
/// (the veth end) for a receiver across a veth.
pub fn udp_to(target: SocketAddr) -> io::Result<UdpSocket> {
    let local = if target.ip().is_loopback() {
        "127.0.0.1:0"
    } else {
        "0.0.0.0:0"
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(target)?;
    Ok(socket)
}

/// A blocking connection to `url` (the simulator, trusting `ca_pem`) with the relay's session
/// started on it: TCP_NODELAY, reads that time out after `read_timeout`.
pub fn open_session(
    url: &str,
    ca_pem: &[u8],
    read_timeout: Duration,
) -> anyhow::Result<(TcpStream, Session)> {
    let config = SessionConfig {
        tls: Some(tls::client_config(Some(ca_pem))?),
        endpoint: Endpoint::parse(url)?,
        subscribe: Vec::new(),
        client_messages_per_sec: CLIENT_MESSAGES_PER_SEC,
    };
    let tcp = TcpStream::connect((config.endpoint.host.as_str(), config.endpoint.port))
        .context("connecting to the simulator")?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(read_timeout))?;
    Ok((tcp, Session::start(&config)?))
}

/// Reads a TLS WebSocket straight from the exchange (simulator) with the relay's own session and
/// measures each message at the socket read that completed it: the floor without a forwarder.
pub fn ws_direct(
    url: &str,
    ca_pem: &[u8],
    expect: &Expect,
    stop: &AtomicBool,
) -> anyhow::Result<Collected> {
    let (mut tcp, mut session) = open_session(url, ca_pem, RECV_POLL)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut c = Collected::new(expect.warmup_messages);
    let started = Instant::now();
    let mut first_at: Option<Instant> = None;
    while c.received < expect.messages && !stop.load(Ordering::Relaxed) {
        if session.wants_write() {
            out.clear();
            session.take_output(&mut out);
            tcp.write_all(&out)?;
        }
        let deadline = match first_at {
            Some(t) => t + expect.run_time + expect.drain,
            None => started + expect.first_timeout,
        };
        if Instant::now() >= deadline {
            break;
        }
        let n = match tcp.read(&mut buf) {
            Ok(0) => bail!("the simulator closed the connection"),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        };
        let recv_ns = realtime_ns();
        c.receive_calls += 1;
        session.handle_input(&buf[..n], Instant::now(), &mut |e| {
            if let SessionEvent::Data { payload, .. } = e {
                first_at.get_or_insert_with(Instant::now);
                let e = event_time(payload).and_then(|us| us.checked_mul(1_000));
                c.message(recv_ns, e);
            }
        })?;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn receiver_measures_floor_probes_and_raw_payloads() {
        let rx = UdpReceiver::bind().unwrap();
        let target = rx.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let expect = Expect {
            messages: 60,
            run_time: Duration::from_millis(100),
            first_timeout: Duration::from_secs(5),
            drain: Duration::from_secs(2),
            warmup_messages: 10,
        };
        let sender = std::thread::spawn(move || {
            udp_floor_send(target, 10_000, 50).unwrap();
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let e_us = realtime_ns() / 1_000 - 200_000; // 200 ms ago
            let raw = format!(r#"{{"e":"trade","E":{e_us},"s":"BTCUSDT","t":1}}"#);
            for _ in 0..10 {
                s.send_to(raw.as_bytes(), target).unwrap();
            }
        });
        let c = rx.run(&expect, &stop);
        sender.join().unwrap();
        assert_eq!(c.received, 60);
        assert_eq!(c.duplicates, 0);
        let lat = c.latency().unwrap();
        assert_eq!(lat.count, 50, "10 warm-up messages left out");
        // The raw payloads are 200 ms old, the probes fresh (well under that even on a loaded
        // machine).
        assert!(lat.max_us >= 200_000.0 && lat.p50_us < 200_000.0, "{lat:?}");
        assert!(c.hop().is_none());
        assert_eq!(c.reads.reads, 0, "no relay datagrams, no reads");
    }

    #[test]
    fn read_shape_groups_messages_by_read_and_datagram() {
        let mut r = ReadShape::default();
        // Read at 1000: three messages in two datagrams sent at 2000 and 9000; read at 20_000:
        // one message; then a datagram of the first read arriving late (counted with the last).
        for (rx, tx) in [(1000, 2000), (1000, 2000), (1000, 9000), (20_000, 21_000)] {
            r.message(rx, tx);
        }
        assert_eq!((r.reads, r.messages, r.datagrams), (2, 4, 3));
        let gap = r.send_gap.component().unwrap();
        assert_eq!(gap.count, 1);
        assert!((gap.p50_us - 7.0).abs() < 0.01, "{gap:?}");
        // A later datagram of the read before counts as a new read (the stamps cannot tell).
        r.message(1000, 3000);
        assert_eq!((r.reads, r.datagrams), (3, 4));
        // One arriving behind a later one of its read: the same datagram, no gap.
        r.message(1000, 2500);
        assert_eq!((r.reads, r.datagrams, r.messages), (3, 4, 6));
        assert_eq!(r.send_gap.component().unwrap().count, 1);
    }
}
