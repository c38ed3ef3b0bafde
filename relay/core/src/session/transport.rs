//! The byte pipe under tungstenite: plaintext in and out, through rustls or not.

use std::io::{self, Read, Write};

use super::SessionError;

/// The byte pipe under tungstenite: plaintext in and out, TLS or not. Reads that find no
/// buffered bytes return `WouldBlock`, which tungstenite treats as "call me again later".
pub(super) enum Transport {
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
    pub(super) fn receive(&mut self, bytes: &[u8]) -> Result<usize, SessionError> {
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

    pub(super) fn move_output(&mut self, into: &mut Vec<u8>) {
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

    pub(super) fn has_output(&self) -> bool {
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
