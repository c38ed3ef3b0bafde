//! The io_uring shell around [`Session`]: connect, move bytes, reconnect with capped backoff.
//!
//! Shared by the relay (whose handler frames and forwards) and the receiver's baseline mode
//! (whose handler accounts directly). The shell runs inside a tokio-uring runtime on one thread;
//! a reader task feeds socket bytes to the session and a writer task sends what the session
//! queues (pongs, paced SUBSCRIBEs), so one owner writes to the socket at a time.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use relay_wire::UpstreamGap;
use tokio::sync::Notify;
use tokio_uring::net::TcpStream;

use crate::clock::realtime_ns;
use crate::endpoint::{tls_client_config, Endpoint};
use crate::session::{Session, SessionConfig, SessionEvent, DEFAULT_CLIENT_MESSAGES_PER_SEC};

/// First reconnect delay; doubled per failed attempt up to the configured maximum.
const INITIAL_RECONNECT_DELAY: Duration = Duration::from_millis(250);
/// A connection that lived this long resets the backoff (Binance allows 300 attempts / 5 min).
const HEALTHY_CONNECTION: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that is going down may take to write what the session still queued
/// (the reply to the exchange's close frame).
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// Bytes read per socket read; one read may carry many small frames.
const READ_BUFFER: usize = 64 * 1024;

/// What the link tells its consumer, per message and per connection.
pub trait LinkHandler {
    /// A WebSocket connection is open; `generation` counts connections from 1.
    /// `gap` is set after a reconnect: when the previous connection ended and this one opened.
    fn on_open(&mut self, generation: u32, gap: Option<UpstreamGap>);
    /// One market-data message, with the CLOCK_REALTIME ns at which its bytes were read.
    fn on_message(&mut self, payload: &[u8], binary: bool, rx_ns: u64);
    /// Called after each socket read has been consumed: send what `on_message` queued.
    fn flush(&mut self) -> impl Future<Output = ()>;
}

/// Connection life-cycle notices, for the progress reporter (never printed from the hot thread).
#[derive(Debug, Clone)]
pub enum LinkEvent {
    Connecting { url: String },
    Open { generation: u32 },
    Reply(String),
    ServerShutdown,
    Closed { reason: String },
    Retrying { delay: Duration },
}

pub struct LinkConfig {
    pub session: SessionConfig,
    pub reconnect_max_delay: Duration,
}

impl LinkConfig {
    /// A link to `endpoint` trusting Mozilla's roots plus `ca_file`, subscribing to `streams`.
    pub fn new(
        endpoint: &Endpoint,
        ca_file: Option<&Path>,
        streams: &[String],
        reconnect_max_delay: Duration,
    ) -> anyhow::Result<LinkConfig> {
        let tls = if endpoint.tls {
            Some(tls_client_config(ca_file)?)
        } else {
            None
        };
        Ok(LinkConfig {
            session: SessionConfig {
                endpoint: endpoint.clone(),
                tls,
                subscribe: streams.to_vec(),
                client_messages_per_sec: DEFAULT_CLIENT_MESSAGES_PER_SEC,
            },
            reconnect_max_delay,
        })
    }
}

/// Runs the link, with `background` work (timers, reports) beside it, until `until` resolves;
/// then closes the connection politely (WebSocket close frame, TLS close_notify) and returns what
/// `until` returned.
pub async fn run_until<H: LinkHandler>(
    config: &LinkConfig,
    handler: &mut H,
    events: &impl Fn(LinkEvent),
    background: impl Future<Output = ()>,
    until: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let stop = Stop::default();
    let watcher = async {
        let result = until.await;
        stop.request();
        result
    };
    let work = async {
        tokio::select! {
            _ = run(config, handler, events, &stop) => {}
            _ = background => {}
        }
    };
    let (result, ()) = tokio::join!(watcher, work);
    result
}

/// What outlives one connection: how many opened, and since when the exchange is out of reach.
#[derive(Default)]
struct Upstream {
    generation: u32,
    down_since: Option<u64>,
}

/// A request to end the link politely: the open connection is closed with a WebSocket close
/// frame (and TLS close_notify) instead of just being dropped.
#[derive(Default)]
struct Stop {
    requested: Cell<bool>,
    notify: Notify,
}

impl Stop {
    fn request(&self) {
        self.requested.set(true);
        self.notify.notify_waiters();
    }

    fn requested(&self) -> bool {
        self.requested.get()
    }

    /// Resolves once [`Stop::request`] was called (at once if it already was).
    async fn wait(&self) {
        while !self.requested.get() {
            self.notify.notified().await;
        }
    }
}

