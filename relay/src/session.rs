//! Sans-io exchange session: TLS (rustls) and WebSocket (tungstenite) as one state machine over
//! byte buffers.
//!
//! The I/O shell feeds whatever the socket returned into [`Session::handle_input`] and writes
//! whatever [`Session::take_output`] hands back. Nothing here touches a socket or a clock: the
//! caller passes `now`, which is what makes the session testable and benchmarkable per frame.
//!
//! Binance rules the session keeps: pings are answered with a pong echoing the payload (tungstenite
//! queues it while reading), client messages (SUBSCRIBE and pongs) are paced to stay under the
//! exchange's inbound limit, and subscription replies and `serverShutdown` notices are surfaced as
//! their own events instead of being mistaken for market data.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::endpoint::Endpoint;

/// Binance closes a connection that sends more than 5 messages per second; stay below it.
pub const DEFAULT_CLIENT_MESSAGES_PER_SEC: u32 = 4;
/// tungstenite's read chunk (see `Session::start`).
const READ_BUFFER: usize = 16 * 1024;
/// Streams per SUBSCRIBE request; keeps each request small.
const STREAMS_PER_SUBSCRIBE: usize = 200;

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

/// The byte pipe under tungstenite: plaintext in and out, TLS or not. Reads that find no
/// buffered bytes return `WouldBlock`, which tungstenite treats as "call me again later".
enum Transport {
    Plain {
        inbound: Vec<u8>,
        read_pos: usize,
        outbound: Vec<u8>,
    },
    Tls {
        conn: Box<rustls::ClientConnection>,
        outbound: Vec<u8>,
    },
}

impl Transport {
    /// Accepts as much of `bytes` as the transport can take right now and returns how much.
    fn receive(&mut self, bytes: &[u8]) -> Result<usize, SessionError> {
        match self {
            Transport::Plain {
                inbound, read_pos, ..
            } => {
                if *read_pos == inbound.len() {
                    inbound.clear();
                    *read_pos = 0;
                }
                inbound.extend_from_slice(bytes);
                Ok(bytes.len())
            }
            Transport::Tls { conn, .. } => {
                let mut rest = bytes;
                let taken = conn
                    .read_tls(&mut rest)
                    .map_err(|e| rustls::Error::General(format!("reading TLS records: {e}")))?;
                conn.process_new_packets()?;
                Ok(taken)
            }
        }
    }

    fn move_output(&mut self, into: &mut Vec<u8>) {
        match self {
            Transport::Plain { outbound, .. } => into.append(outbound),
            Transport::Tls { conn, outbound } => {
                // write_tls into a Vec never fails.
                while conn.wants_write() {
                    if conn.write_tls(outbound).is_err() {
                        break;
                    }
                }
                into.append(outbound);
            }
        }
    }

    fn has_output(&self) -> bool {
        match self {
            Transport::Plain { outbound, .. } => !outbound.is_empty(),
            Transport::Tls { conn, outbound } => !outbound.is_empty() || conn.wants_write(),
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain {
                inbound, read_pos, ..
            } => {
                let available = &inbound[*read_pos..];
                if available.is_empty() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = available.len().min(buf.len());
                buf[..n].copy_from_slice(&available[..n]);
                *read_pos += n;
                Ok(n)
            }
            Transport::Tls { conn, .. } => conn.reader().read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain { outbound, .. } => outbound.write(buf),
            Transport::Tls { conn, .. } => conn.writer().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
        for chunk in config.subscribe.chunks(STREAMS_PER_SUBSCRIBE) {
            session.queue_request("SUBSCRIBE", chunk);
        }
        Ok(session)
    }

    fn queue_request(&mut self, method: &str, params: &[String]) {
        let request =
            serde_json::json!({ "method": method, "params": params, "id": self.next_request_id });
        self.next_request_id += 1;
        self.requests.push_back(request.to_string());
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

    /// Sends paced requests that have become due. Call it when [`Session::next_wakeup`] passes.
    pub fn on_timer(&mut self, now: Instant) -> Result<(), SessionError> {
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

    /// When [`Session::on_timer`] has something to send, if anything.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.requests.is_empty() || !self.is_open() {
            return None;
        }
        Some(self.next_send_at.unwrap_or_else(Instant::now))
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
                    on_event(SessionEvent::Open);
                    self.on_timer(now)?;
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
    let head = payload
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&payload[..0], |i| &payload[i..]);
    if head.starts_with(b"{\"result\"")
        || head.starts_with(b"{\"error\"")
        || head.starts_with(b"{\"id\"")
    {
        on_event(SessionEvent::Reply(payload));
    } else if crate::event_time::event_type(payload) == Some(b"serverShutdown".as_slice()) {
        on_event(SessionEvent::ServerShutdown);
    } else {
        on_event(SessionEvent::Data { payload, binary });
    }
}

#[cfg(test)]
mod tests {
    //! The session against an in-memory tungstenite server: no sockets, no clock.
    use super::*;
    use tungstenite::handshake::server::{NoCallback, ServerHandshake};

