//! `relay receive`'s command line and `frankfurt-config.json`, merged into [`ReceiveSettings`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};
use relay_core::binance::{self, Endpoint};
use relay_core::seal::Secret;
use relay_core::wire::stamp::Hook;

use super::config::{self, positive_secs, FrankfurtConfig};

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
    /// Both at once, A/B-arbitrated: relay datagrams on --port and a direct connection to --url;
    /// each event is delivered once, from whichever path brought it first.
    Both,
}

impl Mode {
    pub fn setup_type(self) -> &'static str {
        match self {
            Mode::AwsBackbone => "aws-backbone",
            Mode::Baseline => "baseline",
            Mode::Both => "both",
        }
    }
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The seed's frankfurt-config.json (mode, binance_ws_url, listen_port, duration_secs,
    /// output_file, plus our keys); flags override it [default: ./frankfurt-config.json when
    /// there is one].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// aws-backbone (alias relay): take relay datagrams; baseline: connect to the exchange
    /// directly; both: the two at once, each event delivered once from the first path to bring it
    /// (the summary's `arbitration` says which path won how often) [default: aws-backbone].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// UDP port for relay datagrams [default: 8080]. Repeat it to take datagrams from several
    /// relays at once (say one over the backbone, one over another route): each port is a path
    /// of its own (its relay's epochs and sequence numbers), A/B-arbitrated with the others and,
    /// in both mode, with the direct connection. The first port's path is the summary's relay
    /// accounting and the one --iface stamps; every path's loss is in `arbitration.paths`.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Address to listen on [default: 0.0.0.0]; a multicast group (224.0.0.0/4) is joined, so
    /// several receivers on the host can take one `--serve-udp` feed.
    #[arg(long, value_name = "IP")]
    pub listen_address: Option<IpAddr>,
    /// Exchange URL for baseline mode [default: Binance btcusdt@bookTicker].
    #[arg(long)]
    pub url: Option<String>,
    /// Stream to SUBSCRIBE to on the direct connection (baseline and both modes; repeatable).
    /// With --serve-ws, also the names raw (unwrapped) messages are served under: in
    /// aws-backbone mode give the relay's streams here when it uses a raw /ws/ URL.
    #[arg(long = "stream", value_name = "NAME")]
    pub streams: Vec<String>,
    /// PEM file with extra CA certificates to trust on the direct connection (baseline and both
    /// modes).
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
    /// Spin on the socket instead of sleeping in the kernel: keeps the ~30 µs thread wake-up out
    /// of the latency, at the cost of one busy core. In baseline mode the exchange connection is
    /// polled the same way (as `relay forward --idle spin` does).
    #[arg(long)]
    pub busy_poll: bool,
    /// Interface to attach the eBPF receive stamper to (aws-backbone mode), e.g. eth0: stamps
    /// each relay datagram at the earliest point the kernel offers. Needs root (or CAP_BPF +
    /// CAP_NET_ADMIN); without them the receiver says so and carries on without eBPF stamps.
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// Where the eBPF program hooks in: auto tries xdp-native, then xdp-generic, then tc-ingress
    /// [default: auto].
    #[arg(long, value_parser = ebpf_mode_parser())]
    pub ebpf_mode: Option<EbpfMode>,
    /// Turn on the NIC's hardware receive stamps on --iface (SIOCSHWTSTAMP, every packet; needs
    /// CAP_NET_ADMIN): the split then starts at the NIC's clock, read from the socket and by the
    /// tc program, and nic_time_sources counts the messages that had one. The NIC's clock is read
    /// as the system clock: keep it on it in UTC (phc2sys -s CLOCK_REALTIME -c IFACE -O 0). Where the NIC has no hardware clock (veth, lo,
    /// most VMs) the receiver says so and carries on with eBPF and software stamps.
    #[arg(long)]
    pub hw_timestamps: bool,
    /// Do not ask the relay again for missing datagrams (aws-backbone mode). By default the
    /// receiver NAKs what goes missing, to the address the relay's datagrams come from, after a
    /// 1 ms reorder allowance, retrying with backoff for up to 5 s; what comes back counts as
    /// `recovered`, what never does as `events_lost`.
    #[arg(long)]
    pub no_recovery: bool,
    /// The relay's shared secret (the same file as its --key-file): only datagrams it sealed are
    /// accepted; anything else is counted (`unauthenticated_datagrams`) and dropped, and NAKs
    /// are sealed. Without it the receiver warns that anyone can inject data, and the summary
    /// says "authenticated": false.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Seconds between progress lines on stderr.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub report_secs: f64,
    /// Serve the live figures for Prometheus at http://ADDR:PORT/metrics (message, loss and
    /// recovery counters, and `relay_latency_seconds` histograms per latency component,
    /// refreshed every second).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Write an HdrHistogram interval log (.hlog, readable by HdrHistogram's own tools): every
    /// second, one histogram per latency component (tagged end_to_end, backbone, network, ...)
    /// of what arrived in that second, in ns.
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,
    /// Serve the delivered stream (in both mode the arbitrated one) on a local Binance-compatible
    /// WebSocket endpoint, ws://ADDR:PORT: raw /ws/<stream>, combined /stream?streams=a/b,
    /// SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS / SET_PROPERTY combined, pings. Each event
    /// goes out once, in delivery order, byte for byte as the exchange sent it (wrapped or
    /// unwrapped as the client asked). A Binance client library works by changing its base URL.
    /// Plain WebSocket, no TLS: bind it to a local or private address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub serve_ws: Option<SocketAddr>,
    /// Events one --serve-ws client may have waiting; a client that falls this far behind is
    /// disconnected (close code 1008, counted in the summary's serve.ws.slow_client_disconnects), so
    /// it never slows the receiver or the other clients [default: 65536].
    #[arg(long, value_name = "EVENTS")]
    pub serve_queue: Option<usize>,
    /// Send the delivered stream (in both mode the arbitrated one) on as relay datagrams to
    /// ADDR:PORT, unicast or multicast (a 224.0.0.0/4 group, TTL 1, looped back to this host):
    /// the same wire format, a new epoch, one sequence number per delivered event, heartbeats,
    /// and NAKs answered, so another `relay receive` (or anything that reads PROTOCOL.md) takes
    /// them as it takes a relay's. Sealed with --key-file when there is one.
    #[arg(long, value_name = "ADDR:PORT")]
    pub serve_udp: Option<SocketAddr>,
}

