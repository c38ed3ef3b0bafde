//! `cargo xtask lab`: the seed experiment on one machine, in network namespaces joined by
//! emulated WAN links.
//!
//! ```text
//!                      exchange-link 10.77.1.0/24            backbone 10.77.2.0/24
//!   [exchange] .1 ==[ delay line: 1 ms ]== .2 [tokyo] .1 ==[ delay line: 118 ms ]== .2 [frankfurt]
//!    feed-sim  .1 ===========[ delay line: 125 ms, 10 ms jitter, 0.1 % loss ]========= .2 receivers
//!                               internet 10.77.3.0/24
//! ```
//!
//! The simulated exchange serves both paths at once: the relay in tokyo forwards to the
//! aws-backbone receiver in frankfurt, and the baseline receiver in frankfurt connects straight to
//! the exchange over the internet link. Both measure the same run; the seed's comparison is
//! printed side by side, followed by the ground truth: what the delay lines injected per path
//! against what the receivers measured.

mod delay_line;
mod floor;
pub mod netns;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::process::{self, build_release_relay, Children};
use crate::results::{print_comparison, read_json, wait_for_file};
use delay_line::{DelayLine, DelayLineConfig, Impairment, LinkReport, Spread};
use floor::FloorProbe;
use netns::{Link, Netns, Topology};

const EXCHANGE_PORT: u16 = 9443;
const RECEIVER_PORT: u16 = 8080;
/// The ground-truth check: each component of the backbone receiver's latency split may differ
/// from what the lab injected there (the backbone's achieved hold in `network`, 0 elsewhere) by
/// this much at p50.
const COMPONENT_TOLERANCE_US: f64 = 50.0;

/// One emulated link: which namespaces it joins, on which /24, with what defaults.
struct LinkDef {
    name: &'static str,
    subnet: u8,
    left: &'static str,
    right: &'static str,
    default: Impairment,
}

const ROLES: [&str; 3] = ["exchange", "tokyo", "frankfurt"];

const LINKS: [LinkDef; 3] = [
    LinkDef {
        name: "exchange-link",
        subnet: 1,
        left: "exchange",
        right: "tokyo",
        default: Impairment {
            delay_ms: 1.0,
            jitter_ms: 0.05,
            loss: 0.0,
            reorder: false,
        },
    },
    LinkDef {
        name: "backbone",
        subnet: 2,
        left: "tokyo",
        right: "frankfurt",
        default: Impairment {
            delay_ms: 118.0,
            jitter_ms: 0.2,
            loss: 0.0,
            reorder: false,
        },
    },
    LinkDef {
        name: "internet",
        subnet: 3,
        left: "exchange",
        right: "frankfurt",
        default: Impairment {
            delay_ms: 125.0,
            jitter_ms: 10.0,
            loss: 0.001,
            reorder: false,
        },
    },
];

/// Flags of `cargo xtask lab`; `--config FILE` takes the same keys in snake_case.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabArgs {
    /// JSON file with any of these settings as keys in snake_case (duration, rate, streams, out,
    /// seed, backbone_delay_ms, internet_loss, ...); flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Seconds each receiver measures [default: 20].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Messages per second per stream from the simulated exchange [default: 200].
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<f64>,
    /// Stream to carry, repeatable [default: btcusdt@trade, btcusdt@depth@100ms,
    /// btcusdt@bookTicker].
    #[arg(long = "stream", alias = "streams", value_name = "NAME")]
    #[serde(default)]
    pub streams: Vec<String>,
    /// Results folder [default: results/lab-<unix time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed of the links' loss and jitter draws and of the simulator's prices [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,

    /// exchange <-> tokyo one-way delay [default: 1].
    #[arg(long, value_name = "MS", help_heading = "Links")]
    pub exchange_link_delay_ms: Option<f64>,
    /// Standard deviation of the exchange link's jitter [default: 0.05].
    #[arg(long, value_name = "MS", help_heading = "Links")]
    pub exchange_link_jitter_ms: Option<f64>,
    /// Exchange link frame loss in percent [default: 0].
    #[arg(long, value_name = "PERCENT", help_heading = "Links")]
    pub exchange_link_loss: Option<f64>,
    /// Let jitter reorder frames on the exchange link [default: false, FIFO].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Links")]
    pub exchange_link_reorder: Option<bool>,
    /// tokyo <-> frankfurt one-way delay [default: 118].
    #[arg(long, value_name = "MS", help_heading = "Links")]
    pub backbone_delay_ms: Option<f64>,
    /// Standard deviation of the backbone's jitter [default: 0.2].
    #[arg(long, value_name = "MS", help_heading = "Links")]
    pub backbone_jitter_ms: Option<f64>,
    /// Backbone frame loss in percent [default: 0].
    #[arg(long, value_name = "PERCENT", help_heading = "Links")]
    pub backbone_loss: Option<f64>,
    /// Let jitter reorder frames on the backbone [default: false, FIFO].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Links")]
    pub backbone_reorder: Option<bool>,
    /// exchange <-> frankfurt one-way delay over the public internet [default: 125].
    #[arg(long, value_name = "MS", help_heading = "Links")]
    pub internet_delay_ms: Option<f64>,
    /// Standard deviation of the internet link's jitter [default: 10].
    #[arg(long, value_name = "MS", help_heading = "Links")]
    pub internet_jitter_ms: Option<f64>,
    /// Internet frame loss in percent [default: 0.1].
    #[arg(long, value_name = "PERCENT", help_heading = "Links")]
    pub internet_loss: Option<f64>,
    /// Let jitter reorder frames on the internet link [default: false, FIFO].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Links")]
    pub internet_reorder: Option<bool>,
}

