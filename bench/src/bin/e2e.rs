//! End-to-end loopback benchmark: exchange simulator -> forwarder -> UDP -> bench receiver, for
//! the relay, the reference forwarder and websocat (when installed), next to the floors (bare UDP
//! loopback; the simulator's TLS WebSocket read directly), at several rates plus a throughput ramp.
//! Writes `e2e.md` and `e2e.json` under `target/bench/` (see README, "Benchmarks").

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bench::cpu;
use bench::probe::{self, Collected, Expect, UdpReceiver};
use bench::report::{self, fmt_rate, Machine, PathKind, Ramp, Report, RunResult};
use clap::Parser;
use relay::feed_sim::{FeedSim, SimConfig};

#[derive(Parser)]
#[command(
    name = "e2e",
    about = "End-to-end loopback latency and throughput: simulator -> forwarder -> UDP -> receiver"
)]
struct Args {
    /// A ~30 s run: 1 s per rate and a two-step ramp.
    #[arg(long)]
    quick: bool,
    /// Offered rates in messages per second [default: 1000,10000,100000].
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u64>>,
    /// Seconds of sending per latency run [default: 3, --quick: 1].
    #[arg(long)]
    secs: Option<f64>,
    /// Ramp rates, ascending; each path stops at its first step that is not sustained
    /// [default: 100000,150000,200000,300000,400000,500000,700000,1000000;
    /// --quick: 100000,250000,500000].
    #[arg(long, value_delimiter = ',')]
    ramp: Option<Vec<u64>>,
    /// Skip the ramp.
    #[arg(long)]
    no_ramp: bool,
    /// Seconds of sending per ramp step [default: 1].
    #[arg(long)]
    ramp_secs: Option<f64>,
    /// Paths to run (udp-floor, ws-direct, relay, reference, websocat) [default: all].
    #[arg(long, value_delimiter = ',')]
    paths: Option<Vec<String>>,
    /// Core for the forwarders, the UDP floor's sender and the direct reader [default: the last].
    #[arg(long)]
    forwarder_core: Option<usize>,
    /// Core for the simulator and the bench receiver [default: the first].
    #[arg(long)]
    bench_core: Option<usize>,
    /// Do not pin anything to cores.
    #[arg(long)]
    no_pin: bool,
    /// Do not run `cargo build --release` for the relay and the reference forwarder first.
    #[arg(long)]
    no_build: bool,
    /// websocat binary [default: `websocat` on PATH or in ~/.cargo/bin].
    #[arg(long)]
    websocat: Option<PathBuf>,
    /// Report directory [default: <target dir>/bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the table in README.md's "Benchmarks" section with this run's.
    #[arg(long)]
    update_readme: bool,
    /// Measure nothing: re-render a saved e2e.json (targets re-judged) into e2e.md and stdout.
    #[arg(long, value_name = "E2E_JSON")]
    render: Option<PathBuf>,
}

const README_START: &str = "<!-- e2e-table:start -->";
const README_END: &str = "<!-- e2e-table:end -->";
/// The payloads: Binance spot trades with microsecond `E`.
const STREAM_PATH: &str = "/ws/btcusdt@trade?timeUnit=MICROSECOND";

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where the binaries are: the directory this executable sits in (`<target>/release`).
fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the e2e executable")?;
    Ok(exe
        .parent()
        .context("executable has a directory")?
        .to_path_buf())
}

fn build_binaries(bin_dir: &Path) -> anyhow::Result<()> {
    let target_dir = bin_dir.parent().context("<target>/release has a parent")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("e2e: cargo build --release -p relay -p bench (relay, reference-forwarder)");
    let mut cmd = Command::new(cargo);
    // `cargo run` hands its child the package's build variables (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, ...). Build scripts such as ring's rerun when those change, so passing them
    // on would rebuild ring and everything above it here and again on the next `cargo run`.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let inherited = ["CARGO_PKG_", "CARGO_CFG_", "CARGO_BIN_", "CARGO_MANIFEST_"]
            .iter()
            .any(|p| key.starts_with(p))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&key);
        if inherited {
            cmd.env_remove(key);
        }
    }
    let status = cmd
        .current_dir(report::workspace_root())
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "build",
            "--release",
            "-p",
            "relay",
            "--bin",
            "relay",
            "-p",
            "bench",
            "--bin",
            "reference-forwarder",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

fn find_websocat(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("websocat"))
        .find(|p| p.is_file())
}

/// Everything a run needs to know about this invocation.
struct Bench {
    bin_dir: PathBuf,
    out: PathBuf,
    forwarder_core: Option<usize>,
    websocat: Option<PathBuf>,
    receiver: UdpReceiver,
}

/// A forwarder child process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Forwarder {
    child: Arc<Mutex<Child>>,
    exited: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
    log: PathBuf,
}

