//! What the exchange sent and never reached us, counted from its own event ids: per stream, the
//! ids each exchange connection delivered, and across every change of connection (a reconnect
//! after an outage; a rotation, which should cost nothing) the ids skipped. Trade ids `t` and
//! aggregate trade ids `a` are consecutive per stream, so the skipped ids are exactly the missed
//! events; other streams are listed without a count. Gaps inside one connection are not the
//! exchange's doing (a relay datagram lost on the way is `events_lost`) and are not counted here.
//!
//! The receiver feeds every delivered message through [`ExchangeIds::on_message`] with the
//! connection generation it came on (the relay's `upstream_generation`, or the baseline link's).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::binance::{event_id, stream_name, EventId, Position};

/// Streams tracked at most; more are counted in [`ExchangeReport::untracked_messages`].
pub const MAX_STREAMS: usize = 4096;
/// Connections remembered per stream; older ones merge into the oldest kept.
const MAX_SPANS: usize = 1024;

/// The ids one connection delivered on one stream.
#[derive(Clone, Copy, Debug)]
struct Span {
    generation: u32,
    first: u64,
    last: u64,
}

#[derive(Debug)]
struct StreamIds {
    name: String,
    consecutive: bool,
    messages: u64,
    /// In generation order.
    spans: Vec<Span>,
}

impl StreamIds {
    fn note(&mut self, generation: u32, id: u64) {
        let at = self.spans.partition_point(|s| s.generation < generation);
        match self.spans.get_mut(at) {
            Some(span) if span.generation == generation => {
                span.first = span.first.min(id);
                span.last = span.last.max(id);
            }
            _ => {
                if self.spans.len() == MAX_SPANS {
                    let oldest = self.spans.remove(0);
                    if let Some(next) = self.spans.first_mut() {
                        next.first = next.first.min(oldest.first);
                    }
                }
                let at = self.spans.partition_point(|s| s.generation < generation);
                self.spans.insert(
                    at,
                    Span {
                        generation,
                        first: id,
                        last: id,
                    },
                );
            }
        }
    }

    /// Ids skipped between consecutive connections.
    fn missed(&self) -> Option<u64> {
        self.consecutive.then(|| {
            self.spans
                .windows(2)
                .map(|w| w[1].first.saturating_sub(w[0].last.saturating_add(1)))
                .sum()
        })
    }
}

/// The per-stream ledger (see the module docs).
#[derive(Debug, Default)]
pub struct ExchangeIds {
    streams: HashMap<u64, StreamIds>,
    untracked: u64,
}

/// One stream in the summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamReport {
    /// The combined-stream name, or the event type and symbol of a raw stream.
    pub stream: String,
    pub messages: u64,
    pub first_id: u64,
    pub last_id: u64,
    /// Exchange connections its messages came on.
    pub connections: u32,
    /// Events the exchange sent while no connection was there to get them; null for streams
    /// whose ids do not count events (depth, book ticker).
    pub missed: Option<u64>,
}

/// The summary's `exchange` object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeReport {
    /// Summed over the streams that count.
    pub events_missed: u64,
    pub streams: Vec<StreamReport>,
    /// Messages of streams beyond [`MAX_STREAMS`], or without an id.
    pub untracked_messages: u64,
}

impl ExchangeIds {
    /// One delivered message that came on exchange connection `generation`; returns its
    /// identity.
    pub fn on_message(&mut self, generation: u32, payload: &[u8]) -> EventId {
        let id = event_id(payload);
        self.on_event(generation, id, || {
            String::from_utf8_lossy(&stream_name(payload)).into_owned()
        });
        id
    }

    /// One delivered event, by its identity (`name` gives its stream's name when the stream is
    /// new to the ledger).
    pub fn on_event(&mut self, generation: u32, id: EventId, name: impl FnOnce() -> String) {
        let Position::Id {
            id: position,
            consecutive,
        } = id.position
        else {
            self.untracked += 1;
            return;
        };
        if !self.streams.contains_key(&id.stream) && self.streams.len() >= MAX_STREAMS {
            self.untracked += 1;
            return;
        }
        let stream = self.streams.entry(id.stream).or_insert_with(|| StreamIds {
            name: name(),
            consecutive,
            messages: 0,
            spans: Vec::new(),
        });
        stream.messages += 1;
        stream.note(generation, position);
    }

    /// The ledger so far, streams by name.
    pub fn report(&self) -> ExchangeReport {
        let mut streams: Vec<StreamReport> = self
            .streams
            .values()
            .map(|s| StreamReport {
                stream: s.name.clone(),
                messages: s.messages,
                first_id: s.spans.iter().map(|x| x.first).min().unwrap_or(0),
                last_id: s.spans.iter().map(|x| x.last).max().unwrap_or(0),
                connections: s.spans.len() as u32,
                missed: s.missed(),
            })
            .collect();
        streams.sort_by(|a, b| a.stream.cmp(&b.stream));
        ExchangeReport {
            events_missed: streams.iter().filter_map(|s| s.missed).sum(),
            streams,
            untracked_messages: self.untracked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(stream: &str, t: u64) -> Vec<u8> {
        format!(r#"{{"stream":"{stream}","data":{{"e":"trade","E":1,"s":"X","t":{t}}}}}"#)
            .into_bytes()
    }

    #[test]
    fn ids_skipped_between_connections_are_the_missed_events() {
        let mut ids = ExchangeIds::default();
        for t in 1..=10 {
            ids.on_message(1, &trade("btcusdt@trade", t));
        }
        // An outage: 11..=14 were sent while no connection was up.
        for t in 15..=20 {
            ids.on_message(2, &trade("btcusdt@trade", t));
        }
        // A gapless rotation: nothing skipped.
        for t in 21..=25 {
            ids.on_message(3, &trade("btcusdt@trade", t));
        }
        // A relay datagram lost on the way (3 of another stream): not the exchange's doing.
        for t in [1, 2, 4] {
            ids.on_message(1, &trade("ethusdt@trade", t));
        }
        let depth = br#"{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":9}"#;
        ids.on_message(1, depth);
        ids.on_message(1, br#"{"e":"kline","E":1,"s":"BTCUSDT"}"#);
        let report = ids.report();
        assert_eq!(report.events_missed, 4);
        assert_eq!(report.untracked_messages, 1);
        let btc = &report.streams[0];
        assert_eq!(
            (
                btc.stream.as_str(),
                btc.messages,
                btc.first_id,
                btc.last_id,
                btc.connections,
                btc.missed
            ),
            ("btcusdt@trade", 21, 1, 25, 3, Some(4))
        );
        assert_eq!(report.streams[2].missed, Some(0), "{:?}", report.streams);
        assert_eq!(report.streams[1].stream, "depthUpdate BTCUSDT");
        assert_eq!(report.streams[1].missed, None);
    }

    #[test]
    fn late_messages_of_an_earlier_connection_still_count_for_it() {
        let mut ids = ExchangeIds::default();
        ids.on_message(1, &trade("s", 1));
        ids.on_message(2, &trade("s", 6));
        // 2..=5 arrive late (recovered), from connection 1: nothing was missed after all.
        for t in 2..=5 {
            ids.on_message(1, &trade("s", t));
        }
        assert_eq!(ids.report().events_missed, 0);
    }
}
