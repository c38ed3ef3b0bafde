//! `relay forward`'s command line and `tokyo-config.json`, merged into [`ForwardSettings`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use relay_core::binance::{self, Endpoint};
use relay_core::exchange_link::DEFAULT_ROTATE_AFTER;
use relay_core::forward::answer::RetransmitConfig;
use relay_core::forward::framer::DEFAULT_DATAGRAM_BUDGET;
use relay_core::reconnect::DEFAULT_MAX_DELAY;
use relay_core::seal::Secret;

use super::config::{self, positive_secs, TokyoConfig};
use crate::exchange::Idle;
use crate::forward::fanout::SocketOptions;

const DEFAULT_HEARTBEAT_MS: u64 = 1000;

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// The seed's tokyo-config.json (binance_ws_url, frankfurt_private_ip, frankfurt_port,
    /// reconnect_max_delay_secs, plus our keys); flags override it [default:
    /// ./tokyo-config.json when there is one].
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
    /// How the relay thread waits for the exchange: `spin` never sleeps (it polls its sockets in
    /// a loop, so no thread wake-up adds to a message's latency; its core stays at 100%), `park`
    /// sleeps in the kernel until data or a timer is due (for a shared host) [default: spin with
    /// --core, park without].
    #[arg(long, value_enum)]
    pub idle: Option<IdleArg>,
    /// PEM file with extra CA certificates to trust (e.g. the simulator's); Mozilla's roots are built in.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Largest UDP datagram to send, headers included: the messages of one exchange read share
    /// datagrams up to it, and a longer message is fragmented [default: 1472, one 1500-byte MTU].
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
    /// Replace the exchange connection this often, without a gap: a new connection opens and
    /// subscribes beside the old one, and takes over once both deliver the same events (as on
    /// `serverShutdown`). Binance closes connections at 24 h. E.g. 23h, 90m, 600s
    /// [default: 23h].
    #[arg(long, value_name = "DURATION")]
    pub rotate_after: Option<String>,
    /// Send a heartbeat after this long without data [default: 1000].
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Megabytes of sent datagrams kept to answer receivers' NAKs (0: answer none) [default: 64,
    /// several seconds at 100k msg/s], all of it written at start (resident from the first
    /// second, so the hot path never takes a page fault). Answers go to the requester only, at
    /// most 100 Mbit/s, and nothing older than 10 s is sent again.
    #[arg(long, value_name = "MB")]
    pub retransmit_buffer_mb: Option<usize>,
    /// Shared secret (32 to 4096 bytes, the file's bytes as they are; make one with
    /// `head -c 32 /dev/urandom > FILE`): every datagram is sealed (encrypted and authenticated,
    /// AES-256-GCM) and only sealed NAKs are answered. Give the receivers the same file. Without
    /// it datagrams go out readable and anyone can send NAKs.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Stop after this many seconds [default: run until Ctrl-C / SIGTERM / SIGHUP; a second
    /// signal ends the relay at once].
    #[arg(long, value_name = "SECS")]
    pub duration_secs: Option<f64>,
    /// Seconds between progress lines on stderr.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub report_secs: f64,
    /// Serve the live figures for Prometheus at http://ADDR:PORT/metrics (counters of messages,
    /// datagrams, NAKs and errors, refreshed every second).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
}

/// `--idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdleArg {
    Spin,
    Park,
}

/// Everything the relay runs with, after config file and flags are merged.
#[derive(Debug)]
pub struct ForwardSettings {
    pub endpoint: Endpoint,
    pub streams: Vec<String>,
    pub targets: Vec<SocketAddr>,
    pub core: Option<usize>,
    pub idle: Idle,
    pub ca_file: Option<PathBuf>,
    pub datagram_budget: usize,
    pub socket: SocketOptions,
    pub reconnect_max_delay: Duration,
    pub rotate_after: Duration,
    pub heartbeat_interval: Duration,
    /// What is kept to answer NAKs (`None`: none are answered).
    pub retransmit: Option<RetransmitConfig>,
    /// `--key-file`: seal every datagram, answer only sealed NAKs.
    pub secret: Option<Secret>,
    pub duration: Option<Duration>,
    pub report_interval: Duration,
    pub metrics: Option<SocketAddr>,
}

