//! A packet-level WAN emulator for one lab link (this kernel has no netem qdisc).
//!
//! It runs on a thread inside the link's middle namespace with one AF_PACKET socket on each of
//! the two veth interfaces there. Every frame that arrives on one side is held and then written
//! out of the other side, so it applies to everything on the link alike (TCP, UDP, ICMP): it
//! works at layer 2.
//!
//! Per frame, per direction:
//! * arrival = the kernel's receive timestamp of the frame (SO_TIMESTAMPNS), so the time the
//!   thread takes to wake up for it is not added to the link;
//! * lost with probability `loss` (independent draws);
//! * release = arrival + delay + jitter, where jitter is a normal sample with standard deviation
//!   `jitter` (the total is never below zero). Unless `reorder` is on, release is also at least
//!   the previous frame's release in that direction: the link stays FIFO, as a real one does.
//!   At packet spacings shorter than the jitter this skews the achieved delay upwards, which is
//!   why the report gives the achieved figures rather than trusting the configuration.
//!
//! Timing: the thread sleeps in `poll` on the sockets and an absolute CLOCK_MONOTONIC timerfd
//! (timer slack 1 ns, SCHED_FIFO when allowed), wakes a margin before the next release and spins
//! the rest. The margin follows the 95th percentile of the thread's recent wake-up lateness, so
//! the spin costs little CPU when wake-ups are prompt. Idle, it blocks and uses no CPU.
//!
//! The draws come from the project's seeded generator (`relay_core::rng`), one stream per
//! direction, so a run is reproducible for the same frames. Everything shares one clock (one machine), so the hold the delay line reports per
//! frame is ground truth for that link.

use std::collections::BinaryHeap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use relay_core::rng::Rng;
use relay_core::stats::{exact, ComponentSummary};
use relay_host::clock::{monotonic_ns as mono_ns, thread_cpu_ns};
use relay_host::netns;
use serde::Serialize;

mod io;

use io::{packet_socket, poll_fd, recv_frame, send, Arrival, Timer};

/// What a link does to the frames it carries (the same in both directions).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Impairment {
    /// One-way delay, ms.
    pub delay_ms: f64,
    /// Standard deviation of the normal jitter added to the delay, ms.
    pub jitter_ms: f64,
    /// Probability that a frame is dropped, 0..=1.
    pub loss: f64,
    /// Let jitter reorder frames (off: the link is FIFO).
    pub reorder: bool,
}

impl Impairment {
    pub fn validate(&self, link: &str) -> Result<()> {
        let finite_non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !finite_non_negative(self.delay_ms) || self.delay_ms > 60_000.0 {
            bail!("{link}: delay must be 0..=60000 ms, got {}", self.delay_ms);
        }
        if !finite_non_negative(self.jitter_ms) || self.jitter_ms > 60_000.0 {
            bail!(
                "{link}: jitter must be 0..=60000 ms, got {}",
                self.jitter_ms
            );
        }
        if !(0.0..=1.0).contains(&self.loss) {
            bail!(
                "{link}: loss must be 0..=100 percent, got {}",
                self.loss * 100.0
            );
        }
        Ok(())
    }
}

/// Where a delay line runs and what it does.
#[derive(Clone, Debug)]
pub struct DelayLineConfig {
    /// The link's name (reports, seed stream).
    pub name: String,
    /// The middle namespace.
    pub netns: String,
    /// The two interfaces in the middle namespace; direction 0 is `interfaces[0] -> [1]`.
    pub interfaces: [String; 2],
    pub impairment: Impairment,
    pub seed: u64,
    /// Only frames to this UDP port enter the hold figures (`injected`, `hold_error`,
    /// `achieved`); every frame is still carried and counted. The backbone measures the
    /// datagrams of the receiver the ground truth is checked on: copies sent right behind them
    /// (fan-out) are held a little longer by FIFO order under jitter and would skew the figures.
    pub measure_port: Option<u16>,
}

