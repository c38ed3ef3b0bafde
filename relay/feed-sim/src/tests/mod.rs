//! End-to-end tests over loopback with a blocking tungstenite + rustls client, the way a
//! Binance client would see the simulator. The client helpers are here; the tests by topic in
//! the sibling files.

mod connections;
mod streams;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

pub(super) use super::{FeedSim, SimConfig};

pub(super) trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// A blocking client plus a handle on its socket, to change the read timeout mid-test.
pub(super) struct Client {
    ws: WebSocket<Box<dyn ReadWrite>>,
    tcp: TcpStream,
}

pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Tests and other threads share `&FeedSim`.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<FeedSim>();
};

pub(super) fn start(cfg: SimConfig) -> FeedSim {
    FeedSim::start(SimConfig { log: false, ..cfg }).expect("sim starts")
}

pub(super) fn connect_as(
    sim: &FeedSim,
    path: &str,
    server_name: &str,
) -> Result<Client, tungstenite::Error> {
    let tcp = TcpStream::connect(sim.local_addr())?;
    let handle = tcp.try_clone()?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn ReadWrite> = if sim.config().tls {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(sim.ca_pem().as_bytes()) {
            roots.add(cert.expect("PEM parses")).expect("CA accepted");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_owned()).expect("server name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    };
    match tungstenite::client(sim.url(path).as_str(), stream) {
        Ok((ws, _)) => Ok(Client { ws, tcp: handle }),
        Err(HandshakeError::Failure(e)) => Err(e),
        Err(HandshakeError::Interrupted(_)) => Err(io::Error::from(io::ErrorKind::TimedOut).into()),
    }
}

pub(super) fn connect(sim: &FeedSim, path: &str) -> Client {
    connect_as(sim, path, "127.0.0.1").expect("handshake succeeds")
}

pub(super) fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e)
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// Next text message, skipping pings/pongs (tungstenite answers pings by itself).
pub(super) fn next_text(c: &mut Client) -> String {
    loop {
        match c.ws.read().expect("read a message") {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

pub(super) fn next_json(c: &mut Client) -> (String, Value) {
    let text = next_text(c);
    let value = serde_json::from_str(&text).expect("valid JSON");
    (text, value)
}

/// Text messages arriving within `window` (reading stops at the first quiet read timeout).
pub(super) fn drain(c: &mut Client, window: Duration) -> Vec<String> {
    set_timeout(c, window);
    let mut out = Vec::new();
    loop {
        match c.ws.read() {
            Ok(Message::Text(t)) => out.push(t.as_str().to_owned()),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("unexpected message {other:?}"),
            Err(e) if is_timeout(&e) => break,
            Err(e) => panic!("read failed: {e}"),
        }
    }
    set_timeout(c, READ_TIMEOUT);
    out
}

pub(super) fn set_timeout(c: &mut Client, timeout: Duration) {
    c.tcp
        .set_read_timeout(Some(timeout))
        .expect("set read timeout");
}

/// How a connection ended, as the client sees it.
#[derive(Debug, PartialEq)]
pub(super) enum Ending {
    CloseFrame(Option<u16>),
    Error,
}

/// Reads until the connection ends, skipping data; panics on a read timeout (still open).
pub(super) fn read_until_end(c: &mut Client) -> Ending {
    loop {
        match c.ws.read() {
            Ok(Message::Close(frame)) => {
                return Ending::CloseFrame(frame.map(|f| u16::from(f.code)));
            }
            Ok(_) => continue,
            Err(e) if is_timeout(&e) => panic!("connection still open after {READ_TIMEOUT:?}"),
            Err(_) => return Ending::Error,
        }
    }
}

pub(super) fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_up_to(Duration::from_secs(3), what, cond);
}

pub(super) fn wait_up_to(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Asserts `keys` appear as top-level keys of `text` in this order and are all the keys.
pub(super) fn assert_keys(text: &str, value: &Value, keys: &[&str]) {
    let mut from = 0;
    for k in keys {
        let needle = format!("\"{k}\":");
        let at = text[from..]
            .find(&needle)
            .unwrap_or_else(|| panic!("key {k} missing or out of order in {text}"));
        from += at + needle.len();
    }
    assert_eq!(value.as_object().unwrap().len(), keys.len(), "{text}");
}

pub(super) fn assert_decimal8(v: &Value) {
    let s = v.as_str().expect("decimal string");
    let (int, frac) = s.split_once('.').expect("has a point");
    assert!(
        !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()),
        "{s}"
    );
    assert_eq!(frac.len(), 8, "{s}");
}
