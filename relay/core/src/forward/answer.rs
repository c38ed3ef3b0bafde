//! How the relay answers a receiver's NAK: the datagrams it still keeps go back to that receiver
//! alone, marked as retransmissions, at most at a configured byte rate (so requests can never
//! starve live traffic); what it no longer keeps is reported unavailable, so the receiver stops
//! asking.
//!
//! With a key, only sealed NAKs are answered, and each only once: the relay remembers the seal
//! nonces of the NAKs it accepted for the ring's age (at most [`REPLAY_MEMORY`] of them), so a
//! NAK captured and sent again, from any address, gets nothing. A replay older than that asks
//! for datagrams the ring no longer keeps, and its answer is an unavailable notice no larger
//! than the NAK: recovery is never a traffic amplifier. Without a key anyone can ask; the rate
//! limit is then all that bounds the answers.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use relay_wire::{mark_retransmission, Header, Kind, NakRange, Ranges, MAX_NAK_RANGES};

use super::framer::Framer;
use super::retransmit::RetransmitRing;
use crate::seal::{seal_counter, Direction, Opener, Secret};

/// How much the relay keeps and how fast it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// Bytes of sent datagrams kept (`--retransmit-buffer-mb`).
    pub buffer_bytes: usize,
    /// Oldest datagram sent again.
    pub max_age: Duration,
    /// Retransmission bytes per second, at most.
    pub rate_bytes_per_sec: u64,
}

impl Default for RetransmitConfig {
    fn default() -> RetransmitConfig {
        RetransmitConfig {
            buffer_bytes: 64 << 20,
            max_age: Duration::from_secs(10),
            // 100 Mbit/s.
            rate_bytes_per_sec: 12_500_000,
        }
    }
}

/// What the relay did with NAKs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnswerStats {
    pub naks: u64,
    /// NAKs for another epoch, or not NAKs at all (dropped).
    pub naks_ignored: u64,
    /// NAKs refused for their seal: unsealed while the relay has a key, or not opening.
    pub naks_unauthenticated: u64,
    /// Sealed NAKs refused because the same one was answered already.
    pub naks_replayed: u64,
    /// Datagrams sent again.
    pub retransmitted: u64,
    /// Unavailable notices sent.
    pub unavailable: u64,
    /// Datagrams not sent again for now because the rate limit was reached.
    pub rate_limited: u64,
}

/// A token bucket of bytes.
#[derive(Clone, Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    fn new(rate_bytes_per_sec: u64, burst: usize) -> Bucket {
        let capacity = (rate_bytes_per_sec as f64 / 10.0).max(burst as f64);
        Bucket {
            rate: rate_bytes_per_sec as f64,
            capacity,
            tokens: capacity,
            at: None,
        }
    }

    fn take(&mut self, now: Instant, bytes: usize) -> bool {
        if let Some(at) = self.at {
            let earned = now.saturating_duration_since(at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.capacity);
        }
        self.at = Some(now);
        if self.tokens < bytes as f64 {
            return false;
        }
        self.tokens -= bytes as f64;
        true
    }
}

/// Most NAK nonces remembered against replays.
pub const REPLAY_MEMORY: usize = 4096;

/// Seal nonces of the NAKs accepted within the last `max_age`.
struct Replays {
    seen: HashSet<u64>,
    order: VecDeque<(Instant, u64)>,
    max_age: Duration,
}

impl Replays {
    fn new(max_age: Duration) -> Replays {
        Replays {
            seen: HashSet::with_capacity(REPLAY_MEMORY),
            order: VecDeque::with_capacity(REPLAY_MEMORY),
            max_age,
        }
    }

