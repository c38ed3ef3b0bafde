//! The shell around the core's [`ExchangeLink`]: it owns the exchange's TCP sockets (two during
//! a rotation), moves bytes between them and the link, runs the link's and the consumer's timers,
//! and nothing else. Every decision (handshake, pacing, pongs, reconnect backoff, rotation,
//! generations, gaps) is the core's; see `relay_core::exchange_link`.
//!
//! Shared by the relay (whose [`LinkHandler`] frames and forwards) and the receiver's baseline
//! mode (whose handler records directly). One thread owns the link, the sockets and the handler.
//! How it waits for the next thing to do is the [`Idle`] policy:
//!
//! * [`Idle::Park`] ([`park`]): reads in flight on io_uring (tokio-uring); the thread sleeps in
//!   the kernel until one completes or a timer is due. For shared hosts.
//! * [`Idle::Spin`] ([`spin`]): the thread never sleeps: it polls its sockets with non-blocking
//!   calls and checks its timers in a loop, so a message is read the moment it arrives, with no
//!   thread wake-up in its latency. It takes its core to 100%: for a core of its own.
//!
//! What happens once something arrives is the same either way ([`Shell`]).

mod park;
mod spin;

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use relay_core::binance::Endpoint;
use relay_core::exchange_link::{ConnId, ExchangeLink, LinkEvent, Notice};
use relay_core::session::SessionConfig;
use relay_host::clock::realtime_ns;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that is going down may take to write what the link still queued (the
/// reply to the exchange's close frame, our own close).
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// Bytes read per socket read; one read may carry many small frames.
const READ_BUFFER: usize = 64 * 1024;
/// Largest datagram received beside the link (a NAK is under 1 KiB).
const SIDE_BUFFER: usize = 2048;
/// How long a parked shell sleeps when neither the link nor the consumer has a timer.
const IDLE_WAKEUP: Duration = Duration::from_secs(1);

/// How the shell waits for input (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    Park,
    Spin,
}

/// The link's consumer: what it does with the link's events, and its own timers.
pub trait LinkHandler {
    /// What the link reported (a connection opened, a market-data message), at `now`.
    fn on_event(&mut self, event: LinkEvent<'_>, now: Instant);
    /// Called after each socket read has been consumed: send what `on_event` still holds.
    fn flush(&mut self);
    /// When the consumer next wants [`LinkHandler::handle_timeout`] (heartbeats, reports).
    fn poll_timeout(&self) -> Option<Instant>;
    /// Does what is due at `now`; may be called early (it checks). While the exchange is out of
    /// reach, `upstream_down_since_ns` says since when.
    fn handle_timeout(&mut self, now: Instant, upstream_down_since_ns: Option<u64>);
    /// A UDP socket to receive on beside the exchange (the relay's NAKs), if any.
    fn side_socket(&self) -> Option<Rc<tokio_uring::net::UdpSocket>>;
    /// A datagram that socket received from `from`, at `now`.
    fn on_side_datagram(&mut self, datagram: &[u8], from: SocketAddr, now: Instant);
}

/// When the run ends: a stop signal (SIGINT, SIGTERM, SIGHUP) or the deadline.
#[derive(Clone, Copy, Debug)]
pub struct Stop {
    deadline: Option<Instant>,
}

impl Stop {
    /// Installs the signal handlers; with `duration`, the run also ends that long from now.
    pub fn after(duration: Option<Duration>) -> anyhow::Result<Stop> {
        relay_host::signals::catch_stop_signals().context("installing the signal handlers")?;
        Ok(Stop {
            deadline: duration.map(|d| Instant::now() + d),
        })
    }

    pub fn is_due(&self, now: Instant) -> bool {
        relay_host::signals::stop_requested() || self.deadline.is_some_and(|d| now >= d)
    }
}

/// Runs the link until `stop` is due, then closes its connections politely (WebSocket close
/// frame, TLS close_notify). Must be called inside a tokio-uring runtime.
pub async fn run_until<H: LinkHandler>(
    link: &mut ExchangeLink,
    handler: &mut H,
    notices: &impl Fn(Notice),
    stop: Stop,
    idle: Idle,
) {
    let mut shell = Shell::new(link, handler, notices);
    match idle {
        Idle::Park => park::run(&mut shell, stop).await,
        Idle::Spin => spin::run(&mut shell, stop),
    }
    shell.stop();
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

/// A connected exchange socket: what keeps it open, and its descriptor for writes.
pub(crate) enum Socket {
    Uring(Rc<tokio_uring::net::TcpStream>),
    Std(std::net::TcpStream),
}

impl Socket {
    fn fd(&self) -> RawFd {
        match self {
            Socket::Uring(stream) => stream.as_raw_fd(),
            Socket::Std(stream) => stream.as_raw_fd(),
        }
    }
}

/// Everything the shell does once something arrived, whichever way it waited: the link, the
/// consumer, the connected sockets and one write buffer.
pub(crate) struct Shell<'a, H> {
    link: &'a mut ExchangeLink,
    handler: &'a mut H,
    notices: &'a dyn Fn(Notice),
    sockets: [Option<Socket>; 2],
    out: Vec<u8>,
}

impl<'a, H: LinkHandler> Shell<'a, H> {
    fn new(link: &'a mut ExchangeLink, handler: &'a mut H, notices: &'a dyn Fn(Notice)) -> Self {
        Shell {
            link,
            handler,
            notices,
            sockets: [None, None],
            out: Vec::with_capacity(16 * 1024),
        }
    }

