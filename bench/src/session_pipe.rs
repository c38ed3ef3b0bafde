//! The relay's sans-io [`Session`] against an in-memory TLS WebSocket server, for benchmarking
//! TLS + WebSocket decode per frame without sockets.
//!
//! The server is a rustls `ServerConnection` under a tungstenite server socket, writing into a
//! byte pipe; the client is the relay's `Session`, trusting a throwaway CA through
//! [`relay::endpoint::tls_client_config`] exactly as `relay forward --ca-file` does.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use relay::endpoint::{tls_client_config, Endpoint};
use relay::session::{Session, SessionConfig, SessionEvent};
use rustls::{ServerConnection, StreamOwned};
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

/// The server's end of the in-memory connection: what the client sent, what the server wrote.
#[derive(Default)]
pub struct Pipe {
    inbound: Vec<u8>,
    read_pos: usize,
    outbound: Vec<u8>,
}

impl Pipe {
    /// Queues bytes for the next reads.
    pub fn push_inbound(&mut self, bytes: &[u8]) {
        self.inbound.extend_from_slice(bytes);
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.inbound[self.read_pos..];
        if available.is_empty() {
            self.inbound.clear();
            self.read_pos = 0;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.read_pos += n;
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

type ServerSocket = WebSocket<StreamOwned<ServerConnection, Pipe>>;

/// Writes `pem` to a fresh file under the temp dir and returns its path (the caller removes it).
pub fn write_temp_pem(pem: &str) -> anyhow::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "bench-ca-{}-{}.pem",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A relay [`Session`] connected to an in-memory TLS WebSocket server.
pub struct SessionPipe {
    pub client: Session,
    server: ServerSocket,
    now: Instant,
}

impl SessionPipe {
    /// Runs the TLS and WebSocket handshakes in memory; the session is open on return.
    pub fn new() -> anyhow::Result<SessionPipe> {
        let names = ["127.0.0.1".to_string(), "localhost".to_string()];
        let cert = relay::feed_sim::cert::issue("bench server", &names)?;
        let ca_path = write_temp_pem(&cert.ca_pem)?;
        let tls = tls_client_config(Some(&ca_path));
        let _ = std::fs::remove_file(&ca_path);
        let config = SessionConfig {
            endpoint: Endpoint::parse(
                "wss://127.0.0.1:9443/ws/btcusdt@trade?timeUnit=MICROSECOND",
            )?,
            tls: Some(tls?),
            subscribe: Vec::new(),
            client_messages_per_sec: 4,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert.leaf], cert.key)?;
        let mut client = Session::start(&config)?;
        let now = Instant::now();
        let mut stream = StreamOwned::new(
            ServerConnection::new(Arc::new(server_config))?,
            Pipe::default(),
        );
        client.take_output(&mut stream.sock.inbound);
        let mut mid = match tungstenite::accept(stream) {
            Ok(_) => bail!("the server handshake cannot finish before the client answered"),
            Err(HandshakeError::Interrupted(mid)) => mid,
            Err(HandshakeError::Failure(e)) => bail!("server handshake: {e}"),
        };
        let mut opened = false;
        let mut server = None;
        for _ in 0..32 {
            let bytes = std::mem::take(&mut mid.get_mut().get_mut().sock.outbound);
            client.handle_input(&bytes, now, &mut |e| opened |= e == SessionEvent::Open)?;
            client.take_output(&mut mid.get_mut().get_mut().sock.inbound);
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
        let bytes = std::mem::take(&mut server.get_mut().sock.outbound);
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
        std::mem::take(&mut self.server.get_mut().sock.outbound)
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
