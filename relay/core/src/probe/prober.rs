//! The prober: isochronous probes to every target, replies matched, losses declared.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use relay_wire::{flags, Header, Kind, ProbeReply, Writer, HEADER_LEN, SEAL_LEN};

use super::summary::{Figures, TargetSummary};
use super::{ProbeRecord, MAX_PROBE_LEN, MIN_PROBE_LEN};
use crate::seal::{Direction, OpenError, Opener, Sealer, Secret};
use crate::stats::LatencyStats;

/// How a prober probes.
#[derive(Clone, Debug)]
pub struct ProberConfig {
    /// The targets' names, as records and summaries show them (the caller resolves them).
    pub targets: Vec<String>,
    /// Probes per target.
    pub count: u64,
    pub interval: Duration,
    /// Bytes of each probe datagram, seal included (a reply has the same length).
    pub length: usize,
    /// A probe without a reply this long after it was sent is lost.
    pub timeout: Duration,
    /// This run's session id (random), so a reflector tells runs apart.
    pub epoch: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("no target to probe")]
    NoTargets,
    #[error("--count must be at least 1")]
    NoProbes,
    #[error("--interval must be above 0")]
    ZeroInterval,
    #[error("--timeout must be above 0")]
    ZeroTimeout,
    #[error("--length {0} is outside {1}..={2} bytes")]
    Length(usize, usize, usize),
}

#[derive(Default)]
struct Target {
    sent: u64,
    received: u64,
    lost: u64,
    duplicates: u64,
    late: u64,
    reordered: u64,
    unexpected: u64,
    highest_answered: u64,
    /// The reply with the largest reflector count: (its sequence, the count).
    reflector: Option<(u64, u64)>,
    /// Sequences answered, within the duplicate window.
    answered: BTreeSet<u64>,
    /// RTTs of recent answers by sequence, for IPDV with the neighbours.
    recent_rtt: BTreeMap<u64, i64>,
    rtt: LatencyStats,
    send_delay: LatencyStats,
    receive_delay: LatencyStats,
    ipdv: LatencyStats,
    reflector_time: LatencyStats,
}

struct Pending {
    sent_ns: u64,
}

/// Sends probes and accounts their replies (see [`crate::probe`]).
pub struct Prober {
    config: ProberConfig,
    sealer: Option<Sealer>,
    opener: Option<Opener>,
    next_tick: Option<Instant>,
    /// The next sequence to send (from 1) and the next target within its tick.
    next_seq: u64,
    next_target: usize,
    targets: Vec<Target>,
    /// (sequence, target) of every probe without a reply yet.
    pending: BTreeMap<(u64, usize), Pending>,
    /// Loss deadlines in the order sent (one timeout for all: always ascending).
    deadlines: VecDeque<(Instant, u64, usize)>,
    records: VecDeque<ProbeRecord>,
    /// Replies that could not be believed (malformed, unsealed, bad seal, not a reply).
    rejected: u64,
}

