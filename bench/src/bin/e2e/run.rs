//! One measured run of one path at one rate: the simulator, the forwarder (or the floor's own
//! sender or reader) and the bench receiver, and what they measured as a [`RunResult`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use anyhow::{bail, Context};
use bench::e2e::render::fmt_rate;
use bench::e2e::{PathKind, ReadSummary, RunResult};
use bench::probe::{self, Collected, Expect, UdpReceiver};
use bench::sleep_floor;
use feed_sim::{FeedSim, SimConfig};
use relay_host::cpu;

use crate::forwarder::{Cpu, Forwarder};

/// The payloads: Binance spot trades with microsecond `E`.
const STREAM_PATH: &str = "/ws/btcusdt@trade?timeUnit=MICROSECOND";

/// Everything a run needs to know about this invocation.
pub struct Bench {
    /// Where `relay` and `reference-forwarder` are.
    pub bin_dir: PathBuf,
    /// The report directory (forwarder logs, the simulator's CA).
    pub out: PathBuf,
    pub forwarder_core: Option<usize>,
    pub websocat: Option<PathBuf>,
    pub receiver: UdpReceiver,
    /// `--veth`: the namespace the simulator, the forwarders and the floors' senders run in (the
    /// receiver's socket was bound in the other one).
    pub sender_netns: Option<String>,
}

/// The simulator, started from a thread in `netns` when given (its runtime's threads then live
/// there too).
fn start_sim(rate: u64, expect: &Expect, netns: Option<&str>) -> anyhow::Result<FeedSim> {
    match netns {
        Some(name) => relay_host::netns::run_in(name, || start_sim(rate, expect, None)),
        None => start_sim_here(rate, expect),
    }
}

fn start_sim_here(rate: u64, expect: &Expect) -> anyhow::Result<FeedSim> {
    FeedSim::start(SimConfig {
        rate_per_stream: rate as f64,
        count: Some(expect.messages),
        worker_threads: 1,
        log: false,
        ..SimConfig::default()
    })
}

fn result_of(path: PathKind, rate: u64, secs: f64, expect: &Expect, c: &Collected) -> RunResult {
    RunResult {
        path: Some(path),
        rate,
        secs,
        expected: expect.messages,
        received: c.received.min(expect.messages),
        lost: expect.messages.saturating_sub(c.received),
        duplicates: c.duplicates,
        achieved_rate: c.achieved_rate(),
        latency: c.latency(),
        hop: c.hop(),
        dwell: c.dwell(),
        leg: c.leg(),
        reads: (c.reads.reads > 0).then(|| ReadSummary {
            messages_per_read: c.reads.messages as f64 / c.reads.reads as f64,
            datagrams_per_read: c.reads.datagrams as f64 / c.reads.reads as f64,
            send_gap: c.reads.send_gap.component(),
        }),
        messages_per_receive: (c.receive_calls > 0)
            .then(|| c.received as f64 / c.receive_calls as f64),
        datagrams_per_message: (c.datagrams > 0 && c.received > 0)
            .then(|| c.datagrams as f64 / c.received as f64),
        cpu_us_per_msg: None,
        cpu_sys_share: None,
        error: None,
    }
}

/// `result` with the CPU per delivered message between the two readings, when both were taken.
fn with_cpu(mut result: RunResult, before: Option<Cpu>, after: Option<Cpu>) -> RunResult {
    if let (Some(before), Some(after)) = (before, after) {
        let (us, share) = before.per_message(after, result.received);
        result.cpu_us_per_msg = Some(us);
        result.cpu_sys_share = share;
    }
    result
}

