//! The relay's UDP side: one socket (set up with socket2), every datagram to every receiver,
//! each copy stamped with its send time and then, with a key, sealed.
//!
//! Datagrams are copied into pooled buffers, so once the pool is warm nothing is allocated per
//! datagram; io_uring takes each buffer by value for the send and hands it back afterwards.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;

use anyhow::Context;
use relay_core::seal::Sealer;
use relay_core::wire::stamp_relay_tx_ns;
use socket2::{Domain, Protocol, Socket, Type};

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
}

pub struct Fanout {
    /// Shared with the relay's receive of NAKs on the same socket.
    socket: Rc<tokio_uring::net::UdpSocket>,
    targets: Vec<SocketAddr>,
    pool: Vec<Vec<u8>>,
    /// Datagrams to send: to every receiver (`None`), or to one (a NAK's answer).
    queue: VecDeque<(Vec<u8>, Option<SocketAddr>)>,
    /// Reused list of (datagram, receiver) pairs being sent.
    batch: Vec<(Vec<u8>, SocketAddr)>,
    /// Seals every copy after its send time is stamped (`--key-file`).
    sealer: Option<Sealer>,
    stats: FanoutStats,
}

/// Builds the std socket with socket2; tokio-uring takes it over.
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
        Fanout {
            socket: Rc::new(tokio_uring::net::UdpSocket::from_std(socket)),
            targets,
            pool: Vec::new(),
            queue: VecDeque::with_capacity(1024),
            batch: Vec::with_capacity(1024),
            sealer,
            stats: FanoutStats::default(),
        }
    }

    /// Copies one encoded datagram into a pooled buffer and queues it for
    /// [`Fanout::send_queued`].
    pub fn enqueue(&mut self, datagram: &[u8]) {
        self.enqueue_for(datagram, None);
    }

    /// Like [`Fanout::enqueue`], for receiver `to` only.
    pub fn enqueue_to(&mut self, to: SocketAddr, datagram: &[u8]) {
        self.enqueue_for(datagram, Some(to));
    }

    fn enqueue_for(&mut self, datagram: &[u8], to: Option<SocketAddr>) {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(datagram);
        self.queue.push_back((buf, to));
    }

    /// The socket, for receiving on it beside the sends.
    pub fn socket(&self) -> Rc<tokio_uring::net::UdpSocket> {
        self.socket.clone()
    }

    /// Sends every queued datagram to every receiver, stamping the send time per copy (and
    /// sealing it, with a key).
    ///
    /// All sends of a batch are submitted together and then awaited together: one trip through
    /// the ring for the batch instead of one per datagram, so the last message of a socket read
    /// does not wait for every send before it. The ring submits in order, and a UDP send with
    /// room in the socket buffer completes inline, so datagrams leave in sequence order.
    pub async fn send_queued(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        for (buf, to) in self.queue.drain(..) {
            if let Some(to) = to {
                batch.push((buf, to));
                continue;
            }
            // Every receiver gets its own copy: each send owns its buffer until it completes.
            for &target in &self.targets[1..] {
                let mut copy = self.pool.pop().unwrap_or_default();
                copy.clear();
                copy.extend_from_slice(&buf);
                batch.push((copy, target));
            }
            batch.push((buf, self.targets[0]));
        }
        if let Some(sealer) = &mut self.sealer {
            let (pool, stats) = (&mut self.pool, &mut self.stats);
            batch.retain_mut(|(buf, _)| {
                stamp_relay_tx_ns(buf, realtime_ns());
                let sealed = sealer.seal(buf);
                if !sealed {
                    stats.seal_errors += 1;
                    pool.push(std::mem::take(buf));
                }
                sealed
            });
        }
        if !batch.is_empty() {
            let socket = &self.socket;
            let stamp = self.sealer.is_none();
            let sends = batch.drain(..).map(|(mut buf, target)| {
                if stamp {
                    stamp_relay_tx_ns(&mut buf, realtime_ns());
                }
                socket.send_to(buf, target)
            });
            for (sent, buf) in futures_util::future::join_all(sends).await {
                match sent {
                    Ok(n) => {
                        self.stats.datagrams_sent += 1;
                        self.stats.bytes_sent += n as u64;
                    }
                    Err(_) => self.stats.send_errors += 1,
                }
                self.pool.push(buf);
            }
        }
        self.batch = batch;
    }

    pub fn stats(&self) -> FanoutStats {
        self.stats
    }
}
