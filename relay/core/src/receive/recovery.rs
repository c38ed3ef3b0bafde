//! The receiver's side of gap recovery: the gaps the accounting opens are given a short time to
//! be only reordering, then asked for again with a NAK to the relay, retried with backoff until
//! they are filled, reported unavailable by the relay, or past their deadline. Anchors: Aeron's
//! NAK after a short delay, MoldUDP64's re-request.
//!
//! The retry interval follows the round trip the receiver measures (a gap's first NAK -> its
//! first retransmission back, Karn's rule), so a slow path is not flooded with requests. A NAK names only sequences
//! still missing when it is sent.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use relay_wire::{flags, Header, Kind, NakRange, Ranges, Writer, MAX_NAK_RANGES, SEAL_LEN};

use crate::seal::Sealer;
use crate::stats::{ComponentSummary, LatencyStats};

/// How the receiver asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// How long a gap may be reordering only, before the first NAK.
    pub reorder_delay: Duration,
    /// Until a round trip is measured, a retry waits this long; after, twice the round trip (but
    /// at least `retry_min`). Each further retry of a gap waits twice as long, up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// A gap not filled this long after it was noticed is given up (it counts as lost).
    pub deadline: Duration,
    /// Most gaps tracked at once; beyond, the oldest is given up.
    pub max_gaps: usize,
}

impl Default for RecoveryConfig {
    fn default() -> RecoveryConfig {
        RecoveryConfig {
            reorder_delay: Duration::from_millis(1),
            // Above a Tokyo-Frankfurt round trip (~240 ms): no retry before the answer can come.
            retry_initial: Duration::from_millis(400),
            retry_min: Duration::from_millis(5),
            retry_max: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            max_gaps: 1024,
        }
    }
}

/// What recovery did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Gaps noticed (ranges of missing sequences).
    pub gaps: u64,
    pub naks_sent: u64,
    pub ranges_requested: u64,
    /// Messages delivered from a retransmission.
    pub recovered: u64,
    /// Ranges the relay reported it no longer keeps.
    pub unavailable_ranges: u64,
    /// Gaps given up at their deadline, or because too many were open.
    pub given_up: u64,
    /// NAKs not sent because they could not be sealed (the system random generator failed).
    pub seal_errors: u64,
}

#[derive(Clone, Copy, Debug)]
struct Gap {
    epoch: u32,
    first: u64,
    end: u64,
    noticed: Instant,
    next_at: Instant,
    attempts: u32,
    /// When the last NAK for it went out, until a retransmission for it came back.
    nak_at: Option<Instant>,
    /// Counted in `gaps`: at once for a gap in the sequence, for an incomplete message only
    /// once it is still incomplete when its first NAK is due.
    counted: bool,
}

/// The receiver's recovery state machine (see the module docs).
pub struct Recovery {
    cfg: RecoveryConfig,
    gaps: VecDeque<Gap>,
    srtt: Option<Duration>,
    stats: RecoveryStats,
    fill: LatencyStats,
    nak: NakBuilder,
    buf: Vec<u8>,
}

/// A NAK stays well under any MTU: 48 + 64 * 12 (+ 24) bytes.
const NAK_BUDGET: usize = relay_wire::HEADER_LEN + MAX_NAK_RANGES * NakRange::LEN + SEAL_LEN;

impl Recovery {
    /// With `sealer`, every NAK is sealed (`--key-file`).
    pub fn new(cfg: RecoveryConfig, sealer: Option<Sealer>) -> Recovery {
        Recovery {
            gaps: VecDeque::with_capacity(cfg.max_gaps.max(1)),
            cfg,
            srtt: None,
            stats: RecoveryStats::default(),
            fill: LatencyStats::default(),
            nak: NakBuilder {
                epoch: 0,
                ranges: Vec::with_capacity(MAX_NAK_RANGES),
                sealer,
            },
            buf: vec![0; NAK_BUDGET],
        }
    }

