//! The io_uring shell around the core's [`ExchangeLink`]: it owns the TCP socket, moves bytes
//! between it and the link, sleeps until the link or the consumer next wants to act, and nothing
//! else. Every decision (handshake, pacing, pongs, reconnect backoff, generations, gaps) is the
//! core's; see `relay_core::exchange_link`.
//!
//! Shared by the relay (whose [`LinkHandler`] frames and forwards) and the receiver's baseline
//! mode (whose handler records directly). One task on one thread owns the link, the socket and
//! the handler: the socket read stays in flight across wake-ups (an io_uring read that is dropped
//! loses its bytes), and writes, timers and the consumer's sends happen between reads.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::pin::pin;
use std::time::{Duration, Instant};

use anyhow::Context;
use relay_core::binance::Endpoint;
use relay_core::exchange_link::{ExchangeLink, Flow, LinkEvent, Notice};
use relay_core::session::SessionConfig;
use relay_host::clock::realtime_ns;
use tokio_uring::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that is going down may take to write what the link still queued (the
/// reply to the exchange's close frame, our own close).
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// Bytes read per socket read; one read may carry many small frames.
const READ_BUFFER: usize = 64 * 1024;
/// How long the shell sleeps when neither the link nor the consumer has a timer.
const IDLE_WAKEUP: Duration = Duration::from_secs(1);

/// A datagram received beside the exchange link (the relay's NAKs), with its buffer.
pub struct SideDatagram {
    pub result: std::io::Result<(usize, SocketAddr)>,
    pub buf: Vec<u8>,
}

/// The consumer's own receive, kept in flight beside the exchange socket's. Boxed: one is made
/// per datagram received there, which is rare (a NAK), never per message.
pub type SideInput = std::pin::Pin<Box<dyn Future<Output = SideDatagram>>>;

/// The link's consumer: what it does with the link's events, and its own timers.
pub trait LinkHandler {
    /// What the link reported (a connection opened, a market-data message), at `now`.
    fn on_event(&mut self, event: LinkEvent<'_>, now: Instant);
    /// Called after each socket read has been consumed: send what `on_event` queued.
    fn flush(&mut self) -> impl Future<Output = ()>;
    /// When the consumer next wants [`LinkHandler::handle_timeout`] (heartbeats, reports).
    fn poll_timeout(&self) -> Option<Instant>;
    /// Does what is due at `now`; may be called early (it checks).
    fn handle_timeout(&mut self, now: Instant) -> impl Future<Output = ()>;
    /// The consumer's next receive beside the exchange socket (pending forever if it has none).
    fn side_input(&mut self) -> SideInput;
    /// What that receive brought, at `now`.
    fn on_side_input(&mut self, input: SideDatagram, now: Instant) -> impl Future<Output = ()>;
}

/// The session configuration for `endpoint`: Mozilla's roots plus the certificates in
/// `ca_file`, SUBSCRIBE to `streams`.
pub fn session_config(
    endpoint: &Endpoint,
    ca_file: Option<&Path>,
    streams: &[String],
) -> anyhow::Result<SessionConfig> {
    let tls = if endpoint.tls {
        let extra = ca_file
            .map(|path| {
                std::fs::read(path).with_context(|| format!("reading CA file {}", path.display()))
            })
            .transpose()?;
        let config =
            relay_core::tls::client_config(extra.as_deref()).with_context(|| match ca_file {
                Some(path) => format!("CA file {}", path.display()),
                None => "the TLS client configuration".to_string(),
            })?;
        Some(config)
    } else {
        None
    };
    Ok(SessionConfig {
        endpoint: endpoint.clone(),
        tls,
        subscribe: streams.to_vec(),
        client_messages_per_sec: relay_core::binance::CLIENT_MESSAGES_PER_SEC,
    })
}

/// Resolves the exchange's host (blocking; once per connection attempt, off the hot path).
fn resolve(endpoint: &Endpoint) -> anyhow::Result<SocketAddr> {
    (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}:{}", endpoint.host, endpoint.port))?
        .next()
        .with_context(|| format!("{}:{} resolved to no address", endpoint.host, endpoint.port))
}

/// How one connection (or attempt) ended.
enum End {
    /// `until` resolved: stop with its result.
    Stopped(anyhow::Result<()>),
    /// The connection is gone; the link reconnects.
    Lost(String),
}

/// Runs the link until `until` resolves, then closes the connection politely (WebSocket close
/// frame, TLS close_notify) and returns what `until` returned. `notices` sees every life-cycle
/// notice (for a reporter).
pub async fn run_until<H: LinkHandler>(
    link: &mut ExchangeLink,
    handler: &mut H,
    notices: &impl Fn(Notice),
    until: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut until = pin!(until);
    let mut side = handler.side_input();
    let result = loop {
        pass_notices(link, notices);
        if link.poll_connect(Instant::now()) {
            pass_notices(link, notices);
            let end = match connect(link, handler, &mut until, &mut side).await {
                Ok(stream) => {
                    link.connected(Instant::now(), realtime_ns());
                    drive(&stream, link, handler, &mut until, &mut side).await
                }
                Err(end) => end,
            };
            match end {
                End::Stopped(result) => {
                    link.stop();
                    link.connection_lost(Instant::now(), realtime_ns(), "stopped");
                    break result;
                }
                End::Lost(reason) => link.connection_lost(Instant::now(), realtime_ns(), &reason),
            }
            continue;
        }
        let deadline = earliest(link.poll_timeout(), handler.poll_timeout());
        tokio::select! {
            result = &mut until => {
                link.stop();
                break result;
            }
            input = &mut side => side_input(handler, &mut side, input).await,
            _ = tokio::time::sleep_until(deadline.into()) => {
                handler.handle_timeout(Instant::now()).await;
            }
        }
    };
    pass_notices(link, notices);
    result
}

/// Hands a side datagram to the consumer and starts its next receive.
async fn side_input<H: LinkHandler>(handler: &mut H, side: &mut SideInput, input: SideDatagram) {
    handler.on_side_input(input, Instant::now()).await;
    *side = handler.side_input();
}

fn pass_notices(link: &mut ExchangeLink, notices: &impl Fn(Notice)) {
    while let Some(notice) = link.poll_notice() {
        notices(notice);
    }
}

/// The earliest of two optional deadlines, or a while from now.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Instant {
    match (a, b) {
        (Some(a), Some(b)) => a.min(b),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => Instant::now() + IDLE_WAKEUP,
    }
}

/// Opens the TCP connection, serving the consumer's timers meanwhile.
async fn connect<H: LinkHandler>(
    link: &ExchangeLink,
    handler: &mut H,
    until: &mut (impl Future<Output = anyhow::Result<()>> + Unpin),
    side: &mut SideInput,
) -> Result<TcpStream, End> {
    let addr = resolve(link.endpoint()).map_err(|e| End::Lost(format!("{e:#}")))?;
    let mut connecting = pin!(tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect(addr)
    ));
    loop {
        let deadline = earliest(None, handler.poll_timeout());
        tokio::select! {
            result = &mut *until => return Err(End::Stopped(result)),
            connected = &mut connecting => {
                let stream = match connected {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return Err(End::Lost(format!("connecting to {addr}: {e}"))),
                    Err(_) => return Err(End::Lost(format!("connecting to {addr} timed out"))),
                };
                stream
                    .set_nodelay(true)
                    .map_err(|e| End::Lost(format!("TCP_NODELAY: {e}")))?;
                return Ok(stream);
            }
            input = &mut *side => side_input(handler, side, input).await,
            _ = tokio::time::sleep_until(deadline.into()) => {
                handler.handle_timeout(Instant::now()).await;
            }
        }
    }
}

