//! What the eBPF receive stamper costs a receiver: two network namespaces joined by a veth pair,
//! a sender blasting real-format relay datagrams (sendmmsg) from one, a receiver counting them
//! (recvmmsg) in the other, with no program, the stamper, or a null program attached to the
//! receiving veth at each hook (xdp-native, xdp-generic, tc-ingress), with kernel BPF statistics
//! off and on. Writes `ebpf.md` and `ebpf.json` under `target/bench/` (see README, "Benchmarks").
//!
//! Needs root (namespaces, veth, BPF). Without it, it stops and says so.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bench::cpu;
use bench::ebpf_report::{Config, Counters, EbpfReport, Hook, Program, Sample};
use bench::null_prog::{NullHook, NullProgram};
use bench::report::{self, Machine};
use clap::Parser;
use relay::clock::realtime_ns;
use relay::receive::ebpf::{HookMode, RxStamper, EBPF_OBJECT_AVAILABLE};
use relay_wire::{flags, Header, Kind, HEADER_LEN, MAGIC};

#[derive(Parser)]
#[command(
    name = "ebpf",
    about = "Receiver throughput and per-packet cost of the eBPF receive stamper, over a veth pair \
             between two network namespaces (needs root)"
)]
struct Args {
    /// Seconds of sending per run.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Runs per configuration (configurations interleaved: one of each per repeat).
    #[arg(long, default_value_t = 3)]
    repeats: u32,
    /// Hooks to measure [default: xdp-native,xdp-generic,tc-ingress].
    #[arg(long, value_delimiter = ',')]
    hooks: Option<Vec<String>>,
    /// Skip the null-program control runs (no statistics floor, no hook-alone throughput).
    #[arg(long)]
    no_control: bool,
    /// Datagrams per sendmmsg and per recvmmsg.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Do not pin the sender and the receiver to cores.
    #[arg(long)]
    no_pin: bool,
    /// Report directory [default: <target dir>/bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the table in README.md's "Benchmarks" section with this run's.
    #[arg(long)]
    update_readme: bool,
    /// Measure nothing: re-render a saved ebpf.json into ebpf.md and stdout.
    #[arg(long, value_name = "EBPF_JSON")]
    render: Option<PathBuf>,
}

const README_START: &str = "<!-- ebpf-table:start -->";
const README_END: &str = "<!-- ebpf-table:end -->";
/// Namespaces are `ebpfbench-<pid>-tx` / `-rx`.
const NS_PREFIX: &str = "ebpfbench-";
const TX_IF: &str = "ebb-tx";
const RX_IF: &str = "ebb-rx";
const TX_MAC: &str = "02:eb:b0:00:00:01";
const RX_MAC: &str = "02:eb:b0:00:00:02";
const TX_ADDR: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 1);
const RX_ADDR: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 2);
const PORT: u16 = 47_900;
/// A Binance spot trade with µs times, as the relay forwards it: 131 bytes.
const PAYLOAD: &[u8] = br#"{"e":"trade","E":1764000000123456,"s":"BTCUSDT","t":5123456789,"p":"97123.45000000","q":"0.00125000","T":1764000000123400,"m":true}"#;
/// The receiver's socket buffer (forced past rmem_max as root).
const RCVBUF: libc::c_int = 32 << 20;
/// After the sender stopped, the receiver ends once nothing arrived for this long.
const QUIET: Duration = Duration::from_millis(150);

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ebpf: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn default_out() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the ebpf executable")?;
    // <target>/release/ebpf -> <target>/bench
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .context("the executable sits in <target>/release")?
        .join("bench"))
}

fn stats_enabled_host() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
}