    /// Sequences `first..end` of `epoch` went missing at `now`.
    pub fn on_gap(&mut self, now: Instant, epoch: u32, first: u64, end: u64) {
        if end <= first {
            return;
        }
        self.stats.gaps += 1;
        self.track(now, epoch, first, end, true);
    }

    /// The first fragment of message `sequence` arrived: if the message is still incomplete
    /// when the reorder allowance has passed (a fragment was lost), it is asked for again like a
    /// gap (the relay sends all its fragments; those already here are dropped as duplicates).
    pub fn on_incomplete(&mut self, now: Instant, epoch: u32, sequence: u64) {
        self.track(now, epoch, sequence, sequence.saturating_add(1), false);
    }

    fn track(&mut self, now: Instant, epoch: u32, first: u64, end: u64, counted: bool) {
        if self.gaps.len() >= self.cfg.max_gaps.max(1) {
            if let Some(oldest) = self.gaps.pop_front() {
                self.stats.gaps += u64::from(!oldest.counted);
                self.stats.given_up += 1;
            }
        }
        self.gaps.push_back(Gap {
            epoch,
            first,
            end,
            noticed: now,
            next_at: now + self.cfg.reorder_delay,
            attempts: 0,
            nak_at: None,
            counted,
        });
    }

    /// A message was delivered at `now`; a retransmitted one fills a gap.
    pub fn on_delivered(&mut self, now: Instant, epoch: u32, sequence: u64, retransmitted: bool) {
        if !retransmitted {
            return;
        }
        self.stats.recovered += 1;
        let Some(gap) = self
            .gaps
            .iter_mut()
            .find(|g| g.epoch == epoch && (g.first..g.end).contains(&sequence))
        else {
            return;
        };
        let fill = now.saturating_duration_since(gap.noticed);
        self.fill
            .record(i64::try_from(fill.as_nanos()).unwrap_or(i64::MAX));
        // Karn's rule: only the answer to a gap's first NAK measures the round trip; after a
        // retry it is not known which NAK was answered.
        if let Some(sent) = gap.nak_at.take().filter(|_| gap.attempts == 1) {
            let sample = now.saturating_duration_since(sent);
            self.srtt = Some(match self.srtt {
                Some(srtt) => (srtt * 7 + sample) / 8,
                None => sample,
            });
        }
    }

    /// The relay no longer keeps the ranges of an unavailable notice: stop asking for them.
    pub fn on_unavailable(&mut self, notice: &[u8]) {
        let Ok(d) = Header::decode(notice) else {
            return;
        };
        if d.header.kind != Kind::Unavailable {
            return;
        }
        for range in Ranges::of(d.body) {
            self.stats.unavailable_ranges += 1;
            let Some(end) = range.end() else { continue };
            for gap in self.gaps.iter_mut().filter(|g| g.epoch == d.header.epoch) {
                // The relay loses its oldest first: what it lacks is a prefix of a gap.
                if range.first <= gap.first && end > gap.first {
                    gap.first = end.min(gap.end);
                }
            }
        }
        self.gaps.retain(|g| g.first < g.end);
    }

