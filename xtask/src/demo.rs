//! `cargo xtask demo`: the seed experiment on loopback. The simulated exchange feeds a baseline
//! receiver directly and the relay, which forwards to an aws-backbone receiver; both measure the
//! same run, and the two summaries are printed side by side.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use clap::Args;

use crate::process::{build_release_relay, Children};
use crate::results::{print_comparison, read_summary, wait_for_file};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seconds each receiver measures.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Messages per second per stream from the simulated exchange.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Streams to carry (combined-stream URL).
    #[arg(long = "stream", default_values_t = ["btcusdt@trade".to_string(), "btcusdt@depth@100ms".to_string(), "btcusdt@bookTicker".to_string()])]
    streams: Vec<String>,
    /// TCP port of the simulated exchange.
    #[arg(long, default_value_t = 19443)]
    exchange_port: u16,
    /// UDP port of the aws-backbone receiver.
    #[arg(long, default_value_t = 18080)]
    receiver_port: u16,
    /// Folder for the JSON and CSV results [default: results/demo-<unix time>].
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let relay = build_release_relay(false)?;
    let out = crate::results::out_dir(args.out.as_deref(), "demo")?;
    let ca = out.join("feed-sim-ca.pem");
    let exchange = SocketAddr::from(([127, 0, 0, 1], args.exchange_port));
    let url = format!(
        "wss://{exchange}/stream?streams={}&timeUnit=MICROSECOND",
        args.streams.join("/")
    );
    let backbone_json = out.join("backbone-results.json");
    let baseline_json = out.join("baseline-results.json");
    let mut children = Children::default();

    eprintln!(
        "xtask: demo on loopback for {} s, results in {}",
        args.duration,
        out.display()
    );
    let mut sim = Command::new(&relay);
    sim.args(["feed-sim", "--listen", &exchange.to_string(), "--cert-out"])
        .arg(&ca)
        .args(["--rate", &args.rate.to_string()]);
    children.spawn("feed-sim", sim)?;
    wait_for_file(&mut children, "feed-sim", &ca)?;

    let duration = args.duration.to_string();
    let mut backbone = Command::new(&relay);
    backbone
        .args([
            "receive",
            "--mode",
            "aws-backbone",
            "--listen-address",
            "127.0.0.1",
        ])
        .args([
            "--port",
            &args.receiver_port.to_string(),
            "--duration",
            &duration,
            "--output",
        ])
        .arg(&backbone_json);
    children.spawn("backbone receiver", backbone)?;
    let mut baseline = Command::new(&relay);
    baseline
        .args(["receive", "--mode", "baseline", "--url", &url, "--ca-file"])
        .arg(&ca)
        .args(["--duration", &duration, "--output"])
        .arg(&baseline_json);
    children.spawn("baseline receiver", baseline)?;
    let mut forward = Command::new(&relay);
    forward
        .args(["forward", "--url", &url, "--ca-file"])
        .arg(&ca)
        .args(["--to", &format!("127.0.0.1:{}", args.receiver_port)]);
    children.spawn("relay", forward)?;

    children.wait("backbone receiver")?;
    children.wait("baseline receiver")?;
    drop(children);
    print_comparison(
        &read_summary(&baseline_json)?,
        &read_summary(&backbone_json)?,
    );
    eprintln!("xtask: JSON and CSV results are in {}", out.display());
    crate::results::write_report(&relay, &out)
}
