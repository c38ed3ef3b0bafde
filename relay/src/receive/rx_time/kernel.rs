//! Kernel receive timestamps on the receiver's UDP socket (SO_TIMESTAMPING): the software stamp
//! taken when the stack first sees the packet, and the NIC's hardware stamp where the NIC and
//! driver provide one (veth never does). With them, the count of datagrams the kernel dropped
//! because the socket's receive buffer was full (SO_RXQ_OVFL).

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

pub use relay_core::receive::stamp_join::KernelStamps;
use relay_host::sock::{int_option, set_int_option};

/// Asks the kernel for software and (raw) hardware receive stamps on every datagram, and for the
/// socket's drop count with each.
pub fn enable(socket: &impl AsRawFd) -> io::Result<()> {
    let flags: libc::c_uint = libc::SOF_TIMESTAMPING_RX_SOFTWARE
        | libc::SOF_TIMESTAMPING_SOFTWARE
        | libc::SOF_TIMESTAMPING_RX_HARDWARE
        | libc::SOF_TIMESTAMPING_RAW_HARDWARE;
    set_int_option(
        socket,
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPING,
        flags as libc::c_int,
    )?;
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// Room for one SCM_TIMESTAMPING control message (three timespecs) and some slack.
const CONTROL_LEN: usize = 128;

/// A reusable `recvmsg` with the control buffer it needs: no allocation per datagram.
pub struct StampedReceiver {
    control: [u64; CONTROL_LEN / 8],
    /// The socket's drop count as of the last datagram (SO_RXQ_OVFL: since the socket opened).
    dropped: u32,
}

impl Default for StampedReceiver {
    fn default() -> Self {
        StampedReceiver {
            control: [0; CONTROL_LEN / 8],
            dropped: 0,
        }
    }
}

fn timespec_ns(ts: &libc::timespec) -> Option<u64> {
    let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    (ns != 0).then_some(ns)
}

/// The stamps (and the socket's drop count, into `dropped`) in the control messages of `msg`.
fn control_stamps(msg: &libc::msghdr, dropped: &mut u32) -> KernelStamps {
    let mut stamps = KernelStamps::default();
    // SAFETY: the CMSG_* walk stays inside the control buffer the kernel filled (msg_controllen).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SO_TIMESTAMPING {
                let data = libc::CMSG_DATA(cmsg).cast::<[libc::timespec; 3]>();
                let times = data.read_unaligned();
                stamps.software = timespec_ns(&times[0]);
                stamps.hardware = timespec_ns(&times[2]);
            } else if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SO_RXQ_OVFL
            {
                *dropped = libc::CMSG_DATA(cmsg).cast::<u32>().read_unaligned();
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    stamps
}

impl StampedReceiver {
    /// Receives one datagram into `buf` (`flags` e.g. MSG_DONTWAIT) and returns its length, its
    /// kernel stamps and its sender. A datagram longer than `buf` is an error (`InvalidData`),
    /// never cut short.
    pub fn recv(
        &mut self,
        fd: RawFd,
        buf: &mut [u8],
        flags: libc::c_int,
    ) -> io::Result<(usize, KernelStamps, Option<SocketAddr>)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut from: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = self.control.as_mut_ptr().cast();
        msg.msg_controllen = CONTROL_LEN as _;
        // SAFETY: msg points at live buffers of the stated lengths.
        let n = unsafe { libc::recvmsg(fd, &mut msg, flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "datagram larger than the receive buffer",
            ));
        }
        let stamps = control_stamps(&msg, &mut self.dropped);
        Ok((n as usize, stamps, socket_addr(&from)))
    }

    /// Datagrams the kernel dropped because the receive buffer was full, as the last datagram
    /// received said (each carries the count as of its own arrival, so drops after it would show
    /// with the next one).
    pub fn kernel_drops(&self) -> u64 {
        u64::from(self.dropped)
    }
}

