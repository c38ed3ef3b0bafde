//! Binance's event time `E` (and event type `e`) read straight from a message's bytes.
//!
//! The relay stamps every datagram with the exchange's event time, so it has to find `E` in
//! every message on the hot path. A full JSON parse would allocate and read the whole message;
//! instead a small single-pass scanner walks the *event object* key by key, skipping values
//! without looking inside them, and stops as soon as the wanted key is found. It allocates
//! nothing and never panics, whatever the input.
//!
//! # Which object is the event
//!
//! * Raw streams (`/ws/<stream>`): the top-level object, e.g. `{"e":"trade","E":1700000000123,..}`.
//! * Combined streams (`/stream?streams=..`): the object under the top-level key `"data"`, e.g.
//!   `{"stream":"btcusdt@trade","data":{"e":"trade","E":..}}`, whichever order the two keys come in.
//!
//! The scanner walks the keys of the top-level object in order. If it meets the wanted key there,
//! that is the answer; if it first meets a `"data"` key holding an object, that object is the
//! event and the answer is decided by the keys directly inside it (Binance wrappers have no
//! top-level `E`, and events have no `data` key). Keys anywhere deeper (inside arrays such as
//! depth `b`/`a`, or nested objects) and anything inside string values are never matched. Keys
//! are compared byte for byte, so a key spelled with escapes (`"\u0045"`) is not `E`. A top-level
//! value that is not an object (e.g. the `!ticker@arr` array) has no single event: `None`.
//!
//! # Values
//!
//! * [`event_time`] returns `E` only when it is a plain non-negative JSON integer that fits `u64`
//!   and is followed by a delimiter (`,`, `}`, `]` or whitespace). Strings, negatives, fractions,
//!   exponents, leading zeros (`0123`), overflow, a number running into the end of the buffer
//!   (truncated) and `null` all give `None`. Messages without `E` (spot `bookTicker`, partial book
//!   depth `@depth<N>`) give `None`: a time is never invented.
//! * [`event_type`] returns the raw bytes between the quotes of the `e` string (escapes are not
//!   processed); any non-string `e` gives `None`.
//!
//! Truncated input gives `None` unless the wanted value was complete before the cut (the scanner
//! stops at the value and does not check the rest of the message).

/// Unit of Binance's time fields for one connection (chosen with the `timeUnit` URL parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// The default: times are milliseconds since the Unix epoch.
    #[default]
    Millis,
    /// `timeUnit=MICROSECOND`: times are microseconds since the Unix epoch.
    Micros,
}

impl TimeUnit {
    /// Converts a raw time in this unit to nanoseconds; `None` on overflow.
    pub fn to_ns(self, raw: u64) -> Option<u64> {
        match self {
            TimeUnit::Millis => raw.checked_mul(1_000_000),
            TimeUnit::Micros => raw.checked_mul(1_000),
        }
    }
}

/// The raw integer value of `E` in the event object (see the module docs), in the connection's
/// [`TimeUnit`]; `None` if there is none or it is not a valid `u64`.
pub fn event_time(payload: &[u8]) -> Option<u64> {
    event_u64(payload, b"E")
}

/// The raw string value of `e` (event type, e.g. `b"trade"`, `b"depthUpdate"`) in the event
/// object (see the module docs).
pub fn event_type(payload: &[u8]) -> Option<&[u8]> {
    event_str(payload, b"e")
}

/// The value of `key` in the event object as a plain `u64` (the rules of [`event_time`]).
pub(super) fn event_u64(payload: &[u8], key: &[u8]) -> Option<u64> {
    match find_event_key(payload, key)? {
        Value::Scalar(token) => parse_u64(token),
        Value::String(_) => None,
    }
}

/// The raw string value of `key` in the event object, or at the top level before any `data`
/// (the rules of [`event_type`]).
pub(super) fn event_str<'a>(payload: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    match find_event_key(payload, key)? {
        Value::String(raw) => Some(raw),
        Value::Scalar(_) => None,
    }
}