/// Moves bytes between the socket and the link until the connection ends or `until` resolves.
async fn drive<H: LinkHandler>(
    stream: &TcpStream,
    link: &mut ExchangeLink,
    handler: &mut H,
    until: &mut (impl Future<Output = anyhow::Result<()>> + Unpin),
    side: &mut SideInput,
) -> End {
    let mut out = Vec::with_capacity(16 * 1024);
    let mut read = pin!(stream.read(vec![0u8; READ_BUFFER]));
    loop {
        if link.wants_write() {
            link.take_output(&mut out);
            let (written, returned) = stream.write_all(out).await;
            out = returned;
            out.clear();
            if let Err(e) = written {
                return End::Lost(format!("writing to the exchange: {e}"));
            }
        }
        let deadline = earliest(link.poll_timeout(), handler.poll_timeout());
        tokio::select! {
            result = &mut *until => {
                link.stop();
                final_write(stream, link, out).await;
                return End::Stopped(result);
            }
            (read_result, buf) = &mut read => {
                let n = match read_result {
                    Ok(0) => return End::Lost("the exchange closed the TCP connection".into()),
                    Ok(n) => n,
                    Err(e) => return End::Lost(format!("reading from the exchange: {e}")),
                };
                let rx_ns = realtime_ns();
                let now = Instant::now();
                let flow = link.handle_input(now, rx_ns, &buf[..n], &mut |event| {
                    handler.on_event(event, now);
                });
                handler.flush().await;
                if let Flow::Close { reason } = flow {
                    final_write(stream, link, out).await;
                    return End::Lost(reason);
                }
                read.set(stream.read(buf));
            }
            input = &mut *side => side_input(handler, side, input).await,
            _ = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now();
                if let Flow::Close { reason } = link.handle_timeout(now) {
                    return End::Lost(reason);
                }
                handler.handle_timeout(now).await;
            }
        }
    }
}

/// Writes what the link still has to say before the connection goes: above all the reply to the
/// exchange's close frame, which RFC 6455 requires (servers other than our simulator log a client
/// that just hangs up as an abnormal closure, 1006).
async fn final_write(stream: &TcpStream, link: &mut ExchangeLink, mut out: Vec<u8>) {
    link.take_output(&mut out);
    if !out.is_empty() {
        let _ = tokio::time::timeout(FINAL_WRITE_TIMEOUT, stream.write_all(out)).await;
    }
}

/// Resolves when a stop signal arrives (SIGINT, SIGTERM, SIGHUP) or `duration` passes.
pub async fn stop_requested(duration: Option<Duration>) -> anyhow::Result<()> {
    /// How often the stop flag is looked at.
    const POLL: Duration = Duration::from_millis(50);
    relay_host::signals::catch_stop_signals().context("installing the signal handlers")?;
    let deadline = duration.map(|d| Instant::now() + d);
    loop {
        let now = Instant::now();
        if relay_host::signals::stop_requested() || deadline.is_some_and(|d| now >= d) {
            return Ok(());
        }
        let wake = deadline.map_or(now + POLL, |d| d.min(now + POLL));
        tokio::time::sleep_until(wake.into()).await;
    }
}
