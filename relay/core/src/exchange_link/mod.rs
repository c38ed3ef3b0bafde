//! The exchange link: the connections to the exchange, as a state machine the I/O shell drives.
//!
//! Normally one [`Session`] (the *primary*). Before Binance's 24 h connection limit
//! (`rotate_after`, 23 h by default) and when the exchange announces `serverShutdown`, the link
//! **rotates** without a gap: a second connection (the *successor*) connects and subscribes
//! while the primary still delivers, the [`arbiter`] forwards each event once whichever
//! connection brings it (by the exchange's own event ids), and once the successor has caught up
//! on every stream the primary closes and the successor takes its place. An unplanned loss
//! reconnects with [`Backoff`] (which starts over as soon as a connection delivers data);
//! [`Upstream`] counts connections and outages.
//!
//! The shell owns up to two TCP sockets, named by [`ConnId`], and nothing else:
//!
//! 1. When [`ExchangeLink::poll_connect`] names a connection, it opens a TCP connection for it
//!    and reports [`ExchangeLink::connected`] (or [`ExchangeLink::connection_lost`]).
//! 2. It feeds every read to [`ExchangeLink::handle_input`], which reports connections opening
//!    and each market-data message as [`LinkEvent`]s, and writes what
//!    [`ExchangeLink::take_output`] hands back (handshakes, pongs, paced SUBSCRIBEs, closes).
//! 3. When [`ExchangeLink::poll_close`] names a connection (the exchange closed the WebSocket or
//!    sent garbage, a session timed out, a rotation retired it), it writes that connection's
//!    remaining output, closes the socket and calls [`ExchangeLink::connection_lost`]; so too
//!    when a socket ends by itself.
//! 4. It wakes at [`ExchangeLink::poll_timeout`] to call [`ExchangeLink::handle_timeout`].
//!
//! Connection life-cycle [`Notice`]s (for a progress reporter, never the hot path) queue up in
//! [`ExchangeLink::poll_notice`]. Nothing here reads a clock: `now` (timers) and `now_ns`
//! (CLOCK_REALTIME, for the wire's upstream-gap times) come from the caller.

pub(crate) mod arbiter;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use relay_wire::UpstreamGap;

use crate::binance::{self, event_id, Endpoint};
use crate::reconnect::{Backoff, Upstream};
use crate::session::{Session, SessionConfig, SessionEvent};
use arbiter::{Arbiter, Source};

/// Notices kept for a reporter that falls behind; older ones are dropped.
const MAX_NOTICES: usize = 256;
/// A rotation whose successor has been open this long without catching up on every stream
/// switches anyway (a stream that stays quiet cannot hold the old connection forever).
pub const ROTATION_OVERLAP_MAX: Duration = Duration::from_secs(10);
/// After a rotation, the new primary's copies of events the old one already forwarded are still
/// filtered for this long.
pub const ROTATION_TAIL: Duration = Duration::from_secs(5);
/// A successor that could not connect is tried again after this long (the primary carries on).
pub const ROTATION_RETRY: Duration = Duration::from_secs(2);

/// What the link reports to its consumer while it consumes input.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEvent<'a> {
    /// A WebSocket connection is open and starts a new upstream generation (the first one, or
    /// the first after an outage: `gap` says from when to when the exchange was out of reach).
    /// A rotation's successor takes over within the generation: no event.
    Open {
        generation: u32,
        gap: Option<UpstreamGap>,
    },
    /// One market-data message, once, with the CLOCK_REALTIME ns at which its bytes were read.
    Message {
        payload: &'a [u8],
        binary: bool,
        rx_ns: u64,
    },
}

/// Why a rotation started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationReason {
    /// The primary reached `rotate_after` (Binance closes connections at 24 h).
    Age,
    /// The exchange announced `serverShutdown` on the primary.
    ServerShutdown,
}

/// Connection life-cycle notices, for the progress reporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Connecting {
        url: String,
    },
    /// Connection number `connection` (from 1, rotations included) is open.
    Open {
        connection: u32,
    },
    Reply(String),
    ServerShutdown,
    Closed {
        reason: String,
    },
    Retrying {
        delay: Duration,
    },
    /// A successor connection is being opened beside the primary.
    Rotating {
        reason: RotationReason,
    },
    /// The successor (connection number `connection`) took over; the old connection closes.
    /// `duplicates`: copies of events the two connections both delivered, forwarded once.
    Rotated {
        connection: u32,
        duplicates: u64,
    },
}

/// One of the link's two connection slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(u8);

impl ConnId {
    pub const ALL: [ConnId; 2] = [ConnId(0), ConnId(1)];

    /// 0 or 1.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    fn other(self) -> ConnId {
        ConnId(1 - self.0)
    }
}

