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

mod cli;
mod server;
mod streams;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _};
use relay_core::binance;
use relay_core::harness::cert;
use tokio::sync::oneshot;

pub use cli::{run, FeedSimArgs};
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
            ping_interval: binance::PING_INTERVAL,
            pong_timeout: binance::PONG_TIMEOUT,
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
            let config = cert
                .server_config()
                .context("feed-sim: the TLS server configuration")?;
            (cert.ca_pem, Some(tokio_rustls::TlsAcceptor::from(config)))
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
        .with_context(|| format!("feed-sim: a certificate for {names:?}"))
}

/// Longest accepted interval or timeout (~3 years): effectively "never", without overflowing
/// `Instant` arithmetic.
const MAX_DURATION: Duration = Duration::from_secs(100_000_000);
