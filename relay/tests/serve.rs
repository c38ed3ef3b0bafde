//! `relay receive --serve-ws`, tested with clients we did not write: Binance's own Python
//! connector (binance-connector) and tungstenite's client.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{finish, free_tcp_port, free_udp_port, lossy_hop, summary, wait_until_bound, Workdir};
use feed_sim::{FeedSim, SimConfig};
use serde_json::Value;

const STREAMS: [&str; 2] = ["btcusdt@trade", "btcusdt@bookTicker"];

/// Starts the Python client (binance-connector) and returns once its subscription is answered.
fn python_client(base: &str, out: &std::path::Path, form: &str) -> Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/serve_client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(base)
        .arg(out)
        .arg(form)
        .args(STREAMS)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test (cargo xtask test installs binance-connector)");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "subscribed",
        "the Binance connector did not subscribe: {:?}",
        child.wait_with_output()
    );
    child
}

/// The client's market-data messages (replies left out), each as (stream, id, event JSON).
fn events(out: &std::path::Path, combined: bool) -> (Vec<(String, u64, String)>, Vec<Value>) {
    let text = std::fs::read_to_string(out).unwrap();
    let (mut events, mut replies) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let value: Value = serde_json::from_str(line).unwrap();
        if value.get("id").is_some() && value.get("e").is_none() && value.get("u").is_none() {
            replies.push(value);
            continue;
        }
        let (stream, data) = if combined {
            let stream = value["stream"].as_str().unwrap().to_string();
            // The wrapper is Binance's, byte for byte: {"stream":"<name>","data":<event>}.
            let prefix = format!(r#"{{"stream":"{stream}","data":"#);
            let data = line
                .strip_prefix(&prefix)
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("not Binance's wrapper: {line}"));
            (stream, data.to_string())
        } else {
            let stream = if value.get("e").is_some() {
                "btcusdt@trade"
            } else {
                "btcusdt@bookTicker"
            };
            (stream.to_string(), line.to_string())
        };
        let event: Value = serde_json::from_str(&data).unwrap();
        let id = event
            .get("t")
            .or_else(|| event.get("u"))
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("no id in {data}"));
        events.push((stream, id, data));
    }
    (events, replies)
}

/// The issue's "done when": Binance's own client library, pointed at `--serve-ws`, gets every
/// event once, in order, while the relay leg loses a tenth of its datagrams and nothing is
/// recovered; the arbitration reports both paths.
#[test]
fn a_binance_client_library_gets_every_event_once_while_the_relay_leg_loses_a_tenth() {
    let sim = FeedSim::start(SimConfig {
        rate_per_stream: 200.0,
        log: false,
        ..SimConfig::default()
    })
    .unwrap();
    let run = Workdir::new(sim.ca_pem());
    let url = sim.url(&format!("/stream?streams={}", STREAMS.join("/")));
    let (port, ws_port) = (free_udp_port(), free_tcp_port());
    let (port_text, serve) = (port.to_string(), format!("127.0.0.1:{ws_port}"));
    let mut receiver = run.receiver(
        "both.json",
        &[
            "--mode",
            "both",
            "--listen-address",
            "127.0.0.1",
            "--port",
            &port_text,
            "--duration",
            "7",
            "--no-recovery",
            "--url",
            &url,
            "--serve-ws",
            &serve,
        ],
    );
    wait_until_bound(port, &mut receiver);
    let base = format!("ws://127.0.0.1:{ws_port}");
    let raw = python_client(&base, &run.path("raw.txt"), "raw");
    let combined = python_client(&base, &run.path("combined.txt"), "combined");
    let stop = Arc::new(AtomicBool::new(false));
    let (hop_port, hop) = lossy_hop(port, stop.clone(), |seen, _| seen.is_multiple_of(10));
    let relay = run.relay(&url, &[], &[hop_port], 5.0);
    finish(relay, "relay");
    stop.store(true, Ordering::Relaxed);
    let dropped = hop.join().unwrap();
    finish(receiver, "receiver");
    finish(raw, "the raw client");
    finish(combined, "the combined client");

    let s = summary(&run.path("both.json"));
    let a = s.arbitration.clone().expect("an arbitration object");
    let (relay_path, direct) = (&a.paths[0], &a.paths[1]);
    assert_eq!(
        (relay_path.path.as_str(), direct.path.as_str()),
        ("relay", "direct")
    );
    assert!(dropped > 50, "the hop dropped {dropped} datagrams");
    assert!(
        s.events_lost > 0 && relay_path.copies > 500,
        "the relay path lost what the hop dropped: {} lost of {}",
        s.events_lost,
        relay_path.copies
    );
    assert_eq!(
        a.events_missing, 0,
        "the arbitrated stream is complete: {a:?}"
    );
    assert_eq!(s.sample_count, a.events);
    let serve = s
        .serve
        .clone()
        .and_then(|s| s.ws)
        .expect("a serve.ws object");
    assert_eq!(
        (serve.clients, serve.slow_client_disconnects),
        (2, 0),
        "{serve:?}"
    );
    assert_eq!(serve.events_without_stream_name, 0);

    let (raw_events, raw_replies) = events(&run.path("raw.txt"), false);
    let (combined_events, _) = events(&run.path("combined.txt"), true);
    assert_eq!(
        raw_replies[1],
        serde_json::json!({"result": STREAMS, "id": 2}),
        "LIST_SUBSCRIPTIONS answered as Binance does"
    );
    assert_eq!(
        (raw_events.len() + combined_events.len()) as u64,
        serve.copies_queued,
        "every event queued reached its client"
    );
    for (name, got) in [("raw", &raw_events), ("combined", &combined_events)] {
        let mut by_stream: HashMap<&str, Vec<u64>> = HashMap::new();
        for (stream, id, _) in got.iter() {
            by_stream.entry(stream).or_default().push(*id);
        }
        let trades = &by_stream["btcusdt@trade"];
        let distinct: BTreeSet<u64> = trades.iter().copied().collect();
        assert_eq!(distinct.len(), trades.len(), "{name}: each trade once");
        let (first, last) = (distinct.first().unwrap(), distinct.last().unwrap());
        assert_eq!(
            last - first + 1,
            trades.len() as u64,
            "{name}: no trade missing between {first} and {last}"
        );
        assert!(trades.len() > 500, "{name}: {} trades", trades.len());
        for (stream, ids) in &by_stream {
            let inversions = ids.windows(2).filter(|w| w[1] <= w[0]).count() as u64;
            assert!(
                inversions <= a.delivered_out_of_order,
                "{name} {stream}: {inversions} events out of order, the receiver delivered {} so",
                a.delivered_out_of_order
            );
        }
    }
    // Both clients got the same events, byte for byte, whichever form they asked for.
    let raw_by_id: HashMap<(&str, u64), &str> = raw_events
        .iter()
        .map(|(s, id, data)| ((s.as_str(), *id), data.as_str()))
        .collect();
    let common = combined_events
        .iter()
        .filter(|(s, id, data)| {
            raw_by_id
                .get(&(s.as_str(), *id))
                .map(|raw| assert_eq!(raw, data, "{s} {id}"))
                .is_some()
        })
        .count();
    assert!(common > 500, "{common} events seen by both clients");
}

