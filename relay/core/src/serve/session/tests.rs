use super::*;

impl Session {
    fn open_any(target: &str) -> Result<Session, OpenError> {
        Session::open(target, None)
    }
}

#[test]
fn a_time_unit_other_than_the_served_one_is_refused() {
    let micros = Some(TimeUnit::Micros);
    assert!(Session::open("/ws/a@trade?timeUnit=MICROSECOND", micros).is_ok());
    assert!(Session::open("/ws/a@trade?timeUnit=microsecond", micros).is_ok());
    assert!(
        Session::open("/ws/a@trade", micros).is_ok(),
        "not asked: served as they come"
    );
    let e = Session::open("/stream?streams=a@trade&timeUnit=MILLISECOND", micros).unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert!(e.to_string().contains("in MICROSECOND"), "{e}");
    let e = Session::open("/ws?timeUnit=MICROSECOND", Some(TimeUnit::Millis)).unwrap_err();
    assert!(e.to_string().contains("timeUnit=MICROSECOND"), "{e}");
    assert!(
        Session::open("/ws?timeUnit=MICROSECOND", None).is_ok(),
        "unit not known"
    );
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn urls_open_raw_or_combined_sessions() {
    let s = Session::open_any("/ws/btcusdt@trade").unwrap();
    assert_eq!(
        (s.streams(), s.combined()),
        (&["btcusdt@trade".to_string()][..], false)
    );
    let s = Session::open_any("/ws").unwrap();
    assert!(s.streams().is_empty() && !s.combined());
    let s = Session::open_any("/stream?streams=btcusdt@trade/bnbusdt%40depth&timeUnit=MICROSECOND")
        .unwrap();
    assert_eq!(s.streams(), ["btcusdt@trade", "bnbusdt@depth"]);
    assert!(s.combined());
    assert!(Session::open_any("/stream").unwrap().combined());
    assert_eq!(
        Session::open_any("/api/v3/ping").unwrap_err().http_status(),
        404
    );
    let bad = Session::open_any("/ws/not a stream").unwrap_err();
    assert_eq!(bad.http_status(), 400);
    assert!(bad.to_string().contains("not a stream name"), "{bad}");
    let many = (0..1025)
        .map(|i| format!("s{i}@trade"))
        .collect::<Vec<_>>()
        .join("/");
    assert!(matches!(
        Session::open_any(&format!("/stream?streams={many}")),
        Err(OpenError::TooMany(1025))
    ));
}

#[test]
fn requests_get_binance_replies_and_change_the_subscriptions() {
    let mut s = Session::open_any("/ws/btcusdt@trade").unwrap();
    let a = s.handle(r#"{"method":"SUBSCRIBE","params":["btcusdt@depth","btcusdt@trade","btcusdt@depth"],"id":1}"#);
    assert_eq!(a.reply, r#"{"result":null,"id":1}"#);
    assert_eq!(
        a.change,
        Some(Change::Subscribe(vec!["btcusdt@depth".into()])),
        "only what is new, once"
    );
    let a = s.handle(r#"{"method":"LIST_SUBSCRIPTIONS","id":"abc1"}"#);
    assert_eq!(
        a.reply,
        r#"{"result":["btcusdt@trade","btcusdt@depth"],"id":"abc1"}"#
    );
    let a = s.handle(r#"{"method":"UNSUBSCRIBE","params":["btcusdt@trade","x@trade"],"id":312}"#);
    assert_eq!(a.reply, r#"{"result":null,"id":312}"#);
    assert_eq!(
        a.change,
        Some(Change::Unsubscribe(vec!["btcusdt@trade".into()]))
    );
    assert_eq!(s.streams(), ["btcusdt@depth"]);
    let a = s.handle(r#"{"method":"GET_PROPERTY","params":["combined"],"id":2}"#);
    assert_eq!(a.reply, r#"{"result":false,"id":2}"#);
    let a = s.handle(r#"{"method":"SET_PROPERTY","params":["combined",true],"id":5}"#);
    assert_eq!(
        (a.reply.as_str(), s.combined()),
        (r#"{"result":null,"id":5}"#, true)
    );
}

#[test]
fn bad_requests_get_binance_errors_and_change_nothing() {
    let mut s = Session::open_any("/ws/btcusdt@trade").unwrap();
    let before = s.clone();
    for (request, code, msg) in [
        ("not json", 3, "Invalid JSON"),
        ("[1]", 2, "expected a JSON object"),
        (r#"{"params":[],"id":1}"#, 2, "missing field `method`"),
        (
            r#"{"method":"SUBSCRIBE","params":"x","id":1}"#,
            2,
            "params must be an array",
        ),
        (
            r#"{"method":"SUBSCRIBE","params":["ok@trade","bad"],"id":1}"#,
            2,
            "not a stream name",
        ),
        (
            r#"{"method":"SUBSCRIBE","params":[],"id":-1}"#,
            2,
            "request ID must be an unsigned integer",
        ),
        (r#"{"method":"FOO","id":1}"#, 2, "unknown variant `FOO`"),
        (
            r#"{"method":"SET_PROPERTY","params":["speed",true],"id":1}"#,
            0,
            "Unknown property",
        ),
        (
            r#"{"method":"SET_PROPERTY","params":["combined","yes"],"id":1}"#,
            1,
            "expected Boolean",
        ),
        (
            r#"{"method":"GET_PROPERTY","params":[1],"id":1}"#,
            2,
            "property name must be a string",
        ),
    ] {
        let a = s.handle(request);
        let reply = json(&a.reply);
        assert!(a.refused && a.change.is_none(), "{request}");
        assert_eq!(reply["error"]["code"], code, "{request}: {}", a.reply);
        assert!(
            reply["error"]["msg"].as_str().unwrap().contains(msg),
            "{request}: {}",
            a.reply
        );
        assert!(reply.get("id").is_some(), "{request}");
    }
    assert_eq!(s, before);
    let many: Vec<String> = (0..1024).map(|i| format!("s{i}@trade")).collect();
    let a = s.handle(&serde_json::json!({"method":"SUBSCRIBE","params":many,"id":9}).to_string());
    assert!(a.refused, "the 1025th stream is one too many");
}
