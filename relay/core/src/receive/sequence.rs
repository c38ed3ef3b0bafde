//! The per-epoch sequence window behind [`super::accounting`]: which sequences arrived, which are
//! missing, and which were given up as lost. See the accounting module docs for the semantics.

use super::accounting::DropReason;

/// Where an accepted sequence sits relative to what was seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Position {
    /// At or above the expected end: the stream moves forward (a jump opens a gap).
    New,
    /// Below the expected end and still missing: it arrives out of order.
    Late,
}

/// Sequence tracking for one epoch at a time.
///
/// The window covers the `window` sequences below `end` (exclusive end of what is expected: one
/// past the highest sequence seen, or a heartbeat's next sequence if that is higher). Bit
/// `seq % window` is 1 when `seq` is resolved (delivered, or below the base and so never
/// expected) and 0 while it is missing. When `end` moves forward, the positions it takes over
/// belonged to sequences that now leave the window: the zeros among them are counted lost.
pub(crate) struct SequenceWindow {
    bits: Vec<u64>,
    window: u64,
    mask: u64,
    base: Option<u64>,
    /// `u128` so that sequence `u64::MAX` still has an exclusive end.
    end: u128,
    delivered: u64,
    lost: u64,
    /// The sequences the last [`Self::classify`] or [`Self::expect_until`] made missing (within
    /// the window), until [`Self::take_opened`].
    opened: Option<(u64, u64)>,
}

impl SequenceWindow {
    /// `window` must be a power of two and at least 64.
    pub(crate) fn new(window: u64) -> Self {
        debug_assert!(window.is_power_of_two() && window >= 64);
        SequenceWindow {
            bits: vec![!0u64; (window / 64) as usize],
            window,
            mask: window - 1,
            base: None,
            end: 0,
            delivered: 0,
            lost: 0,
            opened: None,
        }
    }

    /// Forgets everything: a new epoch starts.
    pub(crate) fn reset(&mut self) {
        self.bits.fill(!0);
        self.base = None;
        self.end = 0;
        self.delivered = 0;
        self.lost = 0;
        self.opened = None;
    }

    /// After [`Self::reset`]: the epoch's sequences start at `base` (whatever is seen first).
    pub(crate) fn start_at(&mut self, base: u64) {
        self.base = Some(base);
        self.end = u128::from(base);
    }

    pub(crate) fn base(&self) -> Option<u64> {
        self.base
    }

    /// How many sequences this epoch expects: from the base to the expected end.
    pub(crate) fn expected(&self) -> u128 {
        match self.base {
            Some(base) => self.end - u128::from(base),
            None => 0,
        }
    }

