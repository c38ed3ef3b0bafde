//! What the simulator streams: paths, stream kinds, payload shapes, rates and bursts.

use super::*;

#[test]
fn raw_trade_stream_delivers_count_with_consecutive_ids() {
    let sim = start(SimConfig {
        rate_per_stream: 1000.0,
        count: Some(50),
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/ws/btcusdt@trade");
    let mut prev_id = None;
    for _ in 0..50 {
        let (text, v) = next_json(&mut c);
        assert_keys(&text, &v, &["e", "E", "s", "t", "p", "q", "T", "m", "M"]);
        assert_eq!(v["e"], "trade");
        assert_eq!(v["s"], "BTCUSDT");
        assert_decimal8(&v["p"]);
        assert_decimal8(&v["q"]);
        assert!(v["m"].is_boolean());
        assert_eq!(v["M"], true);
        let e = v["E"].as_i64().unwrap();
        assert_eq!(e.to_string().len(), 13, "E in ms");
        assert!((now_ms() - e).abs() < 1000, "E {e} not within 1 s of now");
        assert!(v["T"].as_i64().unwrap() <= e);
        let id = v["t"].as_u64().unwrap();
        if let Some(p) = prev_id {
            assert_eq!(id, p + 1, "consecutive trade ids");
        }
        prev_id = Some(id);
    }
    assert!(
        drain(&mut c, Duration::from_millis(300)).is_empty(),
        "more than count sent"
    );
    let stats = sim.stats();
    assert_eq!(stats.data_messages, 50);
    assert_eq!(stats.per_stream.get("btcusdt@trade"), Some(&50));
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!(stats.connections_open, 1);
}

#[test]
fn combined_stream_wraps_events_with_stream_names() {
    let sim = start(SimConfig {
        rate_per_stream: 500.0,
        count: Some(5),
        ..SimConfig::default()
    });
    let names = ["btcusdt@trade", "ethusdt@aggTrade", "bnbusdt@bookTicker"];
    let mut c = connect(&sim, &format!("/stream?streams={}", names.join("/")));
    let mut seen = std::collections::BTreeMap::<String, u64>::new();
    for _ in 0..15 {
        let (text, v) = next_json(&mut c);
        assert_keys(&text, &v, &["stream", "data"]);
        let stream = v["stream"].as_str().unwrap().to_owned();
        let data = &v["data"];
        let symbol = stream.split('@').next().unwrap().to_ascii_uppercase();
        assert_eq!(data["s"], symbol.as_str());
        match stream.split_once('@').unwrap().1 {
            "trade" => assert_eq!(data["e"], "trade"),
            "aggTrade" => {
                let inner = &text[text.find("\"data\":").unwrap() + 7..];
                let keys = ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"];
                assert_keys(inner, data, &keys);
                let a = data["a"].as_u64().unwrap();
                assert_eq!(data["f"].as_u64().unwrap(), 2 * a);
                assert_eq!(data["l"].as_u64().unwrap(), 2 * a + 1);
            }
            "bookTicker" => assert!(data.get("u").is_some()),
            other => panic!("unexpected stream kind {other}"),
        }
        *seen.entry(stream).or_default() += 1;
    }
    let expected: std::collections::BTreeMap<String, u64> =
        names.iter().map(|n| (n.to_string(), 5)).collect();
    assert_eq!(seen, expected);
}

#[test]
fn microsecond_time_unit_gives_16_digit_event_time() {
    let sim = start(SimConfig {
        rate_per_stream: 500.0,
        count: Some(3),
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/ws/btcusdt@aggTrade?timeUnit=microsecond");
    for _ in 0..3 {
        let (_, v) = next_json(&mut c);
        let e = v["E"].as_i64().unwrap();
        assert_eq!(e.to_string().len(), 16, "E {e} in microseconds");
        assert!((now_ms() * 1000 - e).abs() < 1_000_000);
        let t = v["T"].as_i64().unwrap();
        assert_eq!(t.to_string().len(), 16);
        assert!(t <= e);
    }
}

#[test]
fn book_ticker_has_binance_spot_shape_without_event_time() {
    let sim = start(SimConfig {
        rate_per_stream: 500.0,
        count: Some(3),
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/ws/ethusdt@bookTicker");
    let mut prev = None;
    for _ in 0..3 {
        let (text, v) = next_json(&mut c);
        assert_keys(&text, &v, &["u", "s", "b", "B", "a", "A"]);
        assert!(v.get("E").is_none() && v.get("e").is_none(), "{text}");
        assert_eq!(v["s"], "ETHUSDT");
        for k in ["b", "B", "a", "A"] {
            assert_decimal8(&v[k]);
        }
        let bid: f64 = v["b"].as_str().unwrap().parse().unwrap();
        let ask: f64 = v["a"].as_str().unwrap().parse().unwrap();
        assert!(bid < ask);
        let u = v["u"].as_u64().unwrap();
        assert!(prev.is_none_or(|p| u == p + 1));
        prev = Some(u);
    }
}

#[test]
fn depth_with_many_levels_exceeds_one_datagram() {
    let sim = start(SimConfig {
        rate_per_stream: 500.0,
        count: Some(3),
        depth_levels: 100,
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/stream?streams=btcusdt@depth@100ms/ethusdt@depth");
    let mut prev_u = std::collections::HashMap::new();
    for _ in 0..6 {
        let (text, wrapped) = next_json(&mut c);
        let v = &wrapped["data"];
        let inner = &text[text.find("\"data\":").unwrap() + 7..];
        assert!(text.len() > 1500, "depth payload only {} bytes", text.len());
        assert_keys(inner, v, &["e", "E", "s", "U", "u", "b", "a"]);
        assert_eq!(v["e"], "depthUpdate");
        let bids = v["b"].as_array().unwrap();
        let asks = v["a"].as_array().unwrap();
        assert_eq!((bids.len(), asks.len()), (100, 100));
        let price = |l: &Value| l[0].as_str().unwrap().parse::<f64>().unwrap();
        assert!(
            bids.windows(2).all(|w| price(&w[0]) > price(&w[1])),
            "bids descend"
        );
        assert!(
            asks.windows(2).all(|w| price(&w[0]) < price(&w[1])),
            "asks ascend"
        );
        assert!(price(&bids[0]) < price(&asks[0]));
        assert_decimal8(&bids[0][1]);
        let (first, last) = (v["U"].as_u64().unwrap(), v["u"].as_u64().unwrap());
        assert!(first <= last);
        let stream = wrapped["stream"].as_str().unwrap().to_owned();
        if let Some(p) = prev_u.insert(stream, last) {
            assert_eq!(first, p + 1, "U follows the previous u");
        }
    }
    assert_eq!(prev_u.len(), 2);
}

#[test]
fn unknown_paths_and_streams_are_rejected() {
    let sim = start(SimConfig::default());
    let status = |path: &str| match connect_as(&sim, path, "127.0.0.1") {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{path}: unexpected error {e}"),
        Ok(_) => panic!("{path}: handshake accepted"),
    };
    assert_eq!(status("/foo"), 404);
    assert_eq!(status("/ws/btcusdt@nope"), 400);
    assert_eq!(status("/stream?streams=btcusdt@trade/BTCUSDT@trade"), 400);
    assert_eq!(status("/ws/btcusdt@trade?timeUnit=SECOND"), 400);
    // The server counts after writing the rejection, so the client may be first.
    wait_until("rejections counted", || sim.stats().handshakes_failed == 4);
    assert_eq!(sim.stats().connections_accepted, 0);
}

#[test]
fn bursts_send_extra_messages_back_to_back() {
    let sim = start(SimConfig {
        rate_per_stream: 0.0,
        burst_size: 20,
        burst_interval: Duration::from_millis(100),
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/ws/btcusdt@trade");
    let ids: Vec<u64> = (0..40)
        .map(|_| next_json(&mut c).1["t"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    // With rate 0, only bursts are scheduled: the first id starts a burst.
    assert_eq!((ids[0] - 1) % 20, 0, "first id {}", ids[0]);
}

#[test]
fn plain_mode_serves_ws() {
    let sim = start(SimConfig {
        tls: false,
        rate_per_stream: 500.0,
        count: Some(3),
        ..SimConfig::default()
    });
    assert!(sim.url("/ws").starts_with("ws://127.0.0.1:"));
    assert!(sim.ca_pem().is_empty());
    let mut c = connect(&sim, "/ws/ethusdt@aggTrade");
    for _ in 0..3 {
        assert_eq!(next_json(&mut c).1["e"], "aggTrade");
    }
}

#[test]
fn hundred_thousand_messages_per_second_is_reachable() {
    // Plain ws so the (debug-build) client's TLS does not dominate; 2 x 50k/s for ~0.5 s.
    let per_stream = 25_000;
    let sim = start(SimConfig {
        tls: false,
        rate_per_stream: 50_000.0,
        count: Some(per_stream),
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/stream?streams=btcusdt@trade/ethusdt@trade");
    let started = Instant::now();
    let mut got = 0;
    while got < 2 * per_stream {
        if let Message::Text(_) = c.ws.read().expect("read") {
            got += 1;
        }
    }
    let elapsed = started.elapsed();
    wait_until("all counted", || {
        sim.stats().data_messages == 2 * per_stream
    });
    // Scheduled for 0.5 s; allow slack for a loaded 2-core machine and debug builds.
    assert!(
        elapsed < Duration::from_secs(4),
        "50k messages took {elapsed:?}"
    );
}
