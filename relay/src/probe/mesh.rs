//! `relay probe mesh`: seed 002's measurement, every node probing every other node each period
//! (10 probes every 10 minutes by default), a reflector on its own address, one dataset row per
//! pair and round.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use relay_core::probe::{Prober, ProberConfig, TargetSummary, MIN_PROBE_LEN};
use relay_core::wire::SEAL_LEN;
use serde::Deserialize;

use super::{millis, probe_on, reflect_on, resolve, secret, socket};
use crate::cli::probe::MeshArgs;

/// The dataset's columns; `relay plan --rtt` reads `src`, `dst` and `rtt_ms`.
pub const DATASET_HEADER: &str =
    "time,src,dst,rtt_ms,loss_pct,sent,received,rtt_min_ms,rtt_p50_ms,rtt_max_ms";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeshConfig {
    nodes: Vec<Node>,
    probes: Option<u64>,
    every_secs: Option<f64>,
    interval_ms: Option<f64>,
    timeout_ms: Option<f64>,
    length: Option<usize>,
    key_file: Option<PathBuf>,
    /// `{node}` is replaced by the node's name.
    dataset: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Node {
    name: String,
    /// HOST:PORT the other nodes send to.
    address: String,
    /// What this node's reflector binds, when not `address` (behind NAT).
    listen: Option<SocketAddr>,
}

/// A name that can go into a CSV cell as it is.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains([',', '"', '\n', '\r']) {
        bail!("node name {name:?} must be non-empty, without commas, quotes or line breaks");
    }
    Ok(())
}

fn row(time: u64, src: &str, t: &TargetSummary) -> String {
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    let rtt = t.rtt_ms;
    format!(
        "{time},{src},{},{},{},{},{},{},{},{}",
        t.target,
        cell(rtt.map(|r| r.mean)),
        cell(t.loss_pct),
        t.sent,
        t.received,
        cell(rtt.map(|r| r.min)),
        cell(rtt.map(|r| r.p50)),
        cell(rtt.map(|r| r.max)),
    )
}

/// Sleeps until `until`, or returns false at once when `stop` is raised.
fn wait(until: Instant, stop: &AtomicBool) -> bool {
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
    }
    !stop.load(Ordering::Relaxed)
}

pub fn run(args: MeshArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config: MeshConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a mesh config", args.config.display()))?;
    for n in &config.nodes {
        check_name(&n.name)?;
    }
    let Some(me) = config.nodes.iter().find(|n| n.name == args.node) else {
        bail!(
            "--node {:?} is not in {} (nodes: {})",
            args.node,
            args.config.display(),
            config
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let others: Vec<&Node> = config.nodes.iter().filter(|n| n.name != me.name).collect();
    if others.is_empty() {
        bail!("the mesh needs at least two nodes");
    }
    if others.len() + 1 != config.nodes.len() {
        bail!("node {:?} is listed twice", me.name);
    }
    let addrs = others
        .iter()
        .map(|n| resolve(&n.address))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secret = secret(config.key_file.as_deref())?;
    let every =
        crate::cli::config::positive_secs("every_secs", config.every_secs.unwrap_or(600.0))?;
    let timeout = millis("timeout_ms", config.timeout_ms.unwrap_or(3000.0))?;
    let prober_config = ProberConfig {
        targets: others.iter().map(|n| n.name.clone()).collect(),
        count: config.probes.unwrap_or(10),
        interval: millis("interval_ms", config.interval_ms.unwrap_or(1000.0))?,
        length: config
            .length
            .unwrap_or(MIN_PROBE_LEN + if secret.is_some() { SEAL_LEN } else { 0 }),
        timeout,
        epoch: 1,
    };
    // Checked once here, so a bad schedule fails before anything is bound.
    Prober::new(prober_config.clone(), secret.as_ref())?;
    let dataset = PathBuf::from(
        config
            .dataset
            .as_deref()
            .unwrap_or("mesh-{node}.csv")
            .replace("{node}", &me.name),
    );

    let stop = relay_host::signals::catch_stop_signals()?;
    let listen = match me.listen {
        Some(addr) => addr,
        None => resolve(&me.address)?,
    };
    let reflector_socket = socket(listen, "mesh")?;
    let finished = Arc::new(AtomicBool::new(false));
    let reflector = {
        let (finished, secret) = (finished.clone(), secret.clone());
        std::thread::Builder::new()
            .name("reflector".into())
            .spawn(move || reflect_on(&reflector_socket, secret.as_ref(), &finished, None))?
    };
    let any = if addrs[0].is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let probe_socket = UdpSocket::bind(any).context("binding the probe socket")?;
    crate::receive::rx_time::kernel::enable(&probe_socket).ok();
    eprintln!(
        "relay probe mesh: {} answering on {listen}, probing {} nodes every {:?} into {}",
        me.name,
        others.len(),
        every,
        dataset.display()
    );

    let result = (|| -> anyhow::Result<()> {
        // Rounds start on multiples of the period in wall-clock time, so every node of the mesh
        // probes in the same window (and the others' reflectors are up by then).
        let period_ns = every.as_nanos().max(1);
        let now_ns = u128::from(relay_host::clock::realtime_ns());
        let first = Duration::from_nanos((period_ns - now_ns % period_ns) as u64);
        if !wait(Instant::now() + first, &stop) {
            return Ok(());
        }
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) && args.rounds.is_none_or(|n| round < n) {
            let started = Instant::now();
            let time = relay_host::clock::realtime_ns() / 1_000_000_000;
            let mut prober = Prober::new(
                ProberConfig {
                    epoch: crate::forward::random_epoch()?,
                    ..prober_config.clone()
                },
                secret.as_ref(),
            )?;
            probe_on(&probe_socket, &mut prober, &addrs, &stop, |_| Ok(()))?;
            if !prober.is_done() {
                break; // stopped mid-round: a partial round is not a row
            }
            let new = !dataset.exists();
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&dataset)
                .with_context(|| format!("opening {}", dataset.display()))?;
            let mut lines = String::new();
            if new {
                lines.push_str(DATASET_HEADER);
                lines.push('\n');
            }
            for t in prober.summaries() {
                lines.push_str(&row(time, &me.name, &t));
                lines.push('\n');
            }
            file.write_all(lines.as_bytes())
                .with_context(|| format!("appending to {}", dataset.display()))?;
            round += 1;
            eprintln!("relay probe mesh: round {round} written");
            if args.rounds.is_some_and(|n| round >= n) || !wait(started + every, &stop) {
                break;
            }
        }
        // One more period of answers, for the other nodes' last round (unless told to stop).
        if args.rounds.is_some() {
            wait(Instant::now() + every, &stop);
        }
        Ok(())
    })();
    finished.store(true, Ordering::Relaxed);
    let stats = reflector
        .join()
        .map_err(|_| anyhow::anyhow!("the reflector thread panicked"))??;
    eprintln!(
        "relay probe mesh: reflector {}",
        serde_json::to_string(&stats)?
    );
    result
}
