//! The exchange's own identity of an event: which stream it belongs to and where it stands in
//! that stream, read straight from the bytes (the [`super::event_time`] scanner, no allocation).
//! Two connections subscribed to the same stream deliver the same events with the same ids, so
//! the relay can switch connections without a gap or a duplicate, and a receiver can tell from
//! the ids how many events an outage cost.
//!
//! | event | position | consecutive per stream |
//! |---|---|---|
//! | `trade` | trade id `t` | yes: the missing ids are exactly the missed trades |
//! | `aggTrade` | aggregate trade id `a` | yes |
//! | `depthUpdate` | final update id `u` (the event covers `U..=u`) | no: `U` follows the last `u` |
//! | `bookTicker` (spot: no `e`, just `u` and `s`) | order book update id `u` | no |
//! | partial depth (`lastUpdateId`) | `lastUpdateId` | no |
//! | anything else | a hash of the payload | - |
//!
//! The stream is the combined-stream wrapper's `stream` name when there is one, else the event
//! type and symbol (`e` and `s`) of a raw stream.

use super::event_time::{event_str, event_u64};
use crate::rng::fnv1a_bytes;

const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// Where an event stands in its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Position {
    /// An id that grows along the stream.
    Id { id: u64, consecutive: bool },
    /// No id: a hash of the whole payload (the same event, byte for byte, is the same).
    Payload(u64),
}

/// An event's stream (a hash of its name) and position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventId {
    pub stream: u64,
    pub position: Position,
}

/// The identity of a market-data message (see the module docs).
pub fn event_id(payload: &[u8]) -> EventId {
    let kind = event_str(payload, b"e");
    let stream = match event_str(payload, b"stream") {
        Some(name) => fnv1a_bytes(FNV_BASIS, name),
        None => {
            let h = fnv1a_bytes(FNV_BASIS, kind.unwrap_or(b""));
            fnv1a_bytes(
                fnv1a_bytes(h, b"\0"),
                event_str(payload, b"s").unwrap_or(b""),
            )
        }
    };
    let id = |key: &[u8], consecutive| {
        event_u64(payload, key).map(|id| Position::Id { id, consecutive })
    };
    let position = match kind {
        Some(b"trade") => id(b"t", true),
        Some(b"aggTrade") => id(b"a", true),
        Some(b"depthUpdate") | Some(b"bookTicker") => id(b"u", false),
        None => id(b"u", false).or_else(|| id(b"lastUpdateId", false)),
        Some(_) => None,
    };
    EventId {
        stream,
        position: position.unwrap_or(Position::Payload(fnv1a_bytes(FNV_BASIS, payload))),
    }
}

/// A stream's name for people: the combined-stream wrapper's `stream`, else the event type and
/// symbol of a raw stream (`"trade BTCUSDT"`).
pub fn stream_name(payload: &[u8]) -> Vec<u8> {
    if let Some(name) = event_str(payload, b"stream") {
        return name.to_vec();
    }
    let kind = match event_str(payload, b"e") {
        Some(kind) => kind,
        None if event_u64(payload, b"lastUpdateId").is_some() => b"depth",
        None => b"bookTicker",
    };
    let mut name = kind.to_vec();
    name.push(b' ');
    name.extend_from_slice(event_str(payload, b"s").unwrap_or(b"?"));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(payload: &[u8]) -> Position {
        event_id(payload).position
    }

    #[test]
    fn each_event_type_has_its_id() {
        let trade = br#"{"e":"trade","E":1,"s":"BTCUSDT","t":12345,"p":"0.001","q":"100","T":1,"m":true,"M":true}"#;
        assert_eq!(
            id(trade),
            Position::Id {
                id: 12345,
                consecutive: true
            }
        );
        let agg = br#"{"e":"aggTrade","E":1,"s":"BNBBTC","a":777,"p":"0.001","q":"100","f":100,"l":105,"T":1,"m":true,"M":true}"#;
        assert_eq!(
            id(agg),
            Position::Id {
                id: 777,
                consecutive: true
            }
        );
        let depth = br#"{"e":"depthUpdate","E":1,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[]}"#;
        assert_eq!(
            id(depth),
            Position::Id {
                id: 160,
                consecutive: false
            }
        );
        let book =
            br#"{"u":400900217,"s":"BNBUSDT","b":"25.35","B":"31.21","a":"25.36","A":"40.66"}"#;
        assert_eq!(
            id(book),
            Position::Id {
                id: 400_900_217,
                consecutive: false
            }
        );
        let partial = br#"{"lastUpdateId":160,"bids":[],"asks":[]}"#;
        assert_eq!(
            id(partial),
            Position::Id {
                id: 160,
                consecutive: false
            }
        );
        let kline = br#"{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":1}}"#;
        assert!(
            matches!(id(kline), Position::Payload(_)),
            "no id of its own"
        );
        assert_ne!(
            id(kline),
            id(br#"{"e":"kline","E":2,"s":"BTCUSDT","k":{"t":1}}"#)
        );
    }

    #[test]
    fn streams_are_told_apart_by_name_or_by_type_and_symbol() {
        let wrapped = |stream: &str, t: u64| {
            format!(r#"{{"stream":"{stream}","data":{{"e":"trade","E":1,"s":"BTCUSDT","t":{t}}}}}"#)
        };
        let a = event_id(wrapped("btcusdt@trade", 5).as_bytes());
        let b = event_id(wrapped("btcusdt@trade", 6).as_bytes());
        let c = event_id(wrapped("ethusdt@trade", 5).as_bytes());
        assert_eq!(a.stream, b.stream);
        assert_ne!(a.stream, c.stream);
        assert_eq!(
            a.position,
            Position::Id {
                id: 5,
                consecutive: true
            }
        );
        let raw_btc = event_id(br#"{"e":"trade","E":1,"s":"BTCUSDT","t":5}"#);
        let raw_eth = event_id(br#"{"e":"trade","E":1,"s":"ETHUSDT","t":5}"#);
        let raw_agg = event_id(br#"{"e":"aggTrade","E":1,"s":"BTCUSDT","a":5}"#);
        assert_ne!(raw_btc.stream, raw_eth.stream);
        assert_ne!(raw_btc.stream, raw_agg.stream);
    }

    #[test]
    fn garbage_has_a_payload_identity_and_never_panics() {
        for junk in [
            &b""[..],
            b"{",
            b"not json",
            br#"{"e":"trade","t":"12"}"#,
            br#"{"e":"trade","t":-1}"#,
        ] {
            assert!(matches!(id(junk), Position::Payload(_)), "{junk:?}");
        }
    }
}