    /// Notes `nonce` at `now`; false if it was seen (and remembered) already.
    fn first_time(&mut self, now: Instant, nonce: u64) -> bool {
        while let Some(&(at, old)) = self.order.front() {
            let expired = now.saturating_duration_since(at) > self.max_age;
            if !expired && self.order.len() < REPLAY_MEMORY {
                break;
            }
            self.seen.remove(&old);
            self.order.pop_front();
        }
        if !self.seen.insert(nonce) {
            return false;
        }
        self.order.push_back((now, nonce));
        true
    }
}

/// The relay's side of gap recovery (see the module docs).
pub struct Answerer {
    ring: RetransmitRing,
    bucket: Bucket,
    scratch: Vec<u8>,
    /// Opens sealed NAKs and remembers them (`None` without a key).
    auth: Option<(Opener, Replays)>,
    stats: AnswerStats,
}

impl Answerer {
    /// With `secret`, only sealed NAKs are answered.
    pub fn new(
        config: &RetransmitConfig,
        datagram_budget: usize,
        secret: Option<&Secret>,
        now: Instant,
    ) -> Answerer {
        Answerer {
            ring: RetransmitRing::new(config.buffer_bytes, datagram_budget, config.max_age, now),
            bucket: Bucket::new(config.rate_bytes_per_sec, 4 * datagram_budget),
            scratch: Vec::with_capacity(datagram_budget),
            auth: secret.map(|s| (s.opener(Direction::Receiver), Replays::new(config.max_age))),
            stats: AnswerStats::default(),
        }
    }

    /// Keeps a datagram just sent, for later NAKs.
    pub fn sent(&mut self, now: Instant, datagram: &[u8]) {
        self.ring.store(now, datagram);
    }

    /// Answers a NAK: retransmissions and unavailable notices go to `reply` (for the requester
    /// only).
    pub fn on_nak(
        &mut self,
        now: Instant,
        nak: &[u8],
        framer: &mut Framer,
        reply: &mut impl FnMut(&[u8]),
    ) {
        let nak = match &mut self.auth {
            Some((opener, replays)) => match opener.open(nak) {
                Ok(opened) => {
                    let nonce = seal_counter(opened).unwrap_or_default();
                    if !replays.first_time(now, nonce) {
                        self.stats.naks_replayed += 1;
                        return;
                    }
                    opened
                }
                Err(_) => {
                    self.stats.naks_unauthenticated += 1;
                    return;
                }
            },
            None => nak,
        };
        let request = match Header::decode(nak) {
            Ok(d) if d.header.kind == Kind::Nak && d.header.epoch == framer.epoch() => d,
            _ => {
                self.stats.naks_ignored += 1;
                return;
            }
        };
        self.stats.naks += 1;
        let sent_end = framer.next_sequence();
        let mut unavailable = [NakRange { first: 0, len: 0 }; MAX_NAK_RANGES];
        let mut missing = 0;
        let mut limited = false;
        for range in Ranges::of(request.body) {
            let Some(end) = range.end() else { continue };
            let end = end.min(sent_end);
            if range.first >= end || limited {
                continue;
            }
            let (stats, bucket, scratch) = (&mut self.stats, &mut self.bucket, &mut self.scratch);
            let (lost_from, lost_to) = self.ring.lookup(now, range.first, end, &mut |datagram| {
                if !bucket.take(now, datagram.len()) {
                    stats.rate_limited += 1;
                    limited = true;
                    return false;
                }
                scratch.clear();
                scratch.extend_from_slice(datagram);
                mark_retransmission(scratch);
                stats.retransmitted += 1;
                reply(scratch);
                true
            });
            if lost_to > lost_from && missing < MAX_NAK_RANGES {
                unavailable[missing] = NakRange {
                    first: lost_from,
                    len: u32::try_from(lost_to - lost_from).unwrap_or(u32::MAX),
                };
                missing += 1;
            }
        }
        if missing > 0 {
            self.stats.unavailable += 1;
            framer.unavailable(&unavailable[..missing], reply);
        }
    }

    pub fn stats(&self) -> AnswerStats {
        self.stats
    }
}
