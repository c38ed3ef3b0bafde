//! `relay receive`: the Frankfurt side. Takes relay datagrams (aws-backbone mode) or connects
//! straight to the exchange (baseline mode) and accounts every message: loss, duplicates,
//! reordering, latency, then writes the seed's JSON summary and CSV.

pub mod accounting;
mod baseline;
pub mod ebpf;
mod nic_stamps;
mod reassembly;
pub mod recorder;
mod sequence;
pub mod stamp_table;
pub mod summary;
pub mod timestamping;
mod udp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use crate::config::{self, positive_secs, FrankfurtConfig};
use crate::endpoint::Endpoint;
pub use nic_stamps::{EbpfModeChoice, EbpfReport};
use summary::{Reconnects, Summary};

/// What a receive mode hands back besides the records.
pub struct Outcome {
    /// The datagram accounting (aws-backbone mode).
    pub counters: Option<accounting::Counters>,
    pub reconnects: Reconnects,
    /// How the eBPF stamper went, when an interface was given.
    pub ebpf: Option<EbpfReport>,
}

const DEFAULT_PORT: u16 = 8080;
const DEFAULT_DURATION_SECS: f64 = 300.0;
const DEFAULT_OUTPUT: &str = "results.json";
const DEFAULT_RECV_BUFFER: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Relay datagrams on --port (the seed's name for the relayed path).
    #[value(name = "aws-backbone", alias = "relay")]
    AwsBackbone,
    /// Connect straight to the exchange --url, with the same TLS/WebSocket core as the relay.
    Baseline,
}

impl Mode {
    pub fn setup_type(self) -> &'static str {
        match self {
            Mode::AwsBackbone => "aws-backbone",
            Mode::Baseline => "baseline",
        }
    }
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The seed's frankfurt-config.json (mode, binance_ws_url, listen_port, duration_secs,
    /// output_file, plus our keys); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// aws-backbone (alias relay): take relay datagrams; baseline: connect to the exchange directly
    /// [default: aws-backbone].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// UDP port for relay datagrams [default: 8080].
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, value_name = "IP")]
    pub listen_address: Option<IpAddr>,
    /// Exchange URL for baseline mode [default: Binance btcusdt@bookTicker].
    #[arg(long)]
    pub url: Option<String>,
    /// Stream to SUBSCRIBE to in baseline mode (repeatable).
    #[arg(long = "stream", value_name = "NAME")]
    pub streams: Vec<String>,
    /// PEM file with extra CA certificates to trust in baseline mode.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// How long to measure, in seconds [default: 300].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// JSON summary path; the CSV goes beside it with the same stem [default: results.json].
    #[arg(long, value_name = "FILE.json")]
    pub output: Option<PathBuf>,
    /// UDP receive buffer (SO_RCVBUF) [default: 8 MiB].
    #[arg(long, value_name = "BYTES")]
    pub recv_buffer_bytes: Option<usize>,
    /// Spin on the socket instead of sleeping in the kernel (aws-backbone mode): keeps the ~30 µs
    /// thread wake-up out of the latency, at the cost of one busy core.
    #[arg(long)]
    pub busy_poll: bool,
    /// Interface to attach the eBPF receive stamper to (aws-backbone mode), e.g. eth0: stamps
    /// each relay datagram at the earliest point the kernel offers. Needs root (or CAP_BPF +
    /// CAP_NET_ADMIN); without them the receiver says so and carries on without eBPF stamps.
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// Where the eBPF program hooks in: auto tries xdp-native, then xdp-generic, then tc-ingress
    /// [default: auto].
    #[arg(long, value_enum)]
    pub ebpf_mode: Option<EbpfModeChoice>,
    /// Seconds between progress lines on stderr.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub report_secs: f64,
}

#[derive(Debug)]
pub struct ReceiveSettings {
    pub mode: Mode,
    pub listen: SocketAddr,
    pub endpoint: Endpoint,
    pub streams: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub duration: Duration,
    pub json_path: PathBuf,
    pub csv_path: PathBuf,
    pub recv_buffer: usize,
    pub busy_poll: bool,
    pub iface: Option<String>,
    pub ebpf_mode: EbpfModeChoice,
    pub report_interval: Duration,
}

fn parse_mode(text: &str) -> anyhow::Result<Mode> {
    Mode::from_str(text, true)
        .map_err(|_| anyhow::anyhow!("mode {text:?} is not one of aws-backbone, relay, baseline"))
}

/// The CSV path beside the JSON one: same stem, `.csv`.
pub fn csv_path_for(json: &Path) -> PathBuf {
    json.with_extension("csv")
}

