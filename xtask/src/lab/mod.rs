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
mod experiment;
mod floor;
mod paths;
mod render;
#[cfg(test)]
mod tests;
mod truth;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::process::build_release_relay;
use delay_line::Impairment;
pub use experiment::run_lab;
pub use render::print_outcome;

const EXCHANGE_PORT: u16 = 9443;
const RECEIVER_PORT: u16 = 8080;
/// The A/B-arbitrated receiver's port (`relay receive --mode both`), beside the backbone one.
const BOTH_PORT: u16 = 8082;
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
    /// The relay-path receivers do not NAK what goes missing: backbone loss stays loss (and the
    /// both-mode receiver's direct path makes it good).
    #[arg(long)]
    #[serde(default)]
    pub no_recovery: bool,

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
            no_recovery: self.no_recovery || file.no_recovery,
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
    /// `--no-recovery` for the relay-path receivers.
    pub no_recovery: bool,
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
            no_recovery: args.no_recovery,
            links,
        })
    }
}

/// `cargo xtask lab`.
pub fn run(args: LabArgs) -> Result<()> {
    require_root()?;
    let settings = LabSettings::resolve(args)?;
    let relay = build_release_relay(true)?;
    relay_host::signals::catch_stop_signals().context("installing the signal handlers")?;
    let outcome = run_lab(&settings, &relay)?;
    print_outcome(&outcome);
    crate::results::write_report(&relay, &outcome.out)
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
