//! The relay against an exchange it shares no code with: `tests/interop_server.py`, Python's
//! `websockets` library over Python's `ssl` (OpenSSL), with its default settings. The simulator
//! in `src/feed_sim` is tungstenite over rustls like the relay, so only these tests show that the
//! relay's TLS and WebSocket client work with another implementation of both.
//!
//! Needs `python3` with `websockets` >= 13 (`cargo xtask test` installs it). Without it every test
//! here fails with instructions; none of them is skipped.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{csv_sequence_ids, finish, free_udp_port, summary, Workdir};
use relay_core::record::summary::Summary;

const SERVER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop_server.py");
/// Keepalive ping period of the Python server: far shorter than Binance's, so that every test
/// connection is pinged many times.
const PING_INTERVAL: &str = "0.2";

/// Fails (never skips) when the Python side is missing, saying how to get it.
fn require_python_websockets() {
    let check = Command::new("python3")
        .args(["-c", "import websockets.asyncio.server"])
        .output();
    let problem = match check {
        Ok(output) if output.status.success() => return,
        Ok(output) => format!(
            "`python3 -c \"import websockets.asyncio.server\"` failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => format!("python3 could not be started: {e}"),
    };
    panic!(
        "the interop tests need Python 3 with the 'websockets' package (>= 13). {problem}\n\
         Run `cargo xtask test` (which installs it) or `python3 -m pip install 'websockets>=13'`."
    );
}

/// A temporary directory with a throwaway CA (for the relay's `--ca-file`) and a server
/// certificate it signed for 127.0.0.1 and localhost (for the Python server).
struct Run {
    work: Workdir,
    cert: PathBuf,
    key: PathBuf,
    /// The CA's own certificate and key: a server misconfigured to present them.
    ca_as_server: (PathBuf, PathBuf),
}

impl Deref for Run {
    type Target = Workdir;
    fn deref(&self) -> &Workdir {
        &self.work
    }
}

impl Run {
    fn new() -> Run {
        require_python_websockets();
        let names = ["127.0.0.1".to_string(), "localhost".to_string()];
        let issued = relay_core::harness::cert::issue("interop exchange", &names).unwrap();
        let work = Workdir::new(&issued.ca_pem);
        let cert = work.path("server-cert.pem");
        let key = work.path("server-key.pem");
        std::fs::write(&cert, issued.leaf_pem).unwrap();
        std::fs::write(&key, issued.key_pem).unwrap();
        let ca_as_server = (work.path("ca-as-server.pem"), work.path("ca-key.pem"));
        std::fs::write(&ca_as_server.0, &issued.ca_pem).unwrap();
        std::fs::write(&ca_as_server.1, &issued.ca_key_pem).unwrap();
        Run {
            work,
            cert,
            key,
            ca_as_server,
        }
    }

    /// Starts the Python exchange and waits until it listens. `args` go to the script as they are
    /// (`--count` and `--lifetime` are required there).
    fn server(&self, args: &[&str]) -> Server {
        self.server_with(&self.cert, &self.key, args)
    }

    /// [`Run::server`] presenting `cert` and `key`.
    fn server_with(&self, cert: &Path, key: &Path, args: &[&str]) -> Server {
        let stderr_path = self.path("server.stderr");
        let mut child = Command::new("python3")
            .arg(SERVER_SCRIPT)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["--ping-interval", PING_INTERVAL])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .expect("starting python3");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            lines,
            stderr_path,
            port: 0,
        };
        let first = match server.lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(e) => panic!(
                "the Python server did not report its port ({e:?}); stderr:\n{}",
                server.stderr()
            ),
        };
        server.port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("expected `PORT <n>`, got {first:?}"));
        server
    }
}

/// The running Python exchange.
struct Server {
    child: Option<Child>,
    lines: Receiver<String>,
    stderr_path: PathBuf,
    port: u16,
}

/// One WebSocket connection as the Python server saw it (its `CONN` line).
#[derive(Debug)]
struct Connection {
    sent: u64,
    pongs: u64,
    close_sent: Option<u16>,
    close_rcvd: Option<u16>,
}

/// Everything the Python server printed after `PORT`, read once it has exited.
#[derive(Debug)]
struct ServerReport {
    lines: Vec<String>,
    connections: Vec<Connection>,
    summary: HashMap<String, u64>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("wss://127.0.0.1:{}{path}", self.port)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits for the server to exit by itself (its `--lifetime`) and parses what it printed.
    fn finish(mut self) -> ServerReport {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the Python server did not exit by itself; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut lines = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(5)) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("the server's stdout stayed open"),
            }
        }
        assert!(
            status.success(),
            "the Python server failed: {status:?}\nstdout:\n{}\nstderr:\n{}",
            lines.join("\n"),
            self.stderr()
        );
        let fields = |line: &str| -> HashMap<String, String> {
            line.split_whitespace()
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let code = |v: &str| v.parse::<u16>().ok();
        let connections = lines
            .iter()
            .filter(|l| l.starts_with("CONN "))
            .map(|l| {
                let f = fields(l);
                Connection {
                    sent: f["sent"].parse().unwrap(),
                    pongs: f["pongs"].parse().unwrap(),
                    close_sent: code(&f["close_sent"]),
                    close_rcvd: code(&f["close_rcvd"]),
                }
            })
            .collect();
        let summary = lines
            .iter()
            .find(|l| l.starts_with("SUMMARY "))
            .map(|l| {
                fields(l)
                    .into_iter()
                    .map(|(k, v)| (k, v.parse().unwrap()))
                    .collect()
            })
            .unwrap_or_else(|| panic!("no SUMMARY line in {lines:#?}"));
        ServerReport {
            lines,
            connections,
            summary,
        }
    }
}