    /// The server's end of the in-memory pipe.
    #[derive(Default)]
    struct Pipe {
        inbound: Vec<u8>,
        outbound: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.inbound.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.inbound.len());
            buf[..n].copy_from_slice(&self.inbound[..n]);
            self.inbound.drain(..n);
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.outbound.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Harness {
        client: Session,
        server: WebSocket<Pipe>,
        events: Vec<String>,
        now: Instant,
    }

    fn describe(event: SessionEvent<'_>) -> String {
        match event {
            SessionEvent::Open => "open".into(),
            SessionEvent::Data { payload, binary } => format!(
                "data{}:{}",
                if binary { "(bin)" } else { "" },
                String::from_utf8_lossy(payload)
            ),
            SessionEvent::Reply(r) => format!("reply:{}", String::from_utf8_lossy(r)),
            SessionEvent::ServerShutdown => "shutdown".into(),
            SessionEvent::Ping => "ping".into(),
        }
    }

    impl Harness {
        fn new(subscribe: &[&str]) -> Harness {
            let config = SessionConfig {
                endpoint: Endpoint::parse("ws://127.0.0.1:9/ws/btcusdt@trade").unwrap(),
                tls: None,
                subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
                client_messages_per_sec: 4,
            };
            let mut client = Session::start(&config).unwrap();
            let mut pipe = Pipe::default();
            client.take_output(&mut pipe.inbound);
            let mid = match tungstenite::accept(pipe) {
                Err(HandshakeError::Interrupted(mid)) => mid,
                Ok(ws) => return Harness::open(client, ws),
                Err(HandshakeError::Failure(e)) => panic!("{e}"),
            };
            let ws = finish_server_handshake(mid);
            Harness::open(client, ws)
        }

        fn open(client: Session, server: WebSocket<Pipe>) -> Harness {
            let mut h = Harness {
                client,
                server,
                events: Vec::new(),
                now: Instant::now(),
            };
            h.deliver_to_client();
            h
        }

        /// Moves the server's output into the client and collects the events.
        fn deliver_to_client(&mut self) {
            let bytes = std::mem::take(&mut self.server.get_mut().outbound);
            let events = &mut self.events;
            self.client
                .handle_input(&bytes, self.now, &mut |e| events.push(describe(e)))
                .unwrap();
        }

        /// Moves the client's output to the server and returns the messages it read.
        fn deliver_to_server(&mut self) -> Vec<Message> {
            let mut bytes = Vec::new();
            self.client.take_output(&mut bytes);
            self.server.get_mut().inbound.extend_from_slice(&bytes);
            let mut got = Vec::new();
            loop {
                match self.server.read() {
                    Ok(m) => got.push(m),
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        return got
                    }
                    Err(e) => panic!("server read: {e}"),
                }
            }
        }

        fn send(&mut self, message: Message) {
            self.server.send(message).unwrap();
            self.deliver_to_client();
        }
    }

