//! `relay probe reflect` and `relay probe run` as a user runs them, on loopback: the JSON lines,
//! the summary (its figures recomputed here from the lines), sealed probes, a reflector that is
//! not there.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::{free_udp_port, wait_until_bound, RELAY};

fn reflector(port: u16, extra: &[&str]) -> Child {
    let mut child = Command::new(RELAY)
        .args([
            "probe",
            "reflect",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--duration",
            "20",
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_bound(port, &mut child);
    child
}

fn stop(child: Child) -> String {
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reflector: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn probe(
    dir: &Path,
    ports: &[u16],
    count: u64,
    extra: &[&str],
) -> (Output, Vec<serde_json::Value>, serde_json::Value) {
    let (lines, summary) = (dir.join("probes.jsonl"), dir.join("summary.json"));
    let mut cmd = Command::new(RELAY);
    cmd.args([
        "probe",
        "run",
        "--count",
        &count.to_string(),
        "--interval-ms",
        "5",
        "--timeout-ms",
        "300",
    ]);
    for port in ports {
        cmd.args(["--to", &format!("127.0.0.1:{port}")]);
    }
    let out = cmd
        .arg("--output")
        .arg(&lines)
        .arg("--summary")
        .arg(&summary)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = std::fs::read_to_string(lines)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    (out, lines, summary)
}

#[test]
fn probes_to_two_reflectors_are_all_answered_and_the_summary_matches_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_udp_port(), free_udp_port()];
    let reflectors: Vec<Child> = ports.iter().map(|&p| reflector(p, &[])).collect();
    let (out, lines, summary) = probe(dir.path(), &ports, 40, &["--length", "200"]);
    assert_eq!(lines.len(), 80, "one line per probe and target");
    let targets = summary["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for (port, t) in ports.iter().zip(targets) {
        let name = format!("127.0.0.1:{port}");
        assert_eq!(t["target"], name.as_str());
        assert_eq!(
            (
                t["sent"].as_u64(),
                t["received"].as_u64(),
                t["lost"].as_u64()
            ),
            (Some(40), Some(40), Some(0))
        );
        // Recomputed from the lines: every probe answered, in order of sequence per target, the
        // reflector's count growing by one, and the RTT's mean, min and max.
        let mine: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["target"] == name.as_str())
            .collect();
        let mut rtts: Vec<i64> = Vec::new();
        for (i, l) in mine.iter().enumerate() {
            assert_eq!(l["lost"], false);
            assert_eq!(l["seq"].as_u64(), Some(i as u64 + 1));
            assert_eq!(l["reflector_received"].as_u64(), Some(i as u64 + 1));
            let (sent, rx, tx, got) = (
                l["sent_ns"].as_i64().unwrap(),
                l["reflector_rx_ns"].as_i64().unwrap(),
                l["reflector_tx_ns"].as_i64().unwrap(),
                l["received_ns"].as_i64().unwrap(),
            );
            assert!(
                sent <= rx && rx <= tx && tx <= got,
                "one clock: stamps in order {l}"
            );
            assert_eq!(l["rtt_ns"].as_i64().unwrap(), got - sent - (tx - rx));
            rtts.push(got - sent - (tx - rx));
        }
        let mean_ms = rtts.iter().sum::<i64>() as f64 / rtts.len() as f64 / 1e6;
        let rtt = &t["rtt_ms"];
        assert!(
            (rtt["mean"].as_f64().unwrap() - mean_ms).abs() < 1e-3,
            "{rtt} vs {mean_ms}"
        );
        assert!(
            (rtt["min"].as_f64().unwrap() - *rtts.iter().min().unwrap() as f64 / 1e6).abs() < 1e-3
        );
        assert!(
            (rtt["max"].as_f64().unwrap() - *rtts.iter().max().unwrap() as f64 / 1e6).abs() < 1e-3
        );
        assert_eq!(t["lost_outbound"].as_u64(), Some(0));
    }
    assert_eq!(summary["length"], 200);
    assert_eq!(summary["completed"], true);
    assert!(summary["clock"]["synchronized"].is_boolean());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&format!(
            "| 127.0.0.1:{} | 40 | 40 | 0.00 (0 / 0) |",
            ports[0]
        )),
        "{table}"
    );
    for r in reflectors {
        let said = stop(r);
        assert!(said.contains("\"answered\":40"), "{said}");
    }
    // The two targets compared as two paths, seed 002's verdicts on the probe figures.
    let summary_path = dir.path().join("summary.json");
    let out = Command::new(RELAY)
        .arg("compare")
        .args([&summary_path, &summary_path])
        .args(["--direct-target", &format!("127.0.0.1:{}", ports[0])])
        .args(["--overlay-target", &format!("127.0.0.1:{}", ports[1])])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["loss_verdict"], "OK", "no loss on either: {c}");
    assert_eq!(c["overlay"]["sample_count"], 40);
    let expected = targets[1]["rtt_ms"]["mean"].as_f64().unwrap()
        - targets[0]["rtt_ms"]["mean"].as_f64().unwrap();
    assert!(
        (c["difference_ms"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{c}"
    );
}

#[test]
fn sealed_probes_need_the_reflectors_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("probe.key");
    std::fs::write(&key, [42u8; 32]).unwrap();
    let other = dir.path().join("other.key");
    std::fs::write(&other, [43u8; 32]).unwrap();
    let port = free_udp_port();
    let r = reflector(port, &["--key-file", key.to_str().unwrap()]);
    let (_, lines, summary) = probe(
        dir.path(),
        &[port],
        10,
        &["--key-file", key.to_str().unwrap()],
    );
    assert!(lines.iter().all(|l| l["lost"] == false));
    assert_eq!(summary["sealed"], true);
    assert_eq!(summary["length"], 96, "the shortest sealed probe");
    let (_, lines, _) = probe(
        dir.path(),
        &[port],
        5,
        &["--key-file", other.to_str().unwrap()],
    );
    assert!(
        lines.iter().all(|l| l["lost"] == true),
        "another key: nothing answered"
    );
    let (_, lines, _) = probe(dir.path(), &[port], 5, &[]);
    assert!(
        lines.iter().all(|l| l["lost"] == true),
        "unsealed: nothing answered"
    );
    let said = stop(r);
    assert!(
        said.contains("\"answered\":10")
            && said.contains("\"bad_seal\":5")
            && said.contains("\"unsealed\":5"),
        "{said}"
    );
}