/// What one direction of a link did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DirectionReport {
    pub from: String,
    pub to: String,
    /// Frames that arrived.
    pub frames: u64,
    pub forwarded: u64,
    /// Dropped by the loss model.
    pub lost: u64,
    /// Released out of arrival order (only with reorder on).
    pub reordered: u64,
    /// Larger than a wire frame (an offload was left on); dropped.
    pub oversize: u64,
    pub send_errors: u64,
    /// Dropped because the hold queue was full.
    pub queue_full: u64,
    /// Frames without a usable kernel receive timestamp (arrival taken when read instead).
    pub unstamped: u64,
    /// Planned hold: release - arrival (the injected delay).
    pub injected: ComponentSummary,
    /// Achieved hold: actual send - arrival.
    pub achieved: ComponentSummary,
    /// Hold error: actual send - planned release.
    pub hold_error: ComponentSummary,
}

/// What a delay line reports when it stops.
#[derive(Clone, Debug, Serialize)]
pub struct LinkReport {
    pub name: String,
    pub impairment: Impairment,
    pub seed: u64,
    pub directions: [DirectionReport; 2],
    /// Timer wake-up lateness (wake - timer deadline), which the spin margin follows.
    pub wake_lateness: ComponentSummary,
    pub final_spin_margin_us: f64,
    /// Whether the thread got SCHED_FIFO.
    pub realtime_priority: bool,
    /// CPU time of the thread (user + system) and its share of the wall time.
    pub cpu_secs: f64,
    pub wall_secs: f64,
    pub cpu_percent: f64,
    /// Frames still held when the line stopped (not forwarded, not counted as lost).
    pub held_at_stop: u64,
}

impl LinkReport {
    /// The direction whose frames arrive on the interface facing `role`.
    pub fn from(&self, role: &str) -> Option<&DirectionReport> {
        self.directions.iter().find(|d| d.from == role)
    }
}

/// A running delay line; [`DelayLine::stop`] (or dropping it) ends it.
pub struct DelayLine {
    stop: OwnedFd,
    thread: Option<JoinHandle<Result<LinkReport>>>,
}

impl DelayLine {
    /// Starts the thread and returns once both sockets are bound (frames flow from then on).
    pub fn start(config: DelayLineConfig) -> Result<DelayLine> {
        config.impairment.validate(&config.name)?;
        // SAFETY: plain eventfd creation; checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("eventfd");
        }
        // SAFETY: a fresh descriptor we own.
        let stop = unsafe { OwnedFd::from_raw_fd(fd) };
        let stop_raw = stop.as_raw_fd();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("link-{}", config.name))
            .spawn(move || run(config, stop_raw, ready_tx))
            .context("spawning a delay-line thread")?;
        let mut line = DelayLine {
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(()) => Ok(line),
            // The thread failed before it was ready: its error says why.
            Err(_) => match line.thread.take().map(JoinHandle::join) {
                Some(Ok(Err(e))) => Err(e),
                _ => Err(anyhow!("the delay-line thread ended before it was ready")),
            },
        }
    }

    /// Stops the thread and returns its report.
    pub fn stop(mut self) -> Result<LinkReport> {
        self.signal_stop();
        let thread = self.thread.take().context("delay line already stopped")?;
        thread
            .join()
            .map_err(|_| anyhow!("a delay-line thread panicked"))?
    }

    fn signal_stop(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.signal_stop();
            let _ = thread.join();
        }
    }
}

/// Largest frame read; a longer one is an unsegmented offload frame and counts as oversize.
const FRAME_BUFFER: usize = 2048;
/// Most frames held at once (about 3 s of a saturated 10 Mbit/s link at full size frames is far
/// less); beyond it frames are dropped and counted.
const QUEUE_LIMIT: usize = 200_000;
/// Per-frame samples kept per direction for the report (beyond, counting goes on).
const SAMPLE_LIMIT: usize = 5_000_000;
/// SCHED_FIFO priority of the delay-line threads: above the lab's endpoints (see lab/mod.rs).
const PRIORITY: libc::c_int = 10;
const MIN_MARGIN_NS: u64 = 20_000;
const MAX_MARGIN_NS: u64 = 400_000;
const INITIAL_MARGIN_NS: u64 = 100_000;

/// A frame waiting for its release time; the heap pops the earliest release first.
struct Held {
    release: u64,
    arrival: u64,
    seq: u64,
    direction: usize,
    frame: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.release, self.seq) == (other.release, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.release, other.seq).cmp(&(self.release, self.seq))
    }
}

/// State of one direction.
struct Direction {
    rng: Rng,
    last_release: u64,
    last_sent_seq: Option<u64>,
    report: DirectionReport,
    injected: Vec<i64>,
    error: Vec<i64>,
}

