//! End-to-end tests over loopback with a blocking tungstenite + rustls client, the way a
//! Binance client would see the simulator.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

use super::{FeedSim, SimConfig};

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// A blocking client plus a handle on its socket, to change the read timeout mid-test.
struct Client {
    ws: WebSocket<Box<dyn ReadWrite>>,
    tcp: TcpStream,
}

const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Tests and other threads share `&FeedSim`.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<FeedSim>();
};

fn start(cfg: SimConfig) -> FeedSim {
    FeedSim::start(SimConfig { log: false, ..cfg }).expect("sim starts")
}

fn connect_as(sim: &FeedSim, path: &str, server_name: &str) -> Result<Client, tungstenite::Error> {
    let tcp = TcpStream::connect(sim.local_addr())?;
    let handle = tcp.try_clone()?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn ReadWrite> = if sim.config().tls {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(sim.ca_pem().as_bytes()) {
            roots.add(cert.expect("PEM parses")).expect("CA accepted");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_owned()).expect("server name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    };
    match tungstenite::client(sim.url(path).as_str(), stream) {
        Ok((ws, _)) => Ok(Client { ws, tcp: handle }),
        Err(HandshakeError::Failure(e)) => Err(e),
        Err(HandshakeError::Interrupted(_)) => Err(io::Error::from(io::ErrorKind::TimedOut).into()),
    }
}

fn connect(sim: &FeedSim, path: &str) -> Client {
    connect_as(sim, path, "127.0.0.1").expect("handshake succeeds")
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e)
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// Next text message, skipping pings/pongs (tungstenite answers pings by itself).
fn next_text(c: &mut Client) -> String {
    loop {
        match c.ws.read().expect("read a message") {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

fn next_json(c: &mut Client) -> (String, Value) {
    let text = next_text(c);
    let value = serde_json::from_str(&text).expect("valid JSON");
    (text, value)
}

/// Text messages arriving within `window` (reading stops at the first quiet read timeout).
fn drain(c: &mut Client, window: Duration) -> Vec<String> {
    set_timeout(c, window);
    let mut out = Vec::new();
    loop {
        match c.ws.read() {
            Ok(Message::Text(t)) => out.push(t.as_str().to_owned()),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("unexpected message {other:?}"),
            Err(e) if is_timeout(&e) => break,
            Err(e) => panic!("read failed: {e}"),
        }
    }
    set_timeout(c, READ_TIMEOUT);
    out
}

fn set_timeout(c: &mut Client, timeout: Duration) {
    c.tcp
        .set_read_timeout(Some(timeout))
        .expect("set read timeout");
}

/// How a connection ended, as the client sees it.
#[derive(Debug, PartialEq)]
enum Ending {
    CloseFrame(Option<u16>),
    Error,
}

/// Reads until the connection ends, skipping data; panics on a read timeout (still open).
fn read_until_end(c: &mut Client) -> Ending {
    loop {
        match c.ws.read() {
            Ok(Message::Close(frame)) => {
                return Ending::CloseFrame(frame.map(|f| u16::from(f.code)));
            }
            Ok(_) => continue,
            Err(e) if is_timeout(&e) => panic!("connection still open after {READ_TIMEOUT:?}"),
            Err(_) => return Ending::Error,
        }
    }
}

fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_up_to(Duration::from_secs(3), what, cond);
}

fn wait_up_to(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Asserts `keys` appear as top-level keys of `text` in this order and are all the keys.
fn assert_keys(text: &str, value: &Value, keys: &[&str]) {
    let mut from = 0;
    for k in keys {
        let needle = format!("\"{k}\":");
        let at = text[from..]
            .find(&needle)
            .unwrap_or_else(|| panic!("key {k} missing or out of order in {text}"));
        from += at + needle.len();
    }
    assert_eq!(value.as_object().unwrap().len(), keys.len(), "{text}");
}

fn assert_decimal8(v: &Value) {
    let s = v.as_str().expect("decimal string");
    let (int, frac) = s.split_once('.').expect("has a point");
    assert!(
        !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()),
        "{s}"
    );
    assert_eq!(frac.len(), 8, "{s}");
}

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
fn subscribe_list_unsubscribe_and_errors() {
    let sim = start(SimConfig {
        rate_per_stream: 200.0,
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/ws");
    assert!(
        drain(&mut c, Duration::from_millis(100)).is_empty(),
        "no streams yet"
    );

    let sub = r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}"#;
    c.ws.send(Message::text(sub)).unwrap();
    assert_eq!(next_text(&mut c), r#"{"result":null,"id":1}"#);
    let (_, v) = next_json(&mut c);
    assert_eq!(v["e"], "trade", "stream started after SUBSCRIBE");

    let list = r#"{"method":"LIST_SUBSCRIPTIONS","id":"two"}"#;
    c.ws.send(Message::text(list)).unwrap();
    let reply = loop {
        let t = next_text(&mut c);
        if !t.contains("\"e\":\"trade\"") {
            break t;
        }
    };
    assert_eq!(reply, r#"{"result":["btcusdt@trade"],"id":"two"}"#);

    c.ws.send(Message::text("hello")).unwrap();
    let reply = loop {
        let t = next_text(&mut c);
        if !t.contains("\"e\":\"trade\"") {
            break t;
        }
    };
    assert_eq!(
        reply,
        r#"{"error":{"code":2,"msg":"Invalid request"},"id":null}"#
    );

    let bad = r#"{"method":"SUBSCRIBE","params":["btcusdt@nope"],"id":4}"#;
    c.ws.send(Message::text(bad)).unwrap();
    let reply = loop {
        let t = next_text(&mut c);
        if !t.contains("\"e\":\"trade\"") {
            break t;
        }
    };
    let v: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["error"]["code"], 2);
    assert_eq!(v["id"], 4);

    let unsub = r#"{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":5}"#;
    c.ws.send(Message::text(unsub)).unwrap();
    loop {
        if next_text(&mut c) == r#"{"result":null,"id":5}"# {
            break;
        }
    }
    assert!(
        drain(&mut c, Duration::from_millis(200)).is_empty(),
        "data after UNSUBSCRIBE reply"
    );
    let stats = sim.stats();
    assert_eq!(stats.subscribe_requests, 2);
    assert_eq!(stats.unsubscribe_requests, 1);
    assert_eq!(stats.invalid_requests, 2);
    assert_eq!(
        stats.closed_rate_limit, 0,
        "5 messages in a second are allowed"
    );
}

#[test]
fn more_than_five_client_messages_per_second_closes() {
    let sim = start(SimConfig::default());
    let mut c = connect(&sim, "/ws");
    for i in 0..5 {
        let req = format!(r#"{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}"#);
        c.ws.send(Message::text(req)).unwrap();
        assert_eq!(next_text(&mut c), format!(r#"{{"result":[],"id":{i}}}"#));
    }
    assert_eq!(sim.stats().closed_rate_limit, 0);
    c.ws.send(Message::Ping(Vec::from(*b"6th").into())).unwrap();
    let ending = read_until_end(&mut c);
    assert!(
        matches!(ending, Ending::CloseFrame(Some(1008)) | Ending::Error),
        "{ending:?}"
    );
    wait_until("rate-limit close counted", || {
        sim.stats().closed_rate_limit == 1
    });
    wait_until("connection closed", || sim.stats().connections_open == 0);
}

#[test]
fn pings_at_interval_and_missing_pong_closes() {
    let sim = start(SimConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(500),
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/ws");
    let connected = Instant::now();
    // Read (and so auto-answer pings) for 1.1 s: the connection must survive.
    set_timeout(&mut c, Duration::from_millis(50));
    let mut pings = Vec::new();
    while connected.elapsed() < Duration::from_millis(1100) {
        match c.ws.read() {
            Ok(Message::Ping(p)) => {
                assert!(!p.is_empty(), "ping carries a payload");
                pings.push(connected.elapsed());
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("connection failed while answering pings: {e}"),
        }
    }
    assert!((4..=6).contains(&pings.len()), "pings at {pings:?}");
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(150) && gap <= Duration::from_millis(400),
            "ping gap {gap:?} in {pings:?}"
        );
    }
    // The pong to the last ping read may still sit in the client's queue.
    let answered = pings.len() as u64 - 1;
    wait_until("pongs counted", || sim.stats().pongs_received >= answered);
    assert_eq!(sim.stats().closed_pong_timeout, 0);

    // Stop reading: no pongs go out, so the server must close after pong_timeout.
    std::thread::sleep(Duration::from_millis(900));
    set_timeout(&mut c, READ_TIMEOUT);
    let ending = read_until_end(&mut c);
    assert!(
        matches!(ending, Ending::CloseFrame(Some(1008)) | Ending::Error),
        "{ending:?}"
    );
    wait_until("pong timeout counted", || {
        sim.stats().closed_pong_timeout == 1
    });
}

#[test]
fn drop_connections_cuts_without_close_frame() {
    let sim = start(SimConfig {
        rate_per_stream: 100.0,
        ..SimConfig::default()
    });
    let mut a = connect(&sim, "/ws/btcusdt@trade");
    let mut b = connect(&sim, "/stream?streams=ethusdt@trade");
    next_text(&mut a);
    next_text(&mut b);
    wait_until("two open", || sim.stats().connections_open == 2);
    sim.drop_connections();
    assert_eq!(read_until_end(&mut a), Ending::Error);
    assert_eq!(read_until_end(&mut b), Ending::Error);
    wait_until("both dropped", || {
        let s = sim.stats();
        s.dropped == 2 && s.connections_open == 0
    });
    // The server itself keeps accepting.
    let mut c = connect(&sim, "/ws/btcusdt@trade");
    let (_, v) = next_json(&mut c);
    assert_eq!(v["e"], "trade");
}

#[test]
fn server_shutdown_event_then_close() {
    let sim = start(SimConfig {
        rate_per_stream: 50.0,
        shutdown_grace: Duration::from_millis(300),
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/stream?streams=btcusdt@trade");
    next_text(&mut c);
    sim.send_server_shutdown();
    let (text, v) = loop {
        let (text, v) = next_json(&mut c);
        if v.get("stream").is_none() {
            break (text, v);
        }
    };
    let sent = Instant::now();
    assert_keys(&text, &v, &["e", "E"]);
    assert_eq!(v["e"], "serverShutdown");
    assert!((now_ms() - v["E"].as_i64().unwrap()).abs() < 1000);
    let ending = read_until_end(&mut c);
    assert!(
        matches!(ending, Ending::CloseFrame(Some(1001)) | Ending::Error),
        "{ending:?}"
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(200),
        "closed before the grace"
    );
    assert_eq!(sim.stats().server_shutdowns_sent, 1);
}

#[test]
fn drop_after_cuts_each_connection_after_n_messages() {
    let sim = start(SimConfig {
        rate_per_stream: 1000.0,
        drop_after: Some(10),
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/ws/btcusdt@trade");
    let ids: Vec<u64> = (0..10)
        .map(|_| next_json(&mut c).1["t"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(read_until_end(&mut c), Ending::Error);
    wait_until("drop counted", || sim.stats().dropped == 1);
    assert_eq!(sim.stats().data_messages, 10);

    // A reconnect sees the ids it missed as a jump, not a restart.
    std::thread::sleep(Duration::from_millis(50));
    let mut c = connect(&sim, "/ws/btcusdt@trade");
    let next = next_json(&mut c).1["t"].as_u64().unwrap();
    assert!(next > ids[9] + 1, "id {next} after {}", ids[9]);
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
fn junk_from_client_does_not_kill_the_connection() {
    let sim = start(SimConfig {
        rate_per_stream: 200.0,
        ..SimConfig::default()
    });
    let mut c = connect(&sim, "/ws/btcusdt@trade");
    c.ws.send(Message::Binary(vec![0xff, 0, 1].into())).unwrap();
    c.ws.send(Message::text(r#"{"method":5}"#)).unwrap();
    c.ws.send(Message::text(r#"[1,2"#)).unwrap();
    let mut errors = 0;
    let mut trades_after = 0;
    while errors < 2 || trades_after < 5 {
        let t = next_text(&mut c);
        if t.contains("\"error\"") {
            errors += 1;
        } else if errors == 2 {
            trades_after += 1;
        }
    }
    assert_eq!(sim.stats().invalid_requests, 3);
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
fn cert_file_localhost_name_and_stop_frees_port() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    let sim = start(SimConfig {
        cert_out: Some(path.clone()),
        extra_names: vec!["sim.test".into()],
        rate_per_stream: 500.0,
        count: Some(1),
        ..SimConfig::default()
    });
    assert!(sim.url("/ws").starts_with("wss://127.0.0.1:"));
    let pem = std::fs::read_to_string(&path).unwrap();
    assert_eq!(pem, sim.ca_pem());
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    for name in ["localhost", "sim.test"] {
        let mut c = connect_as(&sim, "/ws/btcusdt@trade", name).expect("name in certificate");
        assert_eq!(next_json(&mut c).1["e"], "trade");
    }
    assert!(connect_as(&sim, "/ws/btcusdt@trade", "example.com").is_err());
    let addr = sim.local_addr();
    let started = Instant::now();
    sim.stop();
    assert!(started.elapsed() < Duration::from_secs(3), "stop is prompt");
    std::net::TcpListener::bind(addr).expect("port freed after stop");
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

#[test]
fn client_that_stops_reading_is_dropped_and_controls_still_reach_it() {
    // Big depth frames at a high rate fill the loopback socket buffers quickly.
    let flood = SimConfig {
        rate_per_stream: 5000.0,
        depth_levels: 1000,
        ..SimConfig::default()
    };
    let sim = start(SimConfig {
        pong_timeout: Duration::from_millis(500),
        ..flood.clone()
    });
    let _stalled = connect(&sim, "/ws/btcusdt@depth");
    wait_up_to(Duration::from_secs(8), "stalled client dropped", || {
        sim.stats().closed_stalled == 1
    });
    assert_eq!(sim.stats().connections_open, 0);

    let sim = start(flood);
    let _stalled = connect(&sim, "/ws/btcusdt@depth");
    let mut last = u64::MAX;
    wait_up_to(Duration::from_secs(8), "writes blocked", || {
        std::thread::sleep(Duration::from_millis(200));
        let now = sim.stats().data_messages;
        std::mem::replace(&mut last, now) == now
    });
    sim.drop_connections();
    wait_until("blocked connection dropped", || sim.stats().dropped == 1);
    assert_eq!(sim.stats().connections_open, 0);
}

#[derive(clap::Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: super::FeedSimArgs,
}

#[test]
fn cli_flags_map_to_config_and_run_exits_after_duration() {
    use clap::{CommandFactory, Parser};
    let defaults = Cli::try_parse_from(["feed-sim"]).unwrap().args;
    assert_eq!(defaults.listen.to_string(), "127.0.0.1:9443");
    assert_eq!(
        defaults.cert_out,
        std::path::PathBuf::from("feed-sim-ca.pem")
    );
    let cfg = defaults.to_config().unwrap();
    assert!(cfg.tls);
    assert_eq!(cfg.ping_interval, Duration::from_secs(20));
    assert_eq!(cfg.pong_timeout, Duration::from_secs(60));

    let cli = Cli::try_parse_from([
        "feed-sim",
        "--listen=127.0.0.1:0",
        "--plain",
        "--rate=250.5",
        "--burst-size=7",
        "--burst-interval-ms=300",
        "--ping-interval-secs=0.2",
        "--pong-timeout-secs=1",
        "--depth-levels=60",
        "--count=9",
        "--drop-after=99",
        "--seed=42",
        "--extra-name=a.test",
        "--extra-name=10.1.2.3",
        "--duration-secs=0.3",
    ])
    .unwrap();
    let cfg = cli.args.to_config().unwrap();
    assert!(!cfg.tls && cfg.cert_out.is_none());
    assert_eq!(cfg.rate_per_stream, 250.5);
    assert_eq!(
        (cfg.burst_size, cfg.burst_interval),
        (7, Duration::from_millis(300))
    );
    assert_eq!(cfg.ping_interval, Duration::from_millis(200));
    assert_eq!(cfg.pong_timeout, Duration::from_secs(1));
    assert_eq!(
        (cfg.depth_levels, cfg.count, cfg.drop_after),
        (60, Some(9), Some(99))
    );
    assert_eq!((cfg.seed, cfg.extra_names.len()), (42, 2));

    let help = Cli::command().render_long_help().to_string();
    for flag in [
        "--rate",
        "--count",
        "--drop-after",
        "--plain",
        "--duration-secs",
        "--extra-name",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(
        help.contains("pass it to clients as --ca-file"),
        "flag docs shown"
    );

    for bad in [
        "--ping-interval-secs=0",
        "--pong-timeout-secs=1e300",
        "--rate=-1",
    ] {
        let args = Cli::try_parse_from(["feed-sim", bad]).unwrap().args;
        let cfg = args.to_config().and_then(|mut cfg| {
            cfg.listen = "127.0.0.1:0".parse().unwrap();
            FeedSim::start(cfg)
        });
        assert!(cfg.is_err(), "{bad} accepted");
    }

    let started = Instant::now();
    super::run(cli.args).expect("run succeeds");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