impl Bench {
    /// Measures `path` at `rate` for `secs`; a failure is a result with its error.
    pub fn run(&self, path: PathKind, rate: u64, secs: f64) -> RunResult {
        let started = Instant::now();
        let result = match self.try_run(path, rate, secs) {
            Ok(r) => r,
            Err(e) => RunResult::failed(path, rate, secs, format!("{e:#}")),
        };
        let lat = result.latency.as_ref().map_or("-".to_string(), |l| {
            format!(
                "p50 {:.1} p99 {:.1} p99.9 {:.1} µs",
                l.p50_us, l.p99_us, l.p999_us
            )
        });
        eprintln!(
            "e2e: {:>20} @ {:>5}/s: {}/{} delivered, {:.0}/s, {:.1}/recv, {lat}{} ({:.1} s)",
            path.label(),
            fmt_rate(rate),
            result.received,
            result.expected,
            result.achieved_rate,
            result.messages_per_receive.unwrap_or(0.0),
            result
                .error
                .as_ref()
                .map_or(String::new(), |e| format!(", error: {e}")),
            started.elapsed().as_secs_f64()
        );
        result
    }

    fn try_run(&self, path: PathKind, rate: u64, secs: f64) -> anyhow::Result<RunResult> {
        let expect = Expect::new(rate, secs);
        self.receiver.drain();
        let stop = AtomicBool::new(false);
        let collected = match path {
            PathKind::UdpFloor => {
                let target = self.receiver.addr();
                let (count, core) = (expect.messages, self.forwarder_core);
                let netns = self.sender_netns.clone();
                let sender = std::thread::spawn(move || -> anyhow::Result<u64> {
                    if let Some(name) = &netns {
                        relay_host::netns::enter(name)?;
                    }
                    if let Some(core) = core {
                        cpu::pin_current_thread(core)?;
                    }
                    Ok(probe::udp_floor_send(target, rate, count)?)
                });
                let c = self.receiver.run(&expect, &stop);
                sender
                    .join()
                    .map_err(|_| anyhow::anyhow!("the UDP floor sender panicked"))??;
                c
            }
            PathKind::WsDirect => {
                let sim = start_sim(rate, &expect, self.sender_netns.as_deref())?;
                let ca_pem = sim.ca_pem().as_bytes().to_vec();
                let url = sim.url(STREAM_PATH);
                let core = self.forwarder_core;
                let e = expect.clone();
                let netns = self.sender_netns.clone();
                let reader = std::thread::spawn(move || {
                    if let Some(name) = &netns {
                        relay_host::netns::enter(name)?;
                    }
                    if let Some(core) = core {
                        cpu::pin_current_thread(core)?;
                    }
                    probe::ws_direct(&url, &ca_pem, &e, &AtomicBool::new(false))
                });
                let c = reader
                    .join()
                    .map_err(|_| anyhow::anyhow!("the direct reader panicked"))??;
                sim.stop();
                c
            }
            PathKind::SleepFloor => return self.sleep_floor(rate, secs, &expect),
            PathKind::Relay | PathKind::RelayParked | PathKind::Reference | PathKind::Websocat => {
                let sim = start_sim(rate, &expect, self.sender_netns.as_deref())?;
                let ca = self.write_ca(&sim)?;
                let url = sim.url(STREAM_PATH);
                let to = self.receiver.addr().to_string();
                let (cmd, core) = self.command(path, &url, &ca, &to)?;
                let log = self.out.join(format!("{}.log", path.name()));
                let forwarder = Forwarder::spawn(cmd, core, log)?;
                // CPU from the first delivery on: start-up and the TLS handshake are not per
                // message.
                let mut before = None;
                let c = self
                    .receiver
                    .run_with(&expect, &forwarder.exited, &mut || before = forwarder.cpu());
                let after = forwarder.cpu();
                if c.received == 0 && forwarder.exited.load(Ordering::Relaxed) {
                    bail!("{} exited: {}", path.label(), forwarder.log_tail());
                }
                if c.received == 0 {
                    bail!(
                        "nothing arrived from {}: {}",
                        path.label(),
                        forwarder.log_tail()
                    );
                }
                drop(forwarder);
                sim.stop();
                return Ok(with_cpu(
                    result_of(path, rate, secs, &expect, &c),
                    before,
                    after,
                ));
            }
        };
        Ok(result_of(path, rate, secs, &expect, &collected))
    }