fn run(config: DelayLineConfig, stop: RawFd, ready: mpsc::SyncSender<()>) -> Result<LinkReport> {
    netns::enter(&config.netns)?;
    // SAFETY: prctl affects only the calling thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let realtime_priority = relay_host::cpu::set_realtime(PRIORITY);
    if !realtime_priority {
        eprintln!(
            "xtask: lab: link {}: no SCHED_FIFO ({}); timing will be less precise",
            config.name,
            std::io::Error::last_os_error()
        );
    }
    let sockets = [
        packet_socket(&config.interfaces[0])?,
        packet_socket(&config.interfaces[1])?,
    ];
    let timer = Timer::new()?;
    let _ = ready.send(());
    drop(ready);

    let imp = config.impairment;
    let delay_ns = (imp.delay_ms * 1e6).round() as i64;
    let jitter_ns = imp.jitter_ms * 1e6;
    let mut directions: [Direction; 2] = [0, 1].map(|d| Direction {
        rng: Rng::seeded(config.seed, &config.name, d as u64),
        last_release: 0,
        last_sent_seq: None,
        report: DirectionReport {
            from: config.interfaces[d].clone(),
            to: config.interfaces[1 - d].clone(),
            ..DirectionReport::default()
        },
        injected: Vec::new(),
        error: Vec::new(),
    });
    let mut held: BinaryHeap<Held> = BinaryHeap::new();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut seq = 0u64;
    let mut margin = Margin::new();
    let started = mono_ns();
    let cpu_start = thread_cpu_ns();

    let release_due =
        |held: &mut BinaryHeap<Held>, pool: &mut Vec<Vec<u8>>, directions: &mut [Direction]| {
            while held.peek().is_some_and(|h| h.release <= mono_ns()) {
                let h = held.pop().expect("peeked");
                let sent_at = mono_ns();
                let out = &sockets[1 - h.direction];
                let dir = &mut directions[h.direction];
                if send(out.as_raw_fd(), &h.frame) {
                    dir.report.forwarded += 1;
                } else {
                    dir.report.send_errors += 1;
                }
                match dir.last_sent_seq {
                    Some(last) if h.seq < last => dir.report.reordered += 1,
                    _ => dir.last_sent_seq = Some(h.seq),
                }
                let measured = config
                    .measure_port
                    .is_none_or(|port| udp_dst_port(&h.frame) == Some(port));
                if measured && dir.injected.len() < SAMPLE_LIMIT {
                    dir.injected.push((h.release - h.arrival) as i64);
                    dir.error.push(sent_at as i64 - h.release as i64);
                }
                pool.push(h.frame);
            }
        };

    let mut fds = [
        poll_fd(sockets[0].as_raw_fd()),
        poll_fd(sockets[1].as_raw_fd()),
        poll_fd(timer.fd.as_raw_fd()),
        poll_fd(stop),
    ];
    let mut armed_for: Option<u64> = None;
    loop {
        release_due(&mut held, &mut pool, &mut directions);
        for (d, socket) in sockets.iter().enumerate() {
            loop {
                let mut frame = pool
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(FRAME_BUFFER));
                let Some(arrival) = recv_frame(socket.as_raw_fd(), &mut frame)? else {
                    pool.push(frame);
                    break;
                };
                let dir = &mut directions[d];
                dir.report.frames += 1;
                let arrival = match arrival {
                    Arrival::Stamped(at) => at,
                    Arrival::Unstamped(at) => {
                        dir.report.unstamped += 1;
                        at
                    }
                    Arrival::Oversize => {
                        dir.report.oversize += 1;
                        pool.push(frame);
                        continue;
                    }
                };
                // Draw both numbers for every frame, so one frame's fate does not shift the
                // next frame's draws.
                let lost = dir.rng.unit() < imp.loss;
                let jitter = if jitter_ns > 0.0 {
                    dir.rng.normal() * jitter_ns
                } else {
                    0.0
                };
                if lost {
                    dir.report.lost += 1;
                    pool.push(frame);
                    continue;
                }
                if held.len() >= QUEUE_LIMIT {
                    dir.report.queue_full += 1;
                    pool.push(frame);
                    continue;
                }
                let hold = (delay_ns as f64 + jitter).max(0.0) as u64;
                let mut release = arrival + hold;
                if !imp.reorder {
                    release = release.max(dir.last_release);
                    dir.last_release = release;
                }
                held.push(Held {
                    release,
                    arrival,
                    seq,
                    direction: d,
                    frame,
                });
                seq += 1;
            }
        }
        release_due(&mut held, &mut pool, &mut directions);

        let next = held.peek().map(|h| h.release);
        if let Some(release) = next {
            if release <= mono_ns() + margin.ns {
                while mono_ns() < release {
                    std::hint::spin_loop();
                }
                continue;
            }
            let wake_at = release - margin.ns;
            if armed_for != Some(wake_at) {
                timer.arm(wake_at)?;
                armed_for = Some(wake_at);
            }
        } else if armed_for.take().is_some() {
            timer.disarm()?;
        }
        for fd in &mut fds {
            fd.revents = 0;
        }
        // SAFETY: fds is a live array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("poll in the delay line");
        }
        if fds[3].revents != 0 {
            break;
        }
        if fds[2].revents != 0 {
            let now = mono_ns();
            timer.clear();
            if let Some(target) = armed_for.take() {
                margin.observe(now.saturating_sub(target));
            }
        }
    }

    let wall = mono_ns() - started;
    let cpu = thread_cpu_ns() - cpu_start;
    let directions = directions.map(Direction::into_report);
    Ok(LinkReport {
        name: config.name,
        impairment: imp,
        seed: config.seed,
        directions,
        wake_lateness: spread(&mut margin.all),
        final_spin_margin_us: margin.ns as f64 / 1e3,
        realtime_priority,
        cpu_secs: cpu as f64 / 1e9,
        wall_secs: wall as f64 / 1e9,
        cpu_percent: (cpu as f64 / wall.max(1) as f64 * 1000.0).round() / 10.0,
        held_at_stop: held.len() as u64,
    })
}