impl Prober {
    pub fn new(config: ProberConfig, secret: Option<&Secret>) -> Result<Prober, ConfigError> {
        let seal = if secret.is_some() { SEAL_LEN } else { 0 };
        if config.targets.is_empty() {
            return Err(ConfigError::NoTargets);
        }
        if config.count == 0 {
            return Err(ConfigError::NoProbes);
        }
        if config.interval.is_zero() {
            return Err(ConfigError::ZeroInterval);
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let (min, max) = (MIN_PROBE_LEN + seal, MAX_PROBE_LEN + seal);
        if !(min..=max).contains(&config.length) {
            return Err(ConfigError::Length(config.length, min, max));
        }
        let targets = config.targets.iter().map(|_| Target::default()).collect();
        Ok(Prober {
            sealer: secret.map(|s| s.sealer(Direction::Prober)),
            opener: secret.map(|s| s.opener(Direction::Reflector)),
            config,
            next_tick: None,
            next_seq: 1,
            next_target: 0,
            targets,
            pending: BTreeMap::new(),
            deadlines: VecDeque::new(),
            records: VecDeque::new(),
            rejected: 0,
        })
    }

    fn all_sent(&self) -> bool {
        self.next_seq > self.config.count
    }

    /// Every probe sent and every one answered or declared lost.
    pub fn is_done(&self) -> bool {
        self.all_sent() && self.pending.is_empty()
    }

    /// When the prober next needs [`Prober::poll_transmit`] or [`Prober::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let send = (!self.all_sent()).then_some(self.next_tick).flatten();
        let loss = self.deadlines.front().map(|d| d.0);
        match (send, loss) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next probe due at `now`, written into `buf` (at least `length` bytes) and stamped
    /// `wall_ns`: `(target index, length)`. The first call starts the schedule.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        wall_ns: u64,
        buf: &mut [u8],
    ) -> Option<(usize, usize)> {
        let tick = *self.next_tick.get_or_insert(now);
        if self.all_sent() || now < tick || buf.len() < self.config.length {
            return None;
        }
        let (seq, target) = (self.next_seq, self.next_target);
        let sealed = self.sealer.is_some();
        let header = Header {
            flags: if sealed { flags::SEALED } else { 0 },
            relay_tx_ns: wall_ns,
            ..Header::new(Kind::Probe, self.config.epoch, 0, seq)
        };
        let body = self.config.length - HEADER_LEN - if sealed { SEAL_LEN } else { 0 };
        let mut w = Writer::new(&mut buf[..self.config.length], header);
        if !w.push_zeros(body) {
            return None;
        }
        let n = w.finish();
        if let Some(sealer) = &mut self.sealer {
            if !sealer.seal(&mut buf[..n]) {
                return None;
            }
        }
        self.pending
            .insert((seq, target), Pending { sent_ns: wall_ns });
        self.deadlines
            .push_back((now + self.config.timeout, seq, target));
        self.targets[target].sent += 1;
        self.next_target += 1;
        if self.next_target == self.targets.len() {
            self.next_target = 0;
            self.next_seq += 1;
            self.next_tick = Some(tick + self.config.interval);
        }
        Some((target, n))
    }

