//! How the simulator treats its connections: requests, limits, pings, drops, shutdowns, the CLI.

use super::*;

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
    args: crate::FeedSimArgs,
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
    crate::run(cli.args).expect("run succeeds");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