impl Drop for Server {
    /// A test that panicked before `finish` does not leave the server behind.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn assert_all_arrived_once(s: &Summary, json: &Path, expected: u64) {
    assert_eq!(s.setup_type, "aws-backbone", "{s:?}");
    assert_eq!(s.sample_count, expected, "{s:?}");
    assert_eq!(
        (
            s.events_lost,
            s.duplicates,
            s.reordered,
            s.malformed_datagrams
        ),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.messages_without_event_time, 0, "every trade has E: {s:?}");
    assert_eq!(
        csv_sequence_ids(json),
        (1..=expected).collect::<Vec<_>>(),
        "sequence ids are contiguous and in order"
    );
}

#[test]
fn combined_streams_arrive_once_in_order_and_every_ping_is_answered() {
    let per_stream = 300;
    let run = Run::new();
    let server = run.server(&["--count", &per_stream.to_string(), "--lifetime", "4.2"]);
    let port = free_udp_port();
    let receiver = run.backbone_receiver(port, 3.0, "combined.json", &[]);
    let url = server.url("/stream?streams=btcusdt@trade/ethusdt@trade");
    let relay = run.relay(&url, &[], &[port], 3.3);
    finish(receiver, "receiver");
    let relay_out = finish(relay, "relay");
    let report = server.finish();

    let json = run.path("combined.json");
    let s = summary(&json);
    assert_all_arrived_once(&s, &json, per_stream * 2);
    assert_eq!(s.latency_sample_count, per_stream * 2, "{s:?}");
    assert_eq!(s.reconnect_gaps, 0, "{s:?}");

    assert_eq!(report.summary["sent"], per_stream * 2, "{report:#?}");
    assert_eq!(report.connections.len(), 1, "one connection: {report:#?}");
    let conn = &report.connections[0];
    // About 3 s at 5 pings/s: a relay that stopped answering would have been dropped (close
    // 1011) after one --ping-timeout and reconnected, which the asserts above would also see.
    assert!(
        conn.pongs >= 5,
        "the relay answered only {} keepalive pings: {report:#?}\nrelay stderr:\n{}",
        conn.pongs,
        String::from_utf8_lossy(&relay_out.stderr)
    );
    assert_eq!(report.summary["keepalive_timeouts"], 0, "{report:#?}");
    assert_ne!(conn.close_sent, Some(1011), "{report:#?}");
    // The relay stopped (its --duration-secs) before the server: it says goodbye with a close
    // frame instead of just dropping the connection (which the server would log as 1006).
    assert_eq!(conn.close_rcvd, Some(1000), "{report:#?}");
}

