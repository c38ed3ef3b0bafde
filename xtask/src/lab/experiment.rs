//! One lab run: the topology and delay lines up, the simulator, the relay and both receivers in
//! their namespaces, everything torn down, the results collected.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use relay_core::record::summary::Summary;
use relay_core::stats::ComponentSummary;
use relay_host::netns::{Link, Netns, Topology};

use super::delay_line::{DelayLine, DelayLineConfig, LinkReport};
use super::floor::FloorProbe;
use super::paths::{self, PathFigures};
use super::truth::{ground_truth, Check, CsvLatencies, Segment};
use super::{LabSettings, BOTH_PORT, EXCHANGE_PORT, RECEIVER_PORT, ROLES};
use crate::process::Children;
use crate::results::{read_summary, wait_for_file};

/// What a finished lab run produced.
pub struct LabOutcome {
    pub out: PathBuf,
    pub baseline: Summary,
    pub backbone: Summary,
    /// The A/B-arbitrated receiver: the relay's datagrams and the direct connection at once.
    pub both: Summary,
    pub links: Vec<LinkReport>,
    pub ground_truth: Vec<Segment>,
    /// User-space send -> blocking receive without a link, measured during the run.
    pub receive_floor: ComponentSummary,
    /// Seed 000: the probed paths inside and across the regions.
    pub paths: Vec<PathFigures>,
}

impl LabOutcome {
    /// The checked rows (the components of the latency split) with their checks.
    pub fn checks(&self) -> impl Iterator<Item = (&Segment, &Check)> {
        self.ground_truth
            .iter()
            .filter_map(|s| s.check.as_ref().map(|c| (s, c)))
    }
}

/// Builds the topology, runs the experiment with the given `relay` binary, tears everything
/// down and collects the results.
pub fn run_lab(settings: &LabSettings, relay: &Path) -> Result<LabOutcome> {
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("creating {}", settings.out.display()))?;
    let out = settings.out.canonicalize()?;
    std::fs::write(
        out.join("lab-settings.json"),
        serde_json::to_string_pretty(settings)? + "\n",
    )?;

    let mut topology = Topology::new()?;
    let mut namespaces = BTreeMap::new();
    for role in ROLES {
        namespaces.insert(role, topology.namespace(role)?);
    }
    let mut links = BTreeMap::new();
    let mut lines = Vec::new();
    for l in &settings.links {
        let link = topology.link(l.name, l.subnet, &namespaces[l.left], &namespaces[l.right])?;
        lines.push(DelayLine::start(DelayLineConfig {
            name: l.name.to_string(),
            netns: link.middle.name.clone(),
            interfaces: [
                Link::middle_interface(&link.left).to_string(),
                Link::middle_interface(&link.right).to_string(),
            ],
            impairment: l.impairment,
            seed: settings.seed,
            // The ground truth is checked on the aws-backbone receiver's datagrams.
            measure_port: (l.name == "backbone").then_some(RECEIVER_PORT),
        })?);
        links.insert(l.name, link);
    }
    eprintln!(
        "xtask: lab: namespaces {} up; measuring for {} s, results in {}",
        topology.namespaces().join(", "),
        settings.duration_secs,
        out.display()
    );
    let probe = FloorProbe::start(&namespaces["frankfurt"].name, ENDPOINT_PRIORITY)?;
    let measured = run_children(settings, relay, &out, &namespaces, &links);
    let floor = probe.stop();
    let reports = lines
        .into_iter()
        .map(DelayLine::stop)
        .collect::<Result<Vec<_>>>();
    drop(topology);
    measured?;
    let reports = reports?;
    let receive_floor = floor?;
    std::fs::write(
        out.join("links.json"),
        serde_json::to_string_pretty(&reports)? + "\n",
    )?;

    let backbone_json = out.join("backbone-results.json");
    let baseline_json = out.join("baseline-results.json");
    let both_json = out.join("both-results.json");
    let paths = paths::collect(&out, &links)?;
    let ground_truth = ground_truth(
        &reports,
        &CsvLatencies::read(&backbone_json.with_extension("csv"))?,
        &CsvLatencies::read(&baseline_json.with_extension("csv"))?,
        &receive_floor,
    );
    Ok(LabOutcome {
        out,
        baseline: read_summary(&baseline_json)?,
        backbone: read_summary(&backbone_json)?,
        both: read_summary(&both_json)?,
        links: reports,
        ground_truth,
        receive_floor,
        paths,
    })
}

/// Real-time priority of the experiment's processes: above everything else on the machine (as if
/// each namespace were a host of its own), below the delay lines (the network is never late
/// because a host is busy).
const ENDPOINT_PRIORITY: libc::c_int = 5;

/// `relay <args>` inside namespace `netns`, with SCHED_FIFO [`ENDPOINT_PRIORITY`] when allowed.
pub(super) fn relay_in(netns: &Netns, relay: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = netns.exec(relay);
    // SAFETY: the hook runs in the forked child before exec and only calls sched_setscheduler,
    // which is async-signal-safe. Without the privilege the child keeps its normal policy.
    unsafe {
        command.pre_exec(|| {
            relay_host::cpu::set_realtime(ENDPOINT_PRIORITY);
            Ok(())
        });
    }
    command
}

