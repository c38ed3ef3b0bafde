//! The simulator's async side: accept loop, handshakes, and one task per connection.
//!
//! A connection task owns its socket and does everything in one `select!` loop (inbound frames,
//! test controls, a ~1 ms pacing tick), so there are no locks on the data path: the only shared
//! state is atomics and the per-stream counter registry, touched once per batch.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use relay_core::binance::{self, MAX_STREAMS_PER_CONNECTION};

use super::streams::{self, Generator, Route};
use super::{SimConfig, SimStats};

/// TLS + WebSocket handshake must finish within this, so idle TCP connects do not pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Binance's inbound limit: more than this many client messages within [`INBOUND_WINDOW`]
/// close the connection.
const INBOUND_LIMIT: usize = binance::INBOUND_MESSAGES_PER_SEC as usize;
const INBOUND_WINDOW: Duration = Duration::from_secs(1);
/// Per stream per tick; a larger backlog continues on the next tick without sleeping, so a slow
/// client cannot starve inbound handling and pings.
const MAX_BATCH: u64 = 2048;
/// Pacing tick while streams are active (the brief's "sleep ~1 ms").
const TICK: Duration = Duration::from_millis(1);
/// Tick while nothing is due (no streams, or `count` reached); only pings need attention then.
const IDLE_TICK: Duration = Duration::from_millis(5);
/// How long a polite close (close frame) may take before the socket is dropped anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Test controls fanned out to every connection task.
#[derive(Clone, Copy, Debug)]
pub(super) enum Control {
    /// Drop the socket without a close frame.
    Drop,
    /// Send `serverShutdown`, then close after the grace period.
    ServerShutdown,
}

/// Live counters; [`Shared::snapshot`] turns them into a [`SimStats`].
#[derive(Default)]
pub(super) struct Counters {
    pub data_messages: AtomicU64,
    pub tcp_accepted: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub pings_sent: AtomicU64,
    pub pongs_received: AtomicU64,
    pub subscribe_requests: AtomicU64,
    pub unsubscribe_requests: AtomicU64,
    pub invalid_requests: AtomicU64,
    pub closed_rate_limit: AtomicU64,
    pub closed_pong_timeout: AtomicU64,
    pub closed_stalled: AtomicU64,
    pub dropped: AtomicU64,
    pub server_shutdowns_sent: AtomicU64,
}

/// Message `n` of every stream is due at a fixed offset from the simulator's start, the same for
/// all connections. That makes ids global per stream (two clients see the same ids, and a client
/// that reconnects sees a jump equal to what it missed) without any cross-connection state.
pub(super) struct Schedule {
    start: Instant,
    rate: f64,
    burst_size: u64,
    burst_interval: Duration,
}

impl Schedule {
    /// Number of messages per stream due since start at `now`.
    pub fn due(&self, now: Instant) -> u64 {
        let t = now.saturating_duration_since(self.start);
        // `as` saturates and maps NaN to 0; the rate is validated finite and >= 0 at start.
        let mut n = (t.as_secs_f64() * self.rate) as u64;
        if self.burst_size > 0 && !self.burst_interval.is_zero() {
            let bursts = (t.as_nanos() / self.burst_interval.as_nanos()) as u64;
            n = n.saturating_add(bursts.saturating_mul(self.burst_size));
        }
        n
    }
}

pub(super) struct Shared {
    pub cfg: SimConfig,
    pub schedule: Schedule,
    pub stats: Counters,
    per_stream: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    pub control: broadcast::Sender<Control>,
    next_conn_id: AtomicU64,
}

impl Shared {
    pub fn new(cfg: SimConfig) -> Shared {
        let schedule = Schedule {
            start: Instant::now(),
            rate: cfg.rate_per_stream,
            burst_size: u64::from(cfg.burst_size),
            burst_interval: cfg.burst_interval,
        };
        Shared {
            cfg,
            schedule,
            stats: Counters::default(),
            per_stream: Mutex::new(BTreeMap::new()),
            control: broadcast::channel(64).0,
            next_conn_id: AtomicU64::new(1),
        }
    }

