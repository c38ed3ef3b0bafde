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
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::{Fuse, FutureExt};
use relay_core::binance::Endpoint;
use relay_core::exchange_link::{ConnId, ExchangeLink, LinkEvent, Notice};
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
    /// Does what is due at `now`; may be called early (it checks). While the exchange is out of
    /// reach, `upstream_down_since_ns` says since when.
    fn handle_timeout(
        &mut self,
        now: Instant,
        upstream_down_since_ns: Option<u64>,
    ) -> impl Future<Output = ()>;
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

/// The shell's side of one of the link's connections: the socket once connected.
#[derive(Default)]
struct Socket {
    stream: Option<Rc<TcpStream>>,
    /// Reused write buffer.
    out: Vec<u8>,
}

/// One socket read, owning what it needs (so the read can stay in flight in a pinned slot).
async fn read_op(stream: Rc<TcpStream>, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
    stream.read(buf).await
}

/// Opens a TCP connection to `addr` (with a timeout and TCP_NODELAY).
async fn connect_op(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(format!("connecting to {addr}: {e}")),
        Err(_) => return Err(format!("connecting to {addr} timed out")),
    };
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok(stream)
}

/// Runs the link until `until` resolves, then closes its connections politely (WebSocket close
/// frame, TLS close_notify) and returns what `until` returned. `notices` sees every life-cycle
/// notice (for a reporter). Up to two connections at once (a rotation): each has its read in
/// flight in its own pinned slot, so no read is ever dropped with bytes in it while the
/// connection lives, and nothing is allocated per read.
pub async fn run_until<H: LinkHandler>(
    link: &mut ExchangeLink,
    handler: &mut H,
    notices: &impl Fn(Notice),
    until: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut until = pin!(until);
    let mut side = handler.side_input();
    let mut sockets = [Socket::default(), Socket::default()];
    let mut reads = [pin!(Fuse::terminated()), pin!(Fuse::terminated())];
    let mut connects = [pin!(Fuse::terminated()), pin!(Fuse::terminated())];
    let result = loop {
        pass_notices(link, notices);
        while let Some(id) = link.poll_connect(Instant::now()) {
            pass_notices(link, notices);
            match resolve(link.endpoint()) {
                Ok(addr) => connects[id.index()].set(connect_op(addr).fuse()),
                Err(e) => {
                    link.connection_lost(id, Instant::now(), realtime_ns(), &format!("{e:#}"))
                }
            }
        }
        while let Some((id, reason)) = link.poll_close() {
            let socket = &mut sockets[id.index()];
            if let Some(stream) = socket.stream.take() {
                final_write(&stream, link, id, std::mem::take(&mut socket.out)).await;
            }
            reads[id.index()].set(Fuse::terminated());
            link.connection_lost(id, Instant::now(), realtime_ns(), &reason);
        }
        for id in ConnId::ALL {
            let socket = &mut sockets[id.index()];
            let Some(stream) = socket.stream.clone() else {
                continue;
            };
            if !link.wants_write(id) {
                continue;
            }
            let mut out = std::mem::take(&mut socket.out);
            link.take_output(id, &mut out);
            let (written, mut returned) = stream.write_all(out).await;
            returned.clear();
            socket.out = returned;
            if let Err(e) = written {
                socket.stream = None;
                reads[id.index()].set(Fuse::terminated());
                let reason = format!("writing to the exchange: {e}");
                link.connection_lost(id, Instant::now(), realtime_ns(), &reason);
            }
        }
        let deadline = earliest(link.poll_timeout(), handler.poll_timeout());
        // Which slot an arm fired for, and what it brought.
        enum Fired {
            Read(usize, std::io::Result<usize>, Vec<u8>),
            Connected(usize, Result<TcpStream, String>),
        }
        let ([read0, read1], [connect0, connect1]) = (&mut reads, &mut connects);
        let fired = tokio::select! {
            result = &mut until => {
                link.stop();
                for id in ConnId::ALL {
                    let socket = &mut sockets[id.index()];
                    if let Some(stream) = socket.stream.take() {
                        final_write(&stream, link, id, std::mem::take(&mut socket.out)).await;
                        link.connection_lost(id, Instant::now(), realtime_ns(), "stopped");
                    }
                }
                break result;
            }
            (read, buf) = read0.as_mut() => Fired::Read(0, read, buf),
            (read, buf) = read1.as_mut() => Fired::Read(1, read, buf),
            connected = connect0.as_mut() => Fired::Connected(0, connected),
            connected = connect1.as_mut() => Fired::Connected(1, connected),
            input = &mut side => {
                side_input(handler, &mut side, input).await;
                continue;
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now();
                link.handle_timeout(now);
                handler.handle_timeout(now, link.down_since_ns()).await;
                continue;
            }
        };
        match fired {
            Fired::Connected(i, Ok(stream)) => {
                let stream = Rc::new(stream);
                sockets[i].stream = Some(stream.clone());
                link.connected(ConnId::ALL[i], Instant::now(), realtime_ns());
                reads[i].set(read_op(stream, vec![0u8; READ_BUFFER]).fuse());
            }
            Fired::Connected(i, Err(reason)) => {
                link.connection_lost(ConnId::ALL[i], Instant::now(), realtime_ns(), &reason);
            }
            Fired::Read(i, read, buf) => {
                let id = ConnId::ALL[i];
                let n = match read {
                    Ok(0) => Err("the exchange closed the TCP connection".to_string()),
                    Ok(n) => Ok(n),
                    Err(e) => Err(format!("reading from the exchange: {e}")),
                };
                let n = match n {
                    Ok(n) => n,
                    Err(reason) => {
                        sockets[i].stream = None;
                        link.connection_lost(id, Instant::now(), realtime_ns(), &reason);
                        continue;
                    }
                };
                let rx_ns = realtime_ns();
                let now = Instant::now();
                link.handle_input(id, now, rx_ns, &buf[..n], &mut |event| {
                    handler.on_event(event, now);
                });
                handler.flush().await;
                if let Some(stream) = sockets[i].stream.clone() {
                    reads[i].set(read_op(stream, buf).fuse());
                }
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

/// Writes what the link still has to say on connection `id` before it goes: above all the
/// reply to the exchange's close frame, which RFC 6455 requires (servers other than our
/// simulator log a client that just hangs up as an abnormal closure, 1006).
async fn final_write(stream: &TcpStream, link: &mut ExchangeLink, id: ConnId, mut out: Vec<u8>) {
    out.clear();
    link.take_output(id, &mut out);
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