    /// When [`Recovery::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.gaps.iter().map(|g| g.next_at).min()
    }

    /// Asks again for every gap that is due at `now` (NAK datagrams to `send`, one per up to
    /// [`MAX_NAK_RANGES`] ranges) and forgets gaps that were filled, left the window
    /// (`is_missing` is false for all their sequences) or reached their deadline.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        is_missing: &impl Fn(u32, u64) -> bool,
        send: &mut impl FnMut(&[u8]),
    ) {
        let retry = |attempts: u32, srtt: Option<Duration>, cfg: &RecoveryConfig| {
            let base = srtt.map_or(cfg.retry_initial, |s| (2 * s).max(cfg.retry_min));
            base.saturating_mul(1 << attempts.min(16))
                .min(cfg.retry_max)
        };
        let nak = &mut self.nak;
        let mut i = 0;
        while i < self.gaps.len() {
            let gap = &mut self.gaps[i];
            while gap.first < gap.end && !is_missing(gap.epoch, gap.first) {
                gap.first += 1;
            }
            while gap.end > gap.first && !is_missing(gap.epoch, gap.end - 1) {
                gap.end -= 1;
            }
            if gap.first >= gap.end {
                self.gaps.remove(i);
                continue;
            }
            if now.saturating_duration_since(gap.noticed) >= self.cfg.deadline {
                self.gaps.remove(i);
                self.stats.given_up += 1;
                continue;
            }
            if now >= gap.next_at {
                if !gap.counted {
                    gap.counted = true;
                    self.stats.gaps += 1;
                }
                let mut seq = gap.first;
                while seq < gap.end {
                    if !is_missing(gap.epoch, seq) {
                        seq += 1;
                        continue;
                    }
                    let run_start = seq;
                    while seq < gap.end && is_missing(gap.epoch, seq) {
                        seq += 1;
                    }
                    nak.push(
                        gap.epoch,
                        NakRange {
                            first: run_start,
                            len: u32::try_from(seq - run_start).unwrap_or(u32::MAX),
                        },
                        &mut self.buf,
                        &mut self.stats,
                        send,
                    );
                }
                gap.next_at = now + retry(gap.attempts, self.srtt, &self.cfg);
                gap.attempts += 1;
                gap.nak_at = Some(now);
            }
            i += 1;
        }
        nak.flush(&mut self.buf, &mut self.stats, send);
    }

    pub fn stats(&self) -> RecoveryStats {
        self.stats
    }

    /// Gaps still being asked for.
    pub fn open_gaps(&self) -> usize {
        self.gaps.len()
    }

    /// Gap noticed -> filled by a retransmission.
    pub fn gap_to_fill(&self) -> Option<ComponentSummary> {
        self.fill.component()
    }

    /// The round trip measured so far (NAK -> retransmission).
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}

/// Ranges collected into NAK datagrams, one epoch at a time (no allocation once warm).
struct NakBuilder {
    epoch: u32,
    ranges: Vec<NakRange>,
    sealer: Option<Sealer>,
}

impl NakBuilder {
    fn push(
        &mut self,
        epoch: u32,
        range: NakRange,
        buf: &mut [u8],
        stats: &mut RecoveryStats,
        send: &mut impl FnMut(&[u8]),
    ) {
        if epoch != self.epoch || self.ranges.len() == MAX_NAK_RANGES {
            self.flush(buf, stats, send);
            self.epoch = epoch;
        }
        self.ranges.push(range);
    }