fn run(args: Args) -> anyhow::Result<()> {
    let out = match &args.out {
        Some(o) => o.clone(),
        None => default_out()?,
    };
    if let Some(json) = &args.render {
        let text =
            std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text).context("parsing")?;
        let report: EbpfReport =
            serde_json::from_value(value["report"].clone()).context("parsing the saved report")?;
        return report::publish(
            "ebpf",
            &report.markdown(),
            &json.with_extension("md"),
            args.update_readme,
            (README_START, README_END),
        );
    }

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "needs root: it creates two network namespaces joined by a veth pair (CAP_NET_ADMIN) \
             and loads and attaches eBPF programs and turns on kernel BPF statistics (CAP_BPF, \
             CAP_SYS_ADMIN). Run it as root, e.g. `sudo -E env \"PATH=$PATH\" cargo run \
             --release -p bench --bin ebpf`"
        );
    }
    if !EBPF_OBJECT_AVAILABLE {
        bail!(
            "the relay was built without its eBPF program: build with RELAY_EBPF_REQUIRED=1 \
             (run `cargo xtask build-ebpf` first if the toolchain is missing)"
        );
    }
    if args.secs <= 0.0 || args.repeats == 0 || args.batch == 0 || args.batch > 1024 {
        bail!("--secs and --repeats must be positive, --batch 1..=1024");
    }
    let hooks = match &args.hooks {
        Some(names) => names
            .iter()
            .map(|n| {
                Hook::parse(n).with_context(|| {
                    format!("unknown hook {n:?} (xdp-native, xdp-generic, tc-ingress)")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Hook::ALL.to_vec(),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let wall = Instant::now();
    let stop = relay::signals::stop_flag()?;
    let cores = cpu::allowed_cores();
    let (receiver_core, sender_core) = if args.no_pin || cores.len() < 2 {
        (None, None)
    } else {
        (cores.first().copied(), cores.last().copied())
    };
    let stats_on_at_start = stats_enabled_host();
    if stats_on_at_start {
        eprintln!(
            "ebpf: warning: kernel.bpf_stats_enabled is already 1; runs 'without statistics' \
             will have them on"
        );
    }

    remove_stale_namespaces();
    let lab = Lab::new()?;
    eprintln!(
        "ebpf: namespaces {} -> {} over {TX_IF} -> {RX_IF}; sender on {:?}, receiver on {:?}",
        lab.tx_ns, lab.rx_ns, sender_core, receiver_core
    );
    let bench = Bench {
        lab: &lab,
        secs: args.secs,
        batch: args.batch,
        sender_core,
        receiver_core,
        stop: stop.clone(),
        softirqd: softirqd_pids(),
    };

    // One short unmeasured run: first-touch costs (page faults of the buffers, the first BPF
    // load) stay out of the figures.
    let warm = bench.run_with_secs(Config::BASELINE, 0, args.secs.min(0.5));
    if let Some(e) = &warm.error {
        bail!("the warm-up run failed: {e}");
    }

    let configs = Config::all(&hooks, !args.no_control);
    let mut samples = Vec::new();
    for repeat in 0..args.repeats {
        for &config in &configs {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let started = Instant::now();
            let sample = bench.run(config, repeat);
            eprintln!(
                "ebpf: [{}/{}] {:<26} stats {:<3}: {} ({:.1} s)",
                repeat + 1,
                args.repeats,
                config.label(),
                if config.stats { "on" } else { "off" },
                describe(&sample),
                started.elapsed().as_secs_f64()
            );
            samples.push(sample);
        }
    }
    drop(lab);
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted; namespaces removed, nothing written");
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = EbpfReport {
        date_utc: report::utc_timestamp(now),
        machine: Machine::detect(),
        secs: args.secs,
        repeats: args.repeats,
        batch: args.batch,
        payload_bytes: PAYLOAD.len(),
        sender_core,
        receiver_core,
        stats_on_at_start,
        samples,
        wall_secs: wall.elapsed().as_secs_f64(),
    };
    let json_path = out.join("ebpf.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report.to_json())?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("ebpf: wrote {}", json_path.display());
    report::publish(
        "ebpf",
        &report.markdown(),
        &out.join("ebpf.md"),
        args.update_readme,
        (README_START, README_END),
    )
}

fn describe(s: &Sample) -> String {
    if let Some(e) = &s.error {
        return format!("error: {e}");
    }
    let mut text = format!(
        "sent {} ({:.0}/s), received {} ({:.0}/s), loss {:.3}% (rcvbuf {}), {:.0} CPU ns/datagram, sender busy {:.2}",
        s.sent,
        s.send_rate().unwrap_or(0.0),
        s.received,
        s.rate().unwrap_or(0.0),
        s.loss().unwrap_or(0.0) * 100.0,
        s.rcvbuf_errors,
        s.cpu_ns_per_datagram().unwrap_or(0.0),
        s.sender_busy().unwrap_or(0.0),
    );
    text.push_str(&format!(
        " ({} voluntary, {} involuntary switches)",
        s.sender_switches[0], s.sender_switches[1]
    ));
    if let Some(ns) = s.ns_per_run() {
        text.push_str(&format!(
            ", {ns:.1} ns/run over {} runs",
            s.run_cnt.unwrap_or(0)
        ));
    }
    if let Some(d) = s.stamps_drained {
        text.push_str(&format!(", {d} stamps"));
    }
    if let Some(c) = s.counters {
        if c.ring_full > 0 || c.malformed > 0 {
            text.push_str(&format!(", counters {c:?}"));
        }
    }
    text
}

struct Bench<'a> {
    lab: &'a Lab,
    secs: f64,
    batch: usize,
    sender_core: Option<usize>,
    receiver_core: Option<usize>,
    stop: Arc<AtomicBool>,
    softirqd: Vec<u32>,
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

/// CPU time of the calling thread in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Voluntary and involuntary context switches of the calling thread so far.
fn thread_switches() -> (u64, u64) {
    // SAFETY: an all-zero rusage is valid; getrusage writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (usage.ru_nvcsw as u64, usage.ru_nivcsw as u64)
}

/// The ksoftirqd threads (one per CPU): softirq work the kernel defers out of the interrupted
/// task runs there.
fn softirqd_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}

/// Summed run time in ns (`/proc/PID/schedstat`, first field) of `pids`.
fn run_time_ns(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

impl Bench<'_> {
    fn run(&self, config: Config, repeat: u32) -> Sample {
        self.run_with_secs(config, repeat, self.secs)
    }

    fn run_with_secs(&self, config: Config, repeat: u32, secs: f64) -> Sample {
        match self.try_run(config, repeat, secs) {
            Ok(s) => s,
            Err(e) => Sample::failed(config, repeat, format!("{e:#}")),
        }
    }

    fn try_run(&self, config: Config, repeat: u32, secs: f64) -> anyhow::Result<Sample> {
        let sender_done = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
        let receiver = {
            let ns = self.lab.rx_ns.clone();
            let (core, batch, done) = (self.receiver_core, self.batch, sender_done.clone());
            let limit = Duration::from_secs_f64(secs) + Duration::from_secs(30);
            thread::spawn(move || receive(&ns, core, config, batch, &ready_tx, &done, limit))
        };
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the receiver thread died before starting")));
        if let Err(e) = ready {
            sender_done.store(true, Ordering::Relaxed);
            let _ = receiver.join();
            return Err(e);
        }
        let softirqd_before = run_time_ns(&self.softirqd);
        let sender = {
            let ns = self.lab.tx_ns.clone();
            let (core, batch, stop) = (self.sender_core, self.batch, self.stop.clone());
            let epoch = std::process::id() ^ (repeat << 24);
            thread::spawn(move || send(&ns, core, batch, secs, epoch, &stop))
        };
        let sent = sender.join();
        sender_done.store(true, Ordering::Relaxed);
        let received = receiver
            .join()
            .map_err(|_| anyhow::anyhow!("the receiver thread panicked"))??;
        let softirqd_cpu_ns = run_time_ns(&self.softirqd).saturating_sub(softirqd_before);
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

fn attach(config: Config) -> anyhow::Result<Attached> {
    let Some(hook) = config.hook else {
        return Ok(Attached::Nothing);
    };
    Ok(match config.program {
        Program::None => Attached::Nothing,
        Program::Stamper => {
            let mode = match hook {
                Hook::XdpNative => HookMode::XdpNative,
                Hook::XdpGeneric => HookMode::XdpGeneric,
                Hook::TcIngress => HookMode::TcIngress,
            };
            let mut stamper = RxStamper::attach(RX_IF, mode, PORT)?;
            if config.stats {
                stamper.enable_program_stats()?;
            }
            Attached::Stamper(Box::new(stamper))
        }
        Program::Null => {
            let null_hook = match hook {
                Hook::XdpNative => NullHook::XdpDriver,
                Hook::XdpGeneric => NullHook::XdpSkb,
                Hook::TcIngress => NullHook::TcxIngress,
            };
            let name = std::ffi::CString::new(RX_IF).expect("no NUL");
            // SAFETY: a valid C string.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                bail!("no interface {RX_IF} in the receiving namespace");
            }
            let program = NullProgram::attach(ifindex, null_hook)?;
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
    ns: &str,
    core: Option<usize>,
    config: Config,
    batch: usize,
    ready: &mpsc::Sender<anyhow::Result<()>>,
    sender_done: &AtomicBool,
    limit: Duration,
) -> anyhow::Result<Received> {
    let setup = || -> anyhow::Result<(Attached, UdpSocket, u64)> {
        enter_netns(ns)?;
        if let Some(core) = core {
            cpu::pin_current_thread(core).context("pinning the receiver")?;
        }
        let attached = attach(config)?;
        let socket = UdpSocket::bind(SocketAddrV4::new(RX_ADDR, PORT))
            .context("binding the receiver socket")?;
        set_int_opt(&socket, libc::SO_RCVBUFFORCE, RCVBUF)
            .or_else(|_| set_int_opt(&socket, libc::SO_RCVBUF, RCVBUF))
            .context("setting the receive buffer")?;
        socket.set_read_timeout(Some(Duration::from_millis(10)))?;
        let rcvbuf_before = udp_rcvbuf_errors()?;
        Ok((attached, socket, rcvbuf_before))
    };
    let (mut attached, socket, rcvbuf_before) = match setup() {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("{e:#}")));
            return Err(e);
        }
    };
    let mut stats_on_host = stats_enabled_host();
    let cpu_start = thread_cpu_ns();
    let _ = ready.send(Ok(()));

    const SLOT: usize = 2048;
    let mut bufs = vec![0u8; batch * SLOT];
    // `_iov` stays alive: the headers point into it.
    let (_iov, mut hdrs) = mmsg_slots(&mut bufs, SLOT, batch);
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
    stats_on_host |= stats_enabled_host();
    let rcvbuf_errors = udp_rcvbuf_errors()?.saturating_sub(rcvbuf_before);
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
    ns: &str,
    core: Option<usize>,
    batch: usize,
    secs: f64,
    epoch: u32,
    stop: &AtomicBool,
) -> anyhow::Result<(u64, f64, u64, (u64, u64))> {
    enter_netns(ns)?;
    if let Some(core) = core {
        cpu::pin_current_thread(core).context("pinning the sender")?;
    }
    let socket =
        UdpSocket::bind(SocketAddrV4::new(TX_ADDR, 0)).context("binding the sender socket")?;
    socket.connect(SocketAddrV4::new(RX_ADDR, PORT))?;
    let len = HEADER_LEN + PAYLOAD.len();
    let mut bufs = vec![0u8; batch * len];
    for i in 0..batch {
        bufs[i * len + HEADER_LEN..(i + 1) * len].copy_from_slice(PAYLOAD);
    }
    let (iov, mut hdrs) = mmsg_slots(&mut bufs, len, batch);
    let fd = socket.as_raw_fd();
    let cpu_start = thread_cpu_ns();
    let switches = thread_switches();
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(secs);
    let mut sequence = 1u64;
    let mut sent = 0u64;
    let mut header = [0u8; HEADER_LEN];
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        let now = realtime_ns();
        for (i, slot) in iov.iter().enumerate() {
            Header {
                kind: Kind::Data,
                flags: flags::EVENT_TIME | flags::EVENT_TIME_MICROS,
                epoch,
                upstream_generation: 1,
                sequence: sequence + i as u64,
                relay_rx_ns: now,
                relay_tx_ns: now,
                event_time_ns: now - 1_000_000,
                message_len: PAYLOAD.len() as u32,
                fragment_offset: 0,
                fragment_index: 0,
                fragment_count: 1,
                payload_len: PAYLOAD.len() as u16,
            }
            .encode(&mut header);
            // SAFETY: each iovec points at its datagram's HEADER_LEN + payload bytes in bufs.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    header.as_ptr(),
                    slot.iov_base.cast::<u8>(),
                    HEADER_LEN,
                )
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
    let (voluntary, involuntary) = thread_switches();
    Ok((
        sent,
        secs,
        cpu,
        (voluntary - switches.0, involuntary - switches.1),
    ))
}

fn set_int_opt(socket: &UdpSocket, opt: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    // SAFETY: setsockopt reads one c_int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `Udp: RcvbufErrors` of the calling thread's network namespace.
fn udp_rcvbuf_errors() -> anyhow::Result<u64> {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")
        .context("reading /proc/thread-self/net/snmp")?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        bail!("no Udp lines in /proc/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .context("no Udp RcvbufErrors in /proc/net/snmp")
}

/// Two namespaces joined by a veth pair; deleted (with the pair) on drop, errors included.
struct Lab {
    tx_ns: String,
    rx_ns: String,
}

impl Lab {
    fn new() -> anyhow::Result<Lab> {
        let pid = std::process::id();
        let lab = Lab {
            tx_ns: format!("{NS_PREFIX}{pid}-tx"),
            rx_ns: format!("{NS_PREFIX}{pid}-rx"),
        };
        for ns in [&lab.tx_ns, &lab.rx_ns] {
            ip(&["netns", "add", ns])?;
            // No IPv6 at all: no duplicate address detection, router solicitations or neighbour
            // discovery, so the relay datagrams are the only traffic on the link.
            ip(&[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ])?;
        }
        ip(&[
            "link", "add", TX_IF, "address", TX_MAC, "netns", &lab.tx_ns, "type", "veth", "peer",
            "name", RX_IF, "address", RX_MAC, "netns", &lab.rx_ns,
        ])?;
        for (ns, dev, addr, peer, peer_mac) in [
            (&lab.tx_ns, TX_IF, TX_ADDR, RX_ADDR, RX_MAC),
            (&lab.rx_ns, RX_IF, RX_ADDR, TX_ADDR, TX_MAC),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            // Static neighbours: nothing waits for ARP, so no burst queued during resolution
            // leaves at once and overflows the veth queue at the start of a run.
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                &peer.to_string(),
                "lladdr",
                peer_mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
        Ok(lab)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.tx_ns, &self.rx_ns] {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("ebpf: deleting namespace {ns}: {e:#}");
            }
        }
    }
}

/// Deletes namespaces an earlier, killed run left behind (its pid is gone).
fn remove_stale_namespaces() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("ebpf: removing namespace {name} of an earlier run");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Moves the calling thread (only it) into a named network namespace.
fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns on a namespace fd we hold; affects this thread only (CLONE_NEWNET).
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setns {path}"));
    }
    Ok(())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `batch` message headers for sendmmsg/recvmmsg, each pointing at its own `slot`-byte piece of
/// `bufs`. The iovecs are returned too: the headers point into them, so they must live as long.
fn mmsg_slots(
    bufs: &mut [u8],
    slot: usize,
    batch: usize,
) -> (Vec<libc::iovec>, Vec<libc::mmsghdr>) {
    assert!(
        bufs.len() >= slot * batch,
        "buffer too small for {batch} slots of {slot} bytes"
    );
    let mut iov: Vec<libc::iovec> = (0..batch)
        .map(|i| libc::iovec {
            iov_base: bufs[i * slot..].as_mut_ptr().cast(),
            iov_len: slot,
        })
        .collect();
    let hdrs = (0..batch)
        .map(|i| {
            // SAFETY: an all-zero mmsghdr is valid; the iovec it points at lives in the returned
            // Vec, whose heap storage does not move with the Vec.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    (iov, hdrs)
}
