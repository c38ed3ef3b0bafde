//! The relay's sans-io side: the [`Forwarder`] turns what the exchange link reports into sequenced
//! datagrams, with the [`framer`] (messages -> datagrams) and the [`heartbeat`] policy (idle ->
//! heartbeat). The I/O shell hands the datagrams to the UDP fan-out.

pub mod framer;
pub mod heartbeat;

use std::time::{Duration, Instant};

use crate::exchange_link::LinkEvent;
use framer::Framer;
use heartbeat::Heartbeat;

/// What the relay counts, for its progress line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardStats {
    pub messages: u64,
    /// Messages longer than the wire format can carry (dropped, never sequenced).
    pub too_large: u64,
    pub heartbeats: u64,
    /// The exchange connection in use (1 + reconnects).
    pub generation: u32,
    pub next_sequence: u64,
}

/// Link events in, datagrams out (through `emit(datagram)`, which copies them into the shell's
/// send buffers: nothing is allocated here). Messages of one read share datagrams: the shell
/// calls [`Forwarder::flush`] when the read is consumed.
pub struct Forwarder {
    framer: Framer,
    heartbeat: Heartbeat,
    stats: ForwardStats,
}

impl Forwarder {
    pub fn new(framer: Framer, heartbeat_interval: Duration, now: Instant) -> Forwarder {
        Forwarder {
            framer,
            heartbeat: Heartbeat::new(heartbeat_interval, now),
            stats: ForwardStats::default(),
        }
    }

    /// Frames what the link reported at `now`.
    pub fn on_event(&mut self, event: LinkEvent<'_>, now: Instant, emit: &mut impl FnMut(&[u8])) {
        let mut sent = false;
        let mut emit = |datagram: &[u8]| {
            sent = true;
            emit(datagram);
        };
        match event {
            LinkEvent::Open { generation, gap } => {
                self.framer.on_upstream_open(gap, &mut emit);
                debug_assert_eq!(self.framer.generation(), generation);
                self.stats.generation = generation;
            }
            LinkEvent::Message {
                payload,
                binary,
                rx_ns,
            } => match self.framer.frame_message(payload, binary, rx_ns, &mut emit) {
                Ok(_) => self.stats.messages += 1,
                Err(_) => self.stats.too_large += 1,
            },
        }
        if sent {
            self.heartbeat.on_send(now);
        }
    }

    /// Sends the datagram being packed, if any: the input read so far is consumed.
    pub fn flush(&mut self, now: Instant, emit: &mut impl FnMut(&[u8])) {
        let mut sent = false;
        self.framer.flush(&mut |datagram| {
            sent = true;
            emit(datagram);
        });
        if sent {
            self.heartbeat.on_send(now);
        }
    }

    /// When the next heartbeat is due if nothing else is sent.
    pub fn poll_timeout(&self) -> Instant {
        self.heartbeat.poll_timeout()
    }

    /// Sends a heartbeat if the link has been idle for the interval.
    pub fn handle_timeout(&mut self, now: Instant, emit: &mut impl FnMut(&[u8])) {
        if self.heartbeat.handle_timeout(now) {
            self.framer.heartbeat(emit);
            self.stats.heartbeats += 1;
        }
    }

    pub fn stats(&self) -> ForwardStats {
        ForwardStats {
            next_sequence: self.framer.next_sequence(),
            ..self.stats
        }
    }
}