    fn stream_counter(&self, name: &str) -> Arc<AtomicU64> {
        let mut map = self.per_stream.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    pub fn snapshot(&self) -> SimStats {
        let s = &self.stats;
        let per_stream = self
            .per_stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Relaxed)))
            .collect();
        SimStats {
            data_messages: s.data_messages.load(Relaxed),
            per_stream,
            tcp_accepted: s.tcp_accepted.load(Relaxed),
            connections_accepted: s.connections_accepted.load(Relaxed),
            connections_open: s.connections_open.load(Relaxed),
            handshakes_failed: s.handshakes_failed.load(Relaxed),
            pings_sent: s.pings_sent.load(Relaxed),
            pongs_received: s.pongs_received.load(Relaxed),
            subscribe_requests: s.subscribe_requests.load(Relaxed),
            unsubscribe_requests: s.unsubscribe_requests.load(Relaxed),
            invalid_requests: s.invalid_requests.load(Relaxed),
            closed_rate_limit: s.closed_rate_limit.load(Relaxed),
            closed_pong_timeout: s.closed_pong_timeout.load(Relaxed),
            closed_stalled: s.closed_stalled.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            server_shutdowns_sent: s.server_shutdowns_sent.load(Relaxed),
        }
    }

    fn log(&self, msg: std::fmt::Arguments<'_>) {
        if self.cfg.log {
            eprintln!("feed-sim: {msg}");
        }
    }
}

/// Accepts until `shutdown` fires (or its sender is dropped). Connection tasks are not joined:
/// the caller drops the runtime, which cancels them and closes their sockets.
pub(super) async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            shared.log(format_args!("cannot register listener: {e}"));
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    shared.stats.tcp_accepted.fetch_add(1, Relaxed);
                    let _ = tcp.set_nodelay(true);
                    // Subscribe before the handshake so a control sent meanwhile still applies.
                    let control = shared.control.subscribe();
                    tokio::spawn(connection(shared.clone(), tls.clone(), tcp, peer, control));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    shared.log(format_args!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn connection(
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    tcp: TcpStream,
    peer: SocketAddr,
    control: broadcast::Receiver<Control>,
) {
    let Some(acceptor) = tls else {
        return session(shared, tcp, peer, control).await;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => session(shared, stream, peer, control).await,
        Ok(Err(e)) => {
            shared.stats.handshakes_failed.fetch_add(1, Relaxed);
            shared.log(format_args!(
                "TLS handshake from {peer} failed: {e} (does the client trust the sim's CA file?)"
            ));
        }
        Err(_) => {
            shared.stats.handshakes_failed.fetch_add(1, Relaxed);
            shared.log(format_args!("TLS handshake from {peer} timed out"));
        }
    }
}

fn ws_config() -> WebSocketConfig {
    // Clients only send small control messages; cap what they can make us buffer.
    WebSocketConfig::default()
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10))
}

async fn session<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    control: broadcast::Receiver<Control>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut route: Option<Route> = None;
    let mut rejected: Option<String> = None;
    // The error type is tungstenite's; it is built once per rejected handshake.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match streams::parse_route(req.uri().path(), req.uri().query()) {
            Ok(r) => {
                route = Some(r);
                Ok(resp)
            }
            Err(e) => {
                rejected = Some(format!("{} ({})", req.uri(), e.message()));
                let mut err = ErrorResponse::new(Some(format!("{}\n", e.message())));
                *err.status_mut() =
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
                Err(err)
            }
        }
    };
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config()));
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            shared.stats.handshakes_failed.fetch_add(1, Relaxed);
            match rejected {
                Some(why) => shared.log(format_args!("rejected {peer}: {why}")),
                None => shared.log(format_args!("WebSocket handshake from {peer} failed: {e}")),
            }
            return;
        }
        Err(_) => {
            shared.stats.handshakes_failed.fetch_add(1, Relaxed);
            shared.log(format_args!("WebSocket handshake from {peer} timed out"));
            return;
        }
    };
    let Some(route) = route else {
        return; // unreachable: a successful handshake ran the callback's Ok arm
    };
    shared.stats.connections_accepted.fetch_add(1, Relaxed);
    shared.stats.connections_open.fetch_add(1, Relaxed);
    let _open = OpenGuard(shared.clone());
    let id = shared.next_conn_id.fetch_add(1, Relaxed);
    let mut conn = Conn::new(shared, id, peer, route);
    conn.run(ws, control).await;
}