    /// A connection the link wants opened now, with the exchange's address.
    fn next_connect(&mut self) -> Option<(ConnId, SocketAddr)> {
        while let Some(id) = self.link.poll_connect(Instant::now()) {
            self.pass_notices();
            match resolve(self.link.endpoint()) {
                Ok(addr) => return Some((id, addr)),
                Err(e) => self.failed(id, &format!("{e:#}")),
            }
        }
        None
    }

    fn connected(&mut self, id: ConnId, socket: Socket) {
        self.sockets[id.index()] = Some(socket);
        self.link.connected(id, Instant::now(), realtime_ns());
    }

    /// The connection (or the attempt) `id` ended for `reason`.
    fn failed(&mut self, id: ConnId, reason: &str) {
        self.sockets[id.index()] = None;
        self.link
            .connection_lost(id, Instant::now(), realtime_ns(), reason);
    }

    fn is_connected(&self, id: ConnId) -> bool {
        self.sockets[id.index()].is_some()
    }

    /// Bytes read from connection `id`: through the link to the consumer, then its flush.
    fn input(&mut self, id: ConnId, bytes: &[u8]) {
        let rx_ns = realtime_ns();
        let now = Instant::now();
        let handler = &mut *self.handler;
        self.link.handle_input(id, now, rx_ns, bytes, &mut |event| {
            handler.on_event(event, now)
        });
        self.handler.flush();
    }

    /// Passes notices on, closes what the link asked to close, writes what it has to say.
    fn service(&mut self) {
        self.pass_notices();
        while let Some((id, reason)) = self.link.poll_close() {
            if let Some(socket) = self.sockets[id.index()].take() {
                self.final_write(id, &socket);
            }
            self.link
                .connection_lost(id, Instant::now(), realtime_ns(), &reason);
        }
        for id in ConnId::ALL {
            let Some(fd) = self.sockets[id.index()].as_ref().map(Socket::fd) else {
                continue;
            };
            if !self.link.wants_write(id) {
                continue;
            }
            self.out.clear();
            self.link.take_output(id, &mut self.out);
            if let Err(e) = write_all(fd, &self.out, None) {
                self.failed(id, &format!("writing to the exchange: {e}"));
            }
        }
        self.pass_notices();
    }

    /// When the link or the consumer next wants [`Shell::timers`].
    fn deadline(&self) -> Instant {
        match (self.link.poll_timeout(), self.handler.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => Instant::now() + IDLE_WAKEUP,
        }
    }

    fn timers(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        let down_since = self.link.down_since_ns();
        self.handler.handle_timeout(now, down_since);
    }

    /// The run is over: a polite close on every connection.
    fn stop(&mut self) {
        self.link.stop();
        for id in ConnId::ALL {
            if let Some(socket) = self.sockets[id.index()].take() {
                self.final_write(id, &socket);
                self.link
                    .connection_lost(id, Instant::now(), realtime_ns(), "stopped");
            }
        }
        self.pass_notices();
    }

    /// Writes what the link still has to say on connection `id` before it goes: above all the
    /// reply to the exchange's close frame, which RFC 6455 requires (servers other than our
    /// simulator log a client that just hangs up as an abnormal closure, 1006).
    fn final_write(&mut self, id: ConnId, socket: &Socket) {
        self.out.clear();
        self.link.take_output(id, &mut self.out);
        if !self.out.is_empty() {
            let _ = write_all(socket.fd(), &self.out, Some(FINAL_WRITE_TIMEOUT));
        }
    }

    fn pass_notices(&mut self) {
        while let Some(notice) = self.link.poll_notice() {
            (self.notices)(notice);
        }
    }
}

/// Writes all of `bytes` to a TCP socket, waiting (at most `timeout`, if given) while its send
/// buffer is full. What the link writes is small (handshakes, pongs, requests, closes), so this
/// normally takes one call.
fn write_all(fd: RawFd, mut bytes: &[u8], timeout: Option<Duration>) -> std::io::Result<()> {
    let deadline = timeout.map(|t| Instant::now() + t);
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live buffer of its length; MSG_NOSIGNAL: a closed peer is an
        // error, not a SIGPIPE.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            bytes = &bytes[n as usize..];
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => {}
            std::io::ErrorKind::WouldBlock => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                wait_writable(fd);
            }
            _ => return Err(e),
        }
    }
    Ok(())
}

/// Sleeps until `fd` can take more bytes (at most 10 ms).
fn wait_writable(fd: RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    unsafe { libc::poll(&mut pfd, 1, 10) };
}
