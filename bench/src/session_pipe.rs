//! The relay's sans-io [`Session`] against an in-memory TLS WebSocket server, for benchmarking
//! TLS + WebSocket decode per frame without sockets.
//!
//! The server is a rustls `ServerConnection` (the harness's certificate,
//! [`cert::Issued::server_config`]) under a tungstenite server socket, over the harness's byte
//! [`Pipe`]; the client is the relay's `Session`, trusting the throwaway CA through
//! [`tls::client_config`] exactly as `relay forward --ca-file` does. (The harness's `Exchange`
//! flushes every message it sends; the benchmark also needs frames written back to back and
//! flushed once, so it drives the server socket itself.)

use std::time::Instant;

use anyhow::bail;
use relay_core::binance::{Endpoint, CLIENT_MESSAGES_PER_SEC};
use relay_core::harness::cert;
use relay_core::harness::pipe::Pipe;
use relay_core::session::{Session, SessionConfig, SessionEvent};
use relay_core::tls;
use rustls::{ServerConnection, StreamOwned};
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

type ServerStream = StreamOwned<ServerConnection, Pipe>;
type ServerSocket = WebSocket<ServerStream>;

/// A relay [`Session`] connected to an in-memory TLS WebSocket server.
pub struct SessionPipe {
    pub client: Session,
    server: ServerSocket,
    now: Instant,
}

/// Moves what the client wrote into the server's input.
fn client_to_server(client: &mut Session, server: &mut ServerStream) {
    let mut bytes = Vec::new();
    client.take_output(&mut bytes);
    server.sock.push_input(&bytes);
}

impl SessionPipe {
    /// Runs the TLS and WebSocket handshakes in memory; the session is open on return.
    pub fn new() -> anyhow::Result<SessionPipe> {
        let names = ["127.0.0.1".to_string(), "localhost".to_string()];
        let cert = cert::issue("bench server", &names)?;
        let config = SessionConfig {
            endpoint: Endpoint::parse(
                "wss://127.0.0.1:9443/ws/btcusdt@trade?timeUnit=MICROSECOND",
            )?,
            tls: Some(tls::client_config(Some(cert.ca_pem.as_bytes()))?),
            subscribe: Vec::new(),
            client_messages_per_sec: CLIENT_MESSAGES_PER_SEC,
        };
        let mut client = Session::start(&config)?;
        let now = Instant::now();
        let mut stream = StreamOwned::new(
            ServerConnection::new(cert.server_config()?)?,
            Pipe::default(),
        );
        client_to_server(&mut client, &mut stream);
        let mut mid = match tungstenite::accept(stream) {
            Ok(_) => bail!("the server handshake cannot finish before the client answered"),
            Err(HandshakeError::Interrupted(mid)) => mid,
            Err(HandshakeError::Failure(e)) => bail!("server handshake: {e}"),
        };
        let mut opened = false;
        let mut server = None;
        for _ in 0..32 {
            let bytes = mid.get_mut().get_mut().sock.take_output();
            client.handle_input(&bytes, now, &mut |e| opened |= e == SessionEvent::Open)?;
            client_to_server(&mut client, mid.get_mut().get_mut());
            match mid.handshake() {
                Ok(ws) => {
                    server = Some(ws);
                    break;
                }
                Err(HandshakeError::Interrupted(m)) => mid = m,
                Err(HandshakeError::Failure(e)) => bail!("server handshake: {e}"),
            }
        }
        let Some(mut server) = server else {
            bail!("the in-memory handshake did not finish");
        };
        let bytes = server.get_mut().sock.take_output();
        client.handle_input(&bytes, now, &mut |e| opened |= e == SessionEvent::Open)?;
        if !opened || !client.is_open() {
            bail!("the session did not open");
        }
        Ok(SessionPipe {
            client,
            server,
            now,
        })
    }

    /// TLS bytes carrying `frames` text frames of `payload`: one TLS record per frame
    /// (`coalesce == false`, each frame flushed on its own as a quiet exchange sends them), or the
    /// frames written back to back and flushed once (records of up to 16 KiB, as in a burst).
    pub fn encode(&mut self, payload: &[u8], frames: usize, coalesce: bool) -> Vec<u8> {
        let text = std::str::from_utf8(payload).expect("samples are UTF-8");
        for _ in 0..frames {
            self.server
                .write(Message::text(text.to_owned()))
                .expect("in-memory write");
            if !coalesce {
                self.server.flush().expect("in-memory flush");
            }
        }
        self.server.flush().expect("in-memory flush");
        self.server.get_mut().sock.take_output()
    }

    /// Feeds TLS bytes to the session; returns the data messages and their payload bytes.
    pub fn decode(&mut self, bytes: &[u8]) -> (usize, usize) {
        let mut messages = 0;
        let mut payload_bytes = 0;
        self.client
            .handle_input(bytes, self.now, &mut |e| {
                if let SessionEvent::Data { payload, .. } = e {
                    messages += 1;
                    payload_bytes += payload.len();
                }
            })
            .expect("the session decodes what the server sent");
        (messages, payload_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_pass_through_tls_and_websocket_in_memory() {
        let mut pipe = SessionPipe::new().unwrap();
        let payload = crate::samples::trade();
        let one = pipe.encode(&payload, 3, false);
        assert_eq!(pipe.decode(&one), (3, 3 * payload.len()));
        let burst = pipe.encode(&payload, 64, true);
        // Coalesced: fewer TLS record overheads than 64 separately flushed frames.
        let separate = pipe.encode(&payload, 64, false);
        assert!(
            burst.len() < separate.len(),
            "{} vs {}",
            burst.len(),
            separate.len()
        );
        assert_eq!(pipe.decode(&burst), (64, 64 * payload.len()));
        assert_eq!(pipe.decode(&separate), (64, 64 * payload.len()));
    }
}
