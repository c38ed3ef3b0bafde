//! What the eBPF receive stamper costs a receiver: two network namespaces joined by a veth pair,
//! a sender blasting real-format relay datagrams (sendmmsg) from one, a receiver counting them
//! (recvmmsg) in the other, with no program, the stamper, or a null program attached to the
//! receiving veth at each hook (xdp-native, xdp-generic, tc-ingress), with kernel BPF statistics
//! off and on. Writes `ebpf.md` and `ebpf.json` under `target/bench/` (see README, "Benchmarks").
//!
//! Needs root (namespaces, veth, BPF). Without it, it stops and says so.
//!
//! This file: the flags, the checks, the namespaces and the sequence of runs; [`run`]: one
//! measured run (the sender, the receiver, what is attached); [`host`]: the counters the host
//! keeps for us. The report and its markdown are the library's `bench::ebpf`.

mod host;
mod run;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use bench::ebpf::{Config, EbpfReport, Sample};
use bench::publish::{self, Machine};
use clap::Parser;
use relay::receive::rx_time::ebpf::EBPF_OBJECT_AVAILABLE;
use relay_host::netns::Topology;
use relay_host::{cpu, signals};
use relay_wire::stamp::Hook;

use crate::run::{Bench, PAYLOAD};

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
/// The veth pair's name (both ends) and its subnet: 10.77.89.1 (sender) -> 10.77.89.2.
const IFACE: &str = "ebb";
const SUBNET: u8 = 89;

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ebpf: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--render`: a saved ebpf.json into markdown beside it.
fn render(json: &Path, update_readme: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).context("parsing")?;
    let report: EbpfReport =
        serde_json::from_value(value["report"].clone()).context("parsing the saved report")?;
    publish::publish(
        "ebpf",
        &report.markdown(),
        &json.with_extension("md"),
        update_readme,
        (README_START, README_END),
    )
}

/// Why this process cannot run the benchmark, if it cannot.
fn check_can_run(args: &Args) -> anyhow::Result<()> {
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
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    let out = match &args.out {
        Some(o) => o.clone(),
        None => publish::default_out_dir()?,
    };
    if let Some(json) = &args.render {
        return render(json, args.update_readme);
    }
    check_can_run(&args)?;
    let hooks = match &args.hooks {
        Some(names) => bench::parse_names("hook", names, &Hook::ALL, Hook::name)?,
        None => Hook::ALL.to_vec(),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let wall = Instant::now();
    signals::catch_stop_signals().context("installing the stop-signal handlers")?;
    let cores = cpu::allowed_cores();
    let (receiver_core, sender_core) = if args.no_pin || cores.len() < 2 {
        (None, None)
    } else {
        (cores.first().copied(), cores.last().copied())
    };
    let stats_on_at_start = host::stats_enabled_host();
    if stats_on_at_start {
        eprintln!(
            "ebpf: warning: kernel.bpf_stats_enabled is already 1; runs 'without statistics' \
             will have them on"
        );
    }

    // Deleted (namespaces, veth pair) when dropped, errors and Ctrl-C included.
    let mut topology = Topology::new()?;
    let tx = topology.namespace("tx")?;
    let rx = topology.namespace("rx")?;
    let pair = topology.pair(IFACE, SUBNET, &tx, &rx)?;
    eprintln!(
        "ebpf: namespaces {} ({}) -> {} ({}) over {}; sender on {:?}, receiver on {:?}",
        tx.name, pair.left.addr, rx.name, pair.right.addr, pair.name, sender_core, receiver_core
    );
    let bench = Bench {
        pair: &pair,
        secs: args.secs,
        batch: args.batch,
        sender_core,
        receiver_core,
        softirqd: host::softirqd_pids(),
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
            if signals::stop_requested() {
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
    drop(topology);
    if signals::stop_requested() {
        bail!("interrupted; namespaces removed, nothing written");
    }

    let report = EbpfReport {
        date_utc: publish::utc_now(),
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
    publish::publish(
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