/// Starts the simulator, both receivers and the relay, and waits until the receivers are done.
fn run_children(
    settings: &LabSettings,
    relay: &Path,
    out: &Path,
    namespaces: &BTreeMap<&str, Netns>,
    links: &BTreeMap<&str, Link>,
) -> Result<()> {
    let exchange_for_tokyo = links["exchange-link"].left.addr;
    let exchange_for_frankfurt = links["internet"].left.addr;
    let frankfurt_backbone = links["backbone"].right.addr;
    let url = |exchange: Ipv4Addr| {
        format!(
            "wss://{exchange}:{EXCHANGE_PORT}/stream?streams={}&timeUnit=MICROSECOND",
            settings.streams.join("/")
        )
    };
    let ca = out.join("feed-sim-ca.pem");
    let _ = std::fs::remove_file(&ca);
    let key = crate::results::write_key(out)?;
    let duration = settings.duration_secs.to_string();
    let mut children = Children::default();

    let mut sim = relay_in(&namespaces["exchange"], relay);
    sim.args(["feed-sim", "--listen", &format!("0.0.0.0:{EXCHANGE_PORT}")])
        .arg("--cert-out")
        .arg(&ca)
        .args(["--rate", &settings.rate.to_string()])
        .args(["--seed", &settings.seed.to_string()])
        .args(["--extra-name", &exchange_for_tokyo.to_string()])
        .args(["--extra-name", &exchange_for_frankfurt.to_string()]);
    children.spawn_labelled("exchange feed-sim", sim)?;
    wait_for_file(&mut children, "exchange feed-sim", &ca)?;

    let mut backbone = relay_in(&namespaces["frankfurt"], relay);
    backbone
        .args(["receive", "--mode", "aws-backbone", "--listen-address"])
        .arg(frankfurt_backbone.to_string())
        .args([
            "--port",
            &RECEIVER_PORT.to_string(),
            "--duration",
            &duration,
        ])
        // The eBPF stamper on frankfurt's end of the backbone: what splits the latency.
        .args(["--iface", "backbone"])
        .arg("--key-file")
        .arg(&key)
        .arg("--output")
        .arg(out.join("backbone-results.json"));
    if settings.no_recovery {
        backbone.arg("--no-recovery");
    }
    children.spawn_labelled("frankfurt aws-backbone", backbone)?;
    let mut baseline = relay_in(&namespaces["frankfurt"], relay);
    baseline
        .args(["receive", "--mode", "baseline", "--url"])
        .arg(url(exchange_for_frankfurt))
        .arg("--ca-file")
        .arg(&ca)
        .args(["--duration", &duration])
        .arg("--output")
        .arg(out.join("baseline-results.json"));
    children.spawn_labelled("frankfurt baseline", baseline)?;
    // The feed a trading application would take: both paths, each event from the first.
    let mut both = relay_in(&namespaces["frankfurt"], relay);
    both.args(["receive", "--mode", "both", "--listen-address"])
        .arg(frankfurt_backbone.to_string())
        .args([
            "--port",
            &BOTH_PORT.to_string(),
            "--duration",
            &duration,
            "--url",
        ])
        .arg(url(exchange_for_frankfurt))
        .arg("--ca-file")
        .arg(&ca)
        .arg("--key-file")
        .arg(&key)
        .arg("--output")
        .arg(out.join("both-results.json"));
    if settings.no_recovery {
        both.arg("--no-recovery");
    }
    children.spawn_labelled("frankfurt both", both)?;
    let mut forward = relay_in(&namespaces["tokyo"], relay);
    forward
        .args(["forward", "--url"])
        .arg(url(exchange_for_tokyo))
        .arg("--ca-file")
        .arg(&ca)
        .args(["--to", &format!("{frankfurt_backbone}:{RECEIVER_PORT}")])
        .args(["--to", &format!("{frankfurt_backbone}:{BOTH_PORT}")])
        .arg("--key-file")
        .arg(&key);
    children.spawn_labelled("tokyo relay", forward)?;
    paths::spawn(
        &mut children,
        relay,
        out,
        namespaces,
        links,
        settings.duration_secs,
    )?;

    let deadline = Instant::now() + Duration::from_secs_f64(settings.duration_secs + 60.0);
    let mut pending = vec![
        "frankfurt aws-backbone",
        "frankfurt baseline",
        "frankfurt both",
    ];
    while !pending.is_empty() {
        if relay_host::signals::stop_requested() {
            bail!("interrupted; stopping the lab");
        }
        if Instant::now() > deadline {
            bail!("the receivers did not finish within their duration + 60 s");
        }
        children.check_running("exchange feed-sim")?;
        children.check_running("tokyo relay")?;
        let mut still = Vec::new();
        for name in pending {
            if !children.finished(name)? {
                still.push(name);
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(100));
    }
    // The probers end with the run (their count is set so); the reflectors stop with the lab.
    for prober in paths::probers() {
        children.wait(&prober)?;
    }
    Ok(())
}
