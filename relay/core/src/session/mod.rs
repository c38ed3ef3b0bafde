//! Sans-io exchange session: TLS (rustls) and WebSocket (tungstenite) as one state machine over
//! byte buffers.
//!
//! The I/O shell feeds whatever the socket returned into [`Session::handle_input`] and writes
//! whatever [`Session::take_output`] hands back. Nothing here touches a socket or a clock: the
//! caller passes `now`, asks [`Session::poll_timeout`] when the session next wants to act, and
//! calls [`Session::handle_timeout`] then. That is what makes the session testable on a manual
//! clock and benchmarkable per frame.
//!
//! Binance rules the session keeps: pings are answered with a pong echoing the payload (tungstenite
//! queues it while reading), client messages (SUBSCRIBE and pongs) are paced to stay under the
//! exchange's inbound limit, and subscription replies and `serverShutdown` notices are surfaced as
//! their own events instead of being mistaken for market data.

mod transport;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::binance::{self, Endpoint, MessageClass};
use transport::Transport;

/// tungstenite's read chunk (see `Session::start`).
const READ_BUFFER: usize = 16 * 1024;

/// What the session reports to its caller while it consumes input.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEvent<'a> {
    /// The WebSocket handshake completed.
    Open,
    /// A market-data message, payload as the exchange sent it.
    Data { payload: &'a [u8], binary: bool },
    /// A reply to one of our requests (`{"result":..,"id":..}` or `{"error":..}`); not market data.
    Reply(&'a [u8]),
    /// The exchange announced a planned disconnect (`serverShutdown` event).
    ServerShutdown,
    /// The exchange pinged us; the pong is already queued.
    Ping,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    #[error("WebSocket handshake rejected: HTTP {0}")]
    Rejected(u16),
    #[error("the exchange closed the WebSocket ({0})")]
    Closed(String),
}

enum State {
    Handshaking(Box<MidHandshake<ClientHandshake<Transport>>>),
    Open(Box<WebSocket<Transport>>),
    /// Transitional while the handshake is being advanced, and after a fatal error.
    Failed,
}

/// One WebSocket connection to the exchange, from the first TLS byte to the close.
pub struct Session {
    state: State,
    requests: VecDeque<String>,
    next_request_id: u64,
    pace: Duration,
    next_send_at: Option<Instant>,
}

/// Everything a session needs to start; cheap to reuse across reconnects.
#[derive(Clone)]
pub struct SessionConfig {
    pub endpoint: Endpoint,
    /// None for `ws://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Streams to SUBSCRIBE to once open (in addition to those in the URL).
    pub subscribe: Vec<String>,
    pub client_messages_per_sec: u32,
}

impl Session {
    /// Starts a connection: the first output (TLS ClientHello, or the HTTP upgrade) is ready at once.
    pub fn start(config: &SessionConfig) -> Result<Session, SessionError> {
        let transport = match &config.tls {
            Some(tls) => {
                let name = ServerName::try_from(config.endpoint.host.clone()).map_err(|_| {
                    rustls::Error::General(format!("bad TLS server name {}", config.endpoint.host))
                })?;
                let conn = rustls::ClientConnection::new(tls.clone(), name)?;
                Transport::Tls {
                    conn: Box::new(conn),
                    outbound: Vec::with_capacity(16 * 1024),
                }
            }
            None => Transport::Plain {
                inbound: Vec::with_capacity(64 * 1024),
                read_pos: 0,
                outbound: Vec::with_capacity(4 * 1024),
            },
        };
        // tungstenite zero-fills its whole read buffer before every read: 128 KiB by default,
        // ~2.5 us per socket read for nothing (measured in bench/). Frames larger than this still
        // work; the buffer is only the chunk size of one read.
        let ws_config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let state = match tungstenite::client::client_with_config(
            config.endpoint.url.as_str(),
            transport,
            Some(ws_config),
        ) {
            Err(HandshakeError::Interrupted(mid)) => State::Handshaking(Box::new(mid)),
            Err(HandshakeError::Failure(e)) => return Err(e.into()),
            Ok((ws, _)) => State::Open(Box::new(ws)),
        };
        let pace = Duration::from_secs(1) / config.client_messages_per_sec.max(1);
        let mut session = Session {
            state,
            requests: VecDeque::new(),
            next_request_id: 1,
            pace,
            next_send_at: None,
        };
        for chunk in config.subscribe.chunks(binance::STREAMS_PER_SUBSCRIBE) {
            session.queue_request("SUBSCRIBE", chunk);
        }
        Ok(session)
    }

    fn queue_request(&mut self, method: &str, params: &[String]) {
        let request = binance::request(method, params, self.next_request_id);
        self.next_request_id += 1;
        self.requests.push_back(request);
    }

    /// Starts a polite close: a WebSocket close frame (1000) and, over TLS, close_notify; both
    /// leave through [`Session::take_output`].
    pub fn close(&mut self) {
        if let State::Open(ws) = &mut self.state {
            // A close frame on a connection already closing is refused; nothing else to do then.
            let _ = ws.close(Some(tungstenite::protocol::CloseFrame {
                code: tungstenite::protocol::frame::coding::CloseCode::Normal,
                reason: "client stopping".into(),
            }));
            let _ = ws.flush();
            if let Transport::Tls { conn, .. } = ws.get_mut() {
                conn.send_close_notify();
            }
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Consumes bytes read from the socket, reporting every event they complete.
    pub fn handle_input(
        &mut self,
        mut bytes: &[u8],
        now: Instant,
        on_event: &mut impl FnMut(SessionEvent<'_>),
    ) -> Result<(), SessionError> {
        loop {
            let taken = self.transport_mut().map_or(Ok(0), |t| t.receive(bytes))?;
            bytes = &bytes[taken..];
            self.advance(now, on_event)?;
            if bytes.is_empty() {
                return Ok(());
            }
            if taken == 0 {
                return Err(rustls::Error::General("TLS input stalled".into()).into());
            }
        }
    }

    /// Sends a paced request if one is due at `now`. Call it when [`Session::poll_timeout`] passes.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        let State::Open(ws) = &mut self.state else {
            return Ok(());
        };
        if self.next_send_at.is_some_and(|at| now < at) {
            return Ok(());
        }
        if let Some(request) = self.requests.pop_front() {
            ws.send(Message::text(request))?;
            self.next_send_at = Some(now + self.pace);
        }
        Ok(())
    }

    /// When [`Session::handle_timeout`] has something to send, if anything.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.requests.is_empty() || !self.is_open() {
            return None;
        }
        // Set when the connection opened (the first request goes out at once) and after every send.
        self.next_send_at
    }

    /// True when bytes wait to be written to the socket.
    pub fn wants_write(&self) -> bool {
        self.transport().is_some_and(Transport::has_output)
    }

    /// Moves all pending socket output into `into`.
    pub fn take_output(&mut self, into: &mut Vec<u8>) {
        if let Some(t) = self.transport_mut() {
            t.move_output(into);
        }
    }

    fn transport(&self) -> Option<&Transport> {
        match &self.state {
            State::Handshaking(mid) => Some(mid.get_ref().get_ref()),
            State::Open(ws) => Some(ws.get_ref()),
            State::Failed => None,
        }
    }

    fn transport_mut(&mut self) -> Option<&mut Transport> {
        match &mut self.state {
            State::Handshaking(mid) => Some(mid.get_mut().get_mut()),
            State::Open(ws) => Some(ws.get_mut()),
            State::Failed => None,
        }
    }

    fn advance(
        &mut self,
        now: Instant,
        on_event: &mut impl FnMut(SessionEvent<'_>),
    ) -> Result<(), SessionError> {
        if let State::Handshaking(_) = self.state {
            let State::Handshaking(mid) = std::mem::replace(&mut self.state, State::Failed) else {
                unreachable!()
            };
            match mid.handshake() {
                Err(HandshakeError::Interrupted(mid)) => {
                    self.state = State::Handshaking(Box::new(mid));
                    return Ok(());
                }
                Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                    return Err(SessionError::Rejected(response.status().as_u16()));
                }
                Err(HandshakeError::Failure(e)) => return Err(e.into()),
                Ok((ws, _response)) => {
                    self.state = State::Open(Box::new(ws));
                    self.next_send_at.get_or_insert(now);
                    on_event(SessionEvent::Open);
                    self.handle_timeout(now)?;
                }
            }
        }
        self.read_messages(now, on_event)
    }

    fn read_messages(
        &mut self,
        now: Instant,
        on_event: &mut impl FnMut(SessionEvent<'_>),
    ) -> Result<(), SessionError> {
        let State::Open(ws) = &mut self.state else {
            return Ok(());
        };
        loop {
            let message = match ws.read() {
                Ok(message) => message,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(())
                }
                Err(e) => return Err(e.into()),
            };
            match message {
                Message::Text(text) => emit(text.as_bytes(), false, on_event),
                Message::Binary(bytes) => emit(&bytes, true, on_event),
                Message::Ping(_) => {
                    // The queued pong is a client message too: it takes a pacing slot.
                    let base = self.next_send_at.map_or(now, |at| at.max(now));
                    self.next_send_at = Some(base + self.pace);
                    on_event(SessionEvent::Ping);
                }
                Message::Pong(_) | Message::Frame(_) => {}
                Message::Close(frame) => {
                    // Let tungstenite queue its close reply before we report the end.
                    let _ = ws.flush();
                    let reason = frame.map_or_else(
                        || "no close frame".to_string(),
                        |f| format!("{} {}", f.code, f.reason),
                    );
                    return Err(SessionError::Closed(reason));
                }
            }
        }
    }
}

fn emit(payload: &[u8], binary: bool, on_event: &mut impl FnMut(SessionEvent<'_>)) {
    match binance::classify(payload) {
        MessageClass::Reply => on_event(SessionEvent::Reply(payload)),
        MessageClass::ServerShutdown => on_event(SessionEvent::ServerShutdown),
        MessageClass::MarketData => on_event(SessionEvent::Data { payload, binary }),
    }
}

#[cfg(test)]
mod tests;