/// Datagrams a [`StampedBatch`] takes per call.
pub const BATCH: usize = 32;
/// Room per datagram: larger than any UDP payload, so nothing is ever cut short.
const SLOT: usize = 65_536;

/// [`StampedReceiver`] for bursts: one `recvmmsg` takes up to [`BATCH`] datagrams, each with its
/// own stamps and sender (buffers allocated once: 2 MiB, reused).
pub struct StampedBatch {
    bufs: Vec<u8>,
    controls: Vec<[u64; CONTROL_LEN / 8]>,
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    dropped: u32,
    received: usize,
}

impl Default for StampedBatch {
    fn default() -> Self {
        // SAFETY: all-zero sockaddr_storage, iovec and mmsghdr are valid values.
        let zero_name: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        let mut b = StampedBatch {
            bufs: vec![0u8; BATCH * SLOT],
            controls: vec![[0u64; CONTROL_LEN / 8]; BATCH],
            names: vec![zero_name; BATCH],
            iovs: Vec::with_capacity(BATCH),
            hdrs: Vec::with_capacity(BATCH),
            dropped: 0,
            received: 0,
        };
        for i in 0..BATCH {
            b.iovs.push(libc::iovec {
                iov_base: b.bufs[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            });
        }
        for i in 0..BATCH {
            // SAFETY: an all-zero mmsghdr is valid; its pointers are set right below.
            let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_hdr.msg_iov = &mut b.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_control = b.controls[i].as_mut_ptr().cast();
            b.hdrs.push(h);
        }
        b
    }
}

impl StampedBatch {
    /// Receives up to [`BATCH`] datagrams (`flags` e.g. MSG_DONTWAIT; a blocking call returns
    /// once the first arrived, with whatever else is queued) and returns how many.
    pub fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        for h in &mut self.hdrs {
            // The kernel shrinks these to what it wrote: give the full room back each time.
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = CONTROL_LEN as _;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the stated lengths (set in `default`).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags | libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Datagram `i` of the last [`StampedBatch::recv`]: its bytes, kernel stamps and sender. A
    /// datagram longer than its slot is an error (`InvalidData`), never cut short.
    pub fn get(&mut self, i: usize) -> io::Result<(&[u8], KernelStamps, Option<SocketAddr>)> {
        if i >= self.received {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no such datagram",
            ));
        }
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "datagram larger than the receive buffer",
            ));
        }
        let stamps = control_stamps(&h.msg_hdr, &mut self.dropped);
        let len = (h.msg_len as usize).min(SLOT);
        Ok((
            &self.bufs[i * SLOT..i * SLOT + len],
            stamps,
            socket_addr(&self.names[i]),
        ))
    }

    /// As [`StampedReceiver::kernel_drops`], as of the last datagram read with `get`.
    pub fn kernel_drops(&self) -> u64 {
        u64::from(self.dropped)
    }
}

/// The receive buffer the kernel actually gave the socket (SO_RCVBUF read back: the kernel
/// doubles the request and caps it at net.core.rmem_max).
pub fn receive_buffer(socket: &impl AsRawFd) -> io::Result<usize> {
    let value = int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUF)?;
    Ok(usize::try_from(value).unwrap_or(0))
}

