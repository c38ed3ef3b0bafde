//! One measured run of one configuration: the receiver thread in the receiving namespace with the
//! configuration's program attached, the sender thread in the sending namespace, and what both
//! measured as a [`Sample`].

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::ebpf::null_prog::NullProgram;
use bench::ebpf::{Config, Counters, Program, Sample};
use bench::sock;
use relay::receive::rx_time::ebpf::RxStamper;
use relay_host::clock::{realtime_ns, thread_cpu_ns};
use relay_host::netns::{self, LinkEnd, Pair};
use relay_host::{cpu, signals};
use relay_wire::{message_flags, Block, Header, Kind, BLOCK_HEADER_LEN, HEADER_LEN, MAGIC};

use crate::host;

/// The UDP port the receiver listens on (and the stamper stamps).
const PORT: u16 = 47_900;
/// A Binance spot trade with µs times, as the relay forwards it: 131 bytes.
pub const PAYLOAD: &[u8] = br#"{"e":"trade","E":1764000000123456,"s":"BTCUSDT","t":5123456789,"p":"97123.45000000","q":"0.00125000","T":1764000000123400,"m":true}"#;
/// The receiver's socket buffer (forced past rmem_max as root).
const RCVBUF: libc::c_int = 32 << 20;
/// After the sender stopped, the receiver ends once nothing arrived for this long.
const QUIET: Duration = Duration::from_millis(150);

/// What every run of this invocation shares.
pub struct Bench<'a> {
    /// The veth pair: the sender on the left end, the receiver on the right.
    pub pair: &'a Pair,
    pub secs: f64,
    pub batch: usize,
    pub sender_core: Option<usize>,
    pub receiver_core: Option<usize>,
    /// The ksoftirqd threads, whose run time counts as the run's CPU time.
    pub softirqd: Vec<u32>,
}

/// One end of the pair as its thread needs it.
struct Side {
    netns: String,
    addr: Ipv4Addr,
    core: Option<usize>,
}

impl Side {
    fn of(end: &LinkEnd, core: Option<usize>) -> Side {
        Side {
            netns: end.netns.name.clone(),
            addr: end.addr,
            core,
        }
    }

    /// Moves the calling thread into the namespace and onto the core.
    fn enter(&self) -> anyhow::Result<()> {
        netns::enter(&self.netns)?;
        if let Some(core) = self.core {
            cpu::pin_current_thread(core).with_context(|| format!("pinning to core {core}"))?;
        }
        Ok(())
    }
}

/// What the receiving thread measured.
struct Received {
    received: u64,
    receive_secs: f64,
    receive_calls: u64,
    rcvbuf_errors: u64,
    stamps_drained: Option<u64>,
    counters: Option<Counters>,
    run_stats: Option<(u64, u64)>,
    stats_on_host: bool,
    cpu_ns: u64,
}

impl Bench<'_> {
    /// Measures `config` for `--secs`; a failure is a sample with its error.
    pub fn run(&self, config: Config, repeat: u32) -> Sample {
        self.run_with_secs(config, repeat, self.secs)
    }

    pub fn run_with_secs(&self, config: Config, repeat: u32, secs: f64) -> Sample {
        match self.try_run(config, repeat, secs) {
            Ok(s) => s,
            Err(e) => Sample::failed(config, repeat, format!("{e:#}")),
        }
    }

    fn try_run(&self, config: Config, repeat: u32, secs: f64) -> anyhow::Result<Sample> {
        let sender_done = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
        let receiver = {
            let side = Side::of(&self.pair.right, self.receiver_core);
            let iface = self.pair.name.clone();
            let (batch, done) = (self.batch, sender_done.clone());
            let limit = Duration::from_secs_f64(secs) + Duration::from_secs(30);
            thread::spawn(move || receive(&side, &iface, config, batch, &ready_tx, &done, limit))
        };
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the receiver thread died before starting")));
        if let Err(e) = ready {
            sender_done.store(true, Ordering::Relaxed);
            let _ = receiver.join();
            return Err(e);
        }
        let softirqd_before = host::run_time_ns(&self.softirqd);
        let sender = {
            let side = Side::of(&self.pair.left, self.sender_core);
            let to = SocketAddrV4::new(self.pair.right.addr, PORT);
            let batch = self.batch;
            let epoch = std::process::id() ^ (repeat << 24);
            thread::spawn(move || send(&side, to, batch, secs, epoch))
        };
        let sent = sender.join();
        sender_done.store(true, Ordering::Relaxed);
        let received = receiver
            .join()
            .map_err(|_| anyhow::anyhow!("the receiver thread panicked"))??;
        let softirqd_cpu_ns = host::run_time_ns(&self.softirqd).saturating_sub(softirqd_before);
        let (sent, send_secs, sender_cpu_ns, (sender_voluntary, sender_involuntary)) =
            sent.map_err(|_| anyhow::anyhow!("the sender panicked"))??;
        let (run_time_ns, run_cnt) = match received.run_stats {
            Some((ns, runs)) => (Some(ns), Some(runs)),
            None => (None, None),
        };
        Ok(Sample {
            config,
            repeat,
            sent,
            send_secs,
            received: received.received,
            receive_secs: received.receive_secs,
            rcvbuf_errors: received.rcvbuf_errors,
            receive_calls: received.receive_calls,
            stamps_drained: received.stamps_drained,
            counters: received.counters,
            run_time_ns,
            run_cnt,
            stats_on_host: received.stats_on_host,
            sender_cpu_ns,
            sender_switches: [sender_voluntary, sender_involuntary],
            receiver_cpu_ns: received.cpu_ns,
            softirqd_cpu_ns,
            error: None,
        })
    }
}