#[test]
fn an_absent_reflector_is_total_loss_not_an_error_and_bad_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port(); // nobody listens: ICMP port unreachable on loopback
    let (_, lines, summary) = probe(dir.path(), &[port], 5, &[]);
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l["lost"] == true));
    let t = &summary["targets"][0];
    assert_eq!(t["loss_pct"].as_f64(), Some(100.0));
    assert!(t["rtt_ms"].is_null() && t["lost_outbound"].is_null());
    for (args, says) in [
        (
            vec!["--to", "127.0.0.1:9", "--length", "10"],
            "--length 10 is outside 72..=65483",
        ),
        (
            vec!["--to", "127.0.0.1:9", "--count", "0"],
            "--count must be at least 1",
        ),
        (
            vec!["--to", "127.0.0.1:9", "--interval-ms", "0"],
            "--interval-ms",
        ),
        (vec!["--to", "nowhere"], "not HOST:PORT"),
        (
            vec!["--to", "127.0.0.1:9", "--to", "127.0.0.1:9"],
            "given twice",
        ),
    ] {
        let out = Command::new(RELAY)
            .args(["probe", "run"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_three_node_mesh_writes_datasets_that_relay_plan_reads() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["tokyo", "osaka", "frankfurt"];
    let ports: Vec<u16> = names.iter().map(|_| free_udp_port()).collect();
    let nodes: Vec<String> = names
        .iter()
        .zip(&ports)
        .map(|(n, p)| format!(r#"{{"name": "{n}", "address": "127.0.0.1:{p}"}}"#))
        .collect();
    let config = dir.path().join("mesh.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"nodes": [{}], "probes": 5, "every_secs": 0.5, "interval_ms": 10,
                "timeout_ms": 200, "dataset": "{}/mesh-{{node}}.csv"}}"#,
            nodes.join(", "),
            dir.path().display()
        ),
    )
    .unwrap();
    let children: Vec<Child> = names
        .iter()
        .map(|n| {
            Command::new(RELAY)
                .args(["probe", "mesh", "--config"])
                .arg(&config)
                .args(["--node", n, "--rounds", "2"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("round 2 written"), "{err}");
        assert!(
            err.contains("\"answered\":20"),
            "2 other nodes x 2 rounds x 5 probes: {err}"
        );
    }
    let mut files = Vec::new();
    for n in names {
        let path = dir.path().join(format!("mesh-{n}.csv"));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], relay::probe::DATASET_HEADER);
        assert_eq!(
            lines.len(),
            1 + 2 * 2,
            "a header, two rounds of two pairs: {text}"
        );
        for (i, l) in lines[1..].iter().enumerate() {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells[1], n);
            assert_eq!(cells[5], "5", "{l}");
            if i >= 2 {
                assert_eq!(cells[6], "5", "the second round gets every reply: {l}");
            }
            assert!(cells[3].parse::<f64>().unwrap() > 0.0, "{l}");
        }
        files.push(path);
    }
    let mut cmd = Command::new(RELAY);
    cmd.args(["plan", "--format", "json"]);
    for f in &files {
        cmd.arg("--rtt").arg(f);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["nodes"].as_array().unwrap().len(), 3);
    let pairs = plan["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 3);
    for p in pairs {
        assert_eq!(p["samples"], 4, "two rounds from each side: {p}");
    }
}