impl LabArgs {
    /// These flags with the gaps filled from `file`.
    fn or(self, file: LabArgs) -> LabArgs {
        LabArgs {
            config: self.config,
            duration: self.duration.or(file.duration),
            rate: self.rate.or(file.rate),
            streams: if self.streams.is_empty() {
                file.streams
            } else {
                self.streams
            },
            out: self.out.or(file.out),
            seed: self.seed.or(file.seed),
            exchange_link_delay_ms: self.exchange_link_delay_ms.or(file.exchange_link_delay_ms),
            exchange_link_jitter_ms: self
                .exchange_link_jitter_ms
                .or(file.exchange_link_jitter_ms),
            exchange_link_loss: self.exchange_link_loss.or(file.exchange_link_loss),
            exchange_link_reorder: self.exchange_link_reorder.or(file.exchange_link_reorder),
            backbone_delay_ms: self.backbone_delay_ms.or(file.backbone_delay_ms),
            backbone_jitter_ms: self.backbone_jitter_ms.or(file.backbone_jitter_ms),
            backbone_loss: self.backbone_loss.or(file.backbone_loss),
            backbone_reorder: self.backbone_reorder.or(file.backbone_reorder),
            internet_delay_ms: self.internet_delay_ms.or(file.internet_delay_ms),
            internet_jitter_ms: self.internet_jitter_ms.or(file.internet_jitter_ms),
            internet_loss: self.internet_loss.or(file.internet_loss),
            internet_reorder: self.internet_reorder.or(file.internet_reorder),
        }
    }

    /// The flags of one link: delay, jitter, loss (percent), reorder.
    fn link(&self, name: &str) -> [Option<f64>; 4] {
        let flag = |b: Option<bool>| b.map(|b| b as u8 as f64);
        match name {
            "exchange-link" => [
                self.exchange_link_delay_ms,
                self.exchange_link_jitter_ms,
                self.exchange_link_loss,
                flag(self.exchange_link_reorder),
            ],
            "backbone" => [
                self.backbone_delay_ms,
                self.backbone_jitter_ms,
                self.backbone_loss,
                flag(self.backbone_reorder),
            ],
            "internet" => [
                self.internet_delay_ms,
                self.internet_jitter_ms,
                self.internet_loss,
                flag(self.internet_reorder),
            ],
            other => unreachable!("no link {other}"),
        }
    }
}

/// One link as the run uses it.
#[derive(Clone, Debug, Serialize)]
pub struct LinkSettings {
    pub name: &'static str,
    pub left: &'static str,
    pub right: &'static str,
    pub subnet: u8,
    pub impairment: Impairment,
}

/// Everything a lab run needs, after the config file and flags are merged.
#[derive(Clone, Debug, Serialize)]
pub struct LabSettings {
    pub duration_secs: f64,
    pub rate: f64,
    pub streams: Vec<String>,
    pub out: PathBuf,
    pub seed: u64,
    pub links: Vec<LinkSettings>,
}