/// What is attached to the receiving veth during one run.
enum Attached {
    Nothing,
    Stamper(Box<RxStamper>),
    /// The null program, and the statistics switch when they are on.
    Null(NullProgram, Option<OwnedFd>),
}

/// Attaches `config`'s program to `iface` (in the calling thread's namespace).
fn attach(config: Config, iface: &str) -> anyhow::Result<Attached> {
    let Some(hook) = config.hook else {
        return Ok(Attached::Nothing);
    };
    Ok(match config.program {
        Program::None => Attached::Nothing,
        Program::Stamper => {
            let mut stamper = RxStamper::attach(iface, hook, PORT)?;
            if config.stats {
                stamper.enable_program_stats()?;
            }
            Attached::Stamper(Box::new(stamper))
        }
        Program::Null => {
            let name = std::ffi::CString::new(iface).context("an interface name without NUL")?;
            // SAFETY: a valid C string.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                bail!("no interface {iface} in the receiving namespace");
            }
            let program = NullProgram::attach(ifindex, hook)?;
            let stats = if config.stats {
                Some(
                    aya::sys::enable_stats(aya::sys::Stats::RunTime)
                        .context("enabling BPF run-time statistics")?,
                )
            } else {
                None
            };
            Attached::Null(program, stats)
        }
    })
}

/// The receiving end of one run: attaches `config`'s program, receives until the sender is done
/// and nothing arrived for [`QUIET`], drains the stamper after every batch.
fn receive(
    side: &Side,
    iface: &str,
    config: Config,
    batch: usize,
    ready: &mpsc::Sender<anyhow::Result<()>>,
    sender_done: &AtomicBool,
    limit: Duration,
) -> anyhow::Result<Received> {
    let setup = || -> anyhow::Result<(Attached, UdpSocket, u64)> {
        side.enter().context("the receiver")?;
        let attached = attach(config, iface)?;
        let socket = UdpSocket::bind(SocketAddrV4::new(side.addr, PORT))
            .context("binding the receiver socket")?;
        relay_host::sock::set_receive_buffer(&socket, RCVBUF)
            .context("setting the receive buffer")?;
        socket.set_read_timeout(Some(Duration::from_millis(10)))?;
        let rcvbuf_before = host::udp_rcvbuf_errors()?;
        Ok((attached, socket, rcvbuf_before))
    };
    let (mut attached, socket, rcvbuf_before) = match setup() {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("{e:#}")));
            return Err(e);
        }
    };
    let mut stats_on_host = host::stats_enabled_host();
    let cpu_start = thread_cpu_ns();
    let _ = ready.send(Ok(()));

    const SLOT: usize = 2048;
    let mut bufs = vec![0u8; batch * SLOT];
    // `_iov` stays alive: the headers point into it.
    let (_iov, mut hdrs) = sock::mmsg_slots(&mut bufs, SLOT, batch);
    let fd = socket.as_raw_fd();
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = started;
    let mut received = 0u64;
    let mut calls = 0u64;
    let mut stamps = 0u64;
    let mut last_stamp_seq = 0u64;
    loop {
        // SAFETY: hdrs/iov/bufs are live and sized as declared (bufs is never resized).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            calls += 1;
            for (i, h) in hdrs.iter().take(n as usize).enumerate() {
                let d = &bufs[i * SLOT..i * SLOT + (h.msg_len as usize).min(SLOT)];
                if d.len() >= HEADER_LEN && d.starts_with(&MAGIC) {
                    received += 1;
                }
            }
            // As the receiver does after each receive: take every stamp now in the ring.
            if let Attached::Stamper(s) = &mut attached {
                stamps += s.drain(&mut |stamp| last_stamp_seq = stamp.sequence) as u64;
            }
            continue;
        }
        // Timeout (SO_RCVTIMEO) or EINTR.
        let idle_since = if first.is_some() { last } else { started };
        if sender_done.load(Ordering::Relaxed) && idle_since.elapsed() >= QUIET {
            break;
        }
        if started.elapsed() > limit {
            break;
        }
    }
    let cpu_ns = thread_cpu_ns().saturating_sub(cpu_start);
    stats_on_host |= host::stats_enabled_host();
    let rcvbuf_errors = host::udp_rcvbuf_errors()?.saturating_sub(rcvbuf_before);
    let (stamps_drained, counters, run_stats) = match &mut attached {
        Attached::Nothing => (None, None, None),
        Attached::Stamper(s) => {
            stamps += s.drain(&mut |stamp| last_stamp_seq = stamp.sequence) as u64;
            let c = s.counters()?;
            let counters = Counters {
                matched: c.matched,
                other: c.other,
                malformed: c.malformed,
                ring_full: c.ring_full,
            };
            (Some(stamps), Some(counters), s.program_stats())
        }
        Attached::Null(p, stats) => (
            None,
            None,
            if stats.is_some() {
                Some(p.stats().context("reading the null program's statistics")?)
            } else {
                None
            },
        ),
    };
    std::hint::black_box(last_stamp_seq);
    drop(attached);
    Ok(Received {
        received,
        receive_secs: first.map_or(0.0, |f| (last - f).as_secs_f64()),
        receive_calls: calls,
        rcvbuf_errors,
        stamps_drained,
        counters,
        run_stats,
        stats_on_host,
        cpu_ns,
    })
}

