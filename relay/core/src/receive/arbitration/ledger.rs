//! How complete and in order the arbitrated stream is, per exchange stream. Order: on every
//! stream whose events carry a growing id (trade `t`, aggTrade `a`, depthUpdate and bookTicker
//! `u`, partial depth `lastUpdateId`), an event delivered after one with a later id. Completeness,
//! only where the ids count events (trade, aggTrade): the ids no path brought (gaps between the
//! first and the last delivered, filled when a late copy comes), and how many of them fall where
//! every path was delivering that stream (from the latest first id to the earliest last id of the
//! paths): a gap there is one arbitration could not mask; a gap outside it is only the start or
//! the end of a path's run.

use std::collections::HashMap;

use crate::binance::{EventId, Position};

/// Streams followed at most (beyond it, new streams are not).
pub const MAX_STREAMS: usize = 4096;
/// Open gaps kept per stream; beyond it the oldest is given up as missing.
const MAX_GAPS: usize = 1024;

#[derive(Default)]
struct StreamLedger {
    /// Whether the ids count events, so a skipped id is a missing event.
    consecutive: bool,
    first: u64,
    last: u64,
    /// Ids not delivered between `first` and `last`, as sorted inclusive ranges.
    gaps: Vec<(u64, u64)>,
    /// Ids given up on (gaps beyond [`MAX_GAPS`]).
    given_up: u64,
    /// Per path: the first and last id it brought (any copy).
    spans: Vec<Option<(u64, u64)>>,
}

impl StreamLedger {
    /// A first copy of `id` was delivered; false when it came after a later id.
    fn deliver(&mut self, id: u64) -> bool {
        if id > self.last {
            if self.consecutive && id > self.last + 1 {
                self.gaps.push((self.last + 1, id - 1));
            }
            self.last = id;
            if self.gaps.len() > MAX_GAPS {
                let (a, b) = self.gaps.remove(0);
                self.given_up += b - a + 1;
            }
            return true;
        }
        if !self.consecutive {
            // Ids that only grow: nothing to fill, the event is simply late.
            return false;
        }
        if id < self.first {
            if id + 1 < self.first {
                self.gaps.insert(0, (id + 1, self.first - 1));
            }
            self.first = id;
            return false;
        }
        // Inside: fills (part of) a gap, or was delivered already (a copy after the window).
        let at = self.gaps.partition_point(|&(_, b)| b < id);
        if let Some(&(a, b)) = self.gaps.get(at).filter(|&&(a, _)| a <= id) {
            match (a == id, b == id) {
                (true, true) => drop(self.gaps.remove(at)),
                (true, false) => self.gaps[at].0 = id + 1,
                (false, true) => self.gaps[at].1 = id - 1,
                (false, false) => {
                    self.gaps[at].1 = id - 1;
                    self.gaps.insert(at + 1, (id + 1, b));
                }
            }
        }
        id == self.last
    }

    fn missing(&self) -> u64 {
        self.given_up + self.gaps.iter().map(|(a, b)| b - a + 1).sum::<u64>()
    }

    /// Missing ids where every path was delivering the stream.
    fn missing_in_common_span(&self, paths: usize) -> u64 {
        let spans: Vec<(u64, u64)> = self.spans.iter().flatten().copied().collect();
        if spans.len() < paths.max(2) {
            return 0;
        }
        let from = spans.iter().map(|s| s.0).max().unwrap_or(0);
        let to = spans.iter().map(|s| s.1).min().unwrap_or(0);
        self.gaps
            .iter()
            .map(|&(a, b)| (b.min(to) + 1).saturating_sub(a.max(from)))
            .sum()
    }
}

/// See the module docs.
#[derive(Default)]
pub struct Ledger {
    paths: usize,
    streams: HashMap<u64, StreamLedger>,
    out_of_order: u64,
}

impl Ledger {
    pub fn new(paths: usize) -> Ledger {
        Ledger {
            paths,
            ..Ledger::default()
        }
    }

