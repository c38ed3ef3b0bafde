//! The relay's sans-io side: the [`Forwarder`] turns what the exchange link reports into sequenced
//! datagrams, with the [`framer`] (messages -> datagrams) and the [`heartbeat`] policy (idle ->
//! heartbeat), and answers receivers' NAKs from what it sent ([`answer`], [`retransmit`]). The
//! I/O shell hands the datagrams to the UDP fan-out.

pub mod answer;
pub mod framer;
pub mod heartbeat;
pub mod retransmit;

use std::time::{Duration, Instant};

use crate::exchange_link::LinkEvent;
use crate::seal::Secret;
use answer::{AnswerStats, Answerer, RetransmitConfig};
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
    pub answers: AnswerStats,
}

/// Link events in, datagrams out (through `emit(datagram)`, which copies them into the shell's
/// send buffers: nothing is allocated here). Messages of one read share datagrams: the shell
/// calls [`Forwarder::flush`] when the read is consumed.
pub struct Forwarder {
    framer: Framer,
    heartbeat: Heartbeat,
    /// Answers NAKs from the datagrams sent (`None`: recovery off).
    answerer: Option<Answerer>,
    stats: ForwardStats,
}

impl Forwarder {
    /// With `retransmit`, every data datagram sent is kept to answer NAKs; `datagram_budget` is
    /// the framer's. With `secret` (the framer then seals too), only sealed NAKs are answered.
    pub fn new(
        framer: Framer,
        heartbeat_interval: Duration,
        retransmit: Option<(&RetransmitConfig, usize)>,
        secret: Option<&Secret>,
        now: Instant,
    ) -> Forwarder {
        Forwarder {
            framer,
            heartbeat: Heartbeat::new(heartbeat_interval, now),
            answerer: retransmit.map(|(config, budget)| Answerer::new(config, budget, secret, now)),
            stats: ForwardStats::default(),
        }
    }

    /// A NAK from a receiver: what is kept goes back through `reply` (to that receiver only).
    pub fn on_nak(&mut self, now: Instant, nak: &[u8], reply: &mut impl FnMut(&[u8])) {
        match &mut self.answerer {
            Some(answerer) => answerer.on_nak(now, nak, &mut self.framer, reply),
            None => self.stats.answers.naks_ignored += 1,
        }
    }

    /// Frames what the link reported at `now`.
    pub fn on_event(&mut self, event: LinkEvent<'_>, now: Instant, emit: &mut impl FnMut(&[u8])) {
        let mut sent = false;
        let mut keep = keeping(&mut self.answerer, now, emit);
        let mut emit = |datagram: &[u8]| {
            sent = true;
            keep(datagram);
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
        let mut keep = keeping(&mut self.answerer, now, emit);
        self.framer.flush(&mut |datagram| {
            sent = true;
            keep(datagram);
        });
        if sent {
            self.heartbeat.on_send(now);
        }
    }

    /// When the next heartbeat is due if nothing else is sent.
    pub fn poll_timeout(&self) -> Instant {
        self.heartbeat.poll_timeout()
    }

    /// Sends a heartbeat if the link has been idle for the interval; it carries
    /// `upstream_down_since_ns` while the exchange is out of reach.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        upstream_down_since_ns: Option<u64>,
        emit: &mut impl FnMut(&[u8]),
    ) {
        if self.heartbeat.handle_timeout(now) {
            self.framer.heartbeat(
                upstream_down_since_ns,
                &mut keeping(&mut self.answerer, now, emit),
            );
            self.stats.heartbeats += 1;
        }
    }

    pub fn stats(&self) -> ForwardStats {
        ForwardStats {
            next_sequence: self.framer.next_sequence(),
            answers: self
                .answerer
                .as_ref()
                .map_or(self.stats.answers, Answerer::stats),
            ..self.stats
        }
    }
}

/// `emit`, keeping a copy of every datagram in the answerer first.
fn keeping<'a>(
    answerer: &'a mut Option<Answerer>,
    now: Instant,
    emit: &'a mut impl FnMut(&[u8]),
) -> impl FnMut(&[u8]) + 'a {
    move |datagram| {
        if let Some(answerer) = answerer {
            answerer.sent(now, datagram);
        }
        emit(datagram);
    }
}
