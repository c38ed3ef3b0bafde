//! `relay feed-sim`: the simulator from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::{FeedSim, SimConfig, SimStats, MAX_DURATION};

/// `relay feed-sim`: run the simulator from the command line.
#[derive(clap::Args, Clone, Debug)]
pub struct FeedSimArgs {
    /// Address to listen on (Binance's stream port is 9443).
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub listen: SocketAddr,
    /// Where to write the generated CA certificate (PEM); pass it to clients as --ca-file.
    #[arg(long, default_value = "feed-sim-ca.pem")]
    pub cert_out: PathBuf,
    /// Data messages per second per stream.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Extra messages per stream sent back to back every --burst-interval-ms (0 = no bursts).
    #[arg(long, default_value_t = 0)]
    pub burst_size: u32,
    /// Interval between bursts, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub burst_interval_ms: u64,
    /// Server ping interval in seconds (fractions allowed; Binance: 20).
    #[arg(long, default_value_t = 20.0)]
    pub ping_interval_secs: f64,
    /// Close a connection that has not answered a ping within this many seconds (Binance: 60).
    #[arg(long, default_value_t = 60.0)]
    pub pong_timeout_secs: f64,
    /// Price levels per side in each depthUpdate (more levels = bigger frames).
    #[arg(long, default_value_t = 10)]
    pub depth_levels: usize,
    /// Stop sending data after this many messages per stream per connection (keeps pinging).
    #[arg(long)]
    pub count: Option<u64>,
    /// Drop each connection abruptly after it sent this many data messages.
    #[arg(long)]
    pub drop_after: Option<u64>,
    /// Serve plain ws:// instead of wss:// (no certificate).
    #[arg(long)]
    pub plain: bool,
    /// Run this many seconds, then exit (default: until Ctrl-C / SIGTERM / SIGHUP).
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// Seed for the simulated price walks.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Extra DNS name or IP for the certificate (repeatable); localhost and 127.0.0.1 are
    /// always included.
    #[arg(long = "extra-name", value_name = "NAME")]
    pub extra_names: Vec<String>,
    /// Drop all connections abruptly every this many seconds (reconnect drills).
    #[arg(long)]
    pub drop_every_secs: Option<f64>,
    /// Send serverShutdown to all connections every this many seconds (reconnect drills).
    #[arg(long)]
    pub server_shutdown_every_secs: Option<f64>,
}

impl FeedSimArgs {
    /// The library configuration these flags describe.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        Ok(SimConfig {
            listen: self.listen,
            tls: !self.plain,
            extra_names: self.extra_names.clone(),
            cert_out: (!self.plain).then(|| self.cert_out.clone()),
            rate_per_stream: self.rate,
            burst_size: self.burst_size,
            burst_interval: Duration::from_millis(self.burst_interval_ms),
            ping_interval: secs("--ping-interval-secs", self.ping_interval_secs)?,
            pong_timeout: secs("--pong-timeout-secs", self.pong_timeout_secs)?,
            depth_levels: self.depth_levels,
            count: self.count,
            drop_after: self.drop_after,
            seed: self.seed,
            ..SimConfig::default()
        })
    }
}

fn secs(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= MAX_DURATION.as_secs_f64()) {
        bail!(
            "{flag} must be a positive number of seconds, at most {}",
            MAX_DURATION.as_secs()
        );
    }
    Ok(Duration::from_secs_f64(value))
}

/// Runs the simulator until `--duration-secs` elapses or SIGINT/SIGTERM/SIGHUP, printing the URL and
/// certificate path at start and a one-line stats report every 5 s (all to stderr).
pub fn run(args: FeedSimArgs) -> anyhow::Result<()> {
    let cfg = args.to_config()?;
    let duration = args
        .duration_secs
        .map(|s| secs("--duration-secs", s))
        .transpose()?;
    let drop_every = args
        .drop_every_secs
        .map(|s| secs("--drop-every-secs", s))
        .transpose()?;
    let shutdown_every = args
        .server_shutdown_every_secs
        .map(|s| secs("--server-shutdown-every-secs", s))
        .transpose()?;
    relay_host::signals::catch_stop_signals()
        .context("feed-sim: cannot install signal handlers")?;
    let sim = FeedSim::start(cfg)?;
    eprintln!(
        "feed-sim: listening on {} (e.g. {} or {})",
        sim.url("/"),
        sim.url("/ws/btcusdt@trade"),
        sim.url("/stream?streams=btcusdt@trade/ethusdt@depth@100ms"),
    );
    if args.plain {
        eprintln!("feed-sim: plain ws://, no certificate");
    } else {
        eprintln!(
            "feed-sim: CA certificate written to {} (pass it as --ca-file)",
            args.cert_out.display()
        );
    }
    let started = Instant::now();
    let report_every = Duration::from_secs(5);
    let mut next_report = started + report_every;
    let mut next_drop = drop_every.map(|d| started + d);
    let mut next_shutdown = shutdown_every.map(|d| started + d);
    let mut last = sim.stats();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if relay_host::signals::stop_requested() || duration.is_some_and(|d| now >= started + d) {
            break;
        }
        if let (Some(at), Some(every)) = (next_drop, drop_every) {
            if now >= at {
                eprintln!("feed-sim: dropping all connections");
                sim.drop_connections();
                next_drop = Some(now + every);
            }
        }
        if let (Some(at), Some(every)) = (next_shutdown, shutdown_every) {
            if now >= at {
                eprintln!("feed-sim: sending serverShutdown to all connections");
                sim.send_server_shutdown();
                next_shutdown = Some(now + every);
            }
        }
        if now >= next_report {
            let stats = sim.stats();
            eprintln!("feed-sim: {}", report_line(&last, &stats, report_every));
            last = stats;
            next_report += report_every;
        }
    }
    let stats = sim.stats();
    eprintln!(
        "feed-sim: stopping after {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        report_line(&SimStats::default(), &stats, started.elapsed())
    );
    sim.stop();
    Ok(())
}

fn report_line(prev: &SimStats, now: &SimStats, over: Duration) -> String {
    let sent = now.data_messages - prev.data_messages;
    let rate = sent as f64 / over.as_secs_f64().max(1e-9);
    format!(
        "sent {sent} ({rate:.0}/s, total {}), connections open {} accepted {} failed {}, pongs {}, subscribes {}, closed: rate-limit {} pong-timeout {} dropped {}",
        now.data_messages,
        now.connections_open,
        now.connections_accepted,
        now.handshakes_failed,
        now.pongs_received,
        now.subscribe_requests,
        now.closed_rate_limit,
        now.closed_pong_timeout,
        now.dropped,
    )
}
