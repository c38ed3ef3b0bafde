//! `relay compare` and `relay plan` as a user runs them: the binary on files, its output, its
//! exit status, its errors. The plan is checked against `tests/plan_check.py`, the same
//! definitions computed with Python's `statistics` (needs `python3`; fails, never skips).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use relay_core::rng::Rng;

fn relay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .output()
        .expect("running relay")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The seed's own summary format (003), which `relay compare` reads as it reads ours.
fn seed_summary(setup: &str, samples: u64, lost: u64, avg: f64, jitter: f64) -> String {
    format!(
        r#"{{"setup_type": "{setup}", "sample_count": {samples}, "events_lost": {lost},
            "avg_latency_ms": {avg}, "median_latency_ms": {avg}, "p95_latency_ms": null,
            "p99_latency_ms": null, "min_latency_ms": null, "max_latency_ms": null,
            "jitter_stddev_ms": {jitter}, "backbone_avg_latency_ms": null,
            "backbone_median_latency_ms": null}}"#
    )
}

#[test]
fn compare_prints_the_difference_and_both_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let direct = write(
        dir.path(),
        "baseline.json",
        &seed_summary("baseline", 990, 10, 240.0, 30.0),
    );
    // 270 ms is below 240 + max(20, 36) = 276: OK. Loss 3% vs 1%: two points worse, BAD.
    let overlay = write(
        dir.path(),
        "backbone.json",
        &seed_summary("aws-backbone", 970, 30, 270.0, 12.0),
    );
    let out = relay(&[
        "compare",
        direct.to_str().unwrap(),
        overlay.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("latency: OK (difference +30.000 ms, 12.50% slower; OK below 276.000 ms)"),
        "{table}"
    );
    assert!(table.contains("loss: BAD (+2.000 points"), "{table}");
    assert!(
        table.contains("| jitter_stddev_ms     |         30.000 |         12.000 |      -18.000 |"),
        "{table}"
    );
    let out = relay(&[
        "compare",
        "--format",
        "json",
        direct.to_str().unwrap(),
        overlay.to_str().unwrap(),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["latency_verdict"], "OK");
    assert_eq!(json["loss_verdict"], "BAD");
    assert_eq!(json["difference_ms"], 30.0);
    assert_eq!(json["overlay"]["loss_pct"], 3.0);
    // Swapped files still compare, with a note saying which is which.
    let out = relay(&[
        "compare",
        overlay.to_str().unwrap(),
        direct.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("first file is taken as the direct path"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("latency: OPTIMIZED"));
}

#[test]
fn compare_and_plan_refuse_bad_input_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.json",
        &seed_summary("baseline", 1, 0, 1.0, 0.0),
    );
    let bad = write(dir.path(), "bad.json", r#"{"setup_type": "baseline"}"#);
    let binary = write(dir.path(), "binary.json", "\u{0}\u{1}");
    for (args, says) in [
        (
            vec!["compare", bad.to_str().unwrap(), good.to_str().unwrap()],
            "bad.json is not a receiver or probe summary: missing field `sample_count`",
        ),
        (
            vec!["compare", binary.to_str().unwrap(), good.to_str().unwrap()],
            "binary.json is not a receiver or probe summary",
        ),
        (
            vec!["compare", "/nonexistent/x.json", good.to_str().unwrap()],
            "reading /nonexistent/x.json",
        ),
        (
            vec!["plan", "--rtt", good.to_str().unwrap()],
            "no \"src\" column",
        ),
        (
            vec![
                "plan",
                "--rtt",
                write(dir.path(), "r.csv", "src,dst,rtt_ms\na,b,x\n")
                    .to_str()
                    .unwrap(),
            ],
            "line 2: rtt_ms \"x\"",
        ),
        (
            vec![
                "plan",
                "--rtt",
                write(dir.path(), "e.csv", "src,dst,rtt_ms\n")
                    .to_str()
                    .unwrap(),
            ],
            "no RTT samples",
        ),
        (
            vec![
                "plan",
                "--rtt",
                write(dir.path(), "k.csv", "src,dst,rtt_ms\na,b,1\n")
                    .to_str()
                    .unwrap(),
                "--relays",
                "c",
            ],
            "relay \"c\" is not a node",
        ),
    ] {
        let out = relay(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn plan_agrees_with_an_independent_python_computation() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::seeded(11, "plan-cli", 0);
    let mut csv = String::from("time,src,dst,rtt_ms\n");
    let names = [
        "tokyo",
        "osaka",
        "seoul",
        "singapore",
        "frankfurt",
        "london",
        "virginia",
        "oregon",
    ];
    for t in 0..3 {
        for a in names {
            for b in names {
                if a != b && !rng.chance(20) {
                    let rtt = 1.0 + rng.below(300_000) as f64 / 1000.0;
                    csv.push_str(&format!("{t},{a},{b},{rtt}\n"));
                }
            }
        }
    }
    let path = write(dir.path(), "rtt.csv", &csv);
    let ours = relay(&["plan", "--rtt", path.to_str().unwrap(), "--format", "json"]);
    assert!(ours.status.success(), "{}", text(&ours.stderr));
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/plan_check.py");
    let theirs = Command::new("python3")
        .args([script, path.to_str().unwrap()])
        .output()
        .expect("python3 is needed for this test (apt-get install python3)");
    assert!(theirs.status.success(), "{}", text(&theirs.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&theirs.stdout).unwrap();
    let close = |a: &serde_json::Value, b: &serde_json::Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        _ => a.is_null() && b.is_null(),
    };
    let their_pairs = theirs["pairs"].as_array().unwrap();
    let our_pairs = ours["pairs"].as_array().unwrap();
    assert_eq!(our_pairs.len(), their_pairs.len());
    assert!(our_pairs.len() > 20, "a mesh worth checking");
    for t in their_pairs {
        let o = our_pairs
            .iter()
            .find(|o| o["src"] == t["src"] && o["dst"] == t["dst"])
            .unwrap_or_else(|| panic!("pair {t} missing"));
        for field in ["direct_ms", "relayed_ms", "improvement_ms"] {
            assert!(close(&o[field], &t[field]), "{field}: ours {o}, python {t}");
        }
    }
    assert!(close(
        &ours["improved_fraction"],
        &theirs["improved_fraction"]
    ));
    assert!(
        theirs["improved_fraction"].as_f64().unwrap() > 0.0,
        "some pair is improved"
    );
    let our_thresholds: Vec<u64> = ours["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pairs"].as_u64().unwrap())
        .collect();
    let their_thresholds: Vec<u64> = theirs["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(our_thresholds, their_thresholds);
    let table = relay(&["plan", "--rtt", path.to_str().unwrap(), "--top", "3"]);
    let table = text(&table.stdout);
    assert!(table.contains(&format!("{} nodes", names.len())), "{table}");
    assert!(table.contains("more pairs: --top N"), "{table}");
}
