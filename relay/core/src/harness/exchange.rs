//! An in-memory exchange: the server end of WebSocket connections (tungstenite, over rustls or
//! plain), behaving as Binance does where the relay cares: it answers requests, pings, publishes
//! each trade to every open connection with consecutive ids `t` whether or not anyone is
//! connected (so a client that was away sees the gap in the ids), announces `serverShutdown`,
//! closes politely or just vanishes. Connections are numbered in the order they were accepted;
//! the methods without a number act on every connection.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{ServerConnection, StreamOwned};
use tungstenite::handshake::server::{NoCallback, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::cert;
use super::pipe::Pipe;

/// The server's byte stream: the pipe, under TLS or not.
pub enum Stream {
    Plain(Pipe),
    Tls(Box<StreamOwned<ServerConnection, Pipe>>),
}

impl Stream {
    fn pipe(&mut self) -> &mut Pipe {
        match self {
            Stream::Plain(pipe) => pipe,
            Stream::Tls(tls) => &mut tls.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(pipe) => pipe.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(pipe) => pipe.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(pipe) => pipe.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

enum Server {
    Handshaking(Box<MidHandshake<ServerHandshake<Stream, NoCallback>>>),
    Open(Box<WebSocket<Stream>>),
    /// Closed by either side; bytes are no longer read.
    Closed(Stream),
}

/// What the exchange saw from its client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeLog {
    /// WebSocket connections accepted (TCP connections offered to [`Exchange::accept`]).
    pub connections: u64,
    /// Text messages the client sent (requests), in order.
    pub requests: Vec<String>,
    /// Payloads of the pongs the client sent.
    pub pongs: Vec<Vec<u8>>,
    /// Close codes the client sent.
    pub client_closes: Vec<u16>,
    /// Trades published, connected or not, and the ids of those actually sent.
    pub published: u64,
    pub sent_ids: Vec<u64>,
}

/// The in-memory exchange (see the module docs).
pub struct Exchange {
    tls: Option<Arc<rustls::ServerConfig>>,
    ca_pem: Option<String>,
    /// Every connection accepted, by number; `None` once gone.
    servers: Vec<Option<Server>>,
    log: ExchangeLog,
}

impl Exchange {
    /// A plain `ws://` exchange.
    pub fn plain() -> Exchange {
        Exchange {
            tls: None,
            ca_pem: None,
            servers: Vec::new(),
            log: ExchangeLog::default(),
        }
    }

    /// A `wss://` exchange with a fresh certificate for `names`; clients trust
    /// [`Exchange::ca_pem`].
    pub fn tls(names: &[String]) -> Exchange {
        let issued =
            cert::issue("in-memory exchange", names).expect("a certificate for test names");
        Exchange {
            tls: Some(
                issued
                    .server_config()
                    .expect("a server config for our own certificate"),
            ),
            ca_pem: Some(issued.ca_pem),
            servers: Vec::new(),
            log: ExchangeLog::default(),
        }
    }

    /// The CA that signed the exchange's certificate (TLS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn log(&self) -> &ExchangeLog {
        &self.log
    }

    /// A client connected: returns the connection's number.
    pub fn accept(&mut self) -> usize {
        let pipe = Pipe::default();
        let stream = match &self.tls {
            Some(config) => Stream::Tls(Box::new(StreamOwned::new(
                ServerConnection::new(config.clone()).expect("a server connection"),
                pipe,
            ))),
            None => Stream::Plain(pipe),
        };
        self.log.connections += 1;
        self.servers.push(Some(match tungstenite::accept(stream) {
            Ok(ws) => Server::Open(Box::new(ws)),
            Err(HandshakeError::Interrupted(mid)) => Server::Handshaking(Box::new(mid)),
            Err(HandshakeError::Failure(e)) => panic!("in-memory accept: {e}"),
        }));
        self.servers.len() - 1
    }

    /// True while some WebSocket connection is open.
    pub fn is_open(&self) -> bool {
        self.open_connections() > 0
    }

    /// WebSocket connections open.
    pub fn open_connections(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| matches!(s, Some(Server::Open(_))))
            .count()
    }

    /// True while connection `n` exists (open, handshaking or closed but not gone).
    pub fn is_connected(&self, n: usize) -> bool {
        self.servers.get(n).is_some_and(Option::is_some)
    }

    /// Every connection vanishes without a close frame (a TCP reset, a crash).
    pub fn drop_connections(&mut self) {
        self.servers.iter_mut().for_each(|s| *s = None);
    }

    /// Connection `n` vanishes without a close frame.
    pub fn drop_connection(&mut self, n: usize) {
        if let Some(server) = self.servers.get_mut(n) {
            *server = None;
        }
    }

    /// Bytes from the client on connection `n`: advances the handshake, answers requests and
    /// records pongs and closes.
    pub fn input(&mut self, n: usize, bytes: &[u8]) {
        let Some(server) = self.servers.get_mut(n).and_then(Option::take) else {
            return;
        };
        let server = match server {
            Server::Handshaking(mut mid) => {
                mid.get_mut().get_mut().pipe().push_input(bytes);
                match mid.handshake() {
                    Ok(ws) => Server::Open(Box::new(ws)),
                    Err(HandshakeError::Interrupted(mid)) => Server::Handshaking(Box::new(mid)),
                    Err(HandshakeError::Failure(e)) => panic!("in-memory handshake: {e}"),
                }
            }
            Server::Open(mut ws) => {
                ws.get_mut().pipe().push_input(bytes);
                Server::Open(ws)
            }
            closed @ Server::Closed(_) => closed,
        };
        let server = self.read_client(server);
        self.servers[n] = Some(server);
    }

    fn read_client(&mut self, server: Server) -> Server {
        let Server::Open(mut ws) = server else {
            return server;
        };
        loop {
            match ws.read() {
                Ok(Message::Text(text)) => {
                    let id = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v.get("id").cloned());
                    self.log.requests.push(text.to_string());
                    if let Some(id) = id {
                        let reply = serde_json::json!({ "result": null, "id": id }).to_string();
                        let _ = ws.send(Message::text(reply));
                    }
                }
                Ok(Message::Pong(payload)) => self.log.pongs.push(payload.to_vec()),
                Ok(Message::Close(frame)) => {
                    self.log
                        .client_closes
                        .push(frame.map_or(1005, |f| u16::from(f.code)));
                    // tungstenite queued the close reply; flush it out to the client.
                    let _ = ws.flush();
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Server::Open(ws)
                }
                Err(_) => return Server::Closed(ws.into_inner()),
            }
        }
    }

    /// Bytes for the client on connection `n`.
    pub fn output(&mut self, n: usize) -> Vec<u8> {
        let stream = match self.servers.get_mut(n) {
            Some(Some(Server::Handshaking(mid))) => mid.get_mut().get_mut(),
            Some(Some(Server::Open(ws))) => ws.get_mut(),
            Some(Some(Server::Closed(stream))) => stream,
            _ => return Vec::new(),
        };
        let _ = stream.flush();
        if let Stream::Tls(tls) = stream {
            while tls.conn.wants_write() {
                if tls.conn.write_tls(&mut tls.sock.outbound_mut()).is_err() {
                    break;
                }
            }
        }
        stream.pipe().take_output()
    }

    /// Sends one message on every open connection; false if there was no one to send to.
    pub fn send(&mut self, message: Message) -> bool {
        let mut sent = false;
        for n in 0..self.servers.len() {
            sent |= self.send_to(n, message.clone());
        }
        sent
    }

    /// Sends one message on connection `n` if it is open.
    pub fn send_to(&mut self, n: usize, message: Message) -> bool {
        match self.servers.get_mut(n) {
            Some(Some(Server::Open(ws))) => ws.send(message).is_ok(),
            _ => false,
        }
    }

    /// Publishes the next trade (id `published + 1`) at exchange time `event_ms` on every open
    /// connection. Returns the id.
    pub fn publish_trade(&mut self, event_ms: u64) -> u64 {
        self.log.published += 1;
        let id = self.log.published;
        if self.send(Message::text(trade(id, event_ms))) {
            self.log.sent_ids.push(id);
        }
        id
    }

    /// Announces a planned disconnect on every open connection, as Binance does before
    /// maintenance.
    pub fn server_shutdown(&mut self, event_ms: u64) -> bool {
        self.send(Message::text(shutdown(event_ms)))
    }

    /// Announces a planned disconnect on connection `n`.
    pub fn server_shutdown_on(&mut self, n: usize, event_ms: u64) -> bool {
        self.send_to(n, Message::text(shutdown(event_ms)))
    }

    /// Closes every open WebSocket politely with `code`.
    pub fn close(&mut self, code: u16) {
        for n in 0..self.servers.len() {
            self.close_on(n, code);
        }
    }

    /// Closes connection `n`'s WebSocket politely with `code`.
    pub fn close_on(&mut self, n: usize, code: u16) {
        if let Some(Some(Server::Open(ws))) = self.servers.get_mut(n) {
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "exchange closing".into(),
            }));
            let _ = ws.flush();
        }
    }
}

fn shutdown(event_ms: u64) -> String {
    format!(r#"{{"e":"serverShutdown","E":{event_ms}}}"#)
}

/// A spot `trade` event as Binance sends it (keys in Binance's order).
pub fn trade(id: u64, event_ms: u64) -> String {
    format!(
        r#"{{"e":"trade","E":{event_ms},"s":"BTCUSDT","t":{id},"p":"43123.45000000","q":"0.00150000","T":{event_ms},"m":true,"M":true}}"#
    )
}

/// The trade id `t` of a trade event made by [`trade`].
pub fn trade_id(payload: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    value.get("t")?.as_u64()
}
