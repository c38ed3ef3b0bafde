//! The relay's UDP side: one socket (set up with socket2), every datagram to every receiver the
//! moment it is complete, each copy stamped with its send time and then, with a key, sealed.
//!
//! Sends are one `sendmmsg` call per datagram (all receivers' copies at once) straight on the
//! socket, from the relay thread: a UDP send completes inside the call, so there is nothing to
//! wait for and nothing to keep per operation. Nothing is allocated per datagram: the copies and
//! the message headers live in buffers made once. The socket is blocking, so a full send buffer
//! holds the relay back (its exchange socket then buffers) instead of dropping a datagram. NAKs
//! are received on the same socket through io_uring (tokio-uring), beside the exchange socket.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use anyhow::Context;
use relay_core::seal::Sealer;
use relay_core::wire::{stamp_relay_tx_ns, MAX_DATAGRAM};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use relay_host::clock::realtime_ns;

/// How the UDP socket is set up.
#[derive(Clone, Debug, Default)]
pub struct SocketOptions {
    /// Local address to send from (default: any address, ephemeral port).
    pub bind: Option<SocketAddr>,
    /// SO_SNDBUF in bytes (the kernel doubles it and caps it at net.core.wmem_max).
    pub send_buffer: Option<usize>,
    /// IP TOS / IPv6 traffic class byte (DSCP << 2), e.g. 0xb8 for EF.
    pub tos: Option<u32>,
}

/// Counters of the UDP side, copied out to the reporter.
#[derive(Clone, Copy, Debug, Default)]
pub struct FanoutStats {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub send_errors: u64,
    /// Datagrams not sent because they could not be sealed (the system random generator failed).
    pub seal_errors: u64,
    /// `sendmmsg` calls made.
    pub send_calls: u64,
}

pub struct Fanout {
    /// Shared with the relay's receive of NAKs (io_uring) on the same socket.
    socket: Rc<tokio_uring::net::UdpSocket>,
    fd: RawFd,
    targets: Vec<SocketAddr>,
    /// One copy of the datagram per receiver (each gets its own send stamp and seal), and its
    /// address as the kernel takes it.
    copies: Vec<Vec<u8>>,
    names: Vec<SockAddr>,
    /// The copies staged for the next `sendmmsg`.
    staged: Vec<usize>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Seals every copy after its send time is stamped (`--key-file`).
    sealer: Option<Sealer>,
    stats: FanoutStats,
}

/// Copies `datagram` into `copy`, stamps the send time into it and, with a sealer, seals it;
/// false when it could not be sealed (then it must not be sent).
pub fn stamped_copy(copy: &mut Vec<u8>, datagram: &[u8], sealer: Option<&mut Sealer>) -> bool {
    copy.clear();
    copy.extend_from_slice(datagram);
    stamp_relay_tx_ns(copy, realtime_ns());
    sealer.is_none_or(|s| s.seal(copy))
}

/// Builds the std socket with socket2; tokio-uring takes it over for receiving.
pub fn udp_socket(
    targets: &[SocketAddr],
    options: &SocketOptions,
) -> anyhow::Result<std::net::UdpSocket> {
    let first = targets
        .first()
        .context("at least one --to HOST:PORT receiver is needed")?;
    if targets.iter().any(|t| t.is_ipv4() != first.is_ipv4()) {
        anyhow::bail!("receivers mix IPv4 and IPv6 addresses; use one family");
    }
    let domain = Domain::for_address(*first);
    let socket =
        Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("creating the UDP socket")?;
    if let Some(size) = options.send_buffer {
        socket
            .set_send_buffer_size(size)
            .context("setting SO_SNDBUF")?;
    }
    if let Some(tos) = options.tos {
        if first.is_ipv4() {
            socket.set_tos_v4(tos).context("setting IP_TOS")?;
        } else {
            socket.set_tclass_v6(tos).context("setting IPV6_TCLASS")?;
        }
    }
    let bind = options.bind.unwrap_or_else(|| {
        if first.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        }
    });
    socket
        .bind(&bind.into())
        .with_context(|| format!("binding the UDP socket to {bind}"))?;
    Ok(socket.into())
}