    fn finish_server_handshake(
        mut mid: MidHandshake<ServerHandshake<Pipe, NoCallback>>,
    ) -> WebSocket<Pipe> {
        loop {
            match mid.handshake() {
                Ok(ws) => return ws,
                Err(HandshakeError::Interrupted(m)) => mid = m,
                Err(HandshakeError::Failure(e)) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn handshake_then_data_in_order() {
        let mut h = Harness::new(&[]);
        assert_eq!(h.events, ["open"]);
        assert!(h.client.is_open());
        for i in 0..3 {
            h.server
                .write(Message::text(format!("{{\"e\":\"trade\",\"E\":{i}}}")))
                .unwrap();
        }
        h.server.flush().unwrap();
        h.deliver_to_client();
        h.send(Message::binary(vec![1u8, 2]));
        assert_eq!(
            h.events[1..],
            [
                "data:{\"e\":\"trade\",\"E\":0}",
                "data:{\"e\":\"trade\",\"E\":1}",
                "data:{\"e\":\"trade\",\"E\":2}",
                "data(bin):\u{1}\u{2}"
            ]
        );
    }

    #[test]
    fn input_split_at_every_byte_loses_nothing() {
        let mut h = Harness::new(&[]);
        h.server
            .send(Message::text("{\"e\":\"trade\",\"E\":1}"))
            .unwrap();
        h.server
            .send(Message::text("{\"e\":\"trade\",\"E\":2}"))
            .unwrap();
        let bytes = std::mem::take(&mut h.server.get_mut().outbound);
        let mut events = Vec::new();
        for b in bytes.chunks(1) {
            h.client
                .handle_input(b, h.now, &mut |e| events.push(describe(e)))
                .unwrap();
        }
        assert_eq!(
            events,
            [
                "data:{\"e\":\"trade\",\"E\":1}",
                "data:{\"e\":\"trade\",\"E\":2}"
            ]
        );
    }

    #[test]
    fn pings_get_matching_pongs() {
        let mut h = Harness::new(&[]);
        h.send(Message::Ping(b"keepalive-42".to_vec().into()));
        assert_eq!(h.events.last().unwrap(), "ping");
        assert!(h.client.wants_write());
        let got = h.deliver_to_server();
        assert_eq!(got, [Message::Pong(b"keepalive-42".to_vec().into())]);
    }

    #[test]
    fn subscribes_are_paced_under_the_limit() {
        let streams: Vec<String> = (0..(STREAMS_PER_SUBSCRIBE * 2 + 1))
            .map(|i| format!("s{i}@trade"))
            .collect();
        let refs: Vec<&str> = streams.iter().map(String::as_str).collect();
        let mut h = Harness::new(&refs);
        // The first request goes out as soon as the socket is open, the rest wait their turn.
        let first = h.deliver_to_server();
        assert_eq!(first.len(), 1);
        let text = first[0].to_text().unwrap();
        assert!(
            text.contains("\"method\":\"SUBSCRIBE\"")
                && text.contains("\"s0@trade\"")
                && text.contains("\"id\":1"),
            "{text}"
        );
        h.client
            .on_timer(h.now + Duration::from_millis(100))
            .unwrap();
        assert!(
            h.deliver_to_server().is_empty(),
            "a second message within 250 ms would break the pace"
        );
        let mut sent = 1;
        let mut t = h.now;
        while h.client.next_wakeup().is_some() {
            t += Duration::from_millis(250);
            h.client.on_timer(t).unwrap();
            sent += h.deliver_to_server().len();
        }
        assert_eq!(sent, 3);
        assert!(t - h.now <= Duration::from_millis(500));
    }

    #[test]
    fn replies_and_shutdown_are_not_market_data() {
        let mut h = Harness::new(&[]);
        h.send(Message::text("{\"result\":null,\"id\":1}"));
        h.send(Message::text(
            "{\"error\":{\"code\":2,\"msg\":\"Invalid request\"},\"id\":null}",
        ));
        h.send(Message::text(
            "{\"e\":\"serverShutdown\",\"E\":1700000000000}",
        ));
        assert_eq!(
            h.events[1..],
            [
                "reply:{\"result\":null,\"id\":1}",
                "reply:{\"error\":{\"code\":2,\"msg\":\"Invalid request\"},\"id\":null}",
                "shutdown"
            ]
        );
    }

    #[test]
    fn close_and_garbage_end_the_session_with_an_error() {
        let mut h = Harness::new(&[]);
        h.server.close(None).unwrap();
        h.server.flush().unwrap();
        let bytes = std::mem::take(&mut h.server.get_mut().outbound);
        let err = h
            .client
            .handle_input(&bytes, h.now, &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, SessionError::Closed(_)), "{err}");

        let mut h = Harness::new(&[]);
        // A frame with reserved bits set and an absurd length is a protocol error, not a panic.
        let err = h
            .client
            .handle_input(&[0xff; 64], h.now, &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, SessionError::WebSocket(_)), "{err}");
    }

    #[test]
    fn close_says_goodbye_with_1000() {
        let mut h = Harness::new(&[]);
        h.client.close();
        let mut bytes = Vec::new();
        h.client.take_output(&mut bytes);
        h.server.get_mut().inbound.extend_from_slice(&bytes);
        match h.server.read() {
            Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    #[test]
    fn rejected_upgrade_reports_the_status() {
        let config = SessionConfig {
            endpoint: Endpoint::parse("ws://127.0.0.1:9/ws/nope").unwrap(),
            tls: None,
            subscribe: Vec::new(),
            client_messages_per_sec: 4,
        };
        let mut client = Session::start(&config).unwrap();
        let response = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let err = client
            .handle_input(response, Instant::now(), &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, SessionError::Rejected(404)), "{err}");
    }
}