    /// Declares lost every probe whose timeout has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, seq, target)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(pending) = self.pending.remove(&(seq, target)) else {
                continue; // answered in time
            };
            let t = &mut self.targets[target];
            t.lost += 1;
            self.records.push_back(ProbeRecord {
                target: self.config.targets[target].clone(),
                seq,
                sent_ns: pending.sent_ns,
                reflector_rx_ns: None,
                reflector_tx_ns: None,
                received_ns: None,
                rtt_ns: None,
                send_delay_ns: None,
                receive_delay_ns: None,
                reflector_received: None,
                lost: true,
            });
        }
    }

    /// A datagram from `target`'s address, received at wall time `wall_ns`.
    pub fn handle_datagram(&mut self, target: usize, datagram: &[u8], wall_ns: u64) {
        let Some((header, reply)) = self.open(datagram) else {
            self.rejected += 1;
            return;
        };
        let window = self.window();
        let Some(t) = self.targets.get_mut(target) else {
            self.rejected += 1;
            return;
        };
        let seq = header.sequence;
        let Some(pending) = self.pending.remove(&(seq, target)) else {
            if header.epoch != self.config.epoch || seq == 0 || seq >= self.next_seq {
                t.unexpected += 1;
            } else if t.answered.contains(&seq) {
                t.duplicates += 1;
            } else {
                t.late += 1;
            }
            return;
        };
        if header.epoch != self.config.epoch || reply.probe_tx_ns != pending.sent_ns {
            // Not an answer to what we sent: keep waiting for the real one.
            self.pending.insert((seq, target), pending);
            t.unexpected += 1;
            return;
        }
        let sent = pending.sent_ns;
        let (rx, tx) = (reply.reflector_rx_ns, header.relay_tx_ns);
        let diff = |a: u64, b: u64| {
            (i128::from(a) - i128::from(b)).clamp(i64::MIN.into(), i64::MAX.into()) as i64
        };
        let reflector_time = diff(tx, rx);
        let rtt = diff(wall_ns, sent).saturating_sub(reflector_time);
        let send_delay = diff(rx, sent);
        let receive_delay = diff(wall_ns, tx);
        t.received += 1;
        t.rtt.record(rtt);
        t.send_delay.record(send_delay);
        t.receive_delay.record(receive_delay);
        t.reflector_time.record(reflector_time);
        if seq < t.highest_answered {
            t.reordered += 1;
        }
        t.highest_answered = t.highest_answered.max(seq);
        if t.reflector
            .is_none_or(|(_, count)| reply.reflector_received > count)
        {
            t.reflector = Some((seq, reply.reflector_received));
        }
        for neighbour in [seq.wrapping_sub(1), seq + 1] {
            if let Some(&other) = t.recent_rtt.get(&neighbour) {
                t.ipdv.record(rtt.saturating_sub(other).saturating_abs());
            }
        }
        t.recent_rtt.insert(seq, rtt);
        t.answered.insert(seq);
        // Keep the windows to what a reply can still be matched against.
        let floor = seq.saturating_sub(window);
        while t.answered.first().is_some_and(|&s| s < floor) {
            t.answered.pop_first();
        }
        while t
            .recent_rtt
            .first_key_value()
            .is_some_and(|(&s, _)| s < floor)
        {
            t.recent_rtt.pop_first();
        }
        self.records.push_back(ProbeRecord {
            target: self.config.targets[target].clone(),
            seq,
            sent_ns: sent,
            reflector_rx_ns: Some(rx),
            reflector_tx_ns: Some(tx),
            received_ns: Some(wall_ns),
            rtt_ns: Some(rtt),
            send_delay_ns: Some(send_delay),
            receive_delay_ns: Some(receive_delay),
            reflector_received: Some(reply.reflector_received),
            lost: false,
        });
    }

    /// Of the probes `1..=seq` to target `i`, the reflector got `count` (from the reply to
    /// `seq`): `(lost on the way out, lost in all)` among them. Answers above `seq` are recent, so
    /// still in the duplicate window.
    fn split_loss(&self, i: usize, t: &Target, seq: u64, count: u64) -> (u64, u64) {
        let answered_above = t.answered.range(seq + 1..).count() as u64;
        let pending_up_to = self
            .pending
            .range(..=(seq, usize::MAX))
            .filter(|((_, target), _)| *target == i)
            .count() as u64;
        let received_up_to = t.received.saturating_sub(answered_above);
        let lost = seq
            .saturating_sub(received_up_to)
            .saturating_sub(pending_up_to);
        (seq.saturating_sub(count), lost)
    }

    /// Sequences a reply may still arrive for: those within the timeout, and as many again.
    fn window(&self) -> u64 {
        let per = self.config.timeout.as_nanos() / self.config.interval.as_nanos().max(1);
        (per as u64).saturating_add(1).saturating_mul(2)
    }

    fn open(&mut self, datagram: &[u8]) -> Option<(Header, ProbeReply)> {
        let keyed = self.opener.is_some();
        let opened = match &mut self.opener {
            Some(opener) => match opener.open(datagram) {
                Ok(opened) => opened,
                Err(OpenError::NotSealed | OpenError::BadSeal | OpenError::Malformed(_)) => {
                    return None
                }
            },
            None => datagram,
        };
        let decoded = Header::decode(opened).ok()?;
        if decoded.header.kind != Kind::ProbeReply || decoded.header.is_sealed() != keyed {
            return None;
        }
        let reply = ProbeReply::decode(decoded.body).ok()?;
        Some((decoded.header, reply))
    }

    /// The next record (in the order probes were resolved).
    pub fn poll_record(&mut self) -> Option<ProbeRecord> {
        self.records.pop_front()
    }

    /// Replies from targets that were dropped: malformed, not a reply, or (with a key) unsealed
    /// or badly sealed.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Each target's figures so far.
    pub fn summaries(&self) -> Vec<TargetSummary> {
        self.targets
            .iter()
            .enumerate()
            .zip(&self.config.targets)
            .map(|((i, t), name)| {
                let (outbound, inbound) = match t.reflector {
                    Some((seq, count)) => {
                        let (out, lost) = self.split_loss(i, t, seq, count);
                        (Some(out), Some(lost.saturating_sub(out)))
                    }
                    None => (None, None),
                };
                TargetSummary {
                    target: name.clone(),
                    sent: t.sent,
                    received: t.received,
                    lost: t.lost,
                    loss_pct: (t.sent > 0).then(|| t.lost as f64 * 100.0 / t.sent as f64),
                    lost_outbound: outbound,
                    lost_inbound: inbound,
                    duplicates: t.duplicates,
                    late: t.late,
                    reordered: t.reordered,
                    unexpected: t.unexpected,
                    rtt_ms: Figures::of(&t.rtt),
                    send_delay_ms: Figures::of(&t.send_delay),
                    receive_delay_ms: Figures::of(&t.receive_delay),
                    ipdv_ms: Figures::of(&t.ipdv),
                    reflector_time_ms: Figures::of(&t.reflector_time),
                }
            })
            .collect()
    }
}
