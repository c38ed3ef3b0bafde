//! During a connection rotation both connections deliver the same events; the arbiter decides,
//! per event, whether it is forwarded, so that the switch from the old connection (the primary)
//! to the new one (the successor) loses nothing and repeats nothing.
//!
//! Per stream (by the exchange's own identity, [`crate::binance::identity`]):
//!
//! * The primary leads until the successor has caught up with it: its events are forwarded when
//!   they are newer than anything forwarded (an id above the highest forwarded, or a payload not
//!   among the recent ones).
//! * The successor's events are only watched until then. The stream switches to the successor
//!   once the primary has forwarded everything the successor has shown (the highest id
//!   forwarded is at least the successor's latest; for payload streams, the successor showed a
//!   payload already forwarded). From then on either connection's event is forwarded when it is
//!   newer than anything forwarded, so whichever copy comes first goes out and the other is a
//!   duplicate.
//! * Nothing the successor shows before the switch is forwarded: it may be ahead of the primary,
//!   and the primary's older events would then look like duplicates.
//!
//! The rotation is complete when every stream the primary delivered during it has switched.
//! [`Arbiter::switch_all`] forces the rest (the primary is gone, or the overlap ran too long).

use std::collections::{HashMap, VecDeque};

use crate::binance::{EventId, Position};

/// Which connection an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Primary,
    Successor,
}

/// Payload hashes remembered per stream without ids.
const RECENT_PAYLOADS: usize = 64;
/// Streams tracked at most (Binance allows 1024 per connection); events of streams beyond are
/// forwarded from the primary only, until [`Arbiter::switch_all`].
pub(crate) const MAX_STREAMS: usize = 4096;

#[derive(Default)]
struct Stream {
    /// The highest id forwarded.
    forwarded: Option<u64>,
    /// The successor's latest id, before the switch.
    successor_latest: Option<u64>,
    /// Payload hashes forwarded (streams without ids).
    recent: VecDeque<u64>,
    /// The primary delivered this stream during the rotation.
    from_primary: bool,
    switched: bool,
}

impl Stream {
    fn is_new(&self, position: Position) -> bool {
        match position {
            Position::Id { id, .. } => self.forwarded.is_none_or(|f| id > f),
            Position::Payload(hash) => !self.recent.contains(&hash),
        }
    }

    fn forward(&mut self, position: Position) {
        match position {
            Position::Id { id, .. } => {
                self.forwarded = Some(self.forwarded.map_or(id, |f| f.max(id)))
            }
            Position::Payload(hash) => {
                if self.recent.len() == RECENT_PAYLOADS {
                    self.recent.pop_front();
                }
                self.recent.push_back(hash);
            }
        }
    }

    /// Has the primary forwarded everything the successor showed?
    fn caught_up(&self, successor: Position) -> bool {
        match successor {
            Position::Id { .. } => self
                .forwarded
                .zip(self.successor_latest)
                .is_some_and(|(f, l)| f >= l),
            Position::Payload(hash) => self.recent.contains(&hash),
        }
    }
}

/// The arbiter of one rotation (see the module docs).
#[derive(Default)]
pub(crate) struct Arbiter {
    streams: HashMap<u64, Stream>,
    /// Streams the primary delivered that have not switched yet.
    pending: usize,
    /// After [`Arbiter::switch_all`]: streams seen from now on follow the successor too.
    all_switched: bool,
}

impl Arbiter {
    /// Whether to forward an event with identity `id` that arrived on `source`.
    pub(crate) fn admit(&mut self, source: Source, id: EventId) -> bool {
        if !self.streams.contains_key(&id.stream) && self.streams.len() >= MAX_STREAMS {
            return source == Source::Primary || self.all_switched;
        }
        let all_switched = self.all_switched;
        let stream = self.streams.entry(id.stream).or_insert_with(|| Stream {
            switched: all_switched,
            ..Stream::default()
        });
        match source {
            Source::Primary => {
                if !stream.from_primary {
                    stream.from_primary = true;
                    self.pending += usize::from(!stream.switched);
                }
                let new = stream.is_new(id.position);
                if new {
                    stream.forward(id.position);
                }
                if !stream.switched
                    && stream.successor_latest.is_some()
                    && stream.forwarded >= stream.successor_latest
                {
                    stream.switched = true;
                    self.pending -= 1;
                }
                new
            }
            Source::Successor if stream.switched => {
                let new = stream.is_new(id.position);
                if new {
                    stream.forward(id.position);
                }
                new
            }
            Source::Successor => {
                if let Position::Id { id, .. } = id.position {
                    stream.successor_latest =
                        Some(stream.successor_latest.map_or(id, |l| l.max(id)));
                }
                if stream.caught_up(id.position) {
                    stream.switched = true;
                    self.pending -= usize::from(stream.from_primary);
                }
                false
            }
        }
    }

