//! `relay forward`: the Tokyo side. One thread, pinned to one core, io_uring for every socket:
//! exchange WebSocket in, sequenced UDP datagrams out to every receiver.

pub mod fanout;
pub mod framer;

use std::cell::RefCell;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::config::{self, positive_secs, TokyoConfig};
use crate::endpoint::Endpoint;
use crate::exchange_link::{self, LinkConfig, LinkHandler};
use crate::report::{self, Report};
use fanout::{Fanout, FanoutStats, SocketOptions};
use framer::{Framer, DEFAULT_DATAGRAM_BUDGET};

/// Exchange URL used when neither --url nor the config file names one.
pub const DEFAULT_URL: &str = "wss://stream.binance.com:9443/ws/btcusdt@bookTicker";
const DEFAULT_RECONNECT_MAX_DELAY_SECS: u64 = 30;
const DEFAULT_HEARTBEAT_MS: u64 = 1000;

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// The seed's tokyo-config.json (binance_ws_url, frankfurt_private_ip, frankfurt_port,
    /// reconnect_max_delay_secs, plus our keys); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Exchange WebSocket URL: raw /ws/<stream> or combined /stream?streams=a/b
    /// (add timeUnit=MICROSECOND for microsecond event times) [default: Binance btcusdt@bookTicker].
    #[arg(long)]
    pub url: Option<String>,
    /// Stream to SUBSCRIBE to after connecting (repeatable), e.g. btcusdt@trade.
    #[arg(long = "stream", value_name = "NAME")]
    pub streams: Vec<String>,
    /// Receiver to forward to (repeatable: every datagram goes to every receiver).
    #[arg(long = "to", value_name = "HOST:PORT")]
    pub to: Vec<String>,
    /// CPU core to pin the relay thread to [default: the last core].
    #[arg(long)]
    pub core: Option<usize>,
    /// PEM file with extra CA certificates to trust (e.g. the simulator's); Mozilla's roots are built in.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Largest UDP datagram to send, header included; larger messages are fragmented
    /// [default: 1472, one 1500-byte MTU].
    #[arg(long, value_name = "BYTES")]
    pub datagram_budget: Option<usize>,
    /// Local address to send UDP from.
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<SocketAddr>,
    /// IP TOS byte for the datagrams (DSCP << 2), e.g. 184 for EF.
    #[arg(long)]
    pub tos: Option<u32>,
    /// UDP send buffer size (SO_SNDBUF).
    #[arg(long, value_name = "BYTES")]
    pub send_buffer_bytes: Option<usize>,
    /// Cap of the exponential reconnect backoff [default: 30].
    #[arg(long, value_name = "SECS")]
    pub reconnect_max_delay_secs: Option<u64>,
    /// Send a heartbeat after this long without data [default: 1000].
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Stop after this many seconds [default: run until Ctrl-C / SIGTERM].
    #[arg(long, value_name = "SECS")]
    pub duration_secs: Option<f64>,
    /// Seconds between progress lines on stderr.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub report_secs: f64,
}

/// Everything the relay runs with, after config file and flags are merged.
#[derive(Debug)]
pub struct ForwardSettings {
    pub endpoint: Endpoint,
    pub streams: Vec<String>,
    pub targets: Vec<SocketAddr>,
    pub core: Option<usize>,
    pub ca_file: Option<PathBuf>,
    pub datagram_budget: usize,
    pub socket: SocketOptions,
    pub reconnect_max_delay: Duration,
    pub heartbeat_interval: Duration,
    pub duration: Option<Duration>,
    pub report_interval: Duration,
}

fn resolve_target(text: &str) -> anyhow::Result<SocketAddr> {
    text.to_socket_addrs()
        .with_context(|| format!("receiver {text:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("receiver {text:?} resolved to no address"))
}

impl ForwardSettings {
    pub fn resolve(args: ForwardArgs) -> anyhow::Result<ForwardSettings> {
        let file: TokyoConfig = config::load(args.config.as_deref())?;
        let url = args
            .url
            .or(file.binance_ws_url)
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let endpoint = Endpoint::parse(&url)?;
        let mut target_texts = args.to;
        if target_texts.is_empty() {
            match (file.frankfurt_private_ip, file.frankfurt_port) {
                (Some(ip), Some(port)) => target_texts.push(format!("{ip}:{port}")),
                (None, None) => {}
                _ => bail!("the config file needs both frankfurt_private_ip and frankfurt_port, or neither"),
            }
            target_texts.extend(file.receivers.unwrap_or_default());
        }
        if target_texts.is_empty() {
            bail!("no receiver: give --to HOST:PORT (repeatable) or frankfurt_private_ip/frankfurt_port in --config");
        }
        let targets = target_texts
            .iter()
            .map(|t| resolve_target(t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let streams = if args.streams.is_empty() {
            file.streams.unwrap_or_default()
        } else {
            args.streams
        };
        let heartbeat_ms = args
            .heartbeat_interval_ms
            .or(file.heartbeat_interval_ms)
            .unwrap_or(DEFAULT_HEARTBEAT_MS);
        if heartbeat_ms == 0 {
            bail!("heartbeat interval must be at least 1 ms");
        }
        Ok(ForwardSettings {
            endpoint,
            streams,
            targets,
            core: args.core.or(file.core),
            ca_file: args.ca_file.or(file.ca_file),
            datagram_budget: args
                .datagram_budget
                .or(file.datagram_budget)
                .unwrap_or(DEFAULT_DATAGRAM_BUDGET),
            socket: SocketOptions {
                bind: args.bind.or(file.bind),
                send_buffer: args.send_buffer_bytes.or(file.send_buffer_bytes),
                tos: args.tos.or(file.tos),
            },
            reconnect_max_delay: Duration::from_secs(
                args.reconnect_max_delay_secs
                    .or(file.reconnect_max_delay_secs)
                    .unwrap_or(DEFAULT_RECONNECT_MAX_DELAY_SECS),
            ),
            heartbeat_interval: Duration::from_millis(heartbeat_ms),
            duration: args
                .duration_secs
                .map(|s| positive_secs("--duration-secs", s))
                .transpose()?,
            report_interval: positive_secs("--report-secs", args.report_secs)?,
        })
    }
}

/// What the relay reports every few seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardStats {
    pub messages: u64,
    pub too_large: u64,
    pub heartbeats: u64,
    pub generation: u32,
    pub next_sequence: u64,
    pub udp: FanoutStats,
}

impl fmt::Display for ForwardStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "forwarded {} messages ({} datagrams, {} bytes, {} send errors), {} too large, {} heartbeats, connection #{}",
            self.messages,
            self.udp.datagrams_sent,
            self.udp.bytes_sent,
            self.udp.send_errors,
            self.too_large,
            self.heartbeats,
            self.generation
        )
    }
}

