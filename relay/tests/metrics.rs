//! `--metrics`: a relay and a receiver on loopback serve Prometheus text, scraped while they run
//! and read with Prometheus's own Python parser (`prometheus_client.parser`), never with ours;
//! `--hlog`: the receiver's interval log, read with HdrHistogram's own Python reader (`hdrh`).
//! `cargo xtask test` installs both; without them the test fails, never skips.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{finish, free_tcp_port, free_udp_port, summary, Workdir};
use feed_sim::{FeedSim, SimConfig};

/// GET `path` on `port`: (status line, body); `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// The samples of a Prometheus text page as Prometheus's own parser reads them:
/// `(name, labels, value)`.
fn parse(page: &str) -> Vec<(String, serde_json::Value, f64)> {
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       out.append([s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "Prometheus's parser refused the page (pip install prometheus-client if it is missing): {}\n{page}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, serde_json::Value, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    rows
}

fn value(
    samples: &[(String, serde_json::Value, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map(|s| s.2)
}

#[test]
fn relay_and_receiver_serve_prometheus_text_while_they_run() {
    let sim = FeedSim::start(SimConfig {
        count: None,
        rate_per_stream: 500.0,
        log: false,
        ..SimConfig::default()
    })
    .unwrap();
    let run = Workdir::new(sim.ca_pem());
    let port = free_udp_port();
    let (relay_metrics, receiver_metrics) = (free_tcp_port(), free_tcp_port());
    let receiver = run.backbone_receiver(
        port,
        4.0,
        "backbone.json",
        &[
            "--metrics",
            &format!("127.0.0.1:{receiver_metrics}"),
            "--hlog",
            run.path("latency.hlog").to_str().unwrap(),
        ],
    );
    let url = sim.url("/ws/btcusdt@trade?timeUnit=MICROSECOND");
    let relay = run.relay_with(
        &url,
        &[],
        &[port],
        4.0,
        &["--metrics", &format!("127.0.0.1:{relay_metrics}")],
    );
    // Scrape both once the figures have moved (the pages refresh every second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (relay_page, receiver_page) = loop {
        assert!(
            Instant::now() < deadline,
            "no figures on the metrics pages within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
        let (Some(r), Some(c)) = (
            get(relay_metrics, "/metrics"),
            get(receiver_metrics, "/metrics"),
        ) else {
            continue;
        };
        if r.1.contains("relay_messages_total") && c.1.contains("relay_latency_seconds_bucket") {
            assert!(r.0.contains("200") && c.0.contains("200"), "{r:?} {c:?}");
            break (r.1, c.1);
        }
    };
    let (status, _) = get(relay_metrics, "/elsewhere").unwrap();
    assert!(status.contains("404"), "{status}");

    let relay = {
        finish(receiver, "receiver");
        finish(relay, "relay");
        parse(&relay_page)
    };
    let forwarded = value(&relay, "relay_messages_total", &[]).unwrap();
    assert!(forwarded > 0.0);
    assert!(value(&relay, "relay_datagrams_sent_total", &[]).unwrap() > 0.0);
    assert_eq!(value(&relay, "relay_exchange_connection", &[]), Some(1.0));

    let received = parse(&receiver_page);
    assert!(value(&received, "relay_receiver_messages_total", &[]).unwrap() > 0.0);
    assert_eq!(
        value(&received, "relay_receiver_lost_total", &[]),
        Some(0.0)
    );
    // Every component's histogram is complete and cumulative: buckets never fall, +Inf equals
    // the count.
    for component in ["end_to_end", "backbone", "network", "kernel", "application"] {
        let labels = [("component", component)];
        let count = value(&received, "relay_latency_seconds_count", &labels).unwrap();
        assert!(count > 0.0, "{component}");
        let buckets: Vec<f64> = received
            .iter()
            .filter(|(n, l, _)| n == "relay_latency_seconds_bucket" && l["component"] == component)
            .map(|s| s.2)
            .collect();
        assert_eq!(buckets.len(), 20, "19 bounds and +Inf");
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "{component}: {buckets:?}"
        );
        assert_eq!(buckets.last(), Some(&count));
        let inf = value(
            &received,
            "relay_latency_seconds_bucket",
            &[("component", component), ("le", "+Inf")],
        );
        assert_eq!(inf, Some(count));
        assert!(value(&received, "relay_latency_seconds_sum", &labels).unwrap() > 0.0);
    }
    // The page was a snapshot during the run; the summary's count is at least as large.
    let s = summary(&run.path("backbone.json"));
    let seen = value(
        &received,
        "relay_latency_seconds_count",
        &[("component", "end_to_end")],
    )
    .unwrap();
    assert!(s.latency_sample_count as f64 >= seen);
}
