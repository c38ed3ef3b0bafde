//! A/B arbitration across paths (CME MDP 3.0's model, applied across two routes): the same
//! exchange events arrive over several paths (the relay's datagrams, a direct exchange
//! connection, another relay); each event is matched across them by the exchange's own identity
//! ([`crate::binance::identity`], the one the relay's gapless rotation uses), the first copy wins
//! and is delivered, later copies are dropped and counted.
//!
//! Per path: how many events it won, by how much (the time from its copy to the next path's
//! copy of the same event), and how many events only it delivered (what it masked of the other
//! paths' losses). An event is settled once its window has passed since its first copy: every
//! copy that will come has come by then, or the other paths lost it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::binance::EventId;
use crate::stats::{ComponentSummary, LatencyStats};

pub mod ledger;
use ledger::Ledger;

/// Events awaiting settlement at most (beyond it the oldest is settled early).
pub const MAX_PENDING: usize = 1 << 20;
/// How long after its first copy an event waits for the other paths' copies by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5);

struct Pending {
    winner: usize,
    first_ns: u64,
    /// Paths whose copy arrived (bit per path).
    seen: u32,
}

#[derive(Default)]
struct PathBook {
    name: String,
    copies: u64,
    wins: u64,
    /// The winner's lead over the next copy, per event this path won that another path also
    /// delivered (ns).
    margin: LatencyStats,
    only_here: u64,
}

/// One path's part in the arbitration (the summary's `arbitration.paths`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathArbitration {
    pub path: String,
    /// Copies of events that arrived on this path (duplicates within the path included).
    pub copies: u64,
    pub wins: u64,
    /// `wins` over all events.
    pub win_rate: f64,
    /// How much sooner this path's copy was than the next path's, over the events it won that
    /// another path delivered too (µs).
    pub margin: Option<ComponentSummary>,
    /// Events no other path delivered: losses elsewhere this path made good.
    pub only_on_this_path: u64,
    /// A relay path's own loss (its sequence numbers that never arrived); null for a direct
    /// connection, which has none.
    pub events_lost: Option<u64>,
}

/// The summary's `arbitration` object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArbitrationSummary {
    /// Distinct events delivered (the arbitrated stream).
    pub events: u64,
    /// Later copies dropped.
    pub duplicates_dropped: u64,
    /// Events missing from the arbitrated stream: on streams whose ids count events (trade `t`,
    /// aggTrade `a`), the ids between the first and the last delivered that no path brought.
    pub events_missing: u64,
    /// The part of `events_missing` where every path was delivering the stream (see
    /// [`ledger`]): what arbitration failed to mask. The rest is a path's start or end.
    pub events_missing_where_all_paths_delivered: u64,
    /// Events delivered after a later event of their stream (any stream whose ids grow: trade,
    /// aggTrade, depthUpdate, bookTicker, partial depth): a path lost one, and the other path's
    /// copy came after the first path's next event (the first copy wins, nothing is held back to
    /// reorder).
    pub delivered_out_of_order: u64,
    pub paths: Vec<PathArbitration>,
}

/// The arbiter (see the module docs). Times are the receiver's clock, in ns.
pub struct Arbitration {
    paths: Vec<PathBook>,
    /// Completeness and order of the arbitrated stream.
    ledger: Ledger,
    pending: HashMap<EventId, Pending>,
    /// First arrivals in order, for settling.
    order: VecDeque<(u64, EventId)>,
    window_ns: u64,
    events: u64,
    duplicates: u64,
}

impl Arbitration {
    /// An arbiter over the named paths (at most 32).
    pub fn new(paths: &[&str], window: Duration) -> Arbitration {
        assert!(paths.len() <= 32, "at most 32 paths");
        Arbitration {
            paths: paths
                .iter()
                .map(|p| PathBook {
                    name: p.to_string(),
                    ..PathBook::default()
                })
                .collect(),
            ledger: Ledger::new(paths.len()),
            pending: HashMap::new(),
            order: VecDeque::new(),
            window_ns: window.as_nanos() as u64,
            events: 0,
            duplicates: 0,
        }
    }

    /// Event `id` arrived on `path` at `at_ns`: true when it is the first copy (deliver it),
    /// false for a later one (drop it).
    pub fn offer(&mut self, path: usize, id: EventId, at_ns: u64) -> bool {
        self.settle(at_ns.saturating_sub(self.window_ns));
        let Some(book) = self.paths.get_mut(path) else {
            return false;
        };
        book.copies += 1;
        let bit = 1u32 << path;
        if let Some(p) = self.pending.get_mut(&id) {
            if p.seen & bit == 0 && p.seen.count_ones() == 1 {
                // The first other path's copy: the winner's margin over it.
                let lead = at_ns.saturating_sub(p.first_ns).min(i64::MAX as u64) as i64;
                self.paths[p.winner].margin.record(lead);
            }
            p.seen |= bit;
            self.duplicates += 1;
            self.ledger.note(path, id, false);
            return false;
        }
        if self.pending.len() >= MAX_PENDING {
            if let Some(&(t, _)) = self.order.front() {
                self.settle(t);
            }
        }
        self.pending.insert(
            id,
            Pending {
                winner: path,
                first_ns: at_ns,
                seen: bit,
            },
        );
        self.order.push_back((at_ns, id));
        self.ledger.note(path, id, true);
        self.paths[path].wins += 1;
        self.events += 1;
        true
    }

