//! A Binance-compatible exchange simulator ("feed-sim") for tests, benchmarks, the lab and a
//! newcomer's first run: Binance is unreachable from here, so everything that needs an exchange
//! talks to this instead.
//!
//! It serves Binance Spot's public stream endpoints over TLS (a CA generated at start; clients
//! trust it through [`FeedSim::ca_pem`] / `--ca-file`) or plain `ws://`:
//!
//! * `/ws/<stream>` (also `/ws/<a>/<b>`) and `/ws`: raw events; with `/ws` streams come only from
//!   `SUBSCRIBE`.
//! * `/stream?streams=a/b/c`: each event wrapped as `{"stream":"<name>","data":{..}}`.
//! * `timeUnit=MICROSECOND` (value case-insensitive) makes `E`/`T` microseconds.
//! * Streams: `<sym>@trade`, `<sym>@aggTrade`, `<sym>@depth`, `<sym>@depth@100ms`,
//!   `<sym>@bookTicker`, with Binance's key order and types.
//!
//! Message `n` of every stream is due at `start + n / rate` (plus bursts), the same for every
//! connection, and carries id `n + 1` (`t`, `a`, `u`). So ids are global per stream: a client that
//! reconnects sees a jump in ids equal to what it missed. For `depthUpdate`, `U == u == id`, and
//! for `aggTrade`, `f = 2a`, `l = 2a + 1`, so continuity checks hold across events.
//!
//! Like Binance it pings every `ping_interval` and closes a connection that does not echo a ping
//! within `pong_timeout`, closes a connection sending more than 5 messages per second, and
//! answers `SUBSCRIBE` / `UNSUBSCRIBE` / `LIST_SUBSCRIPTIONS`. Test controls
//! ([`FeedSim::drop_connections`], [`FeedSim::send_server_shutdown`], [`SimConfig::drop_after`],
//! [`SimConfig::count`]) reproduce the failure modes the relay has to survive.
//!
//! The API is synchronous: the sim owns a tokio runtime on its own thread, so it can be used from
//! plain `#[test]`s and from inside other runtimes alike.

pub mod cert;
mod server;
mod streams;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::sync::oneshot;

use server::{Control, Shared};

/// Everything the simulator can be told at start. `Default` is a quiet-ish TLS server on an
/// ephemeral loopback port with Binance's keepalive timings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port (see [`FeedSim::local_addr`]).
    pub listen: SocketAddr,
    /// `wss://` with a generated certificate; `false` serves plain `ws://` for interop tests.
    pub tls: bool,
    /// Extra DNS names or IPs for the certificate, besides `localhost` and `127.0.0.1`.
    pub extra_names: Vec<String>,
    /// Write the CA certificate (PEM) here at start, for clients' `--ca-file`.
    pub cert_out: Option<PathBuf>,
    /// Data messages per second per stream (>= 0). 0 sends only bursts.
    pub rate_per_stream: f64,
    /// Extra messages per stream sent back to back every `burst_interval`; 0 disables bursts.
    pub burst_size: u32,
    pub burst_interval: Duration,
    /// Server ping cadence (Binance: 20 s).
    pub ping_interval: Duration,
    /// Close a connection whose oldest unanswered ping is this old (Binance: 60 s).
    pub pong_timeout: Duration,
    /// Price levels per side in each `depthUpdate` (payload size grows ~30 bytes per level).
    pub depth_levels: usize,
    /// Stop sending data after this many messages per stream per connection; the connection
    /// stays open and keeps pinging, so a test knows exactly how many were sent.
    pub count: Option<u64>,
    /// Drop each connection abruptly (no close frame) after it sent this many data messages.
    pub drop_after: Option<u64>,
    /// Seed for the price walks, so runs are repeatable.
    pub seed: u64,
    /// How long connections keep streaming after `serverShutdown` before they are closed.
    pub shutdown_grace: Duration,
    /// Tokio worker threads for the sim's runtime.
    pub worker_threads: usize,
    /// Log noteworthy events (rejections, policy closes) to stderr.
    pub log: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tls: true,
            extra_names: Vec::new(),
            cert_out: None,
            rate_per_stream: 10.0,
            burst_size: 0,
            burst_interval: Duration::from_secs(1),
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            depth_levels: 10,
            count: None,
            drop_after: None,
            seed: 1,
            shutdown_grace: Duration::from_millis(500),
            worker_threads: 2,
            log: true,
        }
    }
}