/// The UDP destination port of an Ethernet frame carrying IPv4 + UDP (first fragment).
fn udp_dst_port(frame: &[u8]) -> Option<u16> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
    if *frame.get(23)? != libc::IPPROTO_UDP as u8 {
        return None;
    }
    let at = 14 + ihl + 2;
    Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
}

/// Exact figures of per-frame samples (all zero when there are none).
fn spread(samples: &mut [i64]) -> ComponentSummary {
    exact(samples).unwrap_or_default()
}

impl Direction {
    fn into_report(mut self) -> DirectionReport {
        let mut achieved: Vec<i64> = self
            .injected
            .iter()
            .zip(&self.error)
            .map(|(i, e)| i + e)
            .collect();
        self.report.injected = spread(&mut self.injected);
        self.report.hold_error = spread(&mut self.error);
        self.report.achieved = spread(&mut achieved);
        self.report
    }
}

/// The early-wake margin: the 95th percentile of recent timer lateness plus 10 µs.
struct Margin {
    ns: u64,
    recent: Vec<u64>,
    next: usize,
    all: Vec<i64>,
}

impl Margin {
    const WINDOW: usize = 64;

    fn new() -> Margin {
        Margin {
            ns: INITIAL_MARGIN_NS,
            recent: Vec::with_capacity(Self::WINDOW),
            next: 0,
            all: Vec::new(),
        }
    }

    fn observe(&mut self, lateness: u64) {
        if self.all.len() < SAMPLE_LIMIT {
            self.all.push(lateness as i64);
        }
        if self.recent.len() < Self::WINDOW {
            self.recent.push(lateness);
        } else {
            self.recent[self.next] = lateness;
        }
        self.next = (self.next + 1) % Self::WINDOW;
        if self.next.is_multiple_of(16) {
            let mut sorted = self.recent.clone();
            sorted.sort_unstable();
            let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
            self.ns = (p95 + 10_000).clamp(MIN_MARGIN_NS, MAX_MARGIN_NS);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_udp_port_is_read_off_an_ipv4_frame() {
        let mut frame = vec![0u8; 14 + 24 + 8];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x46; // IPv4, a 24-byte header (one option word)
        frame[23] = 17; // UDP
        frame[14 + 24 + 2..14 + 24 + 4].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(super::udp_dst_port(&frame), Some(8080));
        frame[23] = 6; // TCP
        assert_eq!(super::udp_dst_port(&frame), None);
        frame[12] = 0x86; // not IPv4
        assert_eq!(super::udp_dst_port(&frame), None);
        assert_eq!(super::udp_dst_port(&frame[..20]), None, "too short");
    }
}