    /// The expected end: one past the highest sequence seen or announced.
    pub(crate) fn end(&self) -> u128 {
        self.end
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    pub(crate) fn lost(&self) -> u64 {
        self.lost
    }

    /// Classifies a data sequence. A [`Position::New`] sequence moves the expected end past it
    /// (counting whatever leaves the window as lost); nothing is marked delivered until
    /// [`Self::deliver`].
    pub(crate) fn classify(&mut self, seq: u64) -> Result<Position, DropReason> {
        let base = *self.base.get_or_insert_with(|| {
            self.end = u128::from(seq);
            seq
        });
        if seq < base {
            return Err(DropReason::BeforeStart);
        }
        let wide = u128::from(seq);
        if wide >= self.end {
            self.open(self.end, wide, wide + 1);
            self.advance(wide + 1);
            return Ok(Position::New);
        }
        if wide + u128::from(self.window) < self.end {
            return Err(DropReason::TooOld);
        }
        if self.is_set(seq) {
            Err(DropReason::Duplicate)
        } else {
            Ok(Position::Late)
        }
    }

    /// Marks a sequence accepted by [`Self::classify`] (and still inside the window) delivered.
    pub(crate) fn deliver(&mut self, seq: u64) {
        let pos = seq & self.mask;
        self.bits[(pos >> 6) as usize] |= 1 << (pos & 63);
        self.delivered += 1;
    }

    /// A heartbeat: every sequence below `next` should have arrived by now.
    pub(crate) fn expect_until(&mut self, next: u64) {
        match self.base {
            None => {
                self.base = Some(next);
                self.end = u128::from(next);
            }
            Some(_) if u128::from(next) > self.end => {
                self.open(self.end, u128::from(next), u128::from(next));
                self.advance(u128::from(next));
            }
            Some(_) => {}
        }
    }

    /// Gives up on every sequence still missing (end of run or of the epoch): they count as lost
    /// and the window is fully resolved, so a later arrival of one of them is a duplicate.
    pub(crate) fn resolve_missing(&mut self) {
        let zeros: u64 = self.bits.iter().map(|w| u64::from(w.count_zeros())).sum();
        self.lost = self.lost.saturating_add(zeros);
        self.bits.fill(!0);
    }

    /// Notes `from..to` as newly missing, the part inside the window once the expected end is
    /// `new_end`.
    fn open(&mut self, from: u128, to: u128, new_end: u128) {
        if to > from {
            let from = from.max(new_end.saturating_sub(u128::from(self.window)));
            // `to <= u64::MAX`: it is a sequence or a heartbeat's next sequence.
            self.opened = Some((from as u64, to as u64));
        }
    }

    /// The sequences that became missing since the last call, if any did.
    pub(crate) fn take_opened(&mut self) -> Option<(u64, u64)> {
        self.opened.take()
    }

    /// True while `seq` is expected, inside the window and not delivered.
    pub(crate) fn is_missing(&self, seq: u64) -> bool {
        let wide = u128::from(seq);
        self.base.is_some_and(|base| seq >= base)
            && wide < self.end
            && wide + u128::from(self.window) >= self.end
            && !self.is_set(seq)
    }

    fn is_set(&self, seq: u64) -> bool {
        let pos = seq & self.mask;
        self.bits[(pos >> 6) as usize] >> (pos & 63) & 1 == 1
    }

    /// Moves the expected end forward to `new_end` (> `end`).
    fn advance(&mut self, new_end: u128) {
        let step = new_end - self.end;
        // `end < new_end <= 2^64`, so the old end fits a u64.
        let from = self.end as u64;
        self.end = new_end;
        if step >= u128::from(self.window) {
            // The whole window leaves, and so do the first `step - window` new sequences, which
            // are missing from the moment they are expected.
            let zeros: u64 = self.bits.iter().map(|w| u64::from(w.count_zeros())).sum();
            let skipped = (step - u128::from(self.window)) as u64;
            self.lost = self.lost.saturating_add(zeros).saturating_add(skipped);
            self.bits.fill(0);
        } else {
            let zeros = self.sweep(from, step as u64);
            self.lost = self.lost.saturating_add(zeros);
        }
    }

    /// Counts the zero bits at the positions of `count` (< window) sequences from `from`, and
    /// clears them: those positions now belong to new, missing sequences.
    fn sweep(&mut self, from: u64, count: u64) -> u64 {
        let mut zeros = 0u64;
        let mut seq = from;
        let mut left = count;
        while left > 0 {
            let pos = seq & self.mask;
            let bit = pos & 63;
            let n = (64 - bit).min(left);
            let run = if n == 64 {
                !0u64
            } else {
                ((1u64 << n) - 1) << bit
            };
            let word = &mut self.bits[(pos >> 6) as usize];
            zeros += u64::from((!*word & run).count_ones());
            *word &= !run;
            seq = seq.wrapping_add(n);
            left -= n;
        }
        zeros
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_longer_than_the_window_count_every_skipped_sequence() {
        let mut w = SequenceWindow::new(64);
        assert_eq!(w.classify(10), Ok(Position::New));
        w.deliver(10);
        // 11..=1009 are skipped; the window keeps 947..=1010 (64 sequences), 63 of them missing.
        assert_eq!(w.classify(1010), Ok(Position::New));
        w.deliver(1010);
        assert_eq!(w.lost(), 1009 - 11 + 1 - 63);
        assert_eq!(w.classify(947), Ok(Position::Late));
        assert_eq!(w.classify(946), Err(DropReason::TooOld));
        w.resolve_missing();
        assert_eq!(w.lost(), 1009 - 11 + 1);
        assert_eq!(u128::from(w.delivered() + w.lost()), w.expected());
    }

    #[test]
    fn sweeps_across_word_and_wrap_boundaries() {
        let mut w = SequenceWindow::new(128);
        assert_eq!(w.classify(100), Ok(Position::New));
        w.deliver(100);
        // Deliver every third sequence while moving far past several windows in odd steps.
        let mut next = 101u64;
        let mut delivered = 1u64;
        while next < 2000 {
            next += 1 + next % 7;
            assert_eq!(w.classify(next), Ok(Position::New));
            w.deliver(next);
            delivered += 1;
        }
        w.resolve_missing();
        assert_eq!(w.delivered(), delivered);
        assert_eq!(u128::from(w.delivered() + w.lost()), w.expected());
        assert_eq!(w.expected(), u128::from(next - 100 + 1));
    }

    #[test]
    fn new_gaps_are_reported_once_and_clamped_to_the_window() {
        let mut w = SequenceWindow::new(64);
        assert_eq!(w.classify(10), Ok(Position::New));
        w.deliver(10);
        assert_eq!(w.take_opened(), None, "the base opens no gap");
        assert_eq!(w.classify(11), Ok(Position::New));
        w.deliver(11);
        assert_eq!(w.take_opened(), None);
        assert_eq!(w.classify(15), Ok(Position::New));
        w.deliver(15);
        assert_eq!(w.take_opened(), Some((12, 15)));
        assert_eq!(w.take_opened(), None);
        assert!(w.is_missing(12) && w.is_missing(14) && !w.is_missing(15) && !w.is_missing(11));
        assert_eq!(w.classify(13), Ok(Position::Late));
        w.deliver(13);
        assert!(!w.is_missing(13));
        assert_eq!(w.take_opened(), None, "a late arrival opens nothing");
        w.expect_until(20);
        assert_eq!(
            w.take_opened(),
            Some((16, 20)),
            "a heartbeat exposes the tail"
        );
        assert!(
            w.is_missing(19) && !w.is_missing(20),
            "20 is not expected yet"
        );
        assert_eq!(w.classify(1000), Ok(Position::New));
        assert_eq!(
            w.take_opened(),
            Some((1000 - 63, 1000)),
            "only what the window keeps"
        );
        assert!(!w.is_missing(12), "left the window: lost, not missing");
    }

    #[test]
    fn top_of_the_sequence_space() {
        let mut w = SequenceWindow::new(64);
        assert_eq!(w.classify(u64::MAX - 1), Ok(Position::New));
        w.deliver(u64::MAX - 1);
        assert_eq!(w.classify(u64::MAX), Ok(Position::New));
        w.deliver(u64::MAX);
        assert_eq!(w.classify(u64::MAX), Err(DropReason::Duplicate));
        w.expect_until(u64::MAX);
        w.resolve_missing();
        assert_eq!(w.expected(), 2);
        assert_eq!(w.lost(), 0);
    }
}
