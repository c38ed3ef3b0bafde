//! An in-memory byte pipe with a socket's manners: reads of an empty pipe return `WouldBlock`
//! (what tungstenite and rustls take as "call me again later"), writes always succeed.

use std::io::{self, Read, Write};

/// One direction of bytes in ([`Pipe::push_input`], read by the owner) and one out (written by the
/// owner, taken with [`Pipe::take_output`]).
#[derive(Debug, Default)]
pub struct Pipe {
    inbound: Vec<u8>,
    read_pos: usize,
    outbound: Vec<u8>,
}

impl Pipe {
    /// Queues bytes for the owner's next reads.
    pub fn push_input(&mut self, bytes: &[u8]) {
        if self.read_pos == self.inbound.len() {
            self.inbound.clear();
            self.read_pos = 0;
        }
        self.inbound.extend_from_slice(bytes);
    }

    /// Takes everything the owner wrote so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outbound)
    }

    /// The owner's output so far, for appending to elsewhere without a copy.
    pub fn outbound_mut(&mut self) -> &mut Vec<u8> {
        &mut self.outbound
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.inbound[self.read_pos..];
        if available.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_pushed_then_would_block() {
        let mut pipe = Pipe::default();
        let mut buf = [0u8; 4];
        assert_eq!(
            pipe.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        pipe.push_input(b"abcdef");
        assert_eq!(pipe.read(&mut buf).unwrap(), 4);
        pipe.push_input(b"g");
        let mut rest = [0u8; 8];
        assert_eq!(pipe.read(&mut rest).unwrap(), 3);
        assert_eq!(&rest[..3], b"efg");
        pipe.write_all(b"out").unwrap();
        assert_eq!(pipe.take_output(), b"out");
        assert!(pipe.take_output().is_empty());
    }
}
