//! How the relay answers a receiver's NAK: the datagrams it still keeps go back to that receiver
//! alone, marked as retransmissions, at most at a configured byte rate (so requests can never
//! starve live traffic); what it no longer keeps is reported unavailable, so the receiver stops
//! asking.

use std::time::{Duration, Instant};

use relay_wire::{mark_retransmission, Header, Kind, NakRange, Ranges, MAX_NAK_RANGES};

use super::framer::Framer;
use super::retransmit::RetransmitRing;

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

/// The relay's side of gap recovery (see the module docs).
pub struct Answerer {
    ring: RetransmitRing,
    bucket: Bucket,
    scratch: Vec<u8>,
    stats: AnswerStats,
}

impl Answerer {
    pub fn new(config: &RetransmitConfig, datagram_budget: usize) -> Answerer {
        Answerer {
            ring: RetransmitRing::new(config.buffer_bytes, datagram_budget, config.max_age),
            bucket: Bucket::new(config.rate_bytes_per_sec, 4 * datagram_budget),
            scratch: Vec::with_capacity(datagram_budget),
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