impl LabSettings {
    pub fn resolve(args: LabArgs) -> Result<LabSettings> {
        let args = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let file: LabArgs = serde_json::from_str(&text)
                    .with_context(|| format!("parsing {}", path.display()))?;
                args.or(file)
            }
            None => args,
        };
        let duration_secs = args.duration.unwrap_or(20.0);
        if !(duration_secs.is_finite() && duration_secs > 0.0 && duration_secs <= 86_400.0) {
            bail!("--duration must be 0..=86400 seconds, got {duration_secs}");
        }
        let rate = args.rate.unwrap_or(200.0);
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of messages per second, got {rate}");
        }
        let streams = if args.streams.is_empty() {
            ["btcusdt@trade", "btcusdt@depth@100ms", "btcusdt@bookTicker"]
                .map(String::from)
                .to_vec()
        } else {
            args.streams.clone()
        };
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| crate::results::default_out("lab"));
        let links = LINKS
            .iter()
            .map(|def| {
                let [delay, jitter, loss_percent, reorder] = args.link(def.name);
                let impairment = Impairment {
                    delay_ms: delay.unwrap_or(def.default.delay_ms),
                    jitter_ms: jitter.unwrap_or(def.default.jitter_ms),
                    loss: loss_percent.map_or(def.default.loss, |p| p / 100.0),
                    reorder: reorder.map_or(def.default.reorder, |r| r != 0.0),
                };
                impairment.validate(def.name)?;
                Ok(LinkSettings {
                    name: def.name,
                    left: def.left,
                    right: def.right,
                    subnet: def.subnet,
                    impairment,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LabSettings {
            duration_secs,
            rate,
            streams,
            out,
            seed: args.seed.unwrap_or(1),
            links,
        })
    }
}

/// `cargo xtask lab`.
pub fn run(args: LabArgs) -> Result<()> {
    require_root()?;
    let settings = LabSettings::resolve(args)?;
    let relay = build_release_relay(true)?;
    process::catch_stop_signals()?;
    let outcome = run_lab(&settings, &relay)?;
    print_outcome(&outcome);
    Ok(())
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "cargo xtask lab needs root: it creates network namespaces and veth links \
             (CAP_NET_ADMIN), moves raw frames between them to emulate the WAN links (AF_PACKET, \
             CAP_NET_RAW), runs the link emulators with real-time \
             priority and will load eBPF programs (CAP_BPF). Run it as root, or keep your \
             toolchain with `sudo -E env \"PATH=$PATH\" cargo xtask lab`. `cargo xtask demo` is \
             the same experiment on loopback without root."
        );
    }
    Ok(())
}

/// What a finished lab run produced.
pub struct LabOutcome {
    pub out: PathBuf,
    pub baseline: Value,
    pub backbone: Value,
    pub links: Vec<LinkReport>,
    pub ground_truth: Vec<Segment>,
    /// User-space send -> blocking receive without a link, measured during the run.
    pub receive_floor: Spread,
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
    let ground_truth = ground_truth(
        &reports,
        &CsvLatencies::read(&backbone_json.with_extension("csv"))?,
        &CsvLatencies::read(&baseline_json.with_extension("csv"))?,
        &receive_floor,
    );
    Ok(LabOutcome {
        out,
        baseline: read_json(&baseline_json)?,
        backbone: read_json(&backbone_json)?,
        links: reports,
        ground_truth,
        receive_floor,
    })
}

/// Real-time priority of the experiment's processes: above everything else on the machine (as if
/// each namespace were a host of its own), below the delay lines (the network is never late
/// because a host is busy).
const ENDPOINT_PRIORITY: libc::c_int = 5;