#[test]
fn subscribe_on_a_bare_ws_path_starts_the_data() {
    let count = 200;
    let run = Run::new();
    let server = run.server(&["--count", &count.to_string(), "--lifetime", "4.0"]);
    let (subscribed, silent) = (free_udp_port(), free_udp_port());
    let receiver = run.backbone_receiver(subscribed, 2.8, "subscribed.json", &[]);
    let control = run.backbone_receiver(silent, 2.8, "silent.json", &[]);
    // `/ws` names no stream: this server, like Binance, sends nothing until a SUBSCRIBE.
    let relay = run.relay(&server.url("/ws"), &["btcusdt@trade"], &[subscribed], 3.0);
    let quiet_relay = run.relay(&server.url("/ws"), &[], &[silent], 3.0);
    finish(receiver, "receiver");
    finish(control, "control receiver");
    let relay_out = finish(relay, "relay");
    // A relay that forwarded nothing in its whole run fails, saying why.
    let quiet_out = quiet_relay.wait_with_output().unwrap();
    let quiet_stderr = String::from_utf8_lossy(&quiet_out.stderr);
    assert!(!quiet_out.status.success(), "{quiet_stderr}");
    assert!(
        quiet_stderr
            .contains("sent no market data (check the stream name; a bare /ws needs --stream)"),
        "{quiet_stderr}"
    );
    let report = server.finish();

    let json = run.path("subscribed.json");
    let s = summary(&json);
    assert_all_arrived_once(&s, &json, count);

    let subscribes: Vec<&String> = report
        .lines
        .iter()
        .filter(|l| l.starts_with("SUBSCRIBE "))
        .collect();
    assert_eq!(subscribes.len(), 1, "one SUBSCRIBE: {report:#?}");
    assert!(
        subscribes[0].ends_with(" 1 btcusdt@trade"),
        "SUBSCRIBE id 1 for btcusdt@trade: {report:#?}"
    );
    assert!(
        !report.lines.iter().any(|l| l.starts_with("REQUEST ")),
        "no other client message: {report:#?}"
    );
    let relay_stderr = String::from_utf8_lossy(&relay_out.stderr);
    assert!(
        relay_stderr.contains(r#"exchange replied {"result":null,"id":1}"#),
        "the reply is reported as a reply, not forwarded: {relay_stderr}"
    );

    let quiet = summary(&run.path("silent.json"));
    assert_eq!(
        quiet.sample_count, 0,
        "without SUBSCRIBE no data: {quiet:?}"
    );
    assert_eq!(report.connections.len(), 2, "{report:#?}");
    let mut sent: Vec<u64> = report.connections.iter().map(|c| c.sent).collect();
    sent.sort_unstable();
    assert_eq!(sent, [0, count], "{report:#?}");
}

#[test]
fn a_server_close_frame_is_answered_and_reported_as_a_reconnect_gap() {
    let count = 300;
    let close_after = 150;
    let run = Run::new();
    let server = run.server(&[
        "--count",
        &count.to_string(),
        "--rate",
        "300",
        "--close-after",
        &close_after.to_string(),
        "--lifetime",
        "4.8",
    ]);
    let port = free_udp_port();
    let receiver = run.backbone_receiver(port, 3.6, "reconnect.json", &[]);
    // Closes after 0.5 s of data, twice; the relay's backoff is 0.25 s, then 0.5 s.
    let relay = run.relay(&server.url("/ws/btcusdt@trade"), &[], &[port], 3.8);
    finish(receiver, "receiver");
    let relay_out = finish(relay, "relay");
    let report = server.finish();

    let json = run.path("reconnect.json");
    let s = summary(&json);
    assert_all_arrived_once(&s, &json, count);
    let closes = report
        .lines
        .iter()
        .filter(|l| l.starts_with("CLOSING "))
        .count() as u64;
    assert_eq!(closes, count / close_after, "{report:#?}");
    assert!(s.reconnect_gaps >= 1, "{s:?}");
    assert_eq!(
        s.reconnect_gaps, closes,
        "every server close is followed by a reconnect: {s:?}\n{report:#?}"
    );
    assert!(s.reconnect_gap_total_ms > 0.0, "{s:?}");
    for conn in report
        .connections
        .iter()
        .filter(|c| c.close_sent == Some(1000))
    {
        assert_eq!(
            conn.close_rcvd,
            Some(1000),
            "RFC 6455 5.5.1: the relay must answer the server's close frame: {report:#?}\nrelay stderr:\n{}",
            String::from_utf8_lossy(&relay_out.stderr)
        );
    }
}

#[test]
fn baseline_receiver_reads_the_python_server_directly() {
    let per_stream = 200;
    let run = Run::new();
    let server = run.server(&["--count", &per_stream.to_string(), "--lifetime", "3.5"]);
    let json = run.path("baseline.json");
    let url = server.url("/stream?streams=btcusdt@trade/ethusdt@trade");
    let receiver = run.baseline_receiver(&url, 2.5, "baseline.json");
    finish(receiver, "baseline receiver");
    let report = server.finish();

    let s = summary(&json);
    assert_eq!(s.setup_type, "baseline", "{s:?}");
    assert_eq!(s.sample_count, per_stream * 2, "{s:?}");
    assert_eq!(s.latency_sample_count, per_stream * 2, "{s:?}");
    assert_eq!(s.reconnect_gaps, 0, "{s:?}");
    assert_eq!(report.connections.len(), 1, "{report:#?}");
    assert!(
        report.connections[0].pongs >= 5,
        "the baseline receiver answers pings too: {report:#?}"
    );
    assert_eq!(report.summary["keepalive_timeouts"], 0, "{report:#?}");
}

#[test]
fn a_server_presenting_its_ca_certificate_is_refused_with_what_to_do() {
    let run = Run::new();
    let (cert, key) = run.ca_as_server.clone();
    let server = run.server_with(&cert, &key, &["--count", "10", "--lifetime", "3"]);
    let url = server.url("/ws/btcusdt@trade");
    let output = run
        .baseline_receiver(&url, 1.5, "refused.json")
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("the server presents a CA certificate as its own; give it a leaf certificate signed by that CA"),
        "{stderr}"
    );
    let s = summary(&run.path("refused.json"));
    assert_eq!(s.sample_count, 0);
    assert!(s.errors[0].contains("CaUsedAsEndEntity"), "{s:?}");
    let _ = server.finish();
}