/// Keeps `connections_open` right however the task ends (including runtime shutdown).
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.stats.connections_open.fetch_sub(1, Relaxed);
    }
}

/// One subscribed stream on one connection.
struct Active {
    name: String,
    generator: Generator,
    /// Index (in the global schedule) of the next message to send; the id is this + 1.
    next_slot: u64,
    /// Data messages of this stream sent on this connection (for `count`).
    sent: u64,
    counter: Arc<AtomicU64>,
}

/// How a connection ends.
enum End {
    /// Drop the socket: no close frame, like a crashed or cut connection.
    Abrupt,
    /// Send a close frame, then drop.
    Close(CloseCode, &'static str),
    /// The client closed or the socket failed; flush what is queued (e.g. the close reply).
    Gone,
    /// The client stopped reading; a close frame could not get through either, so drop.
    Stalled,
}

/// Outcome of a write phase run under [`guard`].
enum Guarded<T> {
    Done(T),
    /// `drop_connections()` arrived meanwhile.
    Dropped,
    /// The write did not complete within the stall limit.
    Stalled,
}

/// Runs one write phase while still obeying `Drop` controls (a `ServerShutdown` is remembered
/// for after the write), and gives up if the write is stuck for `stall`.
async fn guard<T>(
    write: impl std::future::Future<Output = Result<T, WsError>>,
    control: &mut broadcast::Receiver<Control>,
    shutdown_requested: &mut bool,
    stall: Duration,
) -> Result<Guarded<T>, WsError> {
    tokio::pin!(write);
    let stall = tokio::time::sleep(stall);
    tokio::pin!(stall);
    loop {
        tokio::select! {
            biased;
            done = &mut write => return done.map(Guarded::Done),
            c = control.recv() => match c {
                Ok(Control::Drop) | Err(RecvError::Closed) => return Ok(Guarded::Dropped),
                Ok(Control::ServerShutdown) => *shutdown_requested = true,
                Err(RecvError::Lagged(_)) => {}
            },
            _ = &mut stall => return Ok(Guarded::Stalled),
        }
    }
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    combined: bool,
    micros: bool,
    streams: Vec<Active>,
    /// Data messages sent on this connection (for `drop_after`).
    sent_total: u64,
    /// Arrival times of the last [`INBOUND_LIMIT`] client messages.
    inbound: VecDeque<Instant>,
    /// Pings not yet answered, oldest first.
    outstanding_pings: VecDeque<(Bytes, Instant)>,
    next_ping: Instant,
    shutdown_at: Option<Instant>,
}

impl Conn {
    fn new(shared: Arc<Shared>, id: u64, peer: SocketAddr, route: Route) -> Conn {
        let next_ping = Instant::now() + shared.cfg.ping_interval;
        let mut conn = Conn {
            shared,
            id,
            peer,
            combined: route.combined,
            micros: route.micros,
            streams: Vec::new(),
            sent_total: 0,
            inbound: VecDeque::with_capacity(INBOUND_LIMIT + 1),
            outstanding_pings: VecDeque::new(),
            next_ping,
            shutdown_at: None,
        };
        let now = Instant::now();
        for name in route.streams {
            conn.add_stream(name, now);
        }
        conn
    }

    fn add_stream(&mut self, name: String, now: Instant) {
        if self.streams.iter().any(|s| s.name == name) {
            return;
        }
        let Some(kind) = streams::parse_stream(&name) else {
            return;
        };
        let cfg = &self.shared.cfg;
        // Seeded per (sim seed, stream, connection): repeatable runs, distinct walks per client.
        let seed = cfg.seed ^ self.id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let generator = Generator::new(&name, kind, seed, cfg.depth_levels);
        self.streams.push(Active {
            counter: self.shared.stream_counter(&name),
            generator,
            // Start with the next message not yet due: no replay, so ids never repeat.
            next_slot: self.shared.schedule.due(now),
            sent: 0,
            name,
        });
    }