    /// The sleeping-forwarder floor: a thread of this process on the forwarders' core, its CPU
    /// measured like a forwarder's, from the first delivery to the end of the receive.
    fn sleep_floor(&self, rate: u64, secs: f64, expect: &Expect) -> anyhow::Result<RunResult> {
        let sim = start_sim(rate, expect, self.sender_netns.as_deref())?;
        let ca_pem = sim.ca_pem().as_bytes().to_vec();
        let url = sim.url(STREAM_PATH);
        let (to, core, netns) = (
            self.receiver.addr(),
            self.forwarder_core,
            self.sender_netns.clone(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let floor = {
            let stop = stop.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                if let Some(name) = &netns {
                    relay_host::netns::enter(name)?;
                }
                if let Some(core) = core {
                    cpu::pin_current_thread(core)?;
                }
                sleep_floor::forward(&url, &ca_pem, to, tx, &stop)
            })
        };
        let joined = |floor: std::thread::JoinHandle<anyhow::Result<()>>| {
            floor
                .join()
                .map_err(|_| anyhow::anyhow!("the sleeping floor panicked"))?
        };
        let Ok(handoff) = rx.recv_timeout(expect.first_timeout) else {
            stop.store(true, Ordering::Relaxed);
            joined(floor)?;
            bail!("the sleeping floor did not open its connection");
        };
        let tid = handoff.tid;
        let mut before = None;
        let c = self.receiver.run_passed_on(
            expect,
            &AtomicBool::new(false),
            &mut || before = Cpu::of_thread(tid),
            handoff,
        );
        let after = Cpu::of_thread(tid);
        stop.store(true, Ordering::Relaxed);
        sim.stop();
        joined(floor)?;
        if let Some(e) = &c.stream_error {
            bail!("{e}");
        }
        Ok(with_cpu(
            result_of(PathKind::SleepFloor, rate, secs, expect, &c),
            before,
            after,
        ))
    }

    fn write_ca(&self, sim: &FeedSim) -> anyhow::Result<PathBuf> {
        let ca = self.out.join("feed-sim-ca.pem");
        std::fs::write(&ca, sim.ca_pem()).with_context(|| format!("writing {}", ca.display()))?;
        Ok(ca)
    }

    /// `program`, inside the senders' namespace with `--veth` (`ip netns exec` keeps the pid, so
    /// pinning and CPU accounting see the forwarder itself).
    fn program(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.sender_netns {
            Some(name) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", name]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    fn command(
        &self,
        path: PathKind,
        url: &str,
        ca: &Path,
        to: &str,
    ) -> anyhow::Result<(Command, Option<usize>)> {
        let core = self.forwarder_core;
        Ok(match path {
            PathKind::Relay | PathKind::RelayParked => {
                let idle = if path == PathKind::Relay {
                    "spin"
                } else {
                    "park"
                };
                let mut cmd = self.program(self.bin_dir.join("relay"));
                cmd.args(["forward", "--url", url, "--ca-file"])
                    .arg(ca)
                    .args(["--to", to, "--report-secs", "3600", "--idle", idle]);
                if let Some(core) = core {
                    cmd.args(["--core", &core.to_string()]);
                }
                (cmd, core)
            }
            PathKind::Reference => {
                let mut cmd = self.program(self.bin_dir.join("reference-forwarder"));
                cmd.args(["--url", url, "--ca-file"])
                    .arg(ca)
                    .args(["--to", to]);
                (cmd, core)
            }
            PathKind::Websocat => {
                let Some(exe) = &self.websocat else {
                    bail!("websocat is not installed");
                };
                let mut cmd = self.program(exe);
                // -u: exchange -> UDP only; -n: no close frame when that leaves the reverse
                // direction at EOF (without it websocat closes the WebSocket at once); -b: binary
                // mode, each message forwarded as it is, one datagram each. The simulator's CA is
                // trusted through OpenSSL's SSL_CERT_FILE (verification stays on; without it the
                // handshake fails with "unable to get local issuer certificate").
                cmd.env("SSL_CERT_FILE", ca)
                    .args(["-n", "-u", "-b", url, &format!("udp:{to}")]);
                (cmd, core)
            }
            _ => bail!("{} is not a forwarder", path.label()),
        })
    }
}