/// The time unit a connection URL's query asks for: [`TimeUnit::Micros`] iff a parameter
/// `timeUnit` has the value `MICROSECOND` (any case), else [`TimeUnit::Millis`].
///
/// Accepts a bare query (`a=1&timeUnit=MICROSECOND`), one with a leading `?`, or a whole URL (the
/// part after the first `?`, up to any `#`). The key is case-sensitive, values are not
/// percent-decoded, and when `timeUnit` appears more than once the last one wins.
pub fn time_unit_of_url(url_query: &str) -> TimeUnit {
    let query = match url_query.split_once('?') {
        Some((_, query)) => query,
        None => url_query,
    };
    let query = query.split('#').next().unwrap_or("");
    let mut unit = TimeUnit::Millis;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "timeUnit" {
            unit = if value.eq_ignore_ascii_case("MICROSECOND") {
                TimeUnit::Micros
            } else {
                TimeUnit::Millis
            };
        }
    }
    unit
}

/// A value found for a key: the raw contents of a string, or a non-string token.
enum Value<'a> {
    String(&'a [u8]),
    Scalar(&'a [u8]),
}

fn find_event_key<'a>(payload: &'a [u8], key: &[u8]) -> Option<Value<'a>> {
    let mut scan = Scanner {
        bytes: payload,
        at: 0,
    };
    scan.skip_ws();
    scan.object_key(key, true)
}

/// The parts of a combined-stream wrapper: the raw `stream` string and the byte range of the
/// `data` value, when the top-level object has exactly those two keys (in either order) and
/// `data` holds an object. Anything else (a raw event, a reply, malformed input) gives `None`.
pub(super) fn wrapper_parts(payload: &[u8]) -> Option<(&[u8], std::ops::Range<usize>)> {
    let mut scan = Scanner {
        bytes: payload,
        at: 0,
    };
    scan.skip_ws();
    scan.expect(b'{')?;
    let (mut stream, mut data) = (None, None);
    loop {
        scan.skip_ws();
        let name = scan.string()?;
        scan.skip_ws();
        scan.expect(b':')?;
        scan.skip_ws();
        match name {
            b"stream" if stream.is_none() => stream = Some(scan.string()?),
            b"data" if data.is_none() && scan.peek()? == b'{' => {
                let start = scan.at;
                scan.skip_container()?;
                data = Some(start..scan.at);
            }
            _ => return None,
        }
        scan.skip_ws();
        match scan.peek()? {
            b',' => scan.at += 1,
            b'}' => break,
            _ => return None,
        }
    }
    scan.at += 1;
    scan.skip_ws();
    if scan.at != payload.len() {
        return None;
    }
    Some((stream?, data?))
}

