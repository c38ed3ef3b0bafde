//! `relay receive --serve-udp ADDR:PORT`: the delivered stream as relay datagrams (the same wire
//! format, [`relay_core::forward::Forwarder`]'s framing, heartbeats and NAK answers) to a local
//! or multicast address, for consumers that want datagrams: another `relay receive` takes them
//! as it takes a relay's. The receiver is then a relay of its own: a new epoch, its own sequence
//! numbers (the delivered stream's, one per event), `tokyo_time` the moment it delivered the
//! message; sealed with the receiver's `--key-file` when it has one.
//!
//! The delivering thread owns the feed and sends from it (one blocking `send_to` per datagram:
//! a local hop completes inside the call); a small thread reads NAKs off the same socket and
//! hands them over.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::Receiver;
use relay_core::binance::TimeUnit;
use relay_core::exchange_link::LinkEvent;
use relay_core::forward::answer::RetransmitConfig;
use relay_core::forward::framer::Framer;
use relay_core::forward::Forwarder;
use relay_core::seal::{Direction, Sealer, Secret};
use relay_core::serve::UdpServeSummary;
use relay_core::wire::MAX_DATAGRAM;

use crate::forward::fanout::stamped_copy;
use crate::forward::random_epoch;

/// One Ethernet MTU, as the relay's default.
const DATAGRAM_BUDGET: usize = 1472;
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Sent datagrams kept to answer NAKs: a local hop needs little.
const RETRANSMIT_BYTES: usize = 8 << 20;
/// NAKs waiting for the delivering thread at most (beyond it they are dropped: the consumer
/// asks again).
const NAK_QUEUE: usize = 1024;

/// A NAK and who sent it.
pub type Nak = (Vec<u8>, SocketAddr);

/// See the module docs.
pub struct DatagramFeed {
    to: SocketAddr,
    epoch: u32,
    secret: Option<Secret>,
    /// Made with the first message, which says the time unit of `E`.
    forwarder: Option<Forwarder>,
    out: Out,
    naks: Receiver<Nak>,
    /// Tells the NAK reader to end.
    stopped: Arc<AtomicBool>,
}

/// What sends the forwarder's datagrams, and counts them.
struct Out {
    socket: UdpSocket,
    sealer: Option<Sealer>,
    copy: Vec<u8>,
    summary: UdpServeSummary,
}

impl Out {
    /// Sends a stamped (and, with a key, sealed) copy of `datagram` to `to`.
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) {
        if !stamped_copy(&mut self.copy, datagram, self.sealer.as_mut()) {
            self.summary.send_errors += 1;
            return;
        }
        match self.socket.send_to(&self.copy, to) {
            Ok(_) => self.summary.datagrams += 1,
            Err(_) => self.summary.send_errors += 1,
        }
    }
}

impl Drop for DatagramFeed {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

impl DatagramFeed {
    pub fn start(to: SocketAddr, secret: Option<&Secret>) -> anyhow::Result<DatagramFeed> {
        let bind: SocketAddr = if to.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(bind).context("--serve-udp: binding a UDP socket")?;
        if let SocketAddr::V4(v4) = to {
            if v4.ip().is_multicast() {
                // Consumers on this host get the group's datagrams; they go no further than
                // the local network.
                socket.set_multicast_loop_v4(true)?;
                socket.set_multicast_ttl_v4(1)?;
            }
        }
        let reader = socket.try_clone().context("--serve-udp: the NAK reader")?;
        reader.set_read_timeout(Some(Duration::from_millis(100)))?;
        let (tx, naks) = crossbeam_channel::bounded(NAK_QUEUE);
        let stopped = Arc::new(AtomicBool::new(false));
        let stop = stopped.clone();
        std::thread::Builder::new()
            .name("serve-udp-naks".into())
            .spawn(move || {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = reader.recv_from(&mut buf) {
                        // A full queue drops the NAK: the consumer asks again.
                        let _ = tx.try_send((buf[..n].to_vec(), from));
                    }
                }
            })
            .context("spawning the NAK reader")?;
        let epoch = random_epoch()?;
        eprintln!("receiver: serving the delivered stream as relay datagrams to {to} (epoch {epoch:#010x})");
        Ok(DatagramFeed {
            to,
            epoch,
            secret: secret.cloned(),
            forwarder: None,
            out: Out {
                socket,
                sealer: secret.map(|s| s.sealer(Direction::Relay)),
                copy: Vec::with_capacity(MAX_DATAGRAM),
                summary: UdpServeSummary {
                    address: to.to_string(),
                    epoch,
                    ..UdpServeSummary::default()
                },
            },
            naks,
            stopped,
        })
    }

    /// The consumers' NAKs, for the delivering thread to wait on.
    pub fn naks(&self) -> &Receiver<Nak> {
        &self.naks
    }

    /// Frames one delivered message (`rx_ns`: when it was delivered); it goes out when its
    /// datagram is full or at [`DatagramFeed::flush`].
    pub fn message(&mut self, payload: &[u8], micros: bool, rx_ns: u64, now: Instant) {
        let forwarder = match &mut self.forwarder {
            Some(f) => f,
            None => {
                let unit = if micros {
                    TimeUnit::Micros
                } else {
                    TimeUnit::Millis
                };
                let framer = Framer::new(self.epoch, DATAGRAM_BUDGET, unit, self.secret.is_some())
                    .expect("the default budget fits a header and a seal");
                let retransmit = RetransmitConfig {
                    buffer_bytes: RETRANSMIT_BYTES,
                    ..RetransmitConfig::default()
                };
                let mut f = Forwarder::new(
                    framer,
                    HEARTBEAT,
                    Some((&retransmit, DATAGRAM_BUDGET)),
                    self.secret.as_ref(),
                    now,
                );
                f.on_event(
                    LinkEvent::Open {
                        generation: 1,
                        gap: None,
                    },
                    now,
                    &mut |_| {},
                );
                self.forwarder.insert(f)
            }
        };
        let (out, to) = (&mut self.out, self.to);
        forwarder.on_event(
            LinkEvent::Message {
                payload,
                binary: false,
                rx_ns,
            },
            now,
            &mut |d| out.send(to, d),
        );
        out.summary.messages += 1;
    }

    /// Sends the datagram being packed: nothing more is ready now.
    pub fn flush(&mut self, now: Instant) {
        let (out, to) = (&mut self.out, self.to);
        if let Some(f) = &mut self.forwarder {
            f.flush(now, &mut |d| out.send(to, d));
        }
    }

    /// When the next heartbeat is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.forwarder.as_ref().map(Forwarder::poll_timeout)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let (out, to) = (&mut self.out, self.to);
        if let Some(f) = &mut self.forwarder {
            f.handle_timeout(now, None, &mut |d| out.send(to, d));
        }
    }

    /// A consumer's NAK: what is kept goes back to it only.
    pub fn nak(&mut self, (nak, from): Nak, now: Instant) {
        let out = &mut self.out;
        out.summary.naks += 1;
        if let Some(f) = &mut self.forwarder {
            f.on_nak(now, &nak, &mut |d| {
                out.summary.retransmitted += 1;
                out.send(from, d);
            });
        }
    }

    pub fn finish(mut self) -> UdpServeSummary {
        self.flush(Instant::now());
        self.out.summary.clone()
    }
}
