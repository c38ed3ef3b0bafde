//! The delay line's system interfaces: AF_PACKET sockets with kernel receive stamps, an absolute
//! CLOCK_MONOTONIC timerfd, `poll` descriptors.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result};
use relay_host::clock::monotonic_ns as mono_ns;
use relay_host::sock::{set_int_option, set_receive_buffer};

use super::FRAME_BUFFER;

pub(super) fn poll_fd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// An absolute CLOCK_MONOTONIC timer that `poll` can wait on next to the sockets.
pub(super) struct Timer {
    pub(super) fd: OwnedFd,
}

impl Timer {
    pub(super) fn new() -> Result<Timer> {
        // SAFETY: plain timerfd creation; checked below.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("timerfd_create");
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Timer {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn set(&self, at_ns: u64) -> Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        let flags = if at_ns == 0 {
            0
        } else {
            libc::TFD_TIMER_ABSTIME
        };
        // SAFETY: spec is live; the old value is not requested.
        if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), flags, &spec, std::ptr::null_mut()) }
            != 0
        {
            return Err(std::io::Error::last_os_error()).context("timerfd_settime");
        }
        Ok(())
    }

    /// Fires at `at_ns` on CLOCK_MONOTONIC (at once if that has passed).
    pub(super) fn arm(&self, at_ns: u64) -> Result<()> {
        self.set(at_ns.max(1))
    }

    pub(super) fn disarm(&self) -> Result<()> {
        self.set(0)
    }

    pub(super) fn clear(&self) {
        let mut expirations = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer; EAGAIN is fine.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                expirations.as_mut_ptr().cast(),
                expirations.len(),
            )
        };
    }
}

/// A non-blocking AF_PACKET raw socket that sees every frame arriving on `interface` (not the
/// ones sent out of it) with its kernel receive time.
pub(super) fn packet_socket(interface: &str) -> Result<OwnedFd> {
    let name = CString::new(interface)?;
    // SAFETY: reads the NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("no interface {interface}"));
    }
    // Protocol 0: the socket receives nothing until bind() names the interface, so no frame of
    // another interface slips in between.
    // SAFETY: plain socket creation; checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("AF_PACKET socket (needs CAP_NET_RAW)");
    }
    // SAFETY: a fresh descriptor we own.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = socket.as_raw_fd();
    set_int_option(&socket, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)
        .context("setsockopt(PACKET_IGNORE_OUTGOING)")?;
    set_int_option(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
        .context("setsockopt(SO_TIMESTAMPNS)")?;
    set_receive_buffer(&socket, 8 << 20).context("setsockopt(SO_RCVBUF)")?;
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = index as i32;
    // SAFETY: addr is live and of the stated size.
    let rc = unsafe {
        libc::bind(
            raw,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("binding an AF_PACKET socket to {interface}"));
    }
    Ok(socket)
}

pub(super) enum Arrival {
    /// Kernel receive time, on CLOCK_MONOTONIC.
    Stamped(u64),
    /// No usable kernel time: the time it was read.
    Unstamped(u64),
    /// Longer than [`FRAME_BUFFER`].
    Oversize,
}

/// Reads one frame into `frame` (resized to it); `None` when nothing is waiting.
pub(super) fn recv_frame(fd: RawFd, frame: &mut Vec<u8>) -> Result<Option<Arrival>> {
    frame.resize(FRAME_BUFFER, 0);
    let mut iov = libc::iovec {
        iov_base: frame.as_mut_ptr().cast(),
        iov_len: frame.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is valid before we fill it.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let n = loop {
        // SAFETY: msg points at live buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_TRUNC | libc::MSG_DONTWAIT) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::WouldBlock => return Ok(None),
            std::io::ErrorKind::Interrupted => continue,
            _ => return Err(e).context("recvmsg on an AF_PACKET socket"),
        }
    };
    let rt_now = relay_host::clock::realtime_ns();
    let mono_now = mono_ns();
    if n > FRAME_BUFFER {
        return Ok(Some(Arrival::Oversize));
    }
    frame.truncate(n);
    let mut stamp = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    // The kernel stamps CLOCK_REALTIME; move it onto CLOCK_MONOTONIC through the current offset.
    // A stamp in the future or implausibly old is not trusted.
    Ok(Some(match stamp {
        Some(rt) if rt <= rt_now && rt_now - rt < 10_000_000_000 => {
            Arrival::Stamped(mono_now - (rt_now - rt).min(mono_now))
        }
        _ => Arrival::Unstamped(mono_now),
    }))
}

/// Writes one frame out of the socket's interface; false when the kernel refused it.
pub(super) fn send(fd: RawFd, frame: &[u8]) -> bool {
    loop {
        // SAFETY: sends from a live buffer of the stated length.
        let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
        if n >= 0 {
            return n as usize == frame.len();
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}
