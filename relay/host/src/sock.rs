//! Socket options the standard library and socket2 do not reach: an integer option by level and
//! name, set and read back, and a receive buffer past `net.core.rmem_max` where the process may
//! (root).

use std::io;
use std::os::fd::AsRawFd;

/// `setsockopt(level, name)` with one `c_int` (flags are passed as their bits).
pub fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `getsockopt(level, name)` of one `c_int`.
pub fn int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a live c_int.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A receive buffer of `bytes`: past `net.core.rmem_max` where allowed (SO_RCVBUFFORCE, root),
/// else as much of it as rmem_max grants (SO_RCVBUF).
pub fn set_receive_buffer(socket: &impl AsRawFd, bytes: libc::c_int) -> io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)
        .or_else(|_| set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn sets_an_option_and_a_receive_buffer() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_int_option(&s, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1).unwrap();
        assert_eq!(
            int_option(&s, libc::SOL_SOCKET, libc::SO_RXQ_OVFL).unwrap(),
            1
        );
        let before = int_option(&s, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap();
        set_receive_buffer(&s, 4 << 20).unwrap();
        let after = int_option(&s, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Forced past rmem_max; the kernel reports twice what it was asked (its overhead).
            assert_eq!(after, 8 << 20);
        } else {
            // Capped by rmem_max, never below what it had.
            assert!(after >= before, "{after} < {before}");
        }
        let e = set_int_option(&s, libc::SOL_SOCKET, -1, 1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOPROTOOPT));
    }
}