/// The link handler of the relay: frames each message and queues its datagrams.
struct Forwarder {
    framer: Rc<RefCell<Framer>>,
    fanout: Rc<Fanout>,
    stats: Rc<RefCell<ForwardStats>>,
}

impl LinkHandler for Forwarder {
    fn on_open(&mut self, generation: u32, gap: Option<relay_wire::UpstreamGap>) {
        let mut framer = self.framer.borrow_mut();
        framer.on_upstream_open(gap, &mut |h, p| self.fanout.enqueue(h, p));
        debug_assert_eq!(framer.generation(), generation);
        self.stats.borrow_mut().generation = generation;
    }

    fn on_message(&mut self, payload: &[u8], binary: bool, rx_ns: u64) {
        let framed = self
            .framer
            .borrow_mut()
            .frame_message(payload, binary, rx_ns, &mut |h, p| {
                self.fanout.enqueue(h, p)
            });
        let mut stats = self.stats.borrow_mut();
        match framed {
            Ok(_) => stats.messages += 1,
            Err(_) => stats.too_large += 1,
        }
    }

    async fn flush(&mut self) {
        self.fanout.send_queued().await;
    }
}

/// Runs the relay until the duration passes or a signal arrives.
pub fn run(args: ForwardArgs) -> anyhow::Result<()> {
    let settings = ForwardSettings::resolve(args)?;
    let socket = fanout::udp_socket(&settings.targets, &settings.socket)?;
    let epoch = random_epoch()?;
    let framer = Framer::new(epoch, settings.datagram_budget, settings.endpoint.time_unit)?;
    pin_to_core(settings.core)?;
    let (reports, printer) = report::spawn::<ForwardStats>("relay");
    eprintln!(
        "relay: epoch {epoch:#010x}, forwarding {} to {}",
        settings.endpoint.url,
        settings
            .targets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let link = LinkConfig::new(
        &settings.endpoint,
        settings.ca_file.as_deref(),
        &settings.streams,
        settings.reconnect_max_delay,
    )?;
    let result = tokio_uring::start(async {
        let fanout = Rc::new(Fanout::new(socket, settings.targets.clone()));
        let framer = Rc::new(RefCell::new(framer));
        let stats = Rc::new(RefCell::new(ForwardStats::default()));
        let mut forwarder = Forwarder {
            framer: framer.clone(),
            fanout: fanout.clone(),
            stats: stats.clone(),
        };
        let notify = report::link_notifier(&reports);
        let timers = housekeeping(&framer, &fanout, &stats, &reports, &settings);
        exchange_link::run_until(
            &link,
            &mut forwarder,
            &notify,
            timers,
            crate::signals::stop_requested(settings.duration),
        )
        .await
    });
    drop(reports);
    let _ = printer.join();
    result
}

/// Heartbeats on an idle link and periodic stats, both from the relay thread's own timer.
async fn housekeeping(
    framer: &RefCell<Framer>,
    fanout: &Fanout,
    stats: &RefCell<ForwardStats>,
    reports: &crossbeam_channel::Sender<Report<ForwardStats>>,
    settings: &ForwardSettings,
) {
    let tick = (settings.heartbeat_interval / 4).max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval(tick);
    let mut last_report = std::time::Instant::now();
    loop {
        ticker.tick().await;
        if fanout.idle_for(settings.heartbeat_interval) {
            framer.borrow().heartbeat(&mut |h, p| fanout.enqueue(h, p));
            stats.borrow_mut().heartbeats += 1;
            fanout.send_queued().await;
        }
        if last_report.elapsed() >= settings.report_interval {
            last_report = std::time::Instant::now();
            let snapshot = ForwardStats {
                udp: fanout.stats(),
                next_sequence: framer.borrow().next_sequence(),
                ..*stats.borrow()
            };
            let _ = reports.try_send(Report::Stats(snapshot));
        }
    }
}

fn random_epoch() -> anyhow::Result<u32> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the session epoch: {e}"))?;
    Ok(u32::from_le_bytes(bytes).max(1))
}

/// Pins the calling thread; the relay thread is the one that then starts the runtime.
pub fn pin_to_core(core: Option<usize>) -> anyhow::Result<()> {
    let cores = core_affinity::get_core_ids().context("cannot list CPU cores")?;
    let chosen = match core {
        Some(id) => *cores.iter().find(|c| c.id == id).with_context(|| {
            format!(
                "--core {id}: no such core (have {:?})",
                cores.iter().map(|c| c.id).collect::<Vec<_>>()
            )
        })?,
        None => *cores.last().context("no CPU core reported")?,
    };
    if !core_affinity::set_for_current(chosen) {
        bail!("could not pin the relay thread to core {}", chosen.id);
    }
    Ok(())
}
