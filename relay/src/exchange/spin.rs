//! [`Idle::Spin`](super::Idle::Spin): the shell never sleeps. It polls every socket with
//! non-blocking calls (`recv(MSG_DONTWAIT)` on the exchange connections, `recvfrom` on the side
//! socket), checks its timers and the stop flag, and goes round again: a message is read the
//! moment it arrives, with no thread wake-up in its latency, at the cost of its core at 100%.
//! Connections open with a non-blocking `connect` that the loop checks on.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use relay_core::exchange_link::ConnId;
use socket2::{Domain, Protocol, SockAddr, Socket as RawSocket, Type};

use super::{LinkHandler, Shell, Socket, Stop, CONNECT_TIMEOUT, READ_BUFFER, SIDE_BUFFER};
use crate::receive::rx_time::kernel::socket_addr;

/// A connection being opened: the socket and when its `connect` started.
struct Opening {
    socket: RawSocket,
    started: Instant,
}

/// Starts a non-blocking connection to `addr`.
fn start_connect(addr: SocketAddr) -> Result<Opening, String> {
    let socket = RawSocket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("creating a TCP socket: {e}"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("O_NONBLOCK: {e}"))?;
    socket
        .set_tcp_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(format!("connecting to {addr}: {e}")),
    }
    Ok(Opening {
        socket,
        started: Instant::now(),
    })
}

/// Where a connection being opened stands.
enum Progress {
    Open,
    Pending,
    Failed(String),
}

fn check_connect(opening: &Opening) -> Progress {
    let mut pfd = libc::pollfd {
        fd: opening.socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one live pollfd, no waiting.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) } > 0;
    if !ready {
        return if opening.started.elapsed() >= CONNECT_TIMEOUT {
            Progress::Failed("connecting timed out".into())
        } else {
            Progress::Pending
        };
    }
    match opening.socket.take_error() {
        Ok(None) => Progress::Open,
        Ok(Some(e)) | Err(e) => Progress::Failed(format!("connecting: {e}")),
    }
}

/// How often the stop signal and deadline are looked at while nothing else is due.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The next time to look at the timers and the stop flag.
fn next_deadline<H: LinkHandler>(shell: &Shell<'_, H>) -> Instant {
    shell.deadline().min(Instant::now() + STOP_POLL)
}

pub(super) fn run<H: LinkHandler>(shell: &mut Shell<'_, H>, stop: Stop) {
    let mut opening: [Option<Opening>; 2] = [None, None];
    let mut buf = vec![0u8; READ_BUFFER];
    let mut side_buf = vec![0u8; SIDE_BUFFER];
    let side_fd = shell.handler.side_socket().map(|s| s.as_raw_fd());
    let mut deadline = next_deadline(shell);
    loop {
        shell.service();
        while let Some((id, addr)) = shell.next_connect() {
            match start_connect(addr) {
                Ok(o) => opening[id.index()] = Some(o),
                Err(reason) => shell.failed(id, &reason),
            }
        }
        for id in ConnId::ALL {
            let i = id.index();
            let Some(o) = &opening[i] else { continue };
            match check_connect(o) {
                Progress::Pending => {}
                Progress::Open => {
                    let socket = opening[i].take().expect("checked just above");
                    shell.connected(id, Socket::Std(socket.socket.into()));
                    deadline = next_deadline(shell);
                }
                Progress::Failed(reason) => {
                    opening[i] = None;
                    shell.failed(id, &reason);
                }
            }
        }
        for id in ConnId::ALL {
            let Some(fd) = shell.sockets[id.index()].as_ref().map(Socket::fd) else {
                continue;
            };
            // SAFETY: `buf` is a live buffer of its length.
            let n =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            match n {
                0 => shell.failed(id, "the exchange closed the TCP connection"),
                n if n > 0 => {
                    shell.input(id, &buf[..n as usize]);
                    deadline = next_deadline(shell);
                }
                _ => {
                    let e = std::io::Error::last_os_error();
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) {
                        shell.failed(id, &format!("reading from the exchange: {e}"));
                    }
                }
            }
        }
        if let Some(fd) = side_fd {
            // SAFETY: an all-zero sockaddr_storage is valid.
            let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: live buffers of the stated lengths.
            let n = unsafe {
                libc::recvfrom(
                    fd,
                    side_buf.as_mut_ptr().cast(),
                    side_buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_storage).cast(),
                    &mut from_len,
                )
            };
            if n > 0 {
                if let Some(from) = socket_addr(&from) {
                    shell
                        .handler
                        .on_side_datagram(&side_buf[..n as usize], from, Instant::now());
                    deadline = next_deadline(shell);
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            if stop.is_due(now) {
                return;
            }
            shell.timers(now);
            deadline = next_deadline(shell);
        }
        std::hint::spin_loop();
    }
}