    /// Every stream the primary delivered has switched to the successor (and it delivered any).
    pub(crate) fn complete(&self) -> bool {
        self.pending == 0 && self.streams.values().any(|s| s.from_primary)
    }

    /// The primary is gone or the overlap lasted long enough: every stream follows the successor.
    pub(crate) fn switch_all(&mut self) {
        for stream in self.streams.values_mut() {
            stream.switched = true;
        }
        self.pending = 0;
        self.all_switched = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(stream: u64, id: u64) -> EventId {
        EventId {
            stream,
            position: Position::Id {
                id,
                consecutive: true,
            },
        }
    }

    /// Feeds events in arrival order; returns the ids forwarded.
    fn run(a: &mut Arbiter, events: &[(Source, u64, u64)]) -> Vec<(u64, u64)> {
        events
            .iter()
            .filter(|&&(source, stream, id)| a.admit(source, trade(stream, id)))
            .map(|&(_, stream, id)| (stream, id))
            .collect()
    }

    use Source::{Primary as P, Successor as S};

    #[test]
    fn a_successor_behind_the_primary_switches_at_once_without_repeats() {
        let mut a = Arbiter::default();
        let out = run(
            &mut a,
            &[
                (P, 1, 10),
                (P, 1, 11),
                (S, 1, 10),
                (S, 1, 11),
                (P, 1, 12),
                (S, 1, 12),
                (S, 1, 13),
                (P, 1, 13),
                (S, 1, 14),
            ],
        );
        assert_eq!(out, [(1, 10), (1, 11), (1, 12), (1, 13), (1, 14)]);
        assert!(a.complete());
    }

    #[test]
    fn a_successor_ahead_waits_until_the_primary_has_caught_up() {
        let mut a = Arbiter::default();
        // The successor shows 12 and 13 before the primary has 11: forwarding them then would
        // make the primary's 11 look old.
        let out = run(
            &mut a,
            &[
                (P, 1, 10),
                (S, 1, 12),
                (S, 1, 13),
                (P, 1, 11),
                (P, 1, 12),
                (P, 1, 13),
                (S, 1, 14),
                (P, 1, 14),
                (P, 1, 15),
                (S, 1, 15),
            ],
        );
        assert_eq!(out, [(1, 10), (1, 11), (1, 12), (1, 13), (1, 14), (1, 15)]);
        assert!(a.complete());
    }

    #[test]
    fn completion_waits_for_every_stream_the_primary_delivered() {
        let mut a = Arbiter::default();
        let out = run(
            &mut a,
            &[(P, 1, 10), (P, 2, 500), (S, 1, 10), (S, 1, 11), (P, 1, 11)],
        );
        assert_eq!(out, [(1, 10), (2, 500), (1, 11)]);
        assert!(!a.complete(), "stream 2 has not switched");
        run(&mut a, &[(S, 2, 500)]);
        assert!(a.complete());
        // Streams only the successor shows do not hold the rotation up, nor are they forwarded
        // before they switch.
        let mut b = Arbiter::default();
        assert_eq!(run(&mut b, &[(P, 1, 1), (S, 3, 7), (S, 1, 1)]), [(1, 1)]);
        assert!(b.complete());
        b.switch_all();
        assert_eq!(run(&mut b, &[(S, 3, 8), (S, 3, 8)]), [(3, 8)]);
        assert_eq!(
            run(&mut b, &[(S, 4, 1)]),
            [(4, 1)],
            "new streams follow too"
        );
    }

    #[test]
    fn payload_streams_switch_on_the_first_common_payload() {
        let mut a = Arbiter::default();
        let p = |hash| EventId {
            stream: 9,
            position: Position::Payload(hash),
        };
        assert!(a.admit(P, p(100)));
        assert!(!a.admit(S, p(200)), "not seen on the primary: not yet");
        assert!(a.admit(P, p(200)));
        assert!(!a.admit(S, p(100)), "already forwarded: the switch");
        assert!(a.complete());
        assert!(a.admit(S, p(300)));
        assert!(!a.admit(P, p(300)));
    }

    #[test]
    fn streams_beyond_the_bound_follow_the_primary() {
        let mut a = Arbiter::default();
        for stream in 0..MAX_STREAMS as u64 {
            a.admit(P, trade(stream, 1));
        }
        assert!(a.admit(P, trade(u64::MAX, 1)));
        assert!(!a.admit(S, trade(u64::MAX, 2)));
        assert_eq!(a.streams.len(), MAX_STREAMS);
    }
}
