//! The sleeping-forwarder floor: the least a forwarder that sleeps between reads can do. After
//! the TLS WebSocket handshake (the relay's own session), it only moves bytes: a blocking `read`
//! of the exchange's TCP stream, and those bytes, still TLS records, sent on in UDP datagrams of
//! at most [`DATAGRAM`] bytes, all of one read in one `sendmmsg`. No decryption, no decoding, no
//! framing, no allocation: its CPU per message is the wake-up, the TCP read and the UDP send,
//! which every forwarder that sleeps pays. The bench receiver is handed the session and decrypts
//! the stream there, so the floor's messages are counted and timed like any path's.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use relay_core::session::{Session, SessionEvent};

use crate::probe::{open_session, udp_to};

/// First bytes of each datagram the floor sends; the rest is the exchange's bytes as read.
pub const PASS_MAGIC: [u8; 4] = *b"PASS";
/// The largest datagram it sends (an Ethernet MTU's UDP payload).
pub const DATAGRAM: usize = 1472;
const PAYLOAD: usize = DATAGRAM - PASS_MAGIC.len();
const READ_BUFFER: usize = 64 * 1024;
const SLOTS: usize = READ_BUFFER.div_ceil(PAYLOAD);
/// How long a read blocks before the stop flag is looked at again.
const STOP_POLL: Duration = Duration::from_millis(100);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

static MAGIC: [u8; 4] = PASS_MAGIC;

/// What the floor hands the bench receiver when its handshake is done.
pub struct Handoff {
    /// The session that decrypts and decodes the bytes passed on.
    pub session: Session,
    /// Messages the handshake's last read already carried (decoded here, not passed on).
    pub handshake_messages: u64,
    /// The forwarding thread, for its CPU time (`/proc/self/task/TID`).
    pub tid: libc::pid_t,
}

/// Opens `url` (trusting `ca_pem`), sends the [`Handoff`], then passes every byte read on to `to`
/// until `stop` is raised or the exchange closes. Call it on the thread to measure.
pub fn forward(
    url: &str,
    ca_pem: &[u8],
    to: SocketAddr,
    handoff: mpsc::Sender<Handoff>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let (mut tcp, mut session) = open_session(url, ca_pem, STOP_POLL)?;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut out = Vec::new();
    let mut handshake_messages = 0;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    while !session.is_open() {
        if session.wants_write() {
            out.clear();
            session.take_output(&mut out);
            tcp.write_all(&out)?;
        }
        if stop.load(Ordering::Relaxed) {
            bail!("stopped before the WebSocket handshake finished");
        }
        if Instant::now() >= deadline {
            bail!("the WebSocket handshake did not finish within {HANDSHAKE_TIMEOUT:?}");
        }
        let n = match read(&mut tcp, &mut buf)? {
            Some(0) => bail!("the simulator closed the connection during the handshake"),
            Some(n) => n,
            None => continue,
        };
        session.handle_input(&buf[..n], Instant::now(), &mut |e| {
            if let SessionEvent::Data { .. } = e {
                handshake_messages += 1;
            }
        })?;
    }
    let udp = udp_to(to)?;
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    handoff
        .send(Handoff {
            session,
            handshake_messages,
            tid,
        })
        .context("the bench receiver is gone")?;

    // Each slot: the magic, then its share of the read; the headers point at the slots, which
    // never move (the Vec is not resized).
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = vec![[empty; 2]; SLOTS];
    // SAFETY: an all-zero mmsghdr is valid.
    let mut hdrs: Vec<libc::mmsghdr> = (0..SLOTS).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, slot) in hdrs.iter_mut().zip(iov.iter_mut()) {
        slot[0] = libc::iovec {
            iov_base: MAGIC.as_ptr() as *mut libc::c_void,
            iov_len: MAGIC.len(),
        };
        h.msg_hdr.msg_iov = slot.as_mut_ptr();
        h.msg_hdr.msg_iovlen = 2;
    }
    while !stop.load(Ordering::Relaxed) {
        let n = match read(&mut tcp, &mut buf)? {
            Some(0) => return Ok(()),
            Some(n) => n,
            None => continue,
        };
        let count = n.div_ceil(PAYLOAD);
        for (slot, chunk) in iov.iter_mut().zip(buf[..n].chunks(PAYLOAD)) {
            slot[1] = libc::iovec {
                iov_base: chunk.as_ptr() as *mut libc::c_void,
                iov_len: chunk.len(),
            };
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: hdrs[sent..count] point at live iovecs over `MAGIC` and `buf`.
            let r = unsafe {
                libc::sendmmsg(
                    udp.as_raw_fd(),
                    hdrs[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e).context("sending to the bench receiver");
                }
            } else {
                sent += r as usize;
            }
        }
    }
    Ok(())
}