/// The sending end: relay datagrams (header + [`PAYLOAD`]) in sendmmsg batches, as fast as the
/// kernel takes them, for `secs`. Returns how many were sent, for how long, and the thread's CPU
/// time meanwhile.
fn send(
    side: &Side,
    to: SocketAddrV4,
    batch: usize,
    secs: f64,
    epoch: u32,
) -> anyhow::Result<(u64, f64, u64, (u64, u64))> {
    side.enter().context("the sender")?;
    let socket =
        UdpSocket::bind(SocketAddrV4::new(side.addr, 0)).context("binding the sender socket")?;
    socket.connect(to)?;
    // One message per datagram: header, block header, payload. The payload is written once;
    // per batch only the two headers change.
    const HEADS: usize = HEADER_LEN + BLOCK_HEADER_LEN;
    let len = HEADS + PAYLOAD.len();
    let mut bufs = vec![0u8; batch * len];
    for i in 0..batch {
        bufs[i * len + HEADS..(i + 1) * len].copy_from_slice(PAYLOAD);
    }
    let (iov, mut hdrs) = sock::mmsg_slots(&mut bufs, len, batch);
    let fd = socket.as_raw_fd();
    let cpu_start = thread_cpu_ns();
    let switches = host::thread_switches();
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(secs);
    let mut sequence = 1u64;
    let mut sent = 0u64;
    let mut heads = [0u8; HEADS];
    while Instant::now() < end && !signals::stop_requested() {
        let now = realtime_ns();
        for (i, slot) in iov.iter().enumerate() {
            let header = Header {
                relay_tx_ns: now,
                count: 1,
                body_len: (BLOCK_HEADER_LEN + PAYLOAD.len()) as u16,
                ..Header::new(Kind::Data, epoch, 1, sequence + i as u64)
            };
            header.encode(
                (&mut heads[..HEADER_LEN])
                    .try_into()
                    .expect("HEADER_LEN bytes"),
            );
            Block {
                len: PAYLOAD.len() as u16,
                flags: message_flags::EVENT_TIME | message_flags::EVENT_TIME_MICROS,
                relay_rx_ns: now,
                event_time_ns: now - 1_000_000,
            }
            .encode(&mut heads[HEADER_LEN..]);
            // SAFETY: each iovec points at its datagram's HEADS + payload bytes in bufs.
            unsafe {
                std::ptr::copy_nonoverlapping(heads.as_ptr(), slot.iov_base.cast::<u8>(), HEADS)
            };
        }
        // SAFETY: hdrs/iov/bufs are live and sized as declared.
        let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), batch as libc::c_uint, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => {
                    thread::yield_now();
                    continue;
                }
                _ => return Err(e).context("sendmmsg"),
            }
        }
        sent += n as u64;
        sequence += n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns().saturating_sub(cpu_start);
    let (voluntary, involuntary) = host::thread_switches();
    Ok((
        sent,
        secs,
        cpu,
        (voluntary - switches.0, involuntary - switches.1),
    ))
}