    fn event_time(&self) -> u64 {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if self.micros {
            d.as_micros() as u64
        } else {
            d.as_millis() as u64
        }
    }

    async fn run<S>(
        &mut self,
        mut ws: WebSocketStream<S>,
        mut control: broadcast::Receiver<Control>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let end = match self.drive(&mut ws, &mut control).await {
            Ok(end) => end,
            Err(_) => End::Gone,
        };
        match end {
            End::Abrupt => {
                self.shared.stats.dropped.fetch_add(1, Relaxed);
                drop(ws);
            }
            End::Stalled => drop(ws),
            End::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
            }
            End::Gone => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.flush()).await;
            }
        }
    }

    async fn drive<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        control: &mut broadcast::Receiver<Control>,
    ) -> Result<End, WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Every write is guarded: a client that stops reading blocks the socket, and the test
        // controls and the stall limit must still reach such a connection.
        let stall = self.shared.cfg.pong_timeout;
        let mut shutdown_requested = false;
        macro_rules! guarded {
            ($write:expr) => {
                match guard($write, control, &mut shutdown_requested, stall).await? {
                    Guarded::Done(value) => value,
                    Guarded::Dropped => return Ok(End::Abrupt),
                    Guarded::Stalled => return Ok(self.stalled()),
                }
            };
        }
        loop {
            if shutdown_requested {
                shutdown_requested = false;
                guarded!(self.server_shutdown(ws));
            }
            let now = Instant::now();
            if self.shutdown_at.is_some_and(|at| now >= at) {
                return Ok(End::Close(CloseCode::Away, "server shutdown"));
            }
            if let Some(end) = guarded!(self.keepalive(ws, now)) {
                return Ok(end);
            }
            let backlog = match guarded!(self.send_due(ws)) {
                Batch::DropNow => return Ok(End::Abrupt),
                Batch::Backlog => true,
                Batch::Done => false,
            };
            let wait = if backlog {
                Duration::ZERO
            } else if self.streaming() {
                TICK
            } else {
                IDLE_TICK
            };
            tokio::select! {
                biased;
                c = control.recv() => match c {
                    Ok(Control::Drop) | Err(RecvError::Closed) => return Ok(End::Abrupt),
                    Ok(Control::ServerShutdown) => shutdown_requested = true,
                    Err(RecvError::Lagged(_)) => {}
                },
                inbound = ws.next() => match inbound {
                    None | Some(Err(_)) => return Ok(End::Gone),
                    Some(Ok(msg)) => {
                        if let Some(end) = guarded!(self.on_inbound(ws, msg)) {
                            return Ok(end);
                        }
                    }
                },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn stalled(&self) -> End {
        self.shared.stats.closed_stalled.fetch_add(1, Relaxed);
        self.shared.log(format_args!(
            "dropping {}: client has not read for {:?}",
            self.peer, self.shared.cfg.pong_timeout
        ));
        End::Stalled
    }

    /// Whether any stream still has messages to send (so the fast tick is worth it).
    fn streaming(&self) -> bool {
        let count = self.shared.cfg.count;
        self.streams
            .iter()
            .any(|s| count.is_none_or(|c| s.sent < c))
    }

    /// Sends due pings and enforces the pong deadline.
    async fn keepalive<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        now: Instant,
    ) -> Result<Option<End>, WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let cfg = &self.shared.cfg;
        if let Some((_, sent)) = self.outstanding_pings.front() {
            if now.duration_since(*sent) >= cfg.pong_timeout {
                self.shared.stats.closed_pong_timeout.fetch_add(1, Relaxed);
                self.shared.log(format_args!(
                    "closing {}: no pong within {:?}",
                    self.peer, cfg.pong_timeout
                ));
                return Ok(Some(End::Close(CloseCode::Policy, "pong timeout")));
            }
        }
        if now >= self.next_ping {
            // Payload: our realtime ms, like an opaque token the client must echo.
            let payload = Bytes::from(self.event_time_ms().to_string());
            ws.send(Message::Ping(payload.clone())).await?;
            self.shared.stats.pings_sent.fetch_add(1, Relaxed);
            self.outstanding_pings.push_back((payload, now));
            self.next_ping = now + cfg.ping_interval;
        }
        Ok(None)
    }

    fn event_time_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64
    }

    async fn server_shutdown<S>(&mut self, ws: &mut WebSocketStream<S>) -> Result<(), WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.shutdown_at.is_some() {
            return Ok(());
        }
        // Not a stream event, so never wrapped; `E` follows the connection's timeUnit.
        let text = format!("{{\"e\":\"serverShutdown\",\"E\":{}}}", self.event_time());
        ws.send(Message::text(text)).await?;
        self.shared
            .stats
            .server_shutdowns_sent
            .fetch_add(1, Relaxed);
        self.shutdown_at = Some(Instant::now() + self.shared.cfg.shutdown_grace);
        Ok(())
    }

    /// Sends every message due by now (up to [`MAX_BATCH`] per stream), then flushes once.
    async fn send_due<S>(&mut self, ws: &mut WebSocketStream<S>) -> Result<Batch, WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let due = self.shared.schedule.due(Instant::now());
        let count = self.shared.cfg.count;
        let drop_after = self.shared.cfg.drop_after;
        let unit_per_ms = if self.micros { 1000 } else { 1 };
        let mut result = Batch::Done;
        let mut fed = false;
        'streams: for i in 0..self.streams.len() {
            let mut n = 0u64;
            while self.streams[i].next_slot < due {
                if count.is_some_and(|c| self.streams[i].sent >= c) {
                    break;
                }
                if drop_after.is_some_and(|d| self.sent_total >= d) {
                    result = Batch::DropNow;
                    break 'streams;
                }
                if n >= MAX_BATCH {
                    result = Batch::Backlog;
                    break;
                }
                let event_time = self.event_time();
                let combined = self.combined;
                let st = &mut self.streams[i];
                let mut text = String::with_capacity(256);
                if combined {
                    text.push_str("{\"stream\":\"");
                    text.push_str(&st.name);
                    text.push_str("\",\"data\":");
                }
                st.generator
                    .write(&mut text, st.next_slot + 1, event_time, unit_per_ms);
                if combined {
                    text.push('}');
                }
                st.next_slot += 1;
                st.sent += 1;
                self.sent_total += 1;
                n += 1;
                fed = true;
                ws.feed(Message::text(text)).await?;
                // Counted per message so the stats stay exact if the batch is cut short.
                st.counter.fetch_add(1, Relaxed);
                self.shared.stats.data_messages.fetch_add(1, Relaxed);
            }
        }
        if fed {
            ws.flush().await?;
        }
        if matches!(result, Batch::Done) && drop_after.is_some_and(|d| self.sent_total >= d) {
            result = Batch::DropNow;
        }
        Ok(result)
    }

    /// Handles one client frame. Every data-bearing or control frame counts toward Binance's
    /// inbound limit; close frames do not.
    async fn on_inbound<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        msg: Message,
    ) -> Result<Option<End>, WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Message::Close(_) = msg {
            return Ok(Some(End::Gone));
        }
        if let Message::Frame(_) = msg {
            return Ok(None); // never produced by reads
        }
        let now = Instant::now();
        if self.inbound.len() == INBOUND_LIMIT {
            let oldest = self.inbound.pop_front().unwrap_or(now);
            if now.duration_since(oldest) < INBOUND_WINDOW {
                self.shared.stats.closed_rate_limit.fetch_add(1, Relaxed);
                self.shared.log(format_args!(
                    "closing {}: more than {INBOUND_LIMIT} client messages within {INBOUND_WINDOW:?} (Binance's limit)",
                    self.peer
                ));
                return Ok(Some(End::Close(CloseCode::Policy, "Too many requests")));
            }
        }
        self.inbound.push_back(now);
        match msg {
            Message::Text(text) => {
                let reply = self.request(text.as_str());
                ws.send(Message::text(reply)).await?;
            }
            Message::Binary(data) => {
                self.shared.stats.invalid_requests.fetch_add(1, Relaxed);
                self.shared.log(format_args!(
                    "ignoring {}-byte binary frame from {}",
                    data.len(),
                    self.peer
                ));
            }
            Message::Ping(_) => {
                // tungstenite queued the pong; push it out now even if no data is flowing.
                ws.flush().await?;
            }
            Message::Pong(payload) => {
                self.shared.stats.pongs_received.fetch_add(1, Relaxed);
                if let Some(pos) = self
                    .outstanding_pings
                    .iter()
                    .position(|(p, _)| *p == payload)
                {
                    // A pong answers its ping and every older one.
                    self.outstanding_pings.drain(..=pos);
                }
            }
            Message::Close(_) | Message::Frame(_) => {}
        }
        Ok(None)
    }

    /// Answers one JSON request like Binance's stream API; never fails, errors become replies.
    fn request(&mut self, text: &str) -> String {
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
            return self.invalid(&Value::Null, "Invalid request");
        };
        let id = match obj.get("id") {
            None => Value::Null,
            Some(v @ (Value::Null | Value::String(_))) => v.clone(),
            Some(Value::Number(n)) if n.is_u64() => Value::Number(n.clone()),
            Some(_) => return self.invalid(&Value::Null, "Invalid request"),
        };
        let Some(method) = obj.get("method").and_then(Value::as_str) else {
            return self.invalid(&id, "Invalid request");
        };
        match method {
            "SUBSCRIBE" | "UNSUBSCRIBE" => {
                let subscribe = method == "SUBSCRIBE";
                let counter = if subscribe {
                    &self.shared.stats.subscribe_requests
                } else {
                    &self.shared.stats.unsubscribe_requests
                };
                counter.fetch_add(1, Relaxed);
                let Some(params) = obj.get("params").and_then(Value::as_array) else {
                    return self.invalid(&id, "Invalid request");
                };
                let mut names = Vec::with_capacity(params.len());
                for p in params {
                    match p.as_str() {
                        Some(name) if streams::parse_stream(name).is_some() => names.push(name),
                        _ => {
                            let msg = format!("Invalid request: unknown stream {p}");
                            return self.invalid(&id, &msg);
                        }
                    }
                }
                if subscribe {
                    let new = names
                        .iter()
                        .filter(|n| !self.streams.iter().any(|s| s.name == **n))
                        .count();
                    if self.streams.len() + new > MAX_STREAMS_PER_CONNECTION {
                        let msg = format!(
                            "Invalid request: at most {} streams per connection",
                            MAX_STREAMS_PER_CONNECTION
                        );
                        return self.invalid(&id, &msg);
                    }
                    let now = Instant::now();
                    for name in names {
                        self.add_stream(name.to_owned(), now);
                    }
                } else {
                    self.streams.retain(|s| !names.contains(&s.name.as_str()));
                }
                format!("{{\"result\":null,\"id\":{id}}}")
            }
            "LIST_SUBSCRIPTIONS" => {
                let names: Vec<&str> = self.streams.iter().map(|s| s.name.as_str()).collect();
                let list = serde_json::to_string(&names).unwrap_or_else(|_| "[]".into());
                format!("{{\"result\":{list},\"id\":{id}}}")
            }
            _ => self.invalid(&id, "Invalid request"),
        }
    }

    fn invalid(&self, id: &Value, msg: &str) -> String {
        self.shared.stats.invalid_requests.fetch_add(1, Relaxed);
        let msg = Value::String(msg.to_owned());
        format!("{{\"error\":{{\"code\":2,\"msg\":{msg}}},\"id\":{id}}}")
    }
}

enum Batch {
    /// Everything due was sent.
    Done,
    /// More is due than one batch allows; come back without sleeping.
    Backlog,
    /// `drop_after` reached: drop the connection now.
    DropNow,
}