    fn flush(&mut self, buf: &mut [u8], stats: &mut RecoveryStats, send: &mut impl FnMut(&[u8])) {
        let Some(lowest) = self.ranges.iter().map(|r| r.first).min() else {
            return;
        };
        let header = Header {
            flags: if self.sealer.is_some() {
                flags::SEALED
            } else {
                0
            },
            ..Header::new(Kind::Nak, self.epoch, 0, lowest)
        };
        let mut writer = Writer::new(buf, header);
        let mut ranges = 0;
        for range in self.ranges.drain(..) {
            let pushed = writer.push_range(range);
            debug_assert!(pushed, "a NAK buffer holds MAX_NAK_RANGES ranges");
            ranges += 1;
        }
        let len = writer.finish();
        if let Some(sealer) = &mut self.sealer {
            if !sealer.seal(&mut buf[..len]) {
                stats.seal_errors += 1;
                return;
            }
        }
        stats.ranges_requested += ranges;
        stats.naks_sent += 1;
        send(&buf[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// The ranges of every NAK `handle_timeout` sends at `now`, with `missing` as the truth.
    fn naks(r: &mut Recovery, now: Instant, missing: &[u64]) -> Vec<Vec<(u64, u32)>> {
        let mut sent = Vec::new();
        r.handle_timeout(now, &|_, seq| missing.contains(&seq), &mut |d| {
            let d = Header::decode(d).unwrap();
            assert_eq!(d.header.kind, Kind::Nak);
            sent.push(Ranges::of(d.body).map(|r| (r.first, r.len)).collect());
        });
        sent
    }

    #[test]
    fn asks_after_the_reorder_delay_for_what_is_still_missing_then_backs_off() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RecoveryConfig::default(), None);
        r.on_gap(t0, 7, 10, 20);
        assert_eq!(r.poll_timeout(), Some(t0 + MS));
        // 12..=19 but 14 arrived late meanwhile.
        let missing = [10, 11, 14];
        assert!(
            naks(&mut r, t0, &missing).is_empty(),
            "reordering gets its millisecond"
        );
        assert_eq!(naks(&mut r, t0 + MS, &missing), [vec![(10, 2), (14, 1)]]);
        assert_eq!(
            r.poll_timeout(),
            Some(t0 + MS + 400 * MS),
            "no round trip known yet"
        );
        assert_eq!(naks(&mut r, t0 + 401 * MS, &missing).len(), 1);
        assert_eq!(
            r.poll_timeout(),
            Some(t0 + 401 * MS + 800 * MS),
            "backoff doubles"
        );
        let s = r.stats();
        assert_eq!((s.gaps, s.naks_sent, s.ranges_requested), (1, 2, 4));
    }

    #[test]
    fn the_first_answer_measures_the_round_trip_and_later_retries_follow_it() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RecoveryConfig::default(), None);
        r.on_gap(t0, 7, 10, 12);
        naks(&mut r, t0 + MS, &[10, 11]);
        r.on_delivered(t0 + 41 * MS, 7, 10, true);
        assert_eq!(r.srtt(), Some(40 * MS));
        r.on_delivered(t0 + 43 * MS, 7, 11, true);
        assert_eq!(r.srtt(), Some(40 * MS), "one sample per NAK");
        assert_eq!(r.stats().recovered, 2);
        let fill = r.gap_to_fill().unwrap();
        assert_eq!(
            (fill.count, fill.min_us, fill.max_us),
            (2, 41_000.0, 43_000.0)
        );
        // A new gap: retried after twice the round trip.
        r.on_gap(t0 + 50 * MS, 7, 30, 31);
        naks(&mut r, t0 + 51 * MS, &[30]);
        assert_eq!(r.poll_timeout(), Some(t0 + 51 * MS + 80 * MS));
        // Filled by a late original (not a retransmission): forgotten at the next timeout.
        naks(&mut r, t0 + 131 * MS, &[]);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.stats().recovered, 2);
    }

    #[test]
    fn unavailable_and_deadline_end_the_asking() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RecoveryConfig::default(), None);
        r.on_gap(t0, 7, 10, 20);
        r.on_gap(t0, 7, 30, 40);
        let mut notice = [0u8; 100];
        let mut w = Writer::new(&mut notice, Header::new(Kind::Unavailable, 7, 1, 5));
        assert!(w.push_range(NakRange { first: 5, len: 10 }));
        let len = w.finish();
        r.on_unavailable(&notice[..len]);
        let all: Vec<u64> = (0..100).collect();
        assert_eq!(
            naks(&mut r, t0 + MS, &all),
            [vec![(15, 5), (30, 10)]],
            "10..15 not asked"
        );
        assert!(naks(&mut r, t0 + 5_000 * MS, &all).is_empty());
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.stats().given_up, 2);
        assert_eq!(r.stats().unavailable_ranges, 1);
    }

    #[test]
    fn the_number_of_open_gaps_is_bounded() {
        let t0 = Instant::now();
        let mut r = Recovery::new(
            RecoveryConfig {
                max_gaps: 3,
                ..RecoveryConfig::default()
            },
            None,
        );
        for i in 0..5 {
            r.on_gap(t0, 1, i * 10, i * 10 + 1);
        }
        assert_eq!(r.stats().given_up, 2);
        let all: Vec<u64> = (0..100).collect();
        assert_eq!(
            naks(&mut r, t0 + MS, &all),
            [vec![(20, 1), (30, 1), (40, 1)]]
        );
    }
}