    /// Settles every event first seen at or before `until_ns`.
    fn settle(&mut self, until_ns: u64) {
        while let Some(&(t, id)) = self.order.front() {
            if t > until_ns {
                break;
            }
            self.order.pop_front();
            if let Some(p) = self.pending.remove(&id) {
                if p.seen.count_ones() == 1 {
                    self.paths[p.winner].only_here += 1;
                }
            }
        }
    }

    /// Settles everything (the run is over).
    pub fn finish(&mut self) {
        self.settle(u64::MAX);
    }

    pub fn summary(&self) -> ArbitrationSummary {
        ArbitrationSummary {
            events: self.events,
            duplicates_dropped: self.duplicates,
            events_missing: self.ledger.missing(),
            events_missing_where_all_paths_delivered: self.ledger.missing_in_common_span(),
            delivered_out_of_order: self.ledger.out_of_order(),
            paths: self
                .paths
                .iter()
                .map(|b| PathArbitration {
                    path: b.name.clone(),
                    copies: b.copies,
                    wins: b.wins,
                    win_rate: if self.events == 0 {
                        0.0
                    } else {
                        b.wins as f64 / self.events as f64
                    },
                    margin: b.margin.component(),
                    only_on_this_path: b.only_here,
                    events_lost: None,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::identity::event_id;

    fn trade(t: u64) -> EventId {
        event_id(format!(r#"{{"e":"trade","E":1,"s":"BTCUSDT","t":{t},"p":"1"}}"#).as_bytes())
    }

    #[test]
    fn the_first_copy_wins_and_later_ones_are_counted() {
        let mut a = Arbitration::new(&["relay", "direct"], Duration::from_secs(1));
        let ms = 1_000_000;
        // Trade 1: relay first by 30 ms. Trade 2: direct first by 10 ms. Trade 3: relay only.
        // Trade 4: direct only.
        assert!(a.offer(0, trade(1), 100 * ms));
        assert!(!a.offer(1, trade(1), 130 * ms));
        assert!(a.offer(1, trade(2), 140 * ms));
        assert!(!a.offer(0, trade(2), 150 * ms));
        assert!(a.offer(0, trade(3), 160 * ms));
        assert!(a.offer(1, trade(4), 170 * ms));
        assert!(
            !a.offer(1, trade(4), 171 * ms),
            "a duplicate within one path is dropped too"
        );
        a.finish();
        let s = a.summary();
        assert_eq!((s.events, s.duplicates_dropped), (4, 3));
        let (relay, direct) = (&s.paths[0], &s.paths[1]);
        assert_eq!(
            (relay.wins, relay.only_on_this_path, relay.copies),
            (2, 1, 3)
        );
        assert_eq!(
            (direct.wins, direct.only_on_this_path, direct.copies),
            (2, 1, 4)
        );
        assert_eq!(relay.win_rate, 0.5);
        assert_eq!(
            (s.events_missing, s.delivered_out_of_order),
            (0, 0),
            "trades 1-4, each once, in order"
        );
        let m = relay.margin.unwrap();
        assert_eq!((m.count, m.min_us), (1, 30_000.0));
        assert_eq!(direct.margin.unwrap().count, 1);
    }

    #[test]
    fn the_arbitrated_stream_says_what_no_path_brought_and_what_came_late() {
        let mut a = Arbitration::new(&["relay", "direct"], Duration::from_secs(1));
        // Trades 1..=10: the relay lost 4 and 5, the direct path lost 5 and 8; the direct copy of
        // 4 came after the relay's 6.
        let mut t = 0;
        let mut at = || {
            t += 1_000;
            t
        };
        for id in [1, 2, 3, 6, 7, 8, 9, 10] {
            a.offer(0, trade(id), at());
            if id == 6 {
                a.offer(1, trade(4), at());
            }
        }
        for id in [1, 2, 3, 6, 7, 9, 10] {
            a.offer(1, trade(id), at());
        }
        a.finish();
        let s = a.summary();
        assert_eq!(s.events, 9);
        assert_eq!(s.events_missing, 1, "trade 5");
        assert_eq!(s.delivered_out_of_order, 1, "trade 4");
    }

    #[test]
    fn a_copy_after_the_window_is_a_new_event_and_memory_is_bounded() {
        let mut a = Arbitration::new(&["a", "b"], Duration::from_millis(10));
        assert!(a.offer(0, trade(1), 0));
        // 20 ms later the first copy is settled (only on a) and forgotten.
        assert!(
            a.offer(1, trade(1), 20_000_000),
            "too late to be matched: delivered again"
        );
        assert_eq!(a.summary().paths[0].only_on_this_path, 1);
        for t in 0..10_000u64 {
            a.offer(0, trade(100 + t), 30_000_000 + t * 1_000_000);
        }
        assert!(
            a.pending.len() <= 11,
            "only the window's events are kept: {}",
            a.pending.len()
        );
    }
}