    /// A copy of `event` arrived on `path`; `first` when it is the one delivered.
    pub fn note(&mut self, path: usize, event: EventId, first: bool) {
        let Position::Id { id, consecutive } = event.position else {
            return;
        };
        if !self.streams.contains_key(&event.stream) {
            if !first || self.streams.len() >= MAX_STREAMS {
                return;
            }
            self.streams.insert(
                event.stream,
                StreamLedger {
                    consecutive,
                    first: id,
                    last: id.saturating_sub(1),
                    spans: vec![None; self.paths],
                    ..StreamLedger::default()
                },
            );
        }
        let Some(s) = self.streams.get_mut(&event.stream) else {
            return;
        };
        if let Some(span) = s.spans.get_mut(path) {
            let (a, b) = span.get_or_insert((id, id));
            (*a, *b) = ((*a).min(id), (*b).max(id));
        }
        if first && !s.deliver(id) {
            self.out_of_order += 1;
        }
    }

    pub fn missing(&self) -> u64 {
        self.streams.values().map(StreamLedger::missing).sum()
    }

    pub fn missing_in_common_span(&self) -> u64 {
        self.streams
            .values()
            .map(|s| s.missing_in_common_span(self.paths))
            .sum()
    }

    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(id: u64) -> EventId {
        EventId {
            stream: 1,
            position: Position::Id {
                id,
                consecutive: true,
            },
        }
    }

    #[test]
    fn gaps_open_fill_and_split() {
        let mut l = Ledger::new(2);
        for id in [1, 2, 6, 10] {
            l.note(0, trade(id), true);
        }
        assert_eq!(l.missing(), 3 + 3, "3..=5 and 7..=9");
        l.note(1, trade(4), true);
        l.note(1, trade(8), true);
        l.note(1, trade(9), true);
        assert_eq!(l.missing(), 2 + 1, "3, 5 and 7");
        assert_eq!(l.out_of_order(), 3);
        l.note(1, trade(4), false);
        assert_eq!(l.missing(), 3, "a later copy changes nothing");
    }

    #[test]
    fn ids_that_only_grow_count_late_events_but_no_gaps() {
        let book = |id| EventId {
            stream: 2,
            position: Position::Id {
                id,
                consecutive: false,
            },
        };
        let mut l = Ledger::new(2);
        // bookTicker update ids: 10, then 30 on path 0, which lost 20; path 1's 20 comes after.
        l.note(0, book(10), true);
        l.note(0, book(30), true);
        l.note(1, book(10), false);
        l.note(1, book(20), true);
        l.note(1, book(30), false);
        l.note(0, book(40), true);
        assert_eq!(l.out_of_order(), 1, "20 after 30");
        assert_eq!(
            (l.missing(), l.missing_in_common_span()),
            (0, 0),
            "skipped update ids are not missing events"
        );
        // A late copy delivered again after the window is late too.
        l.note(1, book(30), true);
        assert_eq!(l.out_of_order(), 2);
    }

    #[test]
    fn only_gaps_where_every_path_delivered_count_as_unmasked() {
        let mut l = Ledger::new(2);
        // Path 0 brings 1..=20 but loses 3 and 15; path 1 runs from 10 to 30 and loses 25.
        for id in (1..=20).filter(|&i| i != 3 && i != 15) {
            l.note(0, trade(id), true);
        }
        for id in (10..=30).filter(|&i| i != 25) {
            l.note(1, trade(id), id > 20 || id == 15);
        }
        assert_eq!(l.missing(), 2, "3 and 25");
        assert_eq!(
            l.missing_in_common_span(),
            0,
            "15 was masked; 3 and 25 are outside 10..=20"
        );
        let mut lone = Ledger::new(2);
        for id in [1, 3] {
            lone.note(0, trade(id), true);
        }
        assert_eq!(
            (lone.missing(), lone.missing_in_common_span()),
            (1, 0),
            "one path only"
        );
    }
}
