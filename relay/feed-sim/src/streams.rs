//! Stream names, request routing and Binance-shaped payloads.
//!
//! Everything here is synchronous and allocation-light so the connection task can build a batch of
//! messages per tick without awaiting anything but the socket.

use std::fmt::Write as _;

// Binance caps one connection at 1024 streams; the simulator does the same so a client that
// would be refused by Binance is refused here too.
use relay_core::binance::MAX_STREAMS_PER_CONNECTION;
use relay_core::rng::{fnv1a, Rng};

/// One price/quantity unit is 1e-8, the precision Binance prints ("0.00100000").
const UNITS_PER_ONE: u64 = 100_000_000;
/// Tick size 0.01: prices move on a grid like a real USDT pair.
const TICK: u64 = 1_000_000;

/// The payload families the simulator can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Trade,
    AggTrade,
    /// `@depth` and `@depth@100ms` share the payload; only Binance's cadence differs.
    Depth,
    BookTicker,
}

/// Parses `<symbol>@<kind>`; symbols must be lowercase alphanumeric as on Binance.
pub(crate) fn parse_stream(name: &str) -> Option<StreamKind> {
    let (symbol, kind) = name.split_once('@')?;
    if symbol.is_empty()
        || symbol.len() > 20
        || !symbol
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return None;
    }
    match kind {
        "trade" => Some(StreamKind::Trade),
        "aggTrade" => Some(StreamKind::AggTrade),
        "depth" | "depth@100ms" => Some(StreamKind::Depth),
        "bookTicker" => Some(StreamKind::BookTicker),
        _ => None,
    }
}

/// What a handshake request asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// `/stream?streams=..`: every event is wrapped as `{"stream":..,"data":..}`.
    pub combined: bool,
    /// Initial streams, deduplicated, in request order.
    pub streams: Vec<String>,
    /// `timeUnit=MICROSECOND`: `E`/`T` in microseconds instead of milliseconds.
    pub micros: bool,
}

/// Why a handshake request was refused; maps to the HTTP status of the rejection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RouteError {
    NotFound(String),
    BadRequest(String),
}

impl RouteError {
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NotFound(_) => 404,
            RouteError::BadRequest(_) => 400,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            RouteError::NotFound(m) | RouteError::BadRequest(m) => m,
        }
    }
}

/// Maps a request path and query to a [`Route`] the way Binance's stream endpoints do.
pub(crate) fn parse_route(path: &str, query: Option<&str>) -> Result<Route, RouteError> {
    let path = percent_decode(path);
    let mut micros = false;
    let mut query_streams: Option<String> = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "timeUnit" => {
                if value.eq_ignore_ascii_case("MICROSECOND") {
                    micros = true;
                } else if value.eq_ignore_ascii_case("MILLISECOND") {
                    micros = false;
                } else {
                    return Err(RouteError::BadRequest(format!(
                        "invalid timeUnit '{value}' (MILLISECOND or MICROSECOND)"
                    )));
                }
            }
            "streams" => query_streams = Some(value.into_owned()),
            _ => {}
        }
    }
    let (combined, list) = if path == "/ws" || path == "/ws/" {
        (false, String::new())
    } else if let Some(rest) = path.strip_prefix("/ws/") {
        (false, rest.to_owned())
    } else if path == "/stream" || path == "/stream/" {
        (true, query_streams.unwrap_or_default())
    } else {
        return Err(RouteError::NotFound(format!(
            "unknown path '{path}' (use /ws/<stream>, /ws or /stream?streams=a/b)"
        )));
    };
    let mut streams: Vec<String> = Vec::new();
    for name in list.split('/').filter(|s| !s.is_empty()) {
        if parse_stream(name).is_none() {
            return Err(RouteError::BadRequest(format!("unknown stream '{name}'")));
        }
        if !streams.iter().any(|s| s == name) {
            streams.push(name.to_owned());
        }
    }
    if streams.len() > MAX_STREAMS_PER_CONNECTION {
        return Err(RouteError::BadRequest(format!(
            "{} streams requested, at most {MAX_STREAMS_PER_CONNECTION} per connection",
            streams.len()
        )));
    }
    Ok(Route {
        combined,
        streams,
        micros,
    })
}