impl Forwarder {
    fn spawn(mut cmd: Command, core: Option<usize>, log: PathBuf) -> anyhow::Result<Forwarder> {
        let file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if let Some(core) = core {
            // SAFETY: only sched_setaffinity (async-signal-safe) runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || cpu::pin_current_thread(core));
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        let child = Arc::new(Mutex::new(child));
        let exited = Arc::new(AtomicBool::new(false));
        let (c, e) = (child.clone(), exited.clone());
        let watcher = std::thread::spawn(move || loop {
            if e.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(Some(_)) = c.lock().expect("child lock").try_wait() {
                e.store(true, Ordering::Relaxed);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        });
        Ok(Forwarder {
            child,
            exited,
            watcher: Some(watcher),
            log,
        })
    }

    /// User and system CPU seconds the process has used so far (all its threads).
    fn cpu_secs(&self) -> Option<(f64, f64)> {
        let pid = self.child.lock().expect("child lock").id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some((utime / hz, stime / hz))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let mut child = self.child.lock().expect("child lock");
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(child);
        self.exited.store(true, Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

fn start_sim(rate: u64, expect: &Expect) -> anyhow::Result<FeedSim> {
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
        messages_per_receive: (c.receive_calls > 0)
            .then(|| c.received as f64 / c.receive_calls as f64),
        cpu_us_per_msg: None,
        cpu_sys_share: None,
        error: None,
    }
}

impl Bench {
    fn run(&self, path: PathKind, rate: u64, secs: f64) -> RunResult {
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
                let sender = std::thread::spawn(move || {
                    if let Some(core) = core {
                        cpu::pin_current_thread(core)?;
                    }
                    probe::udp_floor_send(target, rate, count)
                });
                let c = self.receiver.run(&expect, &stop);
                sender
                    .join()
                    .map_err(|_| anyhow::anyhow!("the UDP floor sender panicked"))??;
                c
            }
            PathKind::WsDirect => {
                let sim = start_sim(rate, &expect)?;
                let ca = self.write_ca(&sim)?;
                let url = sim.url(STREAM_PATH);
                let core = self.forwarder_core;
                let e = expect.clone();
                let reader = std::thread::spawn(move || {
                    if let Some(core) = core {
                        cpu::pin_current_thread(core)?;
                    }
                    probe::ws_direct(&url, &ca, &e, &AtomicBool::new(false))
                });
                let c = reader
                    .join()
                    .map_err(|_| anyhow::anyhow!("the direct reader panicked"))??;
                sim.stop();
                c
            }
            PathKind::Relay | PathKind::Reference | PathKind::Websocat => {
                let sim = start_sim(rate, &expect)?;
                let ca = self.write_ca(&sim)?;
                let url = sim.url(STREAM_PATH);
                let to = self.receiver.addr().to_string();
                let (cmd, core) = self.command(path, &url, &ca, &to)?;
                let log = self.out.join(format!("{}.log", path_slug(path)));
                let forwarder = Forwarder::spawn(cmd, core, log)?;
                let before = forwarder.cpu_secs();
                let c = self.receiver.run(&expect, &forwarder.exited);
                let after = forwarder.cpu_secs();
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
                let mut result = result_of(path, rate, secs, &expect, &c);
                if let (Some((u0, s0)), Some((u1, s1))) = (before, after) {
                    let (user, sys) = (u1 - u0, s1 - s0);
                    result.cpu_us_per_msg = Some((user + sys) * 1e6 / c.received.max(1) as f64);
                    result.cpu_sys_share = (user + sys > 0.0).then(|| sys / (user + sys));
                }
                return Ok(result);
            }
        };
        Ok(result_of(path, rate, secs, &expect, &collected))
    }

    fn write_ca(&self, sim: &FeedSim) -> anyhow::Result<PathBuf> {
        let ca = self.out.join("feed-sim-ca.pem");
        std::fs::write(&ca, sim.ca_pem()).with_context(|| format!("writing {}", ca.display()))?;
        Ok(ca)
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
            PathKind::Relay => {
                let mut cmd = Command::new(self.bin_dir.join("relay"));
                cmd.args(["forward", "--url", url, "--ca-file"])
                    .arg(ca)
                    .args(["--to", to, "--report-secs", "3600"]);
                if let Some(core) = core {
                    cmd.args(["--core", &core.to_string()]);
                }
                (cmd, core)
            }
            PathKind::Reference => {
                let mut cmd = Command::new(self.bin_dir.join("reference-forwarder"));
                cmd.args(["--url", url, "--ca-file"])
                    .arg(ca)
                    .args(["--to", to]);
                (cmd, core)
            }
            PathKind::Websocat => {
                let Some(exe) = &self.websocat else {
                    bail!("websocat is not installed");
                };
                let mut cmd = Command::new(exe);
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

fn path_slug(path: PathKind) -> &'static str {
    match path {
        PathKind::UdpFloor => "udp-floor",
        PathKind::WsDirect => "ws-direct",
        PathKind::Relay => "relay",
        PathKind::Reference => "reference",
        PathKind::Websocat => "websocat",
    }
}

fn parse_paths(names: &[String]) -> anyhow::Result<Vec<PathKind>> {
    names
        .iter()
        .map(|n| {
            Ok(match n.as_str() {
                "udp-floor" => PathKind::UdpFloor,
                "ws-direct" => PathKind::WsDirect,
                "relay" => PathKind::Relay,
                "reference" => PathKind::Reference,
                "websocat" => PathKind::Websocat,
                other => bail!(
                    "unknown path {other:?} (udp-floor, ws-direct, relay, reference, websocat)"
                ),
            })
        })
        .collect()
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(json) = &args.render {
        let text =
            std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
        let mut report: Report = serde_json::from_str(&text).context("parsing the saved report")?;
        let websocat = format!("websocat {}", report.websocat);
        report.targets = report::evaluate_targets(&report.runs, &report.ramps, &websocat);
        return report::publish(
            "e2e",
            &report.markdown(),
            &json.with_extension("md"),
            args.update_readme,
            (README_START, README_END),
        );
    }
    let wall = Instant::now();
    let bin_dir = bin_dir()?;
    if !args.no_build {
        build_binaries(&bin_dir)?;
    }
    for exe in ["relay", "reference-forwarder"] {
        if !bin_dir.join(exe).is_file() {
            bail!(
                "{} is missing: run `cargo build --release -p relay -p bench` (or drop --no-build)",
                bin_dir.join(exe).display()
            );
        }
    }
    let out = match args.out {
        Some(o) => o,
        None => bin_dir
            .parent()
            .context("<target>/release has a parent")?
            .join("bench"),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let cores = cpu::allowed_cores();
    let (bench_core, forwarder_core) = if args.no_pin || cores.len() < 2 {
        (None, None)
    } else {
        (
            Some(args.bench_core.unwrap_or(cores[0])),
            Some(args.forwarder_core.unwrap_or(*cores.last().expect("cores"))),
        )
    };
    // The simulator's runtime and the receiver are started from this thread and inherit its core.
    if let Some(core) = bench_core {
        cpu::pin_current_thread(core).context("pinning the bench thread")?;
    }

    let websocat = find_websocat(args.websocat.as_deref());
    let websocat_status = match &websocat {
        Some(p) => {
            let version = Command::new(p)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|e| format!("unusable: {e}"));
            format!("{version} ({})", p.display())
        }
        None => "not installed (cargo install websocat)".to_string(),
    };

    let mut paths = match &args.paths {
        Some(p) => parse_paths(p)?,
        None => vec![
            PathKind::UdpFloor,
            PathKind::WsDirect,
            PathKind::Relay,
            PathKind::Reference,
            PathKind::Websocat,
        ],
    };
    if websocat.is_none() {
        paths.retain(|p| *p != PathKind::Websocat);
    }
    let rates = args.rates.unwrap_or_else(|| vec![1_000, 10_000, 100_000]);
    let secs = args.secs.unwrap_or(if args.quick { 1.0 } else { 3.0 });
    let ramp_rates = if args.no_ramp {
        Some(Vec::new())
    } else {
        args.ramp
    };
    let ramp_rates = ramp_rates.unwrap_or_else(|| {
        if args.quick {
            vec![100_000, 250_000, 500_000]
        } else {
            vec![
                100_000, 150_000, 200_000, 300_000, 400_000, 500_000, 700_000, 1_000_000,
            ]
        }
    });
    let ramp_secs = args.ramp_secs.unwrap_or(1.0);

    let bench = Bench {
        bin_dir,
        out: out.clone(),
        forwarder_core,
        websocat,
        receiver: UdpReceiver::bind()?,
    };
    eprintln!(
        "e2e: websocat: {websocat_status}; forwarders on core {:?}, simulator and receiver on core {:?}",
        forwarder_core, bench_core
    );

    let mut runs = Vec::new();
    for &rate in &rates {
        for &path in &paths {
            runs.push(bench.run(path, rate, secs));
        }
    }
    let mut ramps = Vec::new();
    for path in [
        PathKind::WsDirect,
        PathKind::Relay,
        PathKind::Reference,
        PathKind::Websocat,
    ] {
        if ramp_rates.is_empty() || !paths.contains(&path) {
            continue;
        }
        let mut ramp = Ramp {
            path: Some(path),
            steps: Vec::new(),
        };
        for &rate in &ramp_rates {
            let step = bench.run(path, rate, ramp_secs);
            let sustained = step.sustained();
            ramp.steps.push(step);
            if !sustained {
                break;
            }
        }
        ramps.push(ramp);
    }

    let targets = report::evaluate_targets(&runs, &ramps, &format!("websocat {websocat_status}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = Report {
        date_utc: report::utc_timestamp(now),
        machine: Machine::detect(),
        quick: args.quick,
        forwarder_core,
        bench_core,
        websocat: websocat_status,
        runs,
        ramps,
        targets,
        wall_secs: wall.elapsed().as_secs_f64(),
    };
    std::fs::write(out.join("e2e.json"), serde_json::to_string_pretty(&report)?)?;
    eprintln!("e2e: wrote {}", out.join("e2e.json").display());
    report::publish(
        "e2e",
        &report.markdown(),
        &out.join("e2e.md"),
        args.update_readme,
        (README_START, README_END),
    )
}
