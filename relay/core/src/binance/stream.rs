//! Stream names in Binance's own form (`btcusdt@trade`) and the combined-stream wrapper
//! `{"stream":"<name>","data":<event>}`: where the event is in a message ([`Envelope`]), how to
//! wrap an event for a client that asked for combined streams ([`wrap_into`]), and which stream a
//! raw message (no wrapper, so no name) belongs to ([`StreamNames`]).

use std::ops::Range;

use super::event_time::{event_str, event_u64, wrapper_parts};

/// Where the event is in a message: the wrapper's stream name and the `data` object, or the
/// whole message when it has no wrapper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub stream: Option<&'a [u8]>,
    pub data: Range<usize>,
}

impl Envelope<'_> {
    pub fn of(payload: &[u8]) -> Envelope<'_> {
        match wrapper_parts(payload) {
            Some((stream, data)) => Envelope {
                stream: Some(stream),
                data,
            },
            None => Envelope {
                stream: None,
                data: 0..payload.len(),
            },
        }
    }
}

/// Whether a message starts like Binance's combined-stream wrapper (`{"stream":`): a prefix
/// check, cheap enough for every message.
pub fn is_wrapped(payload: &[u8]) -> bool {
    payload.trim_ascii_start().starts_with(b"{\"stream\"")
}

/// Appends `{"stream":"<stream>","data":<data>}`, Binance's wrapper byte for byte.
pub fn wrap_into(stream: &[u8], data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"stream\":\"");
    out.extend_from_slice(stream);
    out.extend_from_slice(b"\",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
}

/// Whether `name` looks like a Binance stream name: 1-128 bytes of ASCII letters, digits and
/// `@ _ ! - .`, with an `@`. (Binance checks the same shape; whether the stream exists is only
/// known from what arrives.)
pub fn is_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.contains('@')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@_!-.".contains(&b))
}

/// Names the stream of a message. A combined-stream message names its own; a raw one is named
/// from the streams the connection carries (`known`: the URL's and the subscribed ones): the one
/// stream when there is only one, else the known stream of the event's symbol (`s`, lowercased)
/// and type (`e`: trade, aggTrade, depthUpdate, kline, 24hrTicker, 24hrMiniTicker; no `e` with
/// `u` and `s` is a spot bookTicker). An event of a type and symbol no known stream matches is
/// named in Binance's base form (`btcusdt@trade`, `btcusdt@depth`), so a client that subscribed
/// by that name still gets it; a kline of no known stream has no name.
#[derive(Clone, Debug, Default)]
pub struct StreamNames {
    known: Vec<String>,
}

impl StreamNames {
    pub fn new(known: impl IntoIterator<Item = String>) -> StreamNames {
        let mut names: Vec<String> = Vec::new();
        for name in known {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        StreamNames { known: names }
    }

    /// The stream names in the exchange URL's path or query (`/ws/a`, `/ws/a/b`,
    /// `/stream?streams=a/b`).
    pub fn of_url(url: &url::Url) -> Vec<String> {
        let from_path = url
            .path()
            .strip_prefix("/ws/")
            .map(|rest| rest.split('/').map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default();
        let from_query = url
            .query_pairs()
            .filter(|(k, _)| k == "streams")
            .flat_map(|(_, v)| v.split('/').map(str::to_string).collect::<Vec<_>>());
        from_path
            .into_iter()
            .chain(from_query)
            .filter(|s| is_stream_name(s))
            .collect()
    }

    /// Writes the name of the stream `payload` belongs to into `name` (cleared first); false
    /// when it cannot be told (no wrapper, several known streams, and nothing to match by).
    pub fn name_into(&self, payload: &[u8], name: &mut Vec<u8>) -> bool {
        name.clear();
        if let Some(stream) = Envelope::of(payload).stream {
            name.extend_from_slice(stream);
            return true;
        }
        if let [only] = self.known.as_slice() {
            name.extend_from_slice(only.as_bytes());
            return true;
        }
        let Some((base, family)) = base_name(payload, name) else {
            name.clear();
            return false;
        };
        // A known stream of this symbol and family (`btcusdt@depth@100ms` for a depthUpdate).
        let symbol_at = &name[..base - family.len()];
        if let Some(k) = self.known.iter().find(|k| {
            k.as_bytes()
                .strip_prefix(symbol_at)
                .is_some_and(|rest| family_of(rest) == Some(family))
        }) {
            name.clear();
            name.extend_from_slice(k.as_bytes());
            return true;
        }
        // A kline's interval is inside its `k` object: without a known stream, no name.
        if family == b"kline_" {
            name.clear();
            return false;
        }
        true
    }
}

/// The stream family of the part of a name after `symbol@`.
fn family_of(rest: &[u8]) -> Option<&'static [u8]> {
    const FAMILIES: [&[u8]; 7] = [
        b"trade",
        b"aggTrade",
        b"bookTicker",
        b"miniTicker",
        b"ticker",
        b"kline_",
        b"depth",
    ];
    let family = FAMILIES.into_iter().find(|f| rest.starts_with(f))?;
    // `depth5`, `depth10@100ms` are partial books, not depthUpdate streams.
    if family == b"depth" && rest.get(5).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some(family)
}

/// Writes `symbol@family` for a raw event into `name`; returns its length and the family.
fn base_name(payload: &[u8], name: &mut Vec<u8>) -> Option<(usize, &'static [u8])> {
    let symbol = event_str(payload, b"s")?;
    let family: &'static [u8] = match event_str(payload, b"e") {
        Some(b"trade") => b"trade",
        Some(b"aggTrade") => b"aggTrade",
        Some(b"depthUpdate") => b"depth",
        Some(b"kline") => b"kline_",
        Some(b"24hrTicker") => b"ticker",
        Some(b"24hrMiniTicker") => b"miniTicker",
        Some(b"bookTicker") => b"bookTicker",
        None if event_u64(payload, b"u").is_some() => b"bookTicker",
        _ => return None,
    };
    name.extend(symbol.iter().map(u8::to_ascii_lowercase));
    name.push(b'@');
    name.extend_from_slice(family);
    Some((name.len(), family))
}

#[cfg(test)]
mod tests;