enum Connection {
    Down,
    /// The shell is opening a TCP connection.
    Connecting,
    Up(Box<Session>),
}

struct Slot {
    connection: Connection,
    /// When its WebSocket opened.
    opened_at: Option<Instant>,
    /// Closing after a rotation: its data is no longer forwarded, its loss is no outage.
    retiring: bool,
}

impl Slot {
    fn down() -> Slot {
        Slot {
            connection: Connection::Down,
            opened_at: None,
            retiring: false,
        }
    }
}

struct Rotation {
    successor: ConnId,
    arbiter: Arbiter,
    /// The successor's TCP connection is still to be asked for.
    connect_pending: bool,
    successor_open_at: Option<Instant>,
}

/// The exchange link state machine (see the module docs).
pub struct ExchangeLink {
    config: SessionConfig,
    slots: [Slot; 2],
    primary: ConnId,
    first_connect: bool,
    backoff: Backoff,
    upstream: Upstream,
    rotate_after: Duration,
    rotation: Option<Rotation>,
    /// After a rotation: the arbiter, still filtering the new primary, until then.
    tail: Option<(Arbiter, Instant)>,
    rotation_retry_at: Option<Instant>,
    closes: VecDeque<(ConnId, String)>,
    stopping: bool,
    notices: VecDeque<Notice>,
    /// Market-data messages forwarded, over every connection.
    messages: u64,
    /// Copies of events delivered by both connections of a rotation, forwarded once.
    duplicates: u64,
    /// WebSocket connections opened, rotations included.
    connections: u32,
    /// Why the last connection (or attempt) ended, if it did for a reason other than stopping.
    last_failure: Option<String>,
}