/// One read: `Some(n)` (0 when the peer closed), `None` when it timed out or was interrupted.
fn read(tcp: &mut TcpStream, buf: &mut [u8]) -> anyhow::Result<Option<usize>> {
    match tcp.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e).context("reading from the simulator"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Expect, UdpReceiver};
    use feed_sim::{FeedSim, SimConfig};
    use std::sync::Arc;

    #[test]
    fn the_floor_passes_every_message_on_and_the_receiver_decrypts_them() {
        let sim = FeedSim::start(SimConfig {
            rate_per_stream: 5_000.0,
            count: Some(2_000),
            log: false,
            ..SimConfig::default()
        })
        .unwrap();
        let ca = sim.ca_pem().as_bytes().to_vec();
        let url = sim.url("/ws/btcusdt@trade?timeUnit=MICROSECOND");
        let receiver = UdpReceiver::bind().unwrap();
        let to = receiver.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let floor = {
            let stop = stop.clone();
            std::thread::spawn(move || forward(&url, &ca, to, tx, &stop))
        };
        let handoff = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let expect = Expect::new(5_000, 0.4);
        let c = receiver.run_passed_on(&expect, &AtomicBool::new(false), &mut || {}, handoff);
        stop.store(true, Ordering::Relaxed);
        floor.join().unwrap().unwrap();
        assert_eq!(c.stream_error, None);
        assert_eq!(c.received, 2_000);
        assert_eq!(c.duplicates, 0);
        // Every message timed from its `E`, minus the warm-up and the handshake's.
        let timed = c.latency().unwrap().count;
        assert!((1_900..=1_960).contains(&timed), "{timed}");
        // Passed on whole reads: never more datagrams than messages of ~150 bytes need.
        assert!(c.datagrams > 0 && c.datagrams < 2_000, "{}", c.datagrams);
    }

    #[test]
    fn an_exchange_that_hangs_up_during_the_handshake_is_an_error_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            // Take the ClientHello, then hang up without a word.
            let mut hello = [0u8; 4096];
            let _ = conn.read(&mut hello);
        });
        // A CA the client accepts, though the handshake never gets as far as the certificate.
        let issued =
            relay_core::harness::cert::issue("hang-up test", &["127.0.0.1".to_string()]).unwrap();
        let (tx, _rx) = mpsc::channel();
        let url = format!("wss://127.0.0.1:{port}/ws/btcusdt@trade");
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let err = forward(
            &url,
            issued.ca_pem.as_bytes(),
            to,
            tx,
            &AtomicBool::new(false),
        );
        let err = err.unwrap_err();
        server.join().unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("closed the connection during the handshake")
                || text.contains("reading from the simulator"),
            "{text}"
        );
    }

    #[test]
    fn passed_on_bytes_without_a_session_are_an_error_not_messages() {
        let receiver = UdpReceiver::bind().unwrap();
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"PASS\x17\x03\x03", receiver.addr()).unwrap();
        let expect = Expect {
            messages: 1,
            run_time: Duration::from_millis(50),
            first_timeout: Duration::from_secs(5),
            drain: Duration::from_millis(50),
            warmup_messages: 0,
        };
        let c = receiver.run(&expect, &AtomicBool::new(false));
        assert_eq!(c.received, 0);
        assert_eq!(
            c.stream_error.as_deref(),
            Some("passed-on bytes without a session")
        );
    }
}
