//! What the end-to-end test files share: the real `relay` binary driven on loopback.
// Each test file is its own crate and uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_core::record::csv;
use relay_core::record::summary::Summary;

pub const RELAY: &str = env!("CARGO_BIN_EXE_relay");

/// The guard of a privileged test (network namespaces, BPF), or `None` after a loud SKIPPED
/// line (a failure under CI=true) when it cannot run here.
pub fn privileged(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    let no_object = (!relay::receive::rx_time::ebpf::EBPF_OBJECT_AVAILABLE).then(|| {
        "the eBPF object was not built: run `cargo xtask build-ebpf` (installs nightly \
         rust-src and bpf-linker)"
            .to_string()
    });
    relay_host::privileged::guard(test, no_object)
}

/// A TCP port that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something (the receiver just started) holds UDP `port`, so no datagram is sent
/// before anyone listens, however loaded the machine is.
pub fn wait_until_bound(port: u16, receiver: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        if let Some(status) = receiver.try_wait().unwrap() {
            panic!("the receiver exited before listening on {port}: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "nothing listened on UDP {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A UDP hop to `to` that drops the datagrams `drop` picks (given how many it has seen and how
/// long it has run), until `stop`; what comes back from `to` (NAKs) goes to whoever sent last.
/// Returns its port and, when joined, how many it dropped.
pub fn lossy_hop(
    to: u16,
    stop: Arc<AtomicBool>,
    drop: impl Fn(u64, Duration) -> bool + Send + 'static,
) -> (u16, std::thread::JoinHandle<u64>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let started = Instant::now();
    let hop = std::thread::spawn(move || {
        let (mut buf, mut seen, mut dropped) = (vec![0u8; 65536], 0u64, 0u64);
        let mut sender = None;
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if from.port() == to {
                if let Some(back) = sender {
                    let _ = socket.send_to(&buf[..n], back);
                }
                continue;
            }
            sender = Some(from);
            seen += 1;
            if drop(seen, started.elapsed()) {
                dropped += 1;
                continue;
            }
            let _ = socket.send_to(&buf[..n], ("127.0.0.1", to));
        }
        dropped
    });
    (port, hop)
}

/// A temporary folder for one test's results, with the exchange's CA for `--ca-file`.
pub struct Workdir {
    dir: tempfile::TempDir,
    pub ca: PathBuf,
}

impl Workdir {
    pub fn new(ca_pem: &str) -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        Workdir { dir, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `relay receive` with `args`, the exchange's CA and its results in `name`, without
    /// waiting for it.
    pub fn receiver(&self, name: &str, args: &[&str]) -> Child {
        Command::new(RELAY)
            .arg("receive")
            .args(args)
            .arg("--ca-file")
            .arg(&self.ca)
            .arg("--output")
            .arg(self.path(name))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts `relay receive` in aws-backbone mode on `port` and returns once it listens.
    pub fn backbone_receiver(&self, port: u16, secs: f64, name: &str, extra: &[&str]) -> Child {
        let (port_text, secs) = (port.to_string(), secs.to_string());
        let mut args = vec![
            "--mode",
            "relay",
            "--listen-address",
            "127.0.0.1",
            "--report-secs",
            "1",
            "--port",
            &port_text,
            "--duration",
            &secs,
        ];
        args.extend_from_slice(extra);
        let mut child = self.receiver(name, &args);
        wait_until_bound(port, &mut child);
        child
    }

    /// Starts `relay receive` in baseline mode, straight to the exchange at `url`.
    pub fn baseline_receiver(&self, url: &str, secs: f64, name: &str) -> Child {
        let secs = secs.to_string();
        self.receiver(
            name,
            &["--mode", "baseline", "--url", url, "--duration", &secs],
        )
    }

    /// Starts `relay forward` from `url` to the receivers on `to`, SUBSCRIBing to `streams`.
    pub fn relay(&self, url: &str, streams: &[&str], to: &[u16], secs: f64) -> Child {
        self.relay_with(url, streams, to, secs, &[])
    }

    /// [`Workdir::relay`] with `extra` flags.
    pub fn relay_with(
        &self,
        url: &str,
        streams: &[&str],
        to: &[u16],
        secs: f64,
        extra: &[&str],
    ) -> Child {
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
        command.args(extra);
        command.stderr(Stdio::piped()).spawn().unwrap()
    }
}

/// Waits for a child and returns its output, failing the test (with the child's stderr) if it
/// did not succeed.
pub fn finish(child: Child, what: &str) -> Output {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The receiver's JSON summary, read back with the type it was written from.
pub fn summary(path: &Path) -> Summary {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// The CSV beside a JSON summary, checked to have the one column list, as rows of cells.
pub fn csv_rows(json: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(json.with_extension("csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), csv::header());
    lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// One named column of the CSV beside a JSON summary, in file order.
pub fn csv_column(json: &Path, name: &str) -> Vec<String> {
    let at = csv::column(name).unwrap_or_else(|| panic!("no CSV column {name}"));
    csv_rows(json)
        .into_iter()
        .map(|mut row| row.swap_remove(at))
        .collect()
}

/// The CSV's sequence ids, in file order.
pub fn csv_sequence_ids(json: &Path) -> Vec<u64> {
    csv_column(json, "sequence_id")
        .iter()
        .map(|id| id.parse().unwrap())
        .collect()
}