#[derive(Debug)]
pub struct ReceiveSettings {
    pub mode: Mode,
    /// Where the (first) relay's datagrams arrive.
    pub listen: SocketAddr,
    /// Every relay port, the first one's included (`--port` repeated).
    pub relay_ports: Vec<u16>,
    pub endpoint: Endpoint,
    pub streams: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub duration: Duration,
    pub json_path: PathBuf,
    pub csv_path: PathBuf,
    pub recv_buffer: usize,
    pub busy_poll: bool,
    pub iface: Option<String>,
    pub ebpf_mode: EbpfMode,
    /// `--hw-timestamps`: turn the NIC's hardware receive stamps on for `iface`.
    pub hw_timestamps: bool,
    /// Ask the relay again for missing datagrams.
    pub recovery: bool,
    /// `--key-file`: accept only datagrams the relay sealed.
    pub secret: Option<Secret>,
    pub report_interval: Duration,
    pub metrics: Option<SocketAddr>,
    pub hlog: Option<PathBuf>,
    pub serve_ws: Option<SocketAddr>,
    pub serve_queue: usize,
    pub serve_udp: Option<SocketAddr>,
}

/// `--ebpf-mode`: one hook, or `auto` to try them from the earliest down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EbpfMode {
    /// Native XDP, else generic XDP, else tc ingress.
    Auto,
    Only(Hook),
}

impl EbpfMode {
    /// `auto` or a hook name ([`Hook::name`]).
    pub fn parse(text: &str) -> Option<EbpfMode> {
        match text {
            "auto" => Some(EbpfMode::Auto),
            name => Hook::from_name(name).map(EbpfMode::Only),
        }
    }

    /// The hooks to try, in order.
    pub fn candidates(self) -> Vec<Hook> {
        match self {
            EbpfMode::Auto => Hook::ALL.to_vec(),
            EbpfMode::Only(hook) => vec![hook],
        }
    }

    /// Every accepted name, as `--help` lists them.
    fn names() -> impl Iterator<Item = &'static str> {
        std::iter::once("auto").chain(Hook::ALL.map(Hook::name))
    }
}

