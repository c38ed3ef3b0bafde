//! Which relay epoch the accounting follows (see the accounting docs, *Epochs*): the current one,
//! a bounded memory of those left, and a few unconfirmed newcomers. One datagram of a new epoch
//! changes nothing: a newcomer takes over only once the current epoch has been silent for the
//! takeover time and the newcomer has sent [`CONFIRMATIONS`] datagrams since, as a restarted
//! relay does and a blind forger beside a live relay cannot.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Epochs left that are remembered, so their late datagrams are dropped as stale.
pub const PAST_MEMORY: usize = 64;
/// Unconfirmed epochs tracked at once; beyond, the one with the fewest datagrams is forgotten.
pub const CANDIDATES: usize = 4;
/// Datagrams a new epoch must send after the current one fell silent, to take over.
pub const CONFIRMATIONS: u32 = 2;

/// What a datagram's epoch means for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The epoch followed: account it.
    Current,
    /// The first epoch seen: it starts now.
    First,
    /// `epoch` takes over from the current one, which fell silent `outage` before `epoch`'s
    /// first datagram since; the lowest sequence it showed meanwhile is `lowest`.
    Takeover { outage: Duration, lowest: u64 },
    /// An epoch left before (`stale_epoch`).
    Stale,
    /// A new epoch, not confirmed (`unconfirmed_epoch`).
    Unconfirmed,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    epoch: u32,
    /// Datagrams since the current epoch's last one.
    datagrams: u32,
    first_at: Instant,
    lowest: u64,
}

pub(super) struct Epochs {
    /// The epoch followed and when its last datagram came.
    current: Option<(u32, Instant)>,
    past: VecDeque<u32>,
    candidates: Vec<Candidate>,
    takeover_after: Duration,
}

impl Epochs {
    pub(super) fn new(takeover_after: Duration) -> Epochs {
        Epochs {
            current: None,
            past: VecDeque::with_capacity(PAST_MEMORY),
            candidates: Vec::with_capacity(CANDIDATES),
            takeover_after,
        }
    }

    /// Classifies a datagram of `epoch` (whose header says `sequence`) arriving at `now`, and
    /// switches epochs when it confirms a takeover.
    pub(super) fn classify(&mut self, now: Instant, epoch: u32, sequence: u64) -> Verdict {
        let (current, last) = match &mut self.current {
            Some((current, last)) if *current == epoch => {
                *last = now.max(*last);
                return Verdict::Current;
            }
            Some((current, last)) => (*current, *last),
            None => {
                self.current = Some((epoch, now));
                return Verdict::First;
            }
        };
        if self.past.contains(&epoch) {
            return Verdict::Stale;
        }
        let candidate = self.note(now, epoch, sequence, last);
        let silent = now.saturating_duration_since(last) >= self.takeover_after;
        if !(silent && candidate.datagrams >= CONFIRMATIONS) {
            return Verdict::Unconfirmed;
        }
        self.candidates.retain(|c| c.epoch != epoch);
        if self.past.len() == PAST_MEMORY {
            self.past.pop_front();
        }
        self.past.push_back(current);
        self.current = Some((epoch, now));
        Verdict::Takeover {
            outage: candidate.first_at.saturating_duration_since(last),
            lowest: candidate.lowest,
        }
    }

    /// Counts a datagram of a newcomer; counting restarts whenever the current epoch spoke
    /// after the newcomer's first datagram (both alive: not a takeover yet).
    fn note(&mut self, now: Instant, epoch: u32, sequence: u64, last: Instant) -> Candidate {
        let fresh = Candidate {
            epoch,
            datagrams: 1,
            first_at: now,
            lowest: sequence,
        };
        let at = match self.candidates.iter().position(|c| c.epoch == epoch) {
            Some(at) => at,
            None if self.candidates.len() < CANDIDATES => {
                self.candidates.push(fresh);
                return fresh;
            }
            None => {
                let weakest = (0..self.candidates.len())
                    .min_by_key(|&i| (self.candidates[i].datagrams, self.candidates[i].first_at))
                    .unwrap_or(0);
                self.candidates[weakest] = fresh;
                return fresh;
            }
        };
        let c = &mut self.candidates[at];
        if c.first_at <= last {
            *c = fresh;
        } else {
            c.datagrams = c.datagrams.saturating_add(1);
            c.lowest = c.lowest.min(sequence);
        }
        *c
    }