impl ReceiveSettings {
    pub fn resolve(args: ReceiveArgs) -> anyhow::Result<ReceiveSettings> {
        let file: FrankfurtConfig = config::load(args.config.as_deref())?;
        let mode = match (args.mode, file.mode.as_deref()) {
            (Some(m), _) => m,
            (None, Some(text)) => parse_mode(text)?,
            (None, None) => Mode::AwsBackbone,
        };
        let url = args
            .url
            .or(file.binance_ws_url)
            .unwrap_or_else(|| crate::forward::DEFAULT_URL.to_string());
        let json_path = args
            .output
            .or(file.output_file)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT));
        let csv_path = csv_path_for(&json_path);
        if csv_path == json_path {
            bail!(
                "output {} must not end in .csv: the CSV is written beside it",
                json_path.display()
            );
        }
        let duration_secs = args
            .duration
            .or(file.duration_secs.map(|s| s as f64))
            .unwrap_or(DEFAULT_DURATION_SECS);
        Ok(ReceiveSettings {
            mode,
            listen: SocketAddr::new(
                args.listen_address
                    .or(file.listen_address)
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                args.port.or(file.listen_port).unwrap_or(DEFAULT_PORT),
            ),
            endpoint: Endpoint::parse(&url)?,
            streams: if args.streams.is_empty() {
                file.streams.unwrap_or_default()
            } else {
                args.streams
            },
            ca_file: args.ca_file.or(file.ca_file),
            duration: positive_secs("--duration", duration_secs)?,
            json_path,
            csv_path,
            recv_buffer: args
                .recv_buffer_bytes
                .or(file.recv_buffer_bytes)
                .unwrap_or(DEFAULT_RECV_BUFFER),
            busy_poll: args.busy_poll || file.busy_poll.unwrap_or(false),
            iface: args.iface.or(file.iface),
            ebpf_mode: match (args.ebpf_mode, file.ebpf_mode.as_deref()) {
                (Some(choice), _) => choice,
                (None, Some(text)) => EbpfModeChoice::from_str(text, true).map_err(|_| {
                    anyhow::anyhow!(
                        "ebpf_mode {text:?} is not one of auto, xdp-native, xdp-generic, tc-ingress"
                    )
                })?,
                (None, None) => EbpfModeChoice::Auto,
            },
            report_interval: positive_secs("--report-secs", args.report_secs)?,
        })
    }
}

/// Runs the receiver for the configured duration (or until Ctrl-C) and writes its results.
pub fn run(args: ReceiveArgs) -> anyhow::Result<Summary> {
    let settings = ReceiveSettings::resolve(args)?;
    let (records, recorder) = recorder::spawn(&settings.csv_path)?;
    let started = Instant::now();
    let outcome = match settings.mode {
        Mode::AwsBackbone => udp::receive(&settings, records),
        Mode::Baseline => baseline::receive(&settings, records),
    };
    let recorded = recorder
        .join()
        .map_err(|_| anyhow::anyhow!("the recorder thread panicked"))??;
    let summary = Summary::build(
        settings.mode.setup_type(),
        &recorded,
        outcome?,
        started.elapsed().as_secs_f64(),
    );
    let json = serde_json::to_string_pretty(&summary).context("encoding the summary")?;
    std::fs::write(&settings.json_path, json + "\n")
        .with_context(|| format!("writing {}", settings.json_path.display()))?;
    eprintln!(
        "receiver: {} messages, {} lost, results in {} and {}",
        summary.sample_count,
        summary.events_lost,
        settings.json_path.display(),
        settings.csv_path.display()
    );
    Ok(summary)
}

/// The receiver's progress line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Counting relay datagrams (aws-backbone) rather than a direct connection (baseline).
    pub relayed: bool,
    pub messages: u64,
    pub datagrams: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub malformed: u64,
    pub reconnects: u64,
}

impl Progress {
    fn of(c: &accounting::Counters) -> Progress {
        Progress {
            relayed: true,
            messages: c.messages,
            datagrams: c.datagrams,
            lost: c.lost,
            duplicates: c.duplicates,
            reordered: c.reordered,
            malformed: c.malformed.total(),
            reconnects: c.upstream_generation_changes,
        }
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.relayed {
            return write!(
                f,
                "{} messages, exchange reconnects {}",
                self.messages, self.reconnects
            );
        }
        write!(
            f,
            "{} messages from {} datagrams; lost {}, duplicates {}, reordered {}, malformed {}, exchange reconnects {}",
            self.messages, self.datagrams, self.lost, self.duplicates, self.reordered, self.malformed, self.reconnects
        )
    }
}
