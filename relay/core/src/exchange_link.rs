//! The exchange link: one [`Session`] at a time to the exchange, reconnecting with [`Backoff`] and
//! counting connections with [`Upstream`], as a state machine the I/O shell drives.
//!
//! The shell owns the TCP socket and nothing else:
//!
//! 1. When [`ExchangeLink::poll_connect`] says so, it opens a TCP connection and reports
//!    [`ExchangeLink::connected`] (or [`ExchangeLink::connection_lost`] if that failed).
//! 2. It feeds every read to [`ExchangeLink::handle_input`], which reports the connection opening
//!    and each market-data message as [`LinkEvent`]s, and writes what
//!    [`ExchangeLink::take_output`] hands back (the handshake, pongs, paced SUBSCRIBEs, the close).
//! 3. When the socket ends it calls [`ExchangeLink::connection_lost`]; when `handle_input`
//!    answers [`Flow::Close`] (the exchange closed the WebSocket, announced `serverShutdown`, or
//!    sent garbage) it writes the remaining output, closes the socket and calls it too.
//! 4. It wakes at [`ExchangeLink::poll_timeout`] to call [`ExchangeLink::handle_timeout`].
//!
//! Connection life-cycle [`Notice`]s (for a progress reporter, never the hot path) queue up in
//! [`ExchangeLink::poll_notice`]. Nothing here reads a clock: `now` (timers) and `now_ns`
//! (CLOCK_REALTIME, for the wire's upstream-gap times) come from the caller.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use relay_wire::UpstreamGap;

use crate::binance::Endpoint;
use crate::reconnect::{Backoff, Upstream};
use crate::session::{Session, SessionConfig, SessionEvent};

/// Notices kept for a reporter that falls behind; older ones are dropped.
const MAX_NOTICES: usize = 256;

/// What the link reports to its consumer while it consumes input.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEvent<'a> {
    /// A WebSocket connection is open; `generation` counts connections from 1. After a
    /// reconnect, `gap` says from when to when the exchange was out of reach.
    Open {
        generation: u32,
        gap: Option<UpstreamGap>,
    },
    /// One market-data message, with the CLOCK_REALTIME ns at which its bytes were read.
    Message {
        payload: &'a [u8],
        binary: bool,
        rx_ns: u64,
    },
}

/// Connection life-cycle notices, for the progress reporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Connecting { url: String },
    Open { generation: u32 },
    Reply(String),
    ServerShutdown,
    Closed { reason: String },
    Retrying { delay: Duration },
}

/// What the shell does with the socket after [`ExchangeLink::handle_input`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Write what is left of the output, then close the connection and report
    /// [`ExchangeLink::connection_lost`] with this reason.
    Close { reason: String },
}

enum Connection {
    /// No connection; the next attempt is due when the backoff says (at once at the start).
    Down {
        first: bool,
    },
    /// The shell is opening a TCP connection.
    Connecting,
    Up(Box<Session>),
}

/// The exchange link state machine (see the module docs).
pub struct ExchangeLink {
    config: SessionConfig,
    connection: Connection,
    backoff: Backoff,
    upstream: Upstream,
    stopping: bool,
    notices: VecDeque<Notice>,
    /// Market-data messages delivered, over every connection.
    messages: u64,
    /// Why the last connection (or attempt) ended, if it did for a reason other than stopping.
    last_failure: Option<String>,
}