/// Decodes `%XX` escapes (clients may send `%40` for `@`); invalid escapes are kept verbatim.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds one stream's payloads. Prices follow a random walk on a 0.01 grid around a base
/// derived from the symbol, so different symbols look different and runs are repeatable.
#[derive(Clone, Debug)]
pub(crate) struct Generator {
    kind: StreamKind,
    symbol_upper: String,
    rng: Rng,
    /// Mid price in 1e-8 units, always a multiple of [`TICK`].
    mid: u64,
    depth_levels: usize,
}

impl Generator {
    /// `name` must have passed [`parse_stream`].
    pub fn new(name: &str, kind: StreamKind, seed: u64, depth_levels: usize) -> Generator {
        let symbol = name.split('@').next().unwrap_or(name);
        let base_ticks = 1_000 + fnv1a(symbol) % 5_000_000; // 10.00 .. 50010.00
        Generator {
            kind,
            symbol_upper: symbol.to_ascii_uppercase(),
            rng: Rng::new(seed ^ fnv1a(name)),
            mid: base_ticks * TICK,
            depth_levels: depth_levels.max(1),
        }
    }

    /// Appends the event for message `id` to `out`. `event_time` is `E` in the connection's
    /// unit; `unit_per_ms` (1 or 1000) scales the small trade-time lag so `T <= E` in both units.
    pub fn write(&mut self, out: &mut String, id: u64, event_time: u64, unit_per_ms: u64) {
        self.walk();
        match self.kind {
            StreamKind::Trade => {
                let trade_time = event_time.saturating_sub(self.rng.below(2 * unit_per_ms));
                let _ = write!(
                    out,
                    "{{\"e\":\"trade\",\"E\":{event_time},\"s\":\"{}\",\"t\":{id},\"p\":\"",
                    self.symbol_upper
                );
                push_decimal8(out, self.trade_price());
                out.push_str("\",\"q\":\"");
                push_decimal8(out, self.quantity());
                let maker = self.rng.below(2) == 0;
                let _ = write!(out, "\",\"T\":{trade_time},\"m\":{maker},\"M\":true}}");
            }
            StreamKind::AggTrade => {
                let trade_time = event_time.saturating_sub(self.rng.below(2 * unit_per_ms));
                let _ = write!(
                    out,
                    "{{\"e\":\"aggTrade\",\"E\":{event_time},\"s\":\"{}\",\"a\":{id},\"p\":\"",
                    self.symbol_upper
                );
                push_decimal8(out, self.trade_price());
                out.push_str("\",\"q\":\"");
                push_decimal8(out, self.quantity());
                // Two trades per aggregate keeps f..l contiguous across events.
                let first = id.wrapping_mul(2);
                let last = first.wrapping_add(1);
                let maker = self.rng.below(2) == 0;
                let _ = write!(
                    out,
                    "\",\"f\":{first},\"l\":{last},\"T\":{trade_time},\"m\":{maker},\"M\":true}}"
                );
            }
            StreamKind::Depth => {
                // One update id per event: U == u == id, so "U == previous u + 1" holds and a
                // jump in u counts the events a client missed.
                let _ = write!(
                    out,
                    "{{\"e\":\"depthUpdate\",\"E\":{event_time},\"s\":\"{}\",\"U\":{id},\"u\":{id},\"b\":[",
                    self.symbol_upper
                );
                self.write_levels(out, false);
                out.push_str("],\"a\":[");
                self.write_levels(out, true);
                out.push_str("]}");
            }
            StreamKind::BookTicker => {
                let _ = write!(out, "{{\"u\":{id},\"s\":\"{}\",\"b\":\"", self.symbol_upper);
                push_decimal8(out, self.mid);
                out.push_str("\",\"B\":\"");
                push_decimal8(out, self.quantity());
                out.push_str("\",\"a\":\"");
                push_decimal8(out, self.mid + TICK);
                out.push_str("\",\"A\":\"");
                push_decimal8(out, self.quantity());
                out.push_str("\"}");
            }
        }
    }