/// A snapshot of the simulator's counters (they keep running; take another snapshot to compare).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Data messages (stream events) sent over all connections.
    pub data_messages: u64,
    /// Data messages per stream name, over all connections.
    pub per_stream: BTreeMap<String, u64>,
    /// TCP connections accepted (before any handshake).
    pub tcp_accepted: u64,
    /// WebSocket sessions established.
    pub connections_accepted: u64,
    /// WebSocket sessions currently open.
    pub connections_open: u64,
    /// TLS or WebSocket handshakes that failed or were rejected (unknown path or stream).
    pub handshakes_failed: u64,
    pub pings_sent: u64,
    /// All pongs received, matching a ping or not.
    pub pongs_received: u64,
    pub subscribe_requests: u64,
    pub unsubscribe_requests: u64,
    /// Requests answered with an error, plus ignored binary frames.
    pub invalid_requests: u64,
    /// Connections closed for sending more than 5 messages per second.
    pub closed_rate_limit: u64,
    /// Connections closed because a ping went unanswered for `pong_timeout`.
    pub closed_pong_timeout: u64,
    /// Connections dropped because the client stopped reading (a write was stuck for
    /// `pong_timeout`), as Binance drops slow consumers.
    pub closed_stalled: u64,
    /// Connections dropped abruptly (`drop_connections`, `drop_after`).
    pub dropped: u64,
    /// `serverShutdown` events sent.
    pub server_shutdowns_sent: u64,
}