fn ebpf_mode_parser() -> impl clap::builder::TypedValueParser<Value = EbpfMode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(EbpfMode::names())
        .map(|name| EbpfMode::parse(&name).expect("only listed names get here"))
}

fn parse_mode(text: &str) -> anyhow::Result<Mode> {
    Mode::from_str(text, true).map_err(|_| {
        anyhow::anyhow!("mode {text:?} is not one of aws-backbone, relay, baseline, both")
    })
}

/// The CSV path beside the JSON one: same stem, `.csv`.
pub fn csv_path_for(json: &Path) -> PathBuf {
    json.with_extension("csv")
}

impl ReceiveSettings {
    /// The delivered messages are served on (`--serve-ws`, `--serve-udp`).
    pub fn serving(&self) -> bool {
        self.serve_ws.is_some() || self.serve_udp.is_some()
    }

    pub fn resolve(args: ReceiveArgs) -> anyhow::Result<ReceiveSettings> {
        let file: FrankfurtConfig =
            config::load_or_local(args.config.as_deref(), "frankfurt-config.json", "receive")?;
        let mode = match (args.mode, file.mode.as_deref()) {
            (Some(m), _) => m,
            (None, Some(text)) => parse_mode(text)?,
            (None, None) => Mode::AwsBackbone,
        };
        let url = args
            .url
            .or(file.binance_ws_url)
            .unwrap_or_else(|| binance::DEFAULT_URL.to_string());
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
        let mut relay_ports = if args.ports.is_empty() {
            file.listen_port
                .into_iter()
                .chain(file.listen_ports.unwrap_or_default())
                .collect()
        } else {
            args.ports
        };
        if relay_ports.is_empty() {
            relay_ports.push(DEFAULT_PORT);
        }
        for (i, port) in relay_ports.iter().enumerate() {
            if relay_ports[..i].contains(port) {
                bail!("UDP port {port} is given twice: each relay needs a port of its own");
            }
        }
        let iface = args.iface.or(file.iface);
        let hw_timestamps = args.hw_timestamps || file.hw_timestamps.unwrap_or(false);
        if hw_timestamps && (iface.is_none() || mode == Mode::Baseline) {
            bail!("--hw-timestamps stamps the relay's datagrams on --iface: give --iface (aws-backbone or both mode)");
        }
        Ok(ReceiveSettings {
            mode,
            listen: SocketAddr::new(
                args.listen_address
                    .or(file.listen_address)
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                relay_ports[0],
            ),
            relay_ports,
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
            hw_timestamps,
            iface,
            ebpf_mode: match (args.ebpf_mode, file.ebpf_mode.as_deref()) {
                (Some(choice), _) => choice,
                (None, Some(text)) => EbpfMode::parse(text).ok_or_else(|| {
                    anyhow::anyhow!(
                        "ebpf_mode {text:?} is not one of {}",
                        EbpfMode::names().collect::<Vec<_>>().join(", ")
                    )
                })?,
                (None, None) => EbpfMode::Auto,
            },
            recovery: !(args.no_recovery || file.no_recovery.unwrap_or(false)),
            secret: args
                .key_file
                .or(file.key_file)
                .map(|path| Secret::from_file(&path))
                .transpose()?,
            report_interval: positive_secs("--report-secs", args.report_secs)?,
            metrics: args.metrics.or(file.metrics),
            hlog: args.hlog.or(file.hlog),
            serve_ws: args.serve_ws.or(file.serve_ws),
            serve_udp: args.serve_udp.or(file.serve_udp),
            serve_queue: match args.serve_queue.or(file.serve_queue) {
                Some(0) => bail!("--serve-queue must be at least 1 event"),
                Some(n) => n,
                None => crate::receive::SERVE_QUEUE,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebpf_modes_are_auto_or_a_hook_name() {
        assert_eq!(EbpfMode::parse("auto"), Some(EbpfMode::Auto));
        assert_eq!(EbpfMode::Auto.candidates(), Hook::ALL);
        for hook in Hook::ALL {
            assert_eq!(EbpfMode::parse(hook.name()), Some(EbpfMode::Only(hook)));
            assert_eq!(EbpfMode::Only(hook).candidates(), [hook]);
        }
        assert_eq!(EbpfMode::parse("xdp"), None);
        assert_eq!(
            EbpfMode::names().collect::<Vec<_>>(),
            ["auto", "xdp-native", "xdp-generic", "tc-ingress"]
        );
    }
}