    fn walk(&mut self) {
        let step = self.rng.below(7) as i64 - 3;
        let ticks = (self.mid / TICK) as i64 + step;
        self.mid = (ticks.max(100) as u64) * TICK;
    }

    fn trade_price(&mut self) -> u64 {
        self.mid + self.rng.below(2) * TICK
    }

    /// 0.00001 .. 5.00000, printed with 8 decimals.
    fn quantity(&mut self) -> u64 {
        (1 + self.rng.below(500_000)) * 1_000
    }

    /// Contiguous levels away from the mid: bids descending, asks ascending, as Binance orders
    /// them. About one level in ten has quantity zero (a removed level).
    fn write_levels(&mut self, out: &mut String, asks: bool) {
        for i in 0..self.depth_levels as u64 {
            let price = if asks {
                self.mid + (i + 1) * TICK
            } else {
                match self.mid.checked_sub((i + 1) * TICK) {
                    Some(p) if p > 0 => p,
                    _ => break,
                }
            };
            let qty = if self.rng.below(10) == 0 {
                0
            } else {
                self.quantity()
            };
            if i > 0 {
                out.push(',');
            }
            out.push_str("[\"");
            push_decimal8(out, price);
            out.push_str("\",\"");
            push_decimal8(out, qty);
            out.push_str("\"]");
        }
    }
}

/// Writes `units` (1e-8) as Binance does: always eight decimals.
pub(crate) fn push_decimal8(out: &mut String, units: u64) {
    let _ = write!(
        out,
        "{}.{:08}",
        units / UNITS_PER_ONE,
        units % UNITS_PER_ONE
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        assert_eq!(parse_stream("btcusdt@trade"), Some(StreamKind::Trade));
        assert_eq!(parse_stream("btcusdt@aggTrade"), Some(StreamKind::AggTrade));
        assert_eq!(parse_stream("btcusdt@depth@100ms"), Some(StreamKind::Depth));
        assert_eq!(
            parse_stream("1000satsusdt@bookTicker"),
            Some(StreamKind::BookTicker)
        );
        assert_eq!(parse_stream("BTCUSDT@trade"), None);
        assert_eq!(parse_stream("btcusdt@aggtrade"), None);
        assert_eq!(parse_stream("@trade"), None);
        assert_eq!(parse_stream("btcusdt"), None);
    }

    #[test]
    fn routes() {
        let r = parse_route("/ws/btcusdt%40trade", Some("timeUnit=microsecond")).unwrap();
        assert_eq!(r.streams, vec!["btcusdt@trade"]);
        assert!(r.micros && !r.combined);
        let r = parse_route("/stream", Some("streams=a@trade/b@depth/a@trade")).unwrap();
        assert_eq!(r.streams, vec!["a@trade", "b@depth"]);
        assert!(r.combined && !r.micros);
        assert!(parse_route("/ws", None).unwrap().streams.is_empty());
        assert_eq!(parse_route("/foo", None).unwrap_err().status(), 404);
        assert_eq!(parse_route("/ws/x@nope", None).unwrap_err().status(), 400);
        assert_eq!(
            parse_route("/ws/x@trade", Some("timeUnit=SECOND"))
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn decimals_and_decode() {
        let mut s = String::new();
        push_decimal8(&mut s, 123_456_789);
        assert_eq!(s, "1.23456789");
        assert_eq!(percent_decode("a%40b%zz%4"), "a@b%zz%4");
    }

    #[test]
    fn generator_is_reproducible() {
        let mut a = Generator::new("btcusdt@trade", StreamKind::Trade, 7, 5);
        let mut b = Generator::new("btcusdt@trade", StreamKind::Trade, 7, 5);
        let (mut x, mut y) = (String::new(), String::new());
        a.write(&mut x, 1, 1000, 1);
        b.write(&mut y, 1, 1000, 1);
        assert_eq!(x, y);
        let v: serde_json::Value = serde_json::from_str(&x).unwrap();
        assert_eq!(v["s"], "BTCUSDT");
    }
}