/// A running simulator. Dropping it (or [`FeedSim::stop`]) stops it and frees the port.
pub struct FeedSim {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    ca_pem: String,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FeedSim {
    /// Generates the certificate, binds, and starts serving on a background runtime. Errors
    /// (bad config, port in use, unwritable `cert_out`) are reported here, not later.
    pub fn start(cfg: SimConfig) -> anyhow::Result<FeedSim> {
        validate(&cfg)?;
        let listener = std::net::TcpListener::bind(cfg.listen)
            .with_context(|| format!("feed-sim: cannot listen on {}", cfg.listen))?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;

        let (ca_pem, acceptor) = if cfg.tls {
            let cert = make_certificate(&cfg.extra_names, local_addr.ip())?;
            let acceptor = tls_acceptor(&cert)?;
            (cert.ca_pem, Some(acceptor))
        } else {
            (String::new(), None)
        };
        if let (Some(path), true) = (&cfg.cert_out, cfg.tls) {
            std::fs::write(path, &ca_pem)
                .with_context(|| format!("feed-sim: cannot write {}", path.display()))?;
        }

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.worker_threads)
            .thread_name("feed-sim-worker")
            .enable_io()
            .enable_time()
            .build()
            .context("feed-sim: cannot build the tokio runtime")?;
        let shared = Arc::new(Shared::new(cfg));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let task_shared = shared.clone();
        // The runtime lives and dies on this thread: dropping a runtime inside another runtime's
        // async context panics, and the caller may well be in one.
        let thread = std::thread::Builder::new()
            .name("feed-sim".into())
            .spawn(move || {
                runtime.block_on(server::accept_loop(
                    listener,
                    task_shared,
                    acceptor,
                    shutdown_rx,
                ));
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .context("feed-sim: cannot spawn its thread")?;
        Ok(FeedSim {
            shared,
            local_addr,
            ca_pem,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The bound address (with the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The CA certificate (PEM) that signed the server certificate; empty in plain mode.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `wss://127.0.0.1:PORT<path_and_query>` (or `ws://` in plain mode). An unspecified
    /// listen address (0.0.0.0, ::) is replaced by loopback so the URL is connectable.
    pub fn url(&self, path_and_query: &str) -> String {
        let scheme = if self.shared.cfg.tls { "wss" } else { "ws" };
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        let addr = SocketAddr::new(ip, self.local_addr.port());
        let slash = if path_and_query.starts_with('/') {
            ""
        } else {
            "/"
        };
        format!("{scheme}://{addr}{slash}{path_and_query}")
    }

    /// Closes every current connection abruptly: the socket is dropped without a close frame,
    /// so clients see EOF / "reset without closing handshake".
    pub fn drop_connections(&self) {
        let _ = self.shared.control.send(Control::Drop);
    }

    /// Sends `{"e":"serverShutdown","E":..}` to every current connection, then closes each
    /// (close frame 1001) after [`SimConfig::shutdown_grace`]; data keeps flowing meanwhile.
    pub fn send_server_shutdown(&self) {
        let _ = self.shared.control.send(Control::ServerShutdown);
    }

    /// Current counters; cheap enough to poll.
    pub fn stats(&self) -> SimStats {
        self.shared.snapshot()
    }

    /// The configuration in force.
    pub fn config(&self) -> &SimConfig {
        &self.shared.cfg
    }

    /// Stops accepting, ends every connection task and frees the port before returning.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for FeedSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn validate(cfg: &SimConfig) -> anyhow::Result<()> {
    if !cfg.rate_per_stream.is_finite() || cfg.rate_per_stream < 0.0 {
        bail!("feed-sim: rate must be a finite number >= 0");
    }
    if cfg.ping_interval.is_zero() || cfg.pong_timeout.is_zero() {
        bail!("feed-sim: ping interval and pong timeout must be > 0");
    }
    // Deadlines are `Instant + duration`; keep them far from overflow.
    if [cfg.ping_interval, cfg.pong_timeout, cfg.shutdown_grace]
        .iter()
        .any(|d| *d > MAX_DURATION)
    {
        bail!(
            "feed-sim: durations must be at most {} s",
            MAX_DURATION.as_secs()
        );
    }
    if cfg.depth_levels == 0 || cfg.depth_levels > 5000 {
        bail!("feed-sim: depth levels must be 1..=5000");
    }
    if cfg.worker_threads == 0 {
        bail!("feed-sim: worker threads must be >= 1");
    }
    Ok(())
}

/// The simulator's certificate names: loopback, the listen address when it is a real one, and
/// any extra names.
fn make_certificate(extra: &[String], listen_ip: IpAddr) -> anyhow::Result<cert::Issued> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !listen_ip.is_unspecified() && !listen_ip.is_loopback() {
        names.push(listen_ip.to_string());
    }
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    cert::issue("feed-sim", &names)
}

fn tls_acceptor(cert: &cert::Issued) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.leaf.clone()], cert.key.clone_key())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

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
    /// Run this many seconds, then exit (default: until Ctrl-C / SIGTERM).
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

/// Longest accepted interval or timeout (~3 years): effectively "never", without overflowing
/// `Instant` arithmetic.
const MAX_DURATION: Duration = Duration::from_secs(100_000_000);

fn secs(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= MAX_DURATION.as_secs_f64()) {
        bail!(
            "{flag} must be a positive number of seconds, at most {}",
            MAX_DURATION.as_secs()
        );
    }
    Ok(Duration::from_secs_f64(value))
}

/// Set by SIGINT/SIGTERM; `run` polls it.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // A second Ctrl-C means "now": skip the clean shutdown. Only async-signal-safe calls here.
    if STOP.swap(true, Ordering::SeqCst) {
        unsafe { libc::_exit(130) };
    }
}

fn install_stop_handlers() -> std::io::Result<()> {
    STOP.store(false, Ordering::SeqCst);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only touches an atomic or _exits.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs the simulator until `--duration-secs` elapses or SIGINT/SIGTERM, printing the URL and
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
    install_stop_handlers().context("feed-sim: cannot install signal handlers")?;
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
        if STOP.load(Ordering::SeqCst) || duration.is_some_and(|d| now >= started + d) {
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
