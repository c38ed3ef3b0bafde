//! End-to-end loopback benchmark: exchange simulator -> forwarder -> UDP -> bench receiver, for
//! the relay, the reference forwarder and websocat (when installed), next to the floors (bare UDP
//! loopback; the simulator's TLS WebSocket read directly), at several rates plus a throughput ramp.
//! Writes `e2e.md` and `e2e.json` under `target/bench/` (see README, "Benchmarks").
//!
//! This file: the flags, the set-up (build, cores, websocat) and the sequence of runs; [`run`]:
//! one measured run; [`forwarder`]: a forwarder child process. The report and its markdown are
//! the library's `bench::e2e`.

mod forwarder;
mod run;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use bench::e2e::{evaluate_targets, PathKind, Ramp, Report};
use bench::probe::UdpReceiver;
use bench::publish::{self, Machine};
use clap::Parser;
use relay_host::cpu;
use relay_host::netns::Topology;

use crate::run::Bench;

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
    /// Paths to run (udp-floor, ws-direct, sleep-floor, relay, relay-parked, reference,
    /// websocat) [default: all]. sleep-floor passes the exchange's bytes on undecrypted, one
    /// blocking read and one sendmmsg at a time: the least CPU a forwarder that sleeps can spend.
    #[arg(long, value_delimiter = ',')]
    paths: Option<Vec<String>>,
    /// Core for the forwarders, the UDP floor's sender, the direct reader and the sleeping floor
    /// [default: the last].
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
    /// Run the simulator and the forwarders in one network namespace and the bench receiver in
    /// another, joined by a veth pair (needs root): the datagrams cross a device, its qdisc and
    /// a second stack as they would a NIC. The receiver's softirq and wake-up still run inside
    /// the sender's send, on its core, as on loopback (veth delivers on the sending CPU).
    #[arg(long)]
    veth: bool,
    /// Replace the table in README.md's "Benchmarks" section with this run's.
    #[arg(long)]
    update_readme: bool,
    /// Measure nothing: re-render a saved e2e.json (targets re-judged) into e2e.md and stdout.
    #[arg(long, value_name = "E2E_JSON")]
    render: Option<PathBuf>,
}

const README_START: &str = "<!-- e2e-table:start -->";
const README_END: &str = "<!-- e2e-table:end -->";
/// `--veth`: the pair's interface name and subnet (10.77.88.1 -> 10.77.88.2).
const VETH: &str = "e2e";
const VETH_SUBNET: u8 = 88;

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
        .current_dir(publish::workspace_root())
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

/// `--render`: a saved e2e.json, its targets judged again, into markdown beside it.
fn render(json: &Path, update_readme: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let mut report: Report = serde_json::from_str(&text).context("parsing the saved report")?;
    let websocat = format!("websocat {}", report.websocat);
    report.targets = evaluate_targets(&report.runs, &report.ramps, &websocat);
    publish::publish(
        "e2e",
        &report.markdown(),
        &json.with_extension("md"),
        update_readme,
        (README_START, README_END),
    )
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(json) = &args.render {
        return render(json, args.update_readme);
    }
    let wall = Instant::now();
    let bin_dir = publish::bin_dir()?;
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
        None => publish::default_out_dir()?,
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
        Some(names) => bench::parse_names("path", names, &PathKind::ALL, PathKind::name)?,
        None => PathKind::ALL.to_vec(),
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

    // --veth: deleted (namespaces and the pair) when dropped, errors and Ctrl-C included.
    let mut topology = None;
    let (receiver, sender_netns) = if args.veth {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!(
                "--veth creates two network namespaces and a veth pair: run it as root (sudo -E \
                 env \"PATH=$PATH\" cargo run --release -p bench --bin e2e -- --veth)"
            );
        }
        let t = topology.insert(Topology::new()?);
        let tokyo = t.namespace("tokyo")?;
        let frankfurt = t.namespace("frankfurt")?;
        let pair = t.pair(VETH, VETH_SUBNET, &tokyo, &frankfurt)?;
        let to = pair.right.addr;
        let receiver = relay_host::netns::run_in(&frankfurt.name, || UdpReceiver::bind_on(to))?;
        eprintln!(
            "e2e: --veth: simulator and forwarders in {} ({}), receiver in {} ({to})",
            tokyo.name, pair.left.addr, frankfurt.name
        );
        (receiver, Some(tokyo.name.clone()))
    } else {
        (UdpReceiver::bind()?, None)
    };
    let bench = Bench {
        bin_dir,
        out: out.clone(),
        forwarder_core,
        websocat,
        receiver,
        sender_netns,
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
        PathKind::RelayParked,
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

    let targets = evaluate_targets(&runs, &ramps, &format!("websocat {websocat_status}"));
    let report = Report {
        date_utc: publish::utc_now(),
        machine: Machine::detect(),
        quick: args.quick,
        forwarder_core,
        bench_core,
        websocat: websocat_status,
        veth: args.veth,
        runs,
        ramps,
        targets,
        wall_secs: wall.elapsed().as_secs_f64(),
    };
    std::fs::write(out.join("e2e.json"), serde_json::to_string_pretty(&report)?)?;
    eprintln!("e2e: wrote {}", out.join("e2e.json").display());
    publish::publish(
        "e2e",
        &report.markdown(),
        &out.join("e2e.md"),
        args.update_readme,
        (README_START, README_END),
    )
}
