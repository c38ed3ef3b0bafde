use super::*;

const TRADE: &str = r#"{"e":"trade","E":1,"s":"BTCUSDT","t":5,"p":"1.0"}"#;
const DEPTH: &str = r#"{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}"#;
const BOOK: &str =
    r#"{"u":400900217,"s":"BNBUSDT","b":"25.35","B":"31.21","a":"25.36","A":"40.66"}"#;

fn named(names: &StreamNames, payload: &str) -> Option<String> {
    let mut name = Vec::new();
    names
        .name_into(payload.as_bytes(), &mut name)
        .then(|| String::from_utf8(name).unwrap())
}

#[test]
fn the_wrapper_is_taken_apart_byte_for_byte_in_either_key_order() {
    let wrapped = format!(r#"{{"stream":"btcusdt@trade","data":{TRADE}}}"#);
    let e = Envelope::of(wrapped.as_bytes());
    assert_eq!(e.stream, Some(&b"btcusdt@trade"[..]));
    assert_eq!(&wrapped[e.data], TRADE);
    let reversed = format!(r#" {{ "data" : {TRADE} , "stream" : "x@trade" }} "#);
    let e = Envelope::of(reversed.as_bytes());
    assert_eq!(
        (e.stream, &reversed[e.data]),
        (Some(&b"x@trade"[..]), TRADE)
    );
    let mut out = Vec::new();
    wrap_into(b"btcusdt@trade", TRADE.as_bytes(), &mut out);
    assert_eq!(out, wrapped.as_bytes(), "wrapping restores the original");
    assert!(is_wrapped(wrapped.as_bytes()) && !is_wrapped(TRADE.as_bytes()));
}

#[test]
fn anything_but_a_wrapper_is_the_event_itself() {
    for raw in [
        TRADE,
        BOOK,
        r#"{"stream":"a@trade"}"#,
        r#"{"stream":"a@trade","data":{"e":1},"extra":1}"#,
        r#"{"stream":"a@trade","data":[1]}"#,
        r#"{"stream":"a@trade","data":{"e":1}} trailing"#,
        r#"{"stream":"a@trade","data":{"e":1"#,
        "",
        "[]",
    ] {
        let e = Envelope::of(raw.as_bytes());
        assert_eq!((e.stream, e.data), (None, 0..raw.len()), "{raw}");
    }
}

#[test]
fn raw_events_are_named_after_the_known_stream_of_their_symbol_and_type() {
    let one = StreamNames::new(["btcusdt@depth5".to_string()]);
    assert_eq!(
        named(&one, r#"{"lastUpdateId":1,"bids":[],"asks":[]}"#).as_deref(),
        Some("btcusdt@depth5"),
        "the only stream"
    );
    let several = StreamNames::new(
        ["btcusdt@trade", "btcusdt@depth@100ms", "bnbusdt@bookTicker"].map(String::from),
    );
    assert_eq!(named(&several, TRADE).as_deref(), Some("btcusdt@trade"));
    assert_eq!(
        named(&several, DEPTH).as_deref(),
        Some("btcusdt@depth@100ms")
    );
    assert_eq!(named(&several, BOOK).as_deref(), Some("bnbusdt@bookTicker"));
    // Not known: the base form, or no name at all.
    let eth = r#"{"e":"aggTrade","E":1,"s":"ETHUSDT","a":7}"#;
    assert_eq!(named(&several, eth).as_deref(), Some("ethusdt@aggTrade"));
    let kline = r#"{"e":"kline","E":1,"s":"BTCUSDT","k":{"i":"1m"}}"#;
    assert_eq!(named(&several, kline), None);
    let klines = StreamNames::new(["btcusdt@kline_1m", "btcusdt@trade"].map(String::from));
    assert_eq!(named(&klines, kline).as_deref(), Some("btcusdt@kline_1m"));
    assert_eq!(
        named(&several, r#"{"lastUpdateId":1,"bids":[],"asks":[]}"#),
        None
    );
    assert_eq!(named(&several, "not json"), None);
    let wrapped = format!(r#"{{"stream":"other@trade","data":{TRADE}}}"#);
    assert_eq!(named(&several, &wrapped).as_deref(), Some("other@trade"));
}

#[test]
fn stream_names_come_from_the_url_and_are_checked() {
    let url = url::Url::parse(
        "wss://h:9443/stream?streams=btcusdt@trade/bnbusdt@depth@100ms&timeUnit=MICROSECOND",
    )
    .unwrap();
    assert_eq!(
        StreamNames::of_url(&url),
        ["btcusdt@trade", "bnbusdt@depth@100ms"]
    );
    let url = url::Url::parse("wss://h/ws/btcusdt@bookTicker").unwrap();
    assert_eq!(StreamNames::of_url(&url), ["btcusdt@bookTicker"]);
    assert!(StreamNames::of_url(&url::Url::parse("wss://h/ws").unwrap()).is_empty());
    assert!(is_stream_name("!miniTicker@arr") && is_stream_name("btcusdt@kline_1m"));
    for bad in ["", "btcusdt", "a b@trade", "x@\"y", &"a@".repeat(100)] {
        assert!(!is_stream_name(bad), "{bad}");
    }
}