impl ExchangeLink {
    /// A link that will connect at once, with reconnect delays capped at `reconnect_max_delay`.
    pub fn new(config: SessionConfig, reconnect_max_delay: Duration) -> ExchangeLink {
        ExchangeLink {
            config,
            connection: Connection::Down { first: true },
            backoff: Backoff::new(reconnect_max_delay),
            upstream: Upstream::default(),
            stopping: false,
            notices: VecDeque::new(),
            messages: 0,
            last_failure: None,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.config.endpoint
    }

    /// True when the shell should open a TCP connection now; the link is then connecting.
    pub fn poll_connect(&mut self, now: Instant) -> bool {
        let due = match self.connection {
            Connection::Down { first } => {
                !self.stopping && (first || self.backoff.handle_timeout(now))
            }
            _ => false,
        };
        if due {
            self.connection = Connection::Connecting;
            self.backoff.attempt(now);
            self.notice(Notice::Connecting {
                url: self.config.endpoint.url.to_string(),
            });
        }
        due
    }

    /// The TCP connection is up: the session starts and its first output is ready.
    pub fn connected(&mut self, now: Instant, now_ns: u64) {
        match Session::start(&self.config) {
            Ok(session) => self.connection = Connection::Up(Box::new(session)),
            Err(e) => self.connection_lost(now, now_ns, &e.to_string()),
        }
    }

    /// The connection (or the attempt) ended at `now` for `reason`: schedules the retry.
    pub fn connection_lost(&mut self, now: Instant, now_ns: u64, reason: &str) {
        self.connection = Connection::Down { first: false };
        if self.stopping {
            self.notice(Notice::Closed {
                reason: "stopped".into(),
            });
            return;
        }
        self.upstream.lost(now_ns);
        self.last_failure = Some(reason.to_string());
        self.notice(Notice::Closed {
            reason: reason.to_string(),
        });
        let delay = self.backoff.ended(now);
        self.notice(Notice::Retrying { delay });
    }

    /// Consumes bytes read from the socket at `rx_ns`, reporting what they complete.
    pub fn handle_input(
        &mut self,
        now: Instant,
        rx_ns: u64,
        bytes: &[u8],
        on_event: &mut impl FnMut(LinkEvent<'_>),
    ) -> Flow {
        let Connection::Up(session) = &mut self.connection else {
            return Flow::Close {
                reason: "input without a connection".into(),
            };
        };
        let upstream = &mut self.upstream;
        let notices = &mut self.notices;
        let messages = &mut self.messages;
        let mut shutdown = false;
        let handled = session.handle_input(bytes, now, &mut |event| match event {
            SessionEvent::Open => {
                let (generation, gap) = upstream.opened(rx_ns);
                notice_into(notices, Notice::Open { generation });
                on_event(LinkEvent::Open { generation, gap });
            }
            SessionEvent::Data { payload, binary } => {
                *messages += 1;
                on_event(LinkEvent::Message {
                    payload,
                    binary,
                    rx_ns,
                })
            }
            SessionEvent::Reply(text) => {
                notice_into(
                    notices,
                    Notice::Reply(String::from_utf8_lossy(text).into_owned()),
                );
            }
            SessionEvent::ServerShutdown => shutdown = true,
            SessionEvent::Ping => {}
        });
        match handled {
            Err(e) => Flow::Close {
                reason: e.to_string(),
            },
            Ok(()) if shutdown => {
                self.notice(Notice::ServerShutdown);
                Flow::Close {
                    reason: "the exchange announced serverShutdown; reconnecting ahead of it"
                        .into(),
                }
            }
            Ok(()) => Flow::Continue,
        }
    }

    /// Starts a polite close of the open connection (WebSocket close 1000, TLS close_notify, in
    /// the output) and stops reconnecting.
    pub fn stop(&mut self) {
        self.stopping = true;
        if let Connection::Up(session) = &mut self.connection {
            session.close();
        }
    }

    /// When [`ExchangeLink::handle_timeout`] (a paced request) or [`ExchangeLink::poll_connect`]
    /// (a retry) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.connection {
            Connection::Up(session) => session.poll_timeout(),
            Connection::Down { .. } if !self.stopping => self.backoff.poll_timeout(),
            _ => None,
        }
    }

    /// Sends what is due at `now`. An error ends the connection: the caller closes the socket.
    pub fn handle_timeout(&mut self, now: Instant) -> Flow {
        if let Connection::Up(session) = &mut self.connection {
            if let Err(e) = session.handle_timeout(now) {
                return Flow::Close {
                    reason: e.to_string(),
                };
            }
        }
        Flow::Continue
    }

    /// True while a connection is up (from [`ExchangeLink::connected`] to its loss).
    pub fn is_up(&self) -> bool {
        matches!(self.connection, Connection::Up(_))
    }

    /// True when bytes wait to be written to the socket.
    pub fn wants_write(&self) -> bool {
        matches!(&self.connection, Connection::Up(session) if session.wants_write())
    }

    /// Moves all pending socket output into `into`.
    pub fn take_output(&mut self, into: &mut Vec<u8>) {
        if let Connection::Up(session) = &mut self.connection {
            session.take_output(into);
        }
    }

    fn notice(&mut self, notice: Notice) {
        notice_into(&mut self.notices, notice);
    }

    /// The next life-cycle notice, oldest first.
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    /// Connections opened so far.
    pub fn generation(&self) -> u32 {
        self.upstream.generation()
    }

    /// Market-data messages delivered so far, over every connection.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// When no market data ever came: why, in words a person can act on.
    pub fn never_delivered(&self) -> Option<String> {
        if self.messages > 0 {
            return None;
        }
        let url = &self.config.endpoint.url;
        Some(match &self.last_failure {
            Some(reason) => match advice(reason) {
                Some(advice) => format!("{url} delivered no market data: {reason} ({advice})"),
                None => format!("{url} delivered no market data: {reason}"),
            },
            None if self.upstream.generation() > 0 => format!(
                "{url} accepted the connection but sent no market data (check the stream name; \
                 a bare /ws needs --stream)"
            ),
            None => format!("{url} could not be reached"),
        })
    }
}

/// What a person can do about a connection failure, for the failures we recognize.
pub fn advice(reason: &str) -> Option<&'static str> {
    const ADVICE: [(&str, &str); 7] = [
        (
            "CaUsedAsEndEntity",
            "the server presents a CA certificate as its own; give it a leaf certificate signed \
             by that CA",
        ),
        (
            "UnknownIssuer",
            "the server's certificate is not signed by a CA this client trusts; pass that CA \
             with --ca-file",
        ),
        (
            "NotValidForName",
            "the server's certificate does not name the host in the URL; connect by a name it \
             carries",
        ),
        (
            "Expired",
            "the server's certificate has expired, or this machine's clock is wrong",
        ),
        (
            "onnection refused",
            "nothing listens at that address and port",
        ),
        ("failed to lookup address", "the host name does not resolve"),
        (
            "timed out",
            "the exchange did not answer in time; is the address reachable from here?",
        ),
    ];
    ADVICE
        .iter()
        .find(|(needle, _)| reason.contains(needle))
        .map(|&(_, advice)| advice)
}

fn notice_into(notices: &mut VecDeque<Notice>, notice: Notice) {
    if notices.len() == MAX_NOTICES {
        notices.pop_front();
    }
    notices.push_back(notice);
}