impl Fanout {
    /// Must be called inside a tokio-uring runtime.
    pub fn new(
        socket: std::net::UdpSocket,
        targets: Vec<SocketAddr>,
        sealer: Option<Sealer>,
    ) -> Fanout {
        let fd = socket.as_raw_fd();
        let n = targets.len().max(1);
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        let names = (0..n).map(|_| SockAddr::from(any)).collect();
        Fanout {
            socket: Rc::new(tokio_uring::net::UdpSocket::from_std(socket)),
            fd,
            targets,
            copies: (0..n).map(|_| Vec::with_capacity(MAX_DATAGRAM)).collect(),
            names,
            staged: Vec::with_capacity(n),
            iovecs: Vec::with_capacity(n),
            headers: Vec::with_capacity(n),
            sealer,
            stats: FanoutStats::default(),
        }
    }

    /// Sends one encoded datagram to every receiver now.
    pub fn send(&mut self, datagram: &[u8]) {
        for slot in 0..self.targets.len() {
            let to = self.targets[slot];
            self.stage(slot, to, datagram);
        }
        self.send_staged();
    }

    /// Sends one encoded datagram to `to` only (a NAK's answer goes to whoever asked, which
    /// behind NAT need not be a `--to` address).
    pub fn send_to(&mut self, to: SocketAddr, datagram: &[u8]) {
        self.stage(0, to, datagram);
        self.send_staged();
    }

    /// Copies `datagram` into slot `slot` for `to`, stamps its send time and seals it.
    fn stage(&mut self, slot: usize, to: SocketAddr, datagram: &[u8]) {
        if !stamped_copy(&mut self.copies[slot], datagram, self.sealer.as_mut()) {
            self.stats.seal_errors += 1;
            return;
        }
        self.names[slot] = SockAddr::from(to);
        self.staged.push(slot);
    }

    /// One `sendmmsg` for everything staged (more if the kernel takes part of it).
    fn send_staged(&mut self) {
        self.iovecs.clear();
        self.headers.clear();
        for &slot in &self.staged {
            let copy = &mut self.copies[slot];
            self.iovecs.push(libc::iovec {
                iov_base: copy.as_mut_ptr().cast(),
                iov_len: copy.len(),
            });
        }
        for (&slot, iovec) in self.staged.iter().zip(self.iovecs.iter_mut()) {
            let name = &self.names[slot];
            // SAFETY: an all-zero mmsghdr is valid; its pointers are set here.
            let mut header: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            header.msg_hdr.msg_name = name.as_ptr() as *mut libc::c_void;
            header.msg_hdr.msg_namelen = name.len();
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            self.headers.push(header);
        }
        let mut sent = 0;
        while sent < self.headers.len() {
            let rest = &mut self.headers[sent..];
            // SAFETY: every header points at a live iovec, copy and address owned by `self`,
            // none of which moves or changes during the call.
            let n = unsafe {
                libc::sendmmsg(self.fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0)
            };
            self.stats.send_calls += 1;
            if n <= 0 {
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                // This copy failed (e.g. ECONNREFUSED from an earlier ICMP); go on with the rest.
                self.stats.send_errors += 1;
                sent += 1;
                continue;
            }
            for header in &rest[..n as usize] {
                self.stats.datagrams_sent += 1;
                self.stats.bytes_sent += u64::from(header.msg_len);
            }
            sent += n as usize;
        }
        self.staged.clear();
    }

    /// The socket, for receiving on it beside the sends.
    pub fn socket(&self) -> Rc<tokio_uring::net::UdpSocket> {
        self.socket.clone()
    }

    pub fn stats(&self) -> FanoutStats {
        self.stats
    }
}
