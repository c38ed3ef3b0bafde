//! The relay against an exchange it shares no code with: `tests/interop_server.py`, Python's
//! `websockets` library over Python's `ssl` (OpenSSL), with its default settings. The simulator
//! in `src/feed_sim` is tungstenite over rustls like the relay, so only these tests show that the
//! relay's TLS and WebSocket client work with another implementation of both.
//!
//! Needs `python3` with `websockets` >= 13 (`cargo xtask test` installs it). Without it every test
//! here fails with instructions; none of them is skipped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

const RELAY: &str = env!("CARGO_BIN_EXE_relay");
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

/// A UDP port that was free a moment ago.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temporary directory with a throwaway CA (for the relay's `--ca-file`) and a server
/// certificate it signed for 127.0.0.1 and localhost (for the Python server).
struct Run {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Run {
    fn new() -> Run {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        require_python_websockets();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "relay interop test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "interop exchange");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("server-cert.pem");
        let key_path = dir.path().join("server-key.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        std::fs::write(&cert, leaf.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Run {
            dir,
            ca,
            cert,
            key: key_path,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the Python exchange and waits until it listens. `args` go to the script as they are
    /// (`--count` and `--lifetime` are required there).
    fn server(&self, args: &[&str]) -> Server {
        let stderr_path = self.path("server.stderr");
        let mut child = Command::new("python3")
            .arg(SERVER_SCRIPT)
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
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

    /// Starts `relay receive` in aws-backbone mode on `port`.
    fn backbone_receiver(&self, port: u16, secs: f64, name: &str) -> Child {
        Command::new(RELAY)
            .args([
                "receive",
                "--mode",
                "relay",
                "--listen-address",
                "127.0.0.1",
                "--report-secs",
                "1",
            ])
            .args([
                "--port",
                &port.to_string(),
                "--duration",
                &secs.to_string(),
                "--output",
            ])
            .arg(self.path(name))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts `relay forward` from `url` to the receivers on `to`, SUBSCRIBing to `streams`.
    fn relay(&self, url: &str, streams: &[&str], to: &[u16], secs: f64) -> Child {
        let mut command = Command::new(RELAY);
        command
            .args(["forward", "--url", url, "--ca-file"])
            .arg(&self.ca);
        command.args(["--duration-secs", &secs.to_string(), "--report-secs", "1"]);
        for stream in streams {
            command.args(["--stream", stream]);
        }
        for port in to {
            command.args(["--to", &format!("127.0.0.1:{port}")]);
        }
        command.stderr(Stdio::piped()).spawn().unwrap()
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

/// Waits for a child and returns its output, failing the test (with the child's stderr) if it
/// did not succeed.
fn finish(child: Child, what: &str) -> Output {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The receiver's CSV sequence ids, in file order.
fn csv_sequence_ids(json: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(json.with_extension("csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

fn assert_all_arrived_once(s: &Value, json: &Path, expected: u64) {
    assert_eq!(s["setup_type"], "aws-backbone", "{s}");
    assert_eq!(s["sample_count"], expected, "{s}");
    assert_eq!(s["events_lost"], 0, "{s}");
    assert_eq!(s["duplicates"], 0, "{s}");
    assert_eq!(s["reordered"], 0, "{s}");
    assert_eq!(s["malformed_datagrams"], 0, "{s}");
    assert_eq!(
        s["messages_without_event_time"], 0,
        "every trade has E: {s}"
    );
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
    let receiver = run.backbone_receiver(port, 3.0, "combined.json");
    std::thread::sleep(Duration::from_millis(300));
    let url = server.url("/stream?streams=btcusdt@trade/ethusdt@trade");
    let relay = run.relay(&url, &[], &[port], 3.3);
    finish(receiver, "receiver");
    let relay_out = finish(relay, "relay");
    let report = server.finish();

    let json = run.path("combined.json");
    let s = summary(&json);
    assert_all_arrived_once(&s, &json, per_stream * 2);
    assert_eq!(s["latency_sample_count"], per_stream * 2, "{s}");
    assert_eq!(s["reconnect_gaps"], 0, "{s}");

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
}

#[test]
fn subscribe_on_a_bare_ws_path_starts_the_data() {
    let count = 200;
    let run = Run::new();
    let server = run.server(&["--count", &count.to_string(), "--lifetime", "4.0"]);
    let (subscribed, silent) = (free_udp_port(), free_udp_port());
    let receiver = run.backbone_receiver(subscribed, 2.8, "subscribed.json");
    let control = run.backbone_receiver(silent, 2.8, "silent.json");
    std::thread::sleep(Duration::from_millis(300));
    // `/ws` names no stream: this server, like Binance, sends nothing until a SUBSCRIBE.
    let relay = run.relay(&server.url("/ws"), &["btcusdt@trade"], &[subscribed], 3.0);
    let quiet_relay = run.relay(&server.url("/ws"), &[], &[silent], 3.0);
    finish(receiver, "receiver");
    finish(control, "control receiver");
    let relay_out = finish(relay, "relay");
    finish(quiet_relay, "relay without --stream");
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
        quiet["sample_count"], 0,
        "without SUBSCRIBE no data: {quiet}"
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
    let receiver = run.backbone_receiver(port, 3.6, "reconnect.json");
    std::thread::sleep(Duration::from_millis(300));
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
    assert!(s["reconnect_gaps"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(
        s["reconnect_gaps"], closes,
        "every server close is followed by a reconnect: {s}\n{report:#?}"
    );
    assert!(s["reconnect_gap_total_ms"].as_f64().unwrap() > 0.0, "{s}");
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
    let receiver = Command::new(RELAY)
        .args([
            "receive",
            "--mode",
            "baseline",
            "--duration",
            "2.5",
            "--url",
        ])
        .arg(server.url("/stream?streams=btcusdt@trade/ethusdt@trade"))
        .arg("--ca-file")
        .arg(&run.ca)
        .arg("--output")
        .arg(&json)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(receiver, "baseline receiver");
    let report = server.finish();

    let s = summary(&json);
    assert_eq!(s["setup_type"], "baseline", "{s}");
    assert_eq!(s["sample_count"], per_stream * 2, "{s}");
    assert_eq!(s["latency_sample_count"], per_stream * 2, "{s}");
    assert_eq!(s["reconnect_gaps"], 0, "{s}");
    assert_eq!(report.connections.len(), 1, "{report:#?}");
    assert!(
        report.connections[0].pongs >= 5,
        "the baseline receiver answers pings too: {report:#?}"
    );
    assert_eq!(report.summary["keepalive_timeouts"], 0, "{report:#?}");
}