/// `--rotate-after`: a number with `h`, `m` or `s` (seconds without a unit), at least 10 s and
/// under Binance's 24 h limit.
fn parse_rotate_after(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((at, 'h')) => (&text[..at], 3600.0),
        Some((at, 'm')) => (&text[..at], 60.0),
        Some((at, 's')) => (&text[..at], 1.0),
        _ => (text, 1.0),
    };
    let secs = number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .map(|n| n * unit)
        .with_context(|| format!("--rotate-after {text:?}: expected e.g. 23h, 90m or 600s"))?;
    let limit = relay_core::binance::MAX_CONNECTION_AGE.as_secs_f64();
    if !(10.0..limit).contains(&secs) {
        bail!(
            "--rotate-after {text:?} must be at least 10 s and under {} h (Binance closes \
             connections at 24 h)",
            limit / 3600.0
        );
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--idle` as given, else spin on a core given (a core given is a core owned), else park.
fn resolve_idle(idle: Option<IdleArg>, core: Option<usize>) -> Idle {
    match (idle, core) {
        (Some(IdleArg::Spin), _) | (None, Some(_)) => Idle::Spin,
        (Some(IdleArg::Park), _) | (None, None) => Idle::Park,
    }
}

fn resolve_target(text: &str) -> anyhow::Result<SocketAddr> {
    text.to_socket_addrs()
        .with_context(|| format!("receiver {text:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("receiver {text:?} resolved to no address"))
}

impl ForwardSettings {
    pub fn resolve(args: ForwardArgs) -> anyhow::Result<ForwardSettings> {
        let file: TokyoConfig =
            config::load_or_local(args.config.as_deref(), "tokyo-config.json", "forward")?;
        let url = args
            .url
            .or(file.binance_ws_url)
            .unwrap_or_else(|| binance::DEFAULT_URL.to_string());
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
            idle: resolve_idle(args.idle.or(file.idle), args.core.or(file.core)),
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
                    .unwrap_or(DEFAULT_MAX_DELAY.as_secs()),
            ),
            rotate_after: match args.rotate_after.or(file.rotate_after) {
                Some(text) => parse_rotate_after(&text)?,
                None => DEFAULT_ROTATE_AFTER,
            },
            heartbeat_interval: Duration::from_millis(heartbeat_ms),
            retransmit: match args.retransmit_buffer_mb.or(file.retransmit_buffer_mb) {
                Some(0) => None,
                Some(mb) => Some(RetransmitConfig {
                    buffer_bytes: mb.checked_mul(1 << 20).with_context(|| {
                        format!("--retransmit-buffer-mb {mb} is more than this machine can address")
                    })?,
                    ..RetransmitConfig::default()
                }),
                None => Some(RetransmitConfig::default()),
            },
            secret: args
                .key_file
                .or(file.key_file)
                .map(|path| Secret::from_file(&path))
                .transpose()?,
            duration: args
                .duration_secs
                .map(|s| positive_secs("--duration-secs", s))
                .transpose()?,
            report_interval: positive_secs("--report-secs", args.report_secs)?,
            metrics: args.metrics.or(file.metrics),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_spins_on_an_owned_core_unless_told_to_park() {
        assert_eq!(resolve_idle(None, Some(1)), Idle::Spin);
        assert_eq!(resolve_idle(None, None), Idle::Park);
        assert_eq!(resolve_idle(Some(IdleArg::Park), Some(1)), Idle::Park);
        assert_eq!(resolve_idle(Some(IdleArg::Spin), None), Idle::Spin);
        let file: TokyoConfig = serde_json::from_str(r#"{"idle": "park"}"#).unwrap();
        assert_eq!(file.idle, Some(IdleArg::Park));
        let err = serde_json::from_str::<TokyoConfig>(r#"{"idle": "nap"}"#).unwrap_err();
        assert!(err.to_string().contains("spin"), "{err}");
    }

    #[test]
    fn rotate_after_takes_hours_minutes_or_seconds_within_the_limit() {
        assert_eq!(
            parse_rotate_after("23h").unwrap(),
            Duration::from_secs(23 * 3600)
        );
        assert_eq!(
            parse_rotate_after("90m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_rotate_after("600s").unwrap(),
            Duration::from_secs(600)
        );
        assert_eq!(parse_rotate_after("600").unwrap(), Duration::from_secs(600));
        for bad in ["24h", "5s", "soon", "", "-1h", "NaNh"] {
            let err = parse_rotate_after(bad).unwrap_err().to_string();
            assert!(err.contains("--rotate-after"), "{bad}: {err}");
        }
    }
}