/// A client that stops reading is disconnected and counted once its queue is full; a client
/// that reads keeps getting every event; a request flood and a wrong path are refused.
#[test]
fn a_slow_client_is_dropped_and_counted_and_never_slows_the_others() {
    use tungstenite::{connect, Message};
    let sim = FeedSim::start(SimConfig {
        rate_per_stream: 2000.0,
        depth_levels: 60,
        log: false,
        ..SimConfig::default()
    })
    .unwrap();
    let run = Workdir::new(sim.ca_pem());
    let url = sim.url("/stream?streams=btcusdt@depth@100ms/btcusdt@trade");
    let ws_port = free_tcp_port();
    let serve = format!("127.0.0.1:{ws_port}");
    let mut receiver = run.receiver(
        "baseline.json",
        &[
            "--mode",
            "baseline",
            "--url",
            &url,
            "--duration",
            "6",
            // Half a second of the feed (4000 events a second): the reading client, a debug
            // build on a loaded machine, may fall that far behind and must not be dropped; the
            // slow one, which never reads, fills it within two seconds of the six.
            "--serve-queue",
            "2048",
            "--serve-ws",
            &serve,
        ],
    );
    let base = format!("ws://127.0.0.1:{ws_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", ws_port)).is_err() {
        assert!(receiver_alive(&mut receiver) && Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let connect_to = |path: &str| connect(format!("{base}{path}")).map(|(ws, _)| ws);
    // A wrong path, or a time unit the exchange's events are not in, is refused at the
    // handshake, with the reason.
    for (path, status, reason) in [
        ("/api/v3/depth", 404, "/ws/<stream>"),
        (
            "/ws/btcusdt@trade?timeUnit=MICROSECOND",
            400,
            "in MILLISECOND",
        ),
    ] {
        match connect_to(path) {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), status, "{path}");
                let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
                    .into_owned();
                assert!(body.contains(reason), "{path}: {body}");
            }
            other => panic!("{path}: expected a {status}, got {other:?}"),
        }
    }
    // A client that floods requests is cut off, as Binance does.
    let mut flood = connect_to("/ws").unwrap();
    for id in 0..10 {
        let request = format!(r#"{{"method":"LIST_SUBSCRIPTIONS","id":{id}}}"#);
        if flood.send(Message::text(request)).is_err() {
            break;
        }
    }
    // The slow client: subscribed, with a tiny receive window, and never reads.
    let slow = {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{ws_port}").parse().unwrap();
        socket.connect(&addr.into()).unwrap();
        let (ws, _) = tungstenite::client(
            format!("{base}/ws/btcusdt@depth@100ms"),
            std::net::TcpStream::from(socket),
        )
        .unwrap();
        ws
    };
    let mut reader = connect_to("/stream?streams=btcusdt@depth@100ms/btcusdt@trade").unwrap();
    let mut read = 0u64;
    let close = loop {
        match reader.read() {
            Ok(Message::Text(_)) => read += 1,
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => {}
            Err(e) => panic!("the reading client's connection broke after {read}: {e}"),
        }
    };
    assert_eq!(
        close.map(|f| f.reason.to_string()).as_deref(),
        Some("the receiver stopped")
    );
    drop(slow);
    drop(flood);
    finish(receiver, "receiver");
    let s = summary(&run.path("baseline.json"));
    let serve = s.serve.and_then(|s| s.ws).expect("a serve.ws object");
    assert_eq!(serve.slow_client_disconnects, 1, "{serve:?}");
    assert_eq!(serve.request_limit_disconnects, 1, "{serve:?}");
    // The wrong path, the wrong unit, and the plain TCP connection that found the port open.
    assert_eq!(serve.refused_connections, 3, "{serve:?}");
    assert!(read > 5_000, "the reading client kept reading: {read}");
    assert_eq!(s.events_lost, 0);
}

fn receiver_alive(receiver: &mut Child) -> bool {
    match receiver.try_wait().unwrap() {
        None => true,
        Some(status) => panic!("the receiver exited early: {status}"),
    }
}