impl ExchangeLink {
    /// A link that will connect at once, with reconnect delays capped at `reconnect_max_delay`
    /// and a gapless rotation every `rotate_after`.
    pub fn new(
        config: SessionConfig,
        reconnect_max_delay: Duration,
        rotate_after: Duration,
    ) -> ExchangeLink {
        ExchangeLink {
            config,
            slots: [Slot::down(), Slot::down()],
            primary: ConnId(0),
            first_connect: true,
            backoff: Backoff::new(reconnect_max_delay),
            upstream: Upstream::default(),
            rotate_after,
            rotation: None,
            tail: None,
            rotation_retry_at: None,
            closes: VecDeque::new(),
            stopping: false,
            notices: VecDeque::new(),
            messages: 0,
            duplicates: 0,
            connections: 0,
            last_failure: None,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.config.endpoint
    }

    fn slot(&mut self, id: ConnId) -> &mut Slot {
        &mut self.slots[id.index()]
    }

    /// The connection the shell should open a TCP connection for now, if any; it is then
    /// connecting.
    pub fn poll_connect(&mut self, now: Instant) -> Option<ConnId> {
        if self.stopping {
            return None;
        }
        let primary = self.primary;
        let primary_due = matches!(self.slot(primary).connection, Connection::Down)
            && self.rotation.is_none()
            && (self.first_connect || self.backoff.handle_timeout(now));
        let id = if primary_due {
            self.first_connect = false;
            self.backoff.attempt(now);
            primary
        } else {
            let rotation = self.rotation.as_mut()?;
            if !rotation.connect_pending {
                return None;
            }
            rotation.connect_pending = false;
            rotation.successor
        };
        self.slot(id).connection = Connection::Connecting;
        self.notice(Notice::Connecting {
            url: self.config.endpoint.url.to_string(),
        });
        Some(id)
    }

    /// The TCP connection `id` is up: its session starts and its first output is ready.
    pub fn connected(&mut self, id: ConnId, now: Instant, now_ns: u64) {
        match Session::start(&self.config) {
            Ok(session) => self.slot(id).connection = Connection::Up(Box::new(session)),
            Err(e) => self.connection_lost(id, now, now_ns, &e.to_string()),
        }
    }

    /// Connection `id` (or the attempt) ended at `now` for `reason`.
    pub fn connection_lost(&mut self, id: ConnId, now: Instant, now_ns: u64, reason: &str) {
        let retiring = std::mem::replace(self.slot(id), Slot::down()).retiring;
        if self.stopping {
            self.notice(Notice::Closed {
                reason: "stopped".into(),
            });
            return;
        }
        if retiring {
            return;
        }
        self.notice(Notice::Closed {
            reason: reason.to_string(),
        });
        if self.rotation.as_ref().is_some_and(|r| r.successor == id) {
            // The new connection failed; the primary carries on, and it is tried again later.
            self.rotation = None;
            self.rotation_retry_at = Some(now + ROTATION_RETRY);
            return;
        }
        if id != self.primary {
            return;
        }
        if let Some(rotation) = self.rotation.take() {
            // The primary went before the successor took over: the successor takes over now.
            let successor_open = rotation.successor_open_at.is_some();
            self.promote(rotation, now);
            if !successor_open {
                // Still connecting: an outage until it opens.
                self.upstream.lost(now_ns);
                self.last_failure = Some(reason.to_string());
            }
            return;
        }
        self.upstream.lost(now_ns);
        self.last_failure = Some(reason.to_string());
        let delay = self.backoff.ended(now);
        self.notice(Notice::Retrying { delay });
    }

    /// Consumes bytes read from connection `id` at `rx_ns`, reporting what they complete. A
    /// connection that must close is named by [`ExchangeLink::poll_close`] afterwards.
    pub fn handle_input(
        &mut self,
        id: ConnId,
        now: Instant,
        rx_ns: u64,
        bytes: &[u8],
        on_event: &mut impl FnMut(LinkEvent<'_>),
    ) {
        let source = if id == self.primary {
            Some(Source::Primary)
        } else if self.rotation.as_ref().is_some_and(|r| r.successor == id) {
            Some(Source::Successor)
        } else {
            None
        };
        let ExchangeLink {
            slots,
            upstream,
            notices,
            rotation,
            tail,
            messages,
            duplicates,
            backoff,
            connections,
            ..
        } = self;
        let slot = &mut slots[id.index()];
        let Connection::Up(session) = &mut slot.connection else {
            self.closes
                .push_back((id, "input without a connection".into()));
            return;
        };
        let opened_at = &mut slot.opened_at;
        let mut shutdown = false;
        let handled = session.handle_input(bytes, now, &mut |event| match event {
            SessionEvent::Open => {
                let Some(source) = source else { return };
                *opened_at = Some(now);
                *connections += 1;
                notice_into(
                    notices,
                    Notice::Open {
                        connection: *connections,
                    },
                );
                match (source, rotation.as_mut()) {
                    (Source::Successor, Some(r)) => r.successor_open_at = Some(now),
                    _ => {
                        let (generation, gap) = upstream.opened(rx_ns);
                        on_event(LinkEvent::Open { generation, gap });
                    }
                }
            }
            SessionEvent::Data { payload, binary } => {
                let Some(source) = source else {
                    *duplicates += 1;
                    return;
                };
                backoff.delivered();
                let forward = match (rotation.as_mut(), tail.as_mut()) {
                    (Some(r), _) => r.arbiter.admit(source, event_id(payload)),
                    // After a rotation the new primary plays the successor whose streams all
                    // switched: only what is newer than what was forwarded goes out.
                    (None, Some((arbiter, _))) => {
                        arbiter.admit(Source::Successor, event_id(payload))
                    }
                    (None, None) => true,
                };
                if forward {
                    *messages += 1;
                    on_event(LinkEvent::Message {
                        payload,
                        binary,
                        rx_ns,
                    });
                } else {
                    *duplicates += 1;
                }
            }
            SessionEvent::Reply(text) => notice_into(
                notices,
                Notice::Reply(String::from_utf8_lossy(text).into_owned()),
            ),
            SessionEvent::ServerShutdown => shutdown = true,
            SessionEvent::Ping => {}
        });
        if let Err(e) = handled {
            self.closes.push_back((id, e.to_string()));
            return;
        }
        if shutdown && source == Some(Source::Primary) {
            self.notice(Notice::ServerShutdown);
            self.start_rotation(now, RotationReason::ServerShutdown);
        }
        if self.rotation.as_ref().is_some_and(|r| r.arbiter.complete()) {
            if let Some(rotation) = self.rotation.take() {
                self.promote(rotation, now);
            }
        }
    }

    /// Opens a successor beside the primary, unless one is under way or the slot is busy.
    fn start_rotation(&mut self, now: Instant, reason: RotationReason) {
        if self.rotation.is_some() || self.stopping {
            return;
        }
        let successor = self.primary.other();
        if !matches!(self.slot(successor).connection, Connection::Down) {
            // The previous primary is still closing: soon.
            self.rotation_retry_at = Some(now + Duration::from_millis(100));
            return;
        }
        self.rotation_retry_at = None;
        self.rotation = Some(Rotation {
            successor,
            arbiter: Arbiter::default(),
            connect_pending: true,
            successor_open_at: None,
        });
        self.notice(Notice::Rotating { reason });
    }

    /// The successor takes over: the old primary retires (its close goes out) and the arbiter
    /// keeps filtering the new primary for a while.
    fn promote(&mut self, mut rotation: Rotation, now: Instant) {
        rotation.arbiter.switch_all();
        let old = std::mem::replace(&mut self.primary, rotation.successor);
        let old_slot = self.slot(old);
        if let Connection::Up(session) = &mut old_slot.connection {
            session.close();
            old_slot.retiring = true;
            self.closes
                .push_back((old, "retired: the new connection took over".into()));
        }
        self.tail = Some((rotation.arbiter, now + ROTATION_TAIL));
        let connection = self.connections;
        self.notice(Notice::Rotated {
            connection,
            duplicates: self.duplicates,
        });
    }

    /// A connection to close (its remaining output first), oldest first.
    pub fn poll_close(&mut self) -> Option<(ConnId, String)> {
        self.closes.pop_front()
    }

    /// Starts a polite close of every open connection (WebSocket close 1000, TLS close_notify,
    /// in their output) and stops reconnecting.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.rotation = None;
        for slot in &mut self.slots {
            if let Connection::Up(session) = &mut slot.connection {
                session.close();
            }
        }
    }

    /// When [`ExchangeLink::handle_timeout`] (a paced request, a rotation) or
    /// [`ExchangeLink::poll_connect`] (a retry) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let primary = &self.slots[self.primary.index()];
        let sessions = self.slots.iter().filter_map(|slot| match &slot.connection {
            Connection::Up(session) => session.poll_timeout(),
            _ => None,
        });
        let retry = match primary.connection {
            Connection::Down if !self.stopping && self.rotation.is_none() => {
                self.backoff.poll_timeout()
            }
            _ => None,
        };
        let rotate = match &self.rotation {
            None if !self.stopping => primary.opened_at.map(|at| at + self.rotate_after),
            None => None,
            Some(r) => r.successor_open_at.map(|at| at + ROTATION_OVERLAP_MAX),
        };
        let timers = [
            retry,
            rotate,
            self.rotation_retry_at,
            self.tail.as_ref().map(|t| t.1),
        ];
        sessions.chain(timers.into_iter().flatten()).min()
    }