/// `relay <args>` inside namespace `netns`, with SCHED_FIFO [`ENDPOINT_PRIORITY`] when allowed.
fn relay_in(netns: &Netns, relay: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &netns.name]).arg(relay);
    // SAFETY: the hook runs in the forked child before exec and only calls sched_setscheduler,
    // which is async-signal-safe. Without the privilege the child keeps its normal policy.
    unsafe {
        command.pre_exec(|| {
            let param = libc::sched_param {
                sched_priority: ENDPOINT_PRIORITY,
            };
            libc::sched_setscheduler(0, libc::SCHED_FIFO, &param);
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
        .arg("--output")
        .arg(out.join("backbone-results.json"));
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
    let mut forward = relay_in(&namespaces["tokyo"], relay);
    forward
        .args(["forward", "--url"])
        .arg(url(exchange_for_tokyo))
        .arg("--ca-file")
        .arg(&ca)
        .args(["--to", &format!("{frankfurt_backbone}:{RECEIVER_PORT}")]);
    children.spawn_labelled("tokyo relay", forward)?;

    let deadline = Instant::now() + Duration::from_secs_f64(settings.duration_secs + 60.0);
    let mut pending = vec!["frankfurt aws-backbone", "frankfurt baseline"];
    while !pending.is_empty() {
        if process::interrupted() {
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
    Ok(())
}

/// Exact per-message latencies from a receiver's CSV (the JSON summary's percentiles come from a
/// histogram whose buckets are ~65 µs wide at 100 ms: too coarse for a 50 µs check).
#[derive(Default)]
struct CsvLatencies {
    /// Exchange event time E -> receiver, ns.
    end_to_end: Vec<i64>,
    /// Relay send -> receiver, ns.
    backbone: Vec<i64>,
    /// E -> relay receive, ns.
    exchange_to_relay: Vec<i64>,
    /// The receiver's latency split (aws-backbone), ns: relay read -> send, relay send -> first
    /// stamp on the receiving host, that stamp -> recv returned, recv returned -> accounted.
    relay_dwell: Vec<i64>,
    network: Vec<i64>,
    kernel: Vec<i64>,
    application: Vec<i64>,
}

impl CsvLatencies {
    fn read(path: &Path) -> Result<CsvLatencies> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let column = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .with_context(|| format!("{} has no column {name}", path.display()))
        };
        let (e, tokyo, frankfurt, e2e, sent) = (
            column("binance_time")?,
            column("tokyo_time")?,
            column("frankfurt_time")?,
            column("end_to_end_latency_ms")?,
            column("relay_send_time")?,
        );
        let (dwell, network, kernel, application) = (
            column("relay_dwell_us")?,
            column("network_us")?,
            column("kernel_us")?,
            column("application_us")?,
        );
        let mut out = CsvLatencies::default();
        for line in lines {
            let cells: Vec<&str> = line.split(',').collect();
            let int = |i: usize| cells.get(i).and_then(|c| c.parse::<i64>().ok());
            let ms_as_ns = |i: usize| {
                cells
                    .get(i)
                    .and_then(|c| c.parse::<f64>().ok())
                    .map(|ms| (ms * 1e6).round() as i64)
            };
            if let Some(ns) = ms_as_ns(e2e) {
                out.end_to_end.push(ns);
            }
            if let (Some(rx), Some(tx)) = (int(frankfurt), int(sent)) {
                out.backbone.push(rx - tx);
            }
            if let (Some(at_relay), Some(event)) = (int(tokyo), ms_as_ns(e)) {
                out.exchange_to_relay.push(at_relay - event);
            }
            let us_as_ns = |i: usize| {
                cells
                    .get(i)
                    .and_then(|c| c.parse::<f64>().ok())
                    .map(|us| (us * 1e3).round() as i64)
            };
            for (column, samples) in [
                (dwell, &mut out.relay_dwell),
                (network, &mut out.network),
                (kernel, &mut out.kernel),
                (application, &mut out.application),
            ] {
                samples.extend(us_as_ns(column));
            }
        }
        Ok(out)
    }
}

/// One row of the ground-truth table: what the delay lines injected on a stretch of a path and
/// what the receivers measured over it (p50s). The eBPF receive stamps will add rows here that
/// split the measured side into network, kernel and application.
pub struct Segment {
    pub path: &'static str,
    pub what: &'static str,
    /// Planned hold p50 of the delay line(s) on this stretch, µs.
    pub injected_us: Option<f64>,
    /// Actual hold p50 (planned + the delay line's timing error), µs.
    pub achieved_us: Option<f64>,
    pub measured_us: Option<f64>,
    pub samples: u64,
    pub check: Option<Check>,
}

/// A pass/fail comparison of measured against what the link achieved.
pub struct Check {
    pub difference_us: f64,
    pub tolerance_us: f64,
    pub passed: bool,
}

fn ground_truth(
    links: &[LinkReport],
    backbone: &CsvLatencies,
    baseline: &CsvLatencies,
    floor: &Spread,
) -> Vec<Segment> {
    // The direction of a link that carries the experiment's data.
    let hold = |link: &str, from: &str| {
        links
            .iter()
            .find(|l| l.name == link)
            .and_then(|l| l.from(from))
            .filter(|d| d.injected.count > 0)
            .map(|d| (d.injected.p50_us, d.achieved.p50_us))
    };
    let exchange_link = hold("exchange-link", "exchange");
    let backbone_link = hold("backbone", "tokyo");
    let internet = hold("internet", "exchange");
    let both = exchange_link
        .zip(backbone_link)
        .map(|(a, b)| (a.0 + b.0, a.1 + b.1));
    let measured = |samples: &[i64]| {
        let spread = Spread::of(&mut samples.to_vec());
        ((spread.count > 0).then_some(spread.p50_us), spread.count)
    };
    let segment = |path, what, link: Option<(f64, f64)>, samples: &[i64]| {
        let (measured_us, samples) = measured(samples);
        Segment {
            path,
            what,
            injected_us: link.map(|l| l.0),
            achieved_us: link.map(|l| l.1),
            measured_us,
            samples,
            check: None,
        }
    };
    // Each component of the receiver's split against what the lab put there: the backbone's
    // delay in `network`, nothing anywhere else. Compared with the achieved hold, so the check is
    // about the measuring chain, not the delay line's own timing error (the link table has that).
    let none_injected = Some((0.0, 0.0));
    let component = |what, link: Option<(f64, f64)>, samples: &[i64]| {
        let mut row = segment("aws-backbone", what, link, samples);
        row.check = row.measured_us.zip(row.achieved_us).map(|(m, a)| Check {
            difference_us: m - a,
            tolerance_us: COMPONENT_TOLERANCE_US,
            passed: (m - a).abs() <= COMPONENT_TOLERANCE_US,
        });
        row
    };
    vec![
        segment(
            "aws-backbone",
            "exchange E -> relay receive (exchange link)",
            exchange_link,
            &backbone.exchange_to_relay,
        ),
        segment(
            "aws-backbone",
            "relay send -> receiver (backbone link)",
            backbone_link,
            &backbone.backbone,
        ),
        component(
            "  split: relay dwell (read -> send)",
            none_injected,
            &backbone.relay_dwell,
        ),
        component(
            "  split: network (send -> first rx stamp)",
            backbone_link,
            &backbone.network,
        ),
        component(
            "  split: kernel (stamp -> recv returned)",
            none_injected,
            &backbone.kernel,
        ),
        component(
            "  split: application (recv -> accounted)",
            none_injected,
            &backbone.application,
        ),
        segment(
            "aws-backbone",
            "exchange E -> receiver (both links)",
            both,
            &backbone.end_to_end,
        ),
        segment(
            "baseline",
            "exchange E -> receiver (internet link)",
            internet,
            &baseline.end_to_end,
        ),
        Segment {
            path: "frankfurt",
            what: "receive floor (no link): send -> recv",
            injected_us: Some(0.0),
            achieved_us: Some(0.0),
            measured_us: (floor.count > 0).then_some(floor.p50_us),
            samples: floor.count,
            check: None,
        },
    ]
}

fn ms(us: Option<f64>) -> String {
    us.map_or("-".to_string(), |us| format!("{:.3}", us / 1e3))
}

pub fn print_outcome(outcome: &LabOutcome) {
    println!();
    print_comparison(&outcome.baseline, &outcome.backbone);

    println!("\nGround truth: p50 one-way delay injected by the delay lines vs measured by the receivers (ms)");
    println!(
        "| {:<12} | {:<44} | {:>9} | {:>9} | {:>9} | {:>9} | {:>7} | {:<30} |",
        "path", "stretch", "injected", "achieved", "measured", "meas-inj", "n", "check"
    );
    println!(
        "|{:-<14}|{:-<46}|{:->11}|{:->11}|{:->11}|{:->11}|{:->9}|{:-<32}|",
        "", "", "", "", "", "", "", ""
    );
    for s in &outcome.ground_truth {
        let difference = s.measured_us.zip(s.injected_us).map(|(m, i)| m - i);
        let check = s.check.as_ref().map_or(String::new(), |c| {
            format!(
                "{}: meas-ach {:+.3} {} {:.3}",
                if c.passed { "ok" } else { "FLAG" },
                c.difference_us / 1e3,
                if c.passed { "<=" } else { ">" },
                c.tolerance_us / 1e3
            )
        });
        println!(
            "| {:<12} | {:<44} | {:>9} | {:>9} | {:>9} | {:>9} | {:>7} | {:<30} |",
            s.path,
            s.what,
            ms(s.injected_us),
            ms(s.achieved_us),
            ms(s.measured_us),
            difference.map_or("-".to_string(), |d| format!("{:+.3}", d / 1e3)),
            s.samples,
            check
        );
    }
    println!(
        "injected: the delay lines' planned hold; achieved: their actual hold (kernel arrival \
         stamp -> send); measured: exact p50 over the receivers' CSV rows. On the E -> receiver \
         rows, meas-inj is the processing outside the links: simulator (E is stamped when the \
         message is built), TLS/WebSocket, relay, receiver wake-up."
    );

    println!("\nLinks (delay lines; per direction)");
    println!(
        "| {:<13} | {:<21} | {:>7} | {:>5} | {:>5} | {:>19} | {:>19} | {:>5} |",
        "link",
        "direction",
        "frames",
        "lost",
        "reord",
        "injected p50/p99 ms",
        "hold err p50/p99 us",
        "cpu %"
    );
    println!(
        "|{:-<15}|{:-<23}|{:->9}|{:->7}|{:->7}|{:->21}|{:->21}|{:->7}|",
        "", "", "", "", "", "", "", ""
    );
    for link in &outcome.links {
        for d in &link.directions {
            println!(
                "| {:<13} | {:<21} | {:>7} | {:>5} | {:>5} | {:>19} | {:>19} | {:>5.1} |",
                link.name,
                format!("{} -> {}", d.from, d.to),
                d.frames,
                d.lost,
                d.reordered,
                format!(
                    "{:.3} / {:.3}",
                    d.injected.p50_us / 1e3,
                    d.injected.p99_us / 1e3
                ),
                format!("{:.1} / {:.1}", d.hold_error.p50_us, d.hold_error.p99_us),
                link.cpu_percent
            );
            let odd = d.oversize + d.send_errors + d.queue_full + d.unstamped;
            if odd > 0 {
                println!(
                    "  {}: {} oversize, {} send errors, {} queue full, {} unstamped",
                    link.name, d.oversize, d.send_errors, d.queue_full, d.unstamped
                );
            }
        }
    }
    let ebpf = &outcome.backbone["ebpf"];
    println!(
        "\nReceive stamps: eBPF hook {} on frankfurt's backbone interface ({} messages stamped, \
         {} without a stamp); first stamp per message from {}.",
        ebpf["hook"],
        ebpf["messages_with_stamp"],
        ebpf["messages_without_stamp"],
        outcome.backbone["nic_time_sources"]
    );
    let mut checks = outcome.checks().peekable();
    if checks.peek().is_none() {
        println!("Ground truth check not possible: no latency split or no link report.");
    }
    for (segment, check) in checks {
        let what = segment.what.trim_start_matches("  split: ");
        match (check.passed, segment.what.contains("network")) {
            (true, true) => println!(
                "Ground truth check passed: {what} is within {:.0} us (p50) of the backbone's \
                 achieved delay ({:+.1} us): the injected delay shows up where it belongs.",
                check.tolerance_us, check.difference_us
            ),
            (false, true) => println!(
                "Ground truth check FLAGGED: {what} is {:+.1} us off the backbone's achieved delay \
                 (tolerance {:.0} us).",
                check.difference_us, check.tolerance_us
            ),
            (true, false) => {}
            (false, false) => println!(
                "FLAG: {what} takes {:.1} us at p50 with nothing injected there (over {:.0} us). \
                 This is the component's own cost, a finding rather than a measuring error{}.",
                check.difference_us,
                check.tolerance_us,
                if what.starts_with("kernel") {
                    format!(
                        "; a blocking receive's thread wake-up lands here (receive floor {:.1} us \
                         p50 during the run)",
                        outcome.receive_floor.p50_us
                    )
                } else {
                    String::new()
                }
            ),
        }
    }
    println!(
        "\nxtask: lab results (receivers' JSON + CSV, links.json, lab-settings.json) are in {}",
        outcome.out.display()
    );
}
