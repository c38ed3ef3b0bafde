//! Seed 000 in the lab: `relay probe` between the hosts during the run, inside a region (tokyo and
//! the exchange, 1 ms apart) and across it (tokyo to frankfurt over the backbone, the exchange to
//! frankfurt over the internet). The probes' RTTs go to `paths.csv` (`src,dst,rtt_ms`, one row per
//! probe), which `relay plan` and the report read: the exchange to frankfurt is faster through
//! tokyo than directly, the triangle-inequality violation the relay is built on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use relay_host::netns::{Link, Netns};

use super::experiment::relay_in;
use crate::process::Children;

/// The reflectors' UDP port in every namespace.
pub const PROBE_PORT: u16 = 9100;
/// Probes per path: ten a second.
const INTERVAL_MS: u64 = 100;

/// One probed path: who probes, whom, over which link.
pub struct ProbedPath {
    pub src: &'static str,
    pub dst: &'static str,
    pub link: &'static str,
}

/// The probed paths, in the order the report lists them.
pub const PATHS: [ProbedPath; 3] = [
    ProbedPath {
        src: "tokyo",
        dst: "exchange",
        link: "exchange-link",
    },
    ProbedPath {
        src: "tokyo",
        dst: "frankfurt",
        link: "backbone",
    },
    ProbedPath {
        src: "exchange",
        dst: "frankfurt",
        link: "internet",
    },
];

/// The address `path.src` reaches `path.dst` at, over `path.link`.
fn target(path: &ProbedPath, links: &BTreeMap<&str, Link>) -> String {
    let link = &links[path.link];
    let end = if link.left.netns.name.ends_with(path.dst) {
        &link.left
    } else {
        &link.right
    };
    format!("{}:{PROBE_PORT}", end.addr)
}

fn summary_file(src: &str) -> String {
    format!("probes-{src}.json")
}

/// Starts a reflector in every namespace with a path and the probers, for `duration_secs`.
pub fn spawn(
    children: &mut Children,
    relay: &Path,
    out: &Path,
    namespaces: &BTreeMap<&str, Netns>,
    links: &BTreeMap<&str, Link>,
    duration_secs: f64,
) -> Result<()> {
    let mut hosts: Vec<&str> = PATHS.iter().flat_map(|p| [p.src, p.dst]).collect();
    hosts.sort_unstable();
    hosts.dedup();
    for host in &hosts {
        let mut reflect = relay_in(&namespaces[host], relay);
        reflect
            .args([
                "probe",
                "reflect",
                "--listen",
                &format!("0.0.0.0:{PROBE_PORT}"),
            ])
            .args(["--duration", &(duration_secs + 30.0).to_string()]);
        children.spawn(&format!("{host} reflector"), reflect)?;
    }
    // Probing starts once every reflector answers, so no first probe is lost to a start-up race.
    for host in &hosts {
        wait_until_listening(children, &namespaces[host], &format!("{host} reflector"))?;
    }
    // Probes for all but the last two seconds of the run, so they end with it.
    let count = ((duration_secs - 2.0).max(1.0) * 1000.0 / INTERVAL_MS as f64) as u64;
    let mut sources: Vec<&str> = PATHS.iter().map(|p| p.src).collect();
    sources.dedup();
    for src in sources {
        let mut run = relay_in(&namespaces[src], relay);
        run.args(["probe", "run", "--count", &count.max(1).to_string()])
            .args([
                "--interval-ms",
                &INTERVAL_MS.to_string(),
                "--timeout-ms",
                "2000",
            ]);
        for path in PATHS.iter().filter(|p| p.src == src) {
            run.args(["--to", &target(path, links)]);
        }
        run.arg("--output")
            .arg(out.join(format!("probes-{src}.jsonl")))
            .arg("--summary")
            .arg(out.join(summary_file(src)));
        children.spawn(&format!("{src} prober"), run)?;
    }
    Ok(())
}

/// Waits until UDP port [`PROBE_PORT`] is bound in `netns` (`ss`, from iproute2).
fn wait_until_listening(children: &mut Children, netns: &Netns, name: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listening = netns
            .exec("ss")
            .args(["-Hlun", &format!("sport = :{PROBE_PORT}")])
            .output()
            .context("running ss in a lab namespace")?;
        if !listening.stdout.is_empty() {
            return Ok(());
        }
        children.check_running(name)?;
        if std::time::Instant::now() > deadline {
            anyhow::bail!("{name} did not bind UDP {PROBE_PORT} within 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The names of the probers, to wait for.
pub fn probers() -> Vec<String> {
    let mut sources: Vec<&str> = PATHS.iter().map(|p| p.src).collect();
    sources.dedup();
    sources.into_iter().map(|s| format!("{s} prober")).collect()
}

/// One path's figures, from its prober's summary.
#[derive(Clone, Debug)]
pub struct PathFigures {
    pub src: &'static str,
    pub dst: &'static str,
    pub link: &'static str,
    pub sent: u64,
    pub lost: u64,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p99_ms: Option<f64>,
}

/// Reads the probers' results, writes `paths.csv` (one row per answered probe) and returns
/// each path's figures.
pub fn collect(out: &Path, links: &BTreeMap<&str, Link>) -> Result<Vec<PathFigures>> {
    let mut csv = String::from("src,dst,rtt_ms\n");
    let mut figures = Vec::new();
    for path in &PATHS {
        let addr = target(path, links);
        let file = out.join(summary_file(path.src));
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let summary: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let t = summary["targets"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["target"] == addr.as_str()))
            .with_context(|| format!("{} has no target {addr}", file.display()))?;
        figures.push(PathFigures {
            src: path.src,
            dst: path.dst,
            link: path.link,
            sent: t["sent"].as_u64().unwrap_or(0),
            lost: t["lost"].as_u64().unwrap_or(0),
            rtt_p50_ms: t["rtt_ms"]["p50"].as_f64(),
            rtt_p99_ms: t["rtt_ms"]["p99"].as_f64(),
        });
        let lines = out.join(format!("probes-{}.jsonl", path.src));
        let lines = std::fs::read_to_string(&lines)
            .with_context(|| format!("reading {}", lines.display()))?;
        for line in lines.lines() {
            let record: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("a probe line of {}", path.src))?;
            if record["target"] != addr.as_str() {
                continue;
            }
            if let Some(ns) = record["rtt_ns"].as_i64() {
                let _ = writeln!(csv, "{},{},{:.6}", path.src, path.dst, ns as f64 / 1e6);
            }
        }
    }
    std::fs::write(out.join("paths.csv"), csv).context("writing paths.csv")?;
    Ok(figures)
}