/// The IPv4 or IPv6 address in `storage`, if it holds one.
pub(crate) fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::from((
                a.sin6_addr.s6_addr,
                u16::from_be(a.sin6_port),
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn loopback_datagrams_carry_a_software_stamp() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&receiver).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        let mut rx = StampedReceiver::default();
        // The kernel switches its global receive stamping on asynchronously (a deferred static
        // key), so the very first datagrams after the first SO_TIMESTAMPING socket may lack one.
        for attempt in 0.. {
            let before = relay_host::clock::realtime_ns();
            sender
                .send_to(b"stamp me", receiver.local_addr().unwrap())
                .unwrap();
            let (n, stamps, from) = rx.recv(receiver.as_raw_fd(), &mut buf, 0).unwrap();
            assert_eq!(
                from,
                Some(sender.local_addr().unwrap()),
                "the sender's address"
            );
            let after = relay_host::clock::realtime_ns();
            assert_eq!(&buf[..n], b"stamp me");
            assert_eq!(stamps.hardware, None, "loopback has no hardware clock");
            if let Some(sw) = stamps.software {
                assert!(before <= sw && sw <= after, "{before} <= {sw} <= {after}");
                return;
            }
            assert!(
                attempt < 200,
                "no software receive stamp after 2 s of datagrams"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_batch_takes_a_burst_in_order_with_each_datagrams_stamps_and_sender() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&receiver).unwrap();
        let senders: Vec<UdpSocket> = (0..2)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let to = receiver.local_addr().unwrap();
        // 40 datagrams, lengths 1..=40 and one of 60 000 bytes, from two senders in turn.
        for i in 1..=40usize {
            senders[i % 2].send_to(&vec![i as u8; i], to).unwrap();
        }
        senders[0].send_to(&vec![7u8; 60_000], to).unwrap();
        let mut batch = StampedBatch::default();
        let mut got = Vec::new();
        let mut calls = 0;
        while got.len() < 41 {
            let n = batch.recv(receiver.as_raw_fd(), 0).unwrap();
            calls += 1;
            assert!((1..=BATCH).contains(&n), "{n}");
            for i in 0..n {
                let (bytes, stamps, from) = batch.get(i).unwrap();
                got.push((bytes.to_vec(), stamps, from));
            }
            assert!(batch.get(n).is_err(), "nothing past what was received");
        }
        for (k, (bytes, stamps, from)) in got.iter().take(40).enumerate() {
            let i = k + 1;
            assert_eq!(bytes.len(), i, "in order, none cut short");
            assert!(bytes.iter().all(|&b| b == i as u8));
            assert_eq!(*from, Some(senders[i % 2].local_addr().unwrap()));
            assert_eq!(stamps.hardware, None);
        }
        assert_eq!(got[40].0.len(), 60_000);
        assert!(
            (2..41).contains(&calls),
            "batched: {calls} calls for 41 datagrams"
        );
    }

    #[test]
    fn datagrams_dropped_on_a_full_receive_buffer_are_counted() {
        let receiver =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        receiver.set_recv_buffer_size(4096).unwrap();
        receiver
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let receiver: UdpSocket = receiver.into();
        enable(&receiver).unwrap();
        assert!(receive_buffer(&receiver).unwrap() < 64 * 1024);
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Nobody reads while 500 datagrams of 1 KB arrive: most cannot fit.
        for _ in 0..500 {
            sender
                .send_to(&[1u8; 1024], receiver.local_addr().unwrap())
                .unwrap();
        }
        let mut rx = StampedReceiver::default();
        let mut buf = [0u8; 2048];
        let mut read = 0;
        while rx
            .recv(receiver.as_raw_fd(), &mut buf, libc::MSG_DONTWAIT)
            .is_ok()
        {
            read += 1;
        }
        assert!(read > 0 && read < 500, "{read}");
        // Each datagram carries the count as of its arrival: the next one tells.
        sender
            .send_to(&[2u8; 10], receiver.local_addr().unwrap())
            .unwrap();
        rx.recv(receiver.as_raw_fd(), &mut buf, 0).unwrap();
        assert_eq!(
            rx.kernel_drops(),
            500 - read,
            "every datagram read or counted"
        );
    }

    #[test]
    fn oversize_datagrams_are_reported_not_truncated() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender
            .send_to(&[7u8; 100], receiver.local_addr().unwrap())
            .unwrap();
        let mut small = [0u8; 10];
        let err = StampedReceiver::default()
            .recv(receiver.as_raw_fd(), &mut small, 0)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn nonblocking_receive_on_an_empty_socket_would_block() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 10];
        let err = StampedReceiver::default()
            .recv(receiver.as_raw_fd(), &mut buf, libc::MSG_DONTWAIT)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