/// Holds the exchange connection, reconnecting as needed, until `stop` is requested.
async fn run<H: LinkHandler>(
    config: &LinkConfig,
    handler: &mut H,
    events: &impl Fn(LinkEvent),
    stop: &Stop,
) {
    let mut upstream = Upstream::default();
    let mut delay = INITIAL_RECONNECT_DELAY;
    while !stop.requested() {
        events(LinkEvent::Connecting {
            url: config.session.endpoint.url.to_string(),
        });
        let started = Instant::now();
        let outcome = connect_and_drive(config, handler, events, &mut upstream, stop).await;
        if stop.requested() {
            events(LinkEvent::Closed {
                reason: "stopped".to_string(),
            });
            return;
        }
        let reason = match outcome {
            Ok(()) => "connection ended".to_string(),
            Err(e) => format!("{e:#}"),
        };
        upstream.down_since.get_or_insert_with(realtime_ns);
        events(LinkEvent::Closed { reason });
        if started.elapsed() >= HEALTHY_CONNECTION {
            delay = INITIAL_RECONNECT_DELAY;
        }
        events(LinkEvent::Retrying { delay });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait() => return,
        }
        delay = (delay * 2).min(config.reconnect_max_delay.max(INITIAL_RECONNECT_DELAY));
    }
}

async fn connect_and_drive<H: LinkHandler>(
    config: &LinkConfig,
    handler: &mut H,
    events: &impl Fn(LinkEvent),
    upstream: &mut Upstream,
    stop: &Stop,
) -> anyhow::Result<()> {
    let addr = config.session.endpoint.resolve()?;
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr));
    let stream = tokio::select! {
        connected = connect => {
            connected.map_err(|_| anyhow::anyhow!("connecting to {addr} timed out"))??
        }
        _ = stop.wait() => return Ok(()),
    };
    stream.set_nodelay(true)?;
    let session = Rc::new(RefCell::new(Session::start(&config.session)?));
    let stream = Rc::new(stream);
    let wake_writer = Rc::new(Notify::new());
    let closing = Rc::new(Cell::new(false));
    let mut writer = tokio_uring::spawn(write_loop(
        stream.clone(),
        session.clone(),
        wake_writer.clone(),
        closing.clone(),
    ));
    wake_writer.notify_one();

    let result = read_loop(
        &stream,
        &session,
        &wake_writer,
        handler,
        events,
        upstream,
        stop,
    )
    .await;
    // Let the writer send what the session queued last before the connection goes: above all the
    // reply to the exchange's close frame, which RFC 6455 requires (servers other than our
    // simulator log a client that just hangs up as an abnormal closure, 1006).
    closing.set(true);
    wake_writer.notify_one();
    if tokio::time::timeout(FINAL_WRITE_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
        let _ = writer.await;
    }
    result
}

async fn read_loop<H: LinkHandler>(
    stream: &TcpStream,
    session: &RefCell<Session>,
    wake_writer: &Notify,
    handler: &mut H,
    events: &impl Fn(LinkEvent),
    upstream: &mut Upstream,
    stop: &Stop,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let (read, returned) = tokio::select! {
            read = stream.read(buf) => read,
            _ = stop.wait() => {
                // Say goodbye; the writer sends it before the connection goes.
                session.borrow_mut().close();
                wake_writer.notify_one();
                return Ok(());
            }
        };
        buf = returned;
        let n = read?;
        if n == 0 {
            anyhow::bail!("the exchange closed the TCP connection");
        }
        let rx_ns = realtime_ns();
        let mut shutdown = false;
        let mut outcome = Ok(());
        {
            let mut session = session.borrow_mut();
            let handled =
                session.handle_input(&buf[..n], Instant::now(), &mut |event| match event {
                    SessionEvent::Open => {
                        upstream.generation += 1;
                        let up_at_ns = realtime_ns();
                        let gap = upstream.down_since.take().map(|down_at_ns| UpstreamGap {
                            down_at_ns,
                            up_at_ns,
                        });
                        handler.on_open(upstream.generation, gap);
                        events(LinkEvent::Open {
                            generation: upstream.generation,
                        });
                    }
                    SessionEvent::Data { payload, binary } => {
                        handler.on_message(payload, binary, rx_ns)
                    }
                    SessionEvent::Reply(text) => {
                        events(LinkEvent::Reply(String::from_utf8_lossy(text).into_owned()));
                    }
                    SessionEvent::ServerShutdown => shutdown = true,
                    SessionEvent::Ping => {}
                });
            if let Err(e) = handled {
                outcome = Err(e);
            }
            if session.wants_write() {
                wake_writer.notify_one();
            }
        }
        handler.flush().await;
        outcome?;
        if shutdown {
            events(LinkEvent::ServerShutdown);
            anyhow::bail!("the exchange announced serverShutdown; reconnecting ahead of it");
        }
    }
}

/// Writes what the session queues until the connection ends; once `closing` is set it only
/// drains what is left (no new paced requests) and returns.
async fn write_loop(
    stream: Rc<TcpStream>,
    session: Rc<RefCell<Session>>,
    wake: Rc<Notify>,
    closing: Rc<Cell<bool>>,
) -> anyhow::Result<()> {
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        let wakeup = {
            let mut session = session.borrow_mut();
            if !closing.get() {
                session.on_timer(Instant::now())?;
            }
            session.take_output(&mut out);
            session.next_wakeup()
        };
        if out.is_empty() && closing.get() {
            return Ok(());
        }
        if !out.is_empty() {
            let (written, returned) = stream.write_all(out).await;
            out = returned;
            out.clear();
            written?;
            continue;
        }
        let sleep_until = wakeup.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(sleep_until.into()) => {}
        }
    }
}