    /// Does what is due at `now`: paced requests, starting or forcing a rotation, retiring the
    /// post-rotation filter. A session that fails is named by [`ExchangeLink::poll_close`].
    pub fn handle_timeout(&mut self, now: Instant) {
        for id in ConnId::ALL {
            if let Connection::Up(session) = &mut self.slot(id).connection {
                if let Err(e) = session.handle_timeout(now) {
                    self.closes.push_back((id, e.to_string()));
                }
            }
        }
        if self.tail.as_ref().is_some_and(|(_, until)| now >= *until) {
            self.tail = None;
        }
        if self.rotation_retry_at.is_some_and(|at| now >= at) {
            self.rotation_retry_at = None;
            if matches!(
                self.slots[self.primary.index()].connection,
                Connection::Up(_)
            ) {
                self.start_rotation(now, RotationReason::Age);
            }
        }
        let primary = &self.slots[self.primary.index()];
        let aged = primary
            .opened_at
            .is_some_and(|at| now.saturating_duration_since(at) >= self.rotate_after);
        if self.rotation.is_none() && aged {
            self.start_rotation(now, RotationReason::Age);
        }
        let overlap_done = self.rotation.as_ref().is_some_and(|r| {
            r.successor_open_at
                .is_some_and(|at| now.saturating_duration_since(at) >= ROTATION_OVERLAP_MAX)
        });
        if overlap_done {
            if let Some(rotation) = self.rotation.take() {
                self.promote(rotation, now);
            }
        }
    }

    /// True while connection `id` is up (from [`ExchangeLink::connected`] to its loss).
    pub fn is_up(&self, id: ConnId) -> bool {
        matches!(self.slots[id.index()].connection, Connection::Up(_))
    }

    /// True when bytes wait to be written to connection `id`.
    pub fn wants_write(&self, id: ConnId) -> bool {
        matches!(&self.slots[id.index()].connection, Connection::Up(session) if session.wants_write())
    }

    /// Moves all of connection `id`'s pending output into `into`.
    pub fn take_output(&mut self, id: ConnId, into: &mut Vec<u8>) {
        if let Connection::Up(session) = &mut self.slot(id).connection {
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

    /// Upstream generations so far: the first connection, and one more after each outage (a
    /// rotation stays within its generation).
    pub fn generation(&self) -> u32 {
        self.upstream.generation()
    }

    /// Since when (CLOCK_REALTIME ns) the exchange has been out of reach, during an outage.
    pub fn down_since_ns(&self) -> Option<u64> {
        self.upstream.down_since_ns()
    }

    /// Market-data messages forwarded so far, over every connection.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Copies of events both connections of a rotation delivered, forwarded once.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
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

/// Binance's connection age limit, and how long before it the link rotates by default.
pub const DEFAULT_ROTATE_AFTER: Duration = Duration::from_secs(23 * 3600);
const _: () = assert!(DEFAULT_ROTATE_AFTER.as_secs() < binance::MAX_CONNECTION_AGE.as_secs());