    /// The epoch followed, if any.
    pub(super) fn current(&self) -> Option<u32> {
        self.current.map(|(epoch, _)| epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_newcomer_takes_over_only_after_the_current_epoch_falls_silent() {
        let t0 = Instant::now();
        let mut e = Epochs::new(3 * S);
        assert_eq!(e.classify(t0, 1, 10), Verdict::First);
        // Both alive: the newcomer never gets far.
        for i in 1..=10 {
            let at = t0 + i * S / 2;
            assert_eq!(e.classify(at, 1, 10 + u64::from(i)), Verdict::Current);
            assert_eq!(e.classify(at, 2, u64::from(i)), Verdict::Unconfirmed);
        }
        // Epoch 1 stops at t0 + 5 s; epoch 2 goes on.
        assert_eq!(e.classify(t0 + 6 * S, 2, 11), Verdict::Unconfirmed);
        assert_eq!(
            e.classify(t0 + 7 * S, 2, 12),
            Verdict::Unconfirmed,
            "silent 2 s"
        );
        assert_eq!(
            e.classify(t0 + 8 * S, 2, 13),
            Verdict::Takeover {
                outage: S,
                lowest: 11
            }
        );
        assert_eq!(e.current(), Some(2));
        assert_eq!(e.classify(t0 + 8 * S, 1, 21), Verdict::Stale);
        assert_eq!(e.classify(t0 + 8 * S, 2, 14), Verdict::Current);
    }

    #[test]
    fn memory_stays_bounded_under_a_new_epoch_on_every_datagram() {
        let t0 = Instant::now();
        let mut e = Epochs::new(3 * S);
        assert_eq!(e.classify(t0, 0, 1), Verdict::First);
        for i in 0..100_000u32 {
            let at = t0 + Duration::from_micros(u64::from(i));
            assert_eq!(e.classify(at, 1_000 + i, 1), Verdict::Unconfirmed);
            if i % 100 == 0 {
                assert_eq!(e.classify(at, 0, 2), Verdict::Current);
            }
        }
        assert!(e.candidates.len() <= CANDIDATES && e.past.is_empty());
        // A real newcomer, sending steadily while the forger sprays, still gets through once
        // the current epoch is gone.
        let after = t0 + 10 * S;
        let mut verdicts = Vec::new();
        for i in 0..10u32 {
            let at = after + i * S / 10;
            e.classify(at, 50_000_000 + i, 1);
            e.classify(at, 50_000_100 + i, 1);
            verdicts.push(e.classify(at, 7, u64::from(i) + 1));
        }
        assert!(
            verdicts.contains(&Verdict::Takeover {
                outage: Duration::from_secs(10) - Duration::from_micros(99_900),
                lowest: 1
            }),
            "{verdicts:?}"
        );
        assert_eq!(e.current(), Some(7));
    }

    #[test]
    fn the_past_is_bounded() {
        let t0 = Instant::now();
        let mut e = Epochs::new(Duration::ZERO);
        e.classify(t0, 0, 1);
        for epoch in 1..=200u32 {
            let at = t0 + epoch * S;
            e.classify(at, epoch, 1);
            assert!(matches!(e.classify(at, epoch, 2), Verdict::Takeover { .. }));
        }
        assert_eq!(e.past.len(), PAST_MEMORY);
        assert_eq!(e.classify(t0 + 300 * S, 199, 3), Verdict::Stale);
    }
}