/// Strict JSON non-negative integer: digits only, no leading zero, fits `u64`.
fn parse_u64(token: &[u8]) -> Option<u64> {
    if token.is_empty() || (token.len() > 1 && token[0] == b'0') {
        return None;
    }
    let mut value: u64 = 0;
    for &b in token {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn ends_scalar(b: u8) -> bool {
    is_ws(b) || matches!(b, b',' | b'}' | b']')
}

/// Cursor over the payload. Every method returns `None` when the input ends early or is not the
/// JSON shape it expects; none of them index out of bounds.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.at += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        if self.peek()? == b {
            self.at += 1;
            Some(())
        } else {
            None
        }
    }

    /// At an opening quote: returns the raw bytes up to the closing quote and moves past it.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        let mut escaped = false;
        while let Some(b) = self.peek() {
            self.at += 1;
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                return Some(&self.bytes[start..self.at - 1]);
            }
        }
        None
    }

    /// A non-string, non-container token (number, `true`, `null`, ...). It must be followed by a
    /// delimiter: a token that runs into the end of the input may have been cut.
    fn scalar(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        while !ends_scalar(self.peek()?) {
            self.at += 1;
        }
        if self.at == start {
            None
        } else {
            Some(&self.bytes[start..self.at])
        }
    }

    /// Skips a whole object or array, counting nesting (brackets are not matched by type, which
    /// is enough to find where the value ends) and ignoring brackets inside strings.
    fn skip_container(&mut self) -> Option<()> {
        let mut depth: usize = 0;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        self.at += 1;
                        return Some(());
                    }
                }
                _ => {}
            }
            self.at += 1;
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => self.skip_container(),
            _ => self.scalar().map(drop),
        }
    }

    fn value(&mut self) -> Option<Value<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Value::String),
            b'{' | b'[' => None,
            _ => self.scalar().map(Value::Scalar),
        }
    }

    /// At `{`: walks the object's keys looking for `key`. With `descend_data`, a `"data"` key
    /// holding an object is searched instead (one level only, so the recursion is bounded).
    fn object_key(&mut self, key: &[u8], descend_data: bool) -> Option<Value<'a>> {
        self.expect(b'{')?;
        self.skip_ws();
        if self.peek()? == b'}' {
            return None;
        }
        loop {
            self.skip_ws();
            let name = self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            if name == key {
                return self.value();
            }
            if descend_data && name == b"data" && self.peek()? == b'{' {
                return self.object_key(key, false);
            }
            self.skip_value()?;
            self.skip_ws();
            match self.peek()? {
                b',' => self.at += 1,
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRADE: &[u8] = br#"{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":12345,"p":"0.001","q":"100","T":1700000000120,"m":true,"M":true}"#;
    const AGG_TRADE: &[u8] = br#"{"e":"aggTrade","E":1672515782136,"s":"BNBBTC","a":12345,"p":"0.001","q":"100","f":100,"l":105,"T":1672515782136,"m":true,"M":true}"#;
    const DEPTH_UPDATE: &[u8] = br#"{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}"#;
    const BOOK_TICKER: &[u8] = br#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#;
    const FUTURES_BOOK_TICKER: &[u8] = br#"{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#;
    const PARTIAL_DEPTH: &[u8] =
        br#"{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}"#;

    #[test]
    fn raw_stream_events() {
        assert_eq!(event_time(TRADE), Some(1_700_000_000_123));
        assert_eq!(event_type(TRADE), Some(&b"trade"[..]));
        assert_eq!(event_time(AGG_TRADE), Some(1_672_515_782_136));
        assert_eq!(event_type(AGG_TRADE), Some(&b"aggTrade"[..]));
        assert_eq!(event_time(DEPTH_UPDATE), Some(1_672_515_782_136));
        assert_eq!(event_type(DEPTH_UPDATE), Some(&b"depthUpdate"[..]));
        assert_eq!(event_time(FUTURES_BOOK_TICKER), Some(1_568_014_460_893));
        assert_eq!(event_type(FUTURES_BOOK_TICKER), Some(&b"bookTicker"[..]));
        let shutdown = br#"{"e":"serverShutdown","E":1700000000000}"#;
        assert_eq!(event_type(shutdown), Some(&b"serverShutdown"[..]));
        assert_eq!(event_time(shutdown), Some(1_700_000_000_000));
    }

    #[test]
    fn messages_without_e_give_none() {
        assert_eq!(event_time(BOOK_TICKER), None);
        assert_eq!(event_type(BOOK_TICKER), None);
        assert_eq!(event_time(PARTIAL_DEPTH), None);
        assert_eq!(event_time(b"{}"), None);
        assert_eq!(event_time(b""), None);
        assert_eq!(event_time(b"   "), None);
        // Subscription acks and all-market arrays are not single events.
        assert_eq!(event_time(br#"{"result":null,"id":1}"#), None);
        assert_eq!(event_time(br#"[{"e":"24hrTicker","E":123}]"#), None);
    }

    #[test]
    fn combined_stream_wrapper_in_both_key_orders() {
        let stream_first = br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000123,"s":"BTCUSDT","T":1700000000120}}"#;
        let data_first = br#"{"data":{"e":"trade","E":1700000000124,"T":1700000000120},"stream":"btcusdt@trade"}"#;
        assert_eq!(event_time(stream_first), Some(1_700_000_000_123));
        assert_eq!(event_type(stream_first), Some(&b"trade"[..]));
        assert_eq!(event_time(data_first), Some(1_700_000_000_124));
        assert_eq!(event_type(data_first), Some(&b"trade"[..]));

        let depth = br#"{"stream":"bnbbtc@depth","data":{"e":"depthUpdate","E":1672515782136,"b":[["0.0024","10"]],"a":[]}}"#;
        assert_eq!(event_time(depth), Some(1_672_515_782_136));
        let book = br#"{"stream":"bnbusdt@bookTicker","data":{"u":400900217,"s":"BNBUSDT","b":"25.35","B":"31.21","a":"25.36","A":"40.66"}}"#;
        assert_eq!(event_time(book), None);
        let partial =
            br#"{"stream":"bnbbtc@depth5","data":{"lastUpdateId":160,"bids":[],"asks":[]}}"#;
        assert_eq!(event_time(partial), None);
        // Only one level of "data" is followed.
        let nested = br#"{"data":{"data":{"E":1},"x":1}}"#;
        assert_eq!(event_time(nested), None);
        // "data" that is not an object is skipped like any other value.
        assert_eq!(event_time(br#"{"data":"x","E":7}"#), Some(7));
        assert_eq!(event_time(br#"{"data":[{"E":1}],"E":7}"#), Some(7));
    }

    #[test]
    fn microsecond_values() {
        let micro = br#"{"e":"trade","E":1700000000123456,"T":1700000000123400}"#;
        assert_eq!(event_time(micro), Some(1_700_000_000_123_456));
        assert_eq!(
            TimeUnit::Micros.to_ns(1_700_000_000_123_456),
            Some(1_700_000_000_123_456_000)
        );
        assert_eq!(
            TimeUnit::Millis.to_ns(1_700_000_000_123),
            Some(1_700_000_000_123_000_000)
        );
        // A microsecond value read as milliseconds overflows u64 nanoseconds: caught.
        assert_eq!(TimeUnit::Millis.to_ns(1_700_000_000_123_456), None);
        assert_eq!(TimeUnit::Micros.to_ns(u64::MAX), None);
    }

    #[test]
    fn not_fooled_by_strings_case_or_nesting() {
        let tricky = br#"{"s":"\"E\":5","e":"trade","E":42}"#;
        assert_eq!(event_time(tricky), Some(42));
        assert_eq!(event_type(tricky), Some(&b"trade"[..]));
        let escaped_backslash = br#"{"s":"x\\","E":43}"#;
        assert_eq!(event_time(escaped_backslash), Some(43));
        let in_value_only = br#"{"s":"{\"E\":5}","q":"E"}"#;
        assert_eq!(event_time(in_value_only), None);
        // Lowercase e and T are other keys.
        assert_eq!(event_time(br#"{"e":"trade","T":1700000000120}"#), None);
        assert_eq!(event_type(br#"{"E":1,"T":2}"#), None);
        // Keys in nested arrays and objects are not the event's.
        assert_eq!(
            event_time(br#"{"b":[["E",{"E":1}]],"o":{"E":2},"E":3}"#),
            Some(3)
        );
        assert_eq!(event_time(br#"{"o":{"E":2,"p":[1,{"E":9}]}}"#), None);
        assert_eq!(event_time(br#"{"o":{"s":"}"},"E":4}"#), Some(4));
        assert_eq!(event_time(br#"{"a":[1,2,[3,"]"]],"E":5}"#), Some(5));
        // Whitespace everywhere JSON allows it.
        assert_eq!(
            event_time(b" {\n \"e\" : \"trade\" ,\t\"E\" :\r\n 1700000000123 \n}"),
            Some(1_700_000_000_123)
        );
        assert_eq!(event_type(b"{ \"e\"\t:\t\"x\" }"), Some(&b"x"[..]));
        // The raw string is returned, escapes untouched.
        assert_eq!(event_type(br#"{"e":"a\"b"}"#), Some(&br#"a\"b"#[..]));
        // A key spelled with an escape is not E.
        assert_eq!(event_time(br#"{"\u0045":1}"#), None);
    }

    #[test]
    fn invalid_values_give_none() {
        for bad in [
            &br#"{"E":-1}"#[..],
            br#"{"E":1.5}"#,
            br#"{"E":1e3}"#,
            br#"{"E":"1700000000123"}"#,
            br#"{"E":null}"#,
            br#"{"E":true}"#,
            br#"{"E":{}}"#,
            br#"{"E":[1]}"#,
            br#"{"E":0123}"#,
            br#"{"E":18446744073709551616}"#,
            br#"{"E":99999999999999999999999}"#,
            br#"{"E":}"#,
            br#"{"E":12"x"}"#,
        ] {
            assert_eq!(event_time(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(event_time(br#"{"E":18446744073709551615}"#), Some(u64::MAX));
        assert_eq!(event_time(br#"{"E":0}"#), Some(0));
        assert_eq!(event_type(br#"{"e":5}"#), None);
        assert_eq!(event_type(br#"{"e":null}"#), None);
    }

    #[test]
    fn truncated_json_gives_none_or_the_complete_value() {
        for sample in [
            TRADE,
            AGG_TRADE,
            DEPTH_UPDATE,
            FUTURES_BOOK_TICKER,
            BOOK_TICKER,
        ] {
            let full_time = event_time(sample);
            let full_type = event_type(sample);
            for cut in 0..sample.len() {
                let prefix = &sample[..cut];
                let time = event_time(prefix);
                assert!(time.is_none() || time == full_time, "cut {cut}");
                let kind = event_type(prefix);
                assert!(kind.is_none() || kind == full_type, "cut {cut}");
            }
        }
        // A number that runs into the end may have been cut: never returned.
        assert_eq!(event_time(br#"{"e":"trade","E":1700000000123"#), None);
        assert_eq!(event_time(br#"{"e":"trade","E":17"#), None);
        assert_eq!(
            event_time(br#"{"e":"trade","E":1700000000123,"#),
            Some(1_700_000_000_123)
        );
        assert_eq!(event_type(br#"{"e":"tra"#), None);
        assert_eq!(event_time(br#"{"s":"unterminated \"E\":5"#), None);
    }

    use crate::rng::Rng;

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let alphabet = br#"{}[]":,\ Ee0123456789-.datasrm"#;
        let mut buf = Vec::with_capacity(256);
        for round in 0..5000 {
            buf.clear();
            let len = (rng.next_u64() % 200) as usize;
            for _ in 0..len {
                let r = rng.next_u64();
                // Half the rounds use JSON-ish bytes, which reach deeper into the scanner.
                buf.push(if round % 2 == 0 {
                    r as u8
                } else {
                    alphabet[(r % alphabet.len() as u64) as usize]
                });
            }
            let _ = event_time(&buf);
            let _ = event_type(&buf);
        }
        // Mutations of real messages: whatever comes out must be a value that is in the bytes.
        for round in 0..3000 {
            let sample = [TRADE, DEPTH_UPDATE, FUTURES_BOOK_TICKER][round % 3];
            buf.clear();
            buf.extend_from_slice(sample);
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() % buf.len() as u64) as usize;
                buf[at] = alphabet[(rng.next_u64() % alphabet.len() as u64) as usize];
            }
            if let Some(time) = event_time(&buf) {
                let digits = time.to_string();
                assert!(
                    buf.windows(digits.len()).any(|w| w == digits.as_bytes()),
                    "{time}"
                );
            }
            let _ = event_type(&buf);
        }
        // Deep nesting does not recurse.
        let mut deep = b"{\"a\":".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        assert_eq!(event_time(&deep), None);
        deep.extend(std::iter::repeat_n(b']', 100_000));
        deep.extend_from_slice(b",\"E\":1}");
        assert_eq!(event_time(&deep), Some(1));
    }

    #[test]
    fn time_unit_from_query() {
        assert_eq!(time_unit_of_url(""), TimeUnit::Millis);
        assert_eq!(time_unit_of_url("streams=btcusdt@trade"), TimeUnit::Millis);
        assert_eq!(time_unit_of_url("timeUnit=MICROSECOND"), TimeUnit::Micros);
        assert_eq!(time_unit_of_url("timeUnit=microsecond"), TimeUnit::Micros);
        assert_eq!(
            time_unit_of_url("streams=a@trade/b@trade&timeUnit=MicroSecond"),
            TimeUnit::Micros
        );
        assert_eq!(time_unit_of_url("?timeUnit=MICROSECOND"), TimeUnit::Micros);
        assert_eq!(
            time_unit_of_url(
                "wss://stream.binance.com:9443/stream?streams=btcusdt@trade&timeUnit=MICROSECOND"
            ),
            TimeUnit::Micros
        );
        assert_eq!(time_unit_of_url("timeUnit=MILLISECOND"), TimeUnit::Millis);
        assert_eq!(time_unit_of_url("timeUnit=MICROSECONDS"), TimeUnit::Millis);
        assert_eq!(time_unit_of_url("timeunit=MICROSECOND"), TimeUnit::Millis);
        assert_eq!(time_unit_of_url("xtimeUnit=MICROSECOND"), TimeUnit::Millis);
        assert_eq!(time_unit_of_url("timeUnit"), TimeUnit::Millis);
        assert_eq!(
            time_unit_of_url("timeUnit=MICROSECOND&timeUnit=MILLISECOND"),
            TimeUnit::Millis
        );
        assert_eq!(
            time_unit_of_url("timeUnit=MICROSECOND#frag"),
            TimeUnit::Micros
        );
    }
}
