//! `cargo xtask soak`: a long run on loopback (simulated exchange -> sealed relay -> receiver at a
//! high rate, with serverShutdowns on a timer) that samples the relay's and the receiver's memory
//! all along, to show that nothing is lost and nothing grows. Not part of CI: its figures are
//! documented in README.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::process::{build_release_relay, Children};
use crate::results::{out_dir, read_summary, wait_for_file, write_key};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Minutes to run.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Messages per second per stream (two streams: trade and aggTrade).
    #[arg(long, default_value_t = 25_000.0)]
    rate: f64,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 30)]
    sample_secs: u64,
    /// A serverShutdown (and so a gapless rotation) this often, in seconds; 0 for none.
    #[arg(long, default_value_t = 300)]
    shutdown_every_secs: u64,
    /// TCP port of the simulated exchange.
    #[arg(long, default_value_t = 19543)]
    exchange_port: u16,
    /// UDP port of the receiver.
    #[arg(long, default_value_t = 18180)]
    receiver_port: u16,
    /// Folder for the results [default: results/soak-<unix time>].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One memory sample.
#[derive(Debug, Serialize)]
struct Sample {
    secs: u64,
    relay_rss_kib: Option<u64>,
    receiver_rss_kib: Option<u64>,
}

fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn run(args: SoakArgs) -> Result<()> {
    if !(args.minutes > 0.0 && args.rate > 0.0) {
        bail!("--minutes and --rate must be positive");
    }
    relay_host::signals::catch_stop_signals().context("installing the signal handlers")?;
    let relay = build_release_relay(false)?;
    let out = out_dir(args.out.as_deref(), "soak")?;
    let ca = out.join("feed-sim-ca.pem");
    let key = write_key(&out)?;
    let exchange = SocketAddr::from(([127, 0, 0, 1], args.exchange_port));
    let url = format!("wss://{exchange}/stream?streams=btcusdt@trade/btcusdt@aggTrade");
    let json = out.join("soak-results.json");
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let mut children = Children::default();
    eprintln!(
        "xtask: soak on loopback for {:.0} min at {} msg/s, results in {}",
        args.minutes,
        2.0 * args.rate,
        out.display()
    );
    let mut sim = Command::new(&relay);
    sim.args(["feed-sim", "--listen", &exchange.to_string(), "--cert-out"])
        .arg(&ca)
        .args(["--rate", &args.rate.to_string()]);
    if args.shutdown_every_secs > 0 {
        sim.args([
            "--server-shutdown-every-secs",
            &args.shutdown_every_secs.to_string(),
        ]);
    }
    children.spawn("feed-sim", sim)?;
    wait_for_file(&mut children, "feed-sim", &ca)?;
    let mut receiver = Command::new(&relay);
    receiver
        .args([
            "receive",
            "--mode",
            "aws-backbone",
            "--listen-address",
            "127.0.0.1",
        ])
        .args(["--port", &args.receiver_port.to_string()])
        .args([
            "--duration",
            &duration.as_secs_f64().to_string(),
            "--report-secs",
            "60",
        ])
        .arg("--key-file")
        .arg(&key)
        .arg("--output")
        .arg(&json);
    children.spawn("receiver", receiver)?;
    std::thread::sleep(Duration::from_millis(500));
    let mut forward = Command::new(&relay);
    forward
        .args(["forward", "--url", &url, "--ca-file"])
        .arg(&ca)
        .args(["--to", &format!("127.0.0.1:{}", args.receiver_port)])
        .args(["--report-secs", "60"])
        .arg("--key-file")
        .arg(&key);
    children.spawn("relay", forward)?;

    let started = Instant::now();
    let mut samples = Vec::new();
    while !children.finished("receiver")? {
        children.check_running("relay")?;
        children.check_running("feed-sim")?;
        let secs = started.elapsed().as_secs();
        if samples.len() as u64 * args.sample_secs <= secs {
            let sample = Sample {
                secs,
                relay_rss_kib: rss_kib(children.pid("relay")),
                receiver_rss_kib: rss_kib(children.pid("receiver")),
            };
            eprintln!("xtask: soak {sample:?}");
            samples.push(sample);
        }
        if relay_host::signals::stop_requested() {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(children);
    let summary = read_summary(&json)?;
    std::fs::write(
        out.join("soak-memory.json"),
        serde_json::to_string_pretty(&samples)? + "\n",
    )?;
    let warm = samples.iter().skip(2);
    let range = |f: fn(&Sample) -> Option<u64>| {
        let values: Vec<u64> = warm.clone().filter_map(f).collect();
        (values.iter().min().copied(), values.iter().max().copied())
    };
    eprintln!(
        "xtask: soak done: {} messages, events_lost {}, recovered {}, exchange_events_missed {}, \
         duplicates {}; RSS after the first minute: relay {:?} KiB, receiver {:?} KiB (min, max)",
        summary.sample_count,
        summary.events_lost,
        summary.recovered,
        summary.exchange_events_missed,
        summary.duplicates,
        range(|s| s.relay_rss_kib),
        range(|s| s.receiver_rss_kib),
    );
    Ok(())
}
