use std::path::Path;

use relay_core::record::csv::{column, COLUMNS};
use relay_core::record::summary::{Outcome, Summary};
use relay_core::record::Recorded;

use super::inputs::{read, rolling_median3};
use super::*;

const START_NS: u64 = 1_700_000_000_000_000_000;

/// A receiver's results as the receiver writes them: `name.json` and `name.csv`, rows given as
/// (seconds after the start, sequence, end-to-end ms, reordered).
fn write_run(dir: &Path, name: &str, setup: &str, rows: &[(f64, u64, f64, bool)]) {
    let mut summary = Summary::build(setup, &Recorded::default(), Outcome::default(), 10.0, &[]);
    summary.sample_count = rows.len() as u64;
    summary.avg_latency_ms = Some(rows.iter().map(|r| r.2).sum::<f64>() / rows.len() as f64);
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string(&summary).unwrap(),
    )
    .unwrap();
    let mut csv = COLUMNS.join(",") + "\n";
    for &(t, seq, ms, reordered) in rows {
        let mut cells = vec![String::new(); COLUMNS.len()];
        cells[column("sequence_id").unwrap()] = seq.to_string();
        cells[column("epoch").unwrap()] = "7".into();
        cells[column("frankfurt_time").unwrap()] = (START_NS + (t * 1e9) as u64).to_string();
        cells[column("end_to_end_latency_ms").unwrap()] = ms.to_string();
        cells[column("reordered").unwrap()] = if reordered { "1" } else { "0" }.into();
        csv += &(cells.join(",") + "\n");
    }
    std::fs::write(dir.join(format!("{name}.csv")), csv).unwrap();
}

/// A baseline and a backbone run of two messages each, and a three-node RTT dataset.
fn write_sample_folder(dir: &Path) {
    write_run(
        dir,
        "baseline-results",
        "baseline",
        &[(0.0, 1, 200.0, false), (1.5, 2, 220.0, false)],
    );
    write_run(
        dir,
        "backbone-results",
        "aws-backbone",
        &[(0.0, 1, 120.0, false), (1.2, 3, 125.0, false)],
    );
    std::fs::write(
        dir.join("mesh-a.csv"),
        "src,dst,rtt_ms\na,b,10\na,c,3\nc,b,4\n",
    )
    .unwrap();
}

#[test]
fn the_rolling_median_is_pandas_centred_window_of_three() {
    let v = [
        Some(1.0),
        Some(5.0),
        Some(2.0),
        Some(8.0),
        None,
        Some(3.0),
        Some(4.0),
    ];
    assert_eq!(
        rolling_median3(&v),
        [None, Some(2.0), Some(5.0), None, None, None, None]
    );
    assert_eq!(rolling_median3(&[Some(1.0)]), [None]);
    assert!(rolling_median3(&[]).is_empty());
}

#[test]
fn runs_are_read_into_intervals_with_missing_and_late_messages() {
    let dir = tempfile::tempdir().unwrap();
    // Second 0: 1, 2, then 5 (3 and 4 skipped). Second 1: 4 late, 6. Second 3: 9 (7, 8 skipped).
    write_run(
        dir.path(),
        "backbone-results",
        "aws-backbone",
        &[
            (0.1, 1, 100.0, false),
            (0.2, 2, 110.0, false),
            (0.9, 5, 120.0, false),
            (1.5, 4, 300.0, true),
            (1.6, 6, 100.0, false),
            (3.2, 9, 90.0, false),
        ],
    );
    write_run(
        dir.path(),
        "baseline-results",
        "baseline",
        &[(0.0, 1, 200.0, false), (0.5, 2, 220.0, false)],
    );
    std::fs::write(dir.path().join("lab-settings.json"), r#"{"duration": 20}"#).unwrap();
    std::fs::write(
        dir.path().join("mesh-a.csv"),
        "time,src,dst,rtt_ms\n1,a,b,10\n1,a,c,3\n1,c,b,4\n1,b,a,\n",
    )
    .unwrap();
    let inputs = read(dir.path()).unwrap();
    assert_eq!(inputs.runs.len(), 2, "lab-settings.json is no run");
    let backbone = inputs
        .runs
        .iter()
        .find(|r| r.name == "backbone-results")
        .unwrap();
    assert_eq!(backbone.interval_secs, 1.0);
    let got: Vec<(u64, u64, u64)> = backbone
        .intervals
        .iter()
        .map(|i| (i.delivered, i.missing, i.late))
        .collect();
    assert_eq!(got, [(3, 2, 0), (2, 0, 1), (0, 0, 0), (1, 2, 0)]);
    assert_eq!(backbone.intervals[0].mean_ms(), Some(110.0));
    assert_eq!(backbone.intervals[2].mean_ms(), None);
    assert_eq!(backbone.latency.count(), 6);
    let baseline = inputs
        .runs
        .iter()
        .find(|r| r.name == "baseline-results")
        .unwrap();
    assert!(
        baseline.intervals.iter().all(|i| i.missing == 0),
        "no sequences to skip in baseline mode"
    );
    let rtt = inputs.rtt.as_ref().unwrap();
    assert_eq!((rtt.samples.len(), rtt.rows_without_rtt), (3, 1));
}

#[test]
fn the_page_has_every_picture_its_inputs_allow() {
    let dir = tempfile::tempdir().unwrap();
    let page = |dir: &Path| std::fs::read_to_string(write(dir).unwrap()).unwrap();
    let empty = page(dir.path());
    assert!(empty.contains("No receiver results"), "{empty}");
    assert_eq!(empty.matches("<svg").count(), 0);

    write_sample_folder(dir.path());
    std::fs::write(
        dir.path().join("broken-results.json"),
        r#"{"setup_type": "baseline"}"#,
    )
    .unwrap();
    let html = page(dir.path());
    assert!(html.starts_with("<!DOCTYPE html>"));
    // CDF, over time, loss (backbone), heatmap, gain; no split without split figures.
    assert_eq!(html.matches("<svg").count(), 5, "{html}");
    assert!(
        html.contains("latency: OPTIMIZED"),
        "the comparison and its verdicts"
    );
    assert!(html.contains("1 of 3 pairs are improved"), "{html}");
    assert!(
        html.contains("broken-results.json: not a receiver summary"),
        "skipped inputs are named"
    );
    assert!(!html.contains("<script"), "a page without scripts");
}

/// The browser the page is checked in: `$RELAY_CHROMIUM`, or Chromium on PATH.
fn chromium() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("RELAY_CHROMIUM") {
        return path.into();
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::process::Command::new(name).arg("--version").output();
        if found.is_ok_and(|o| o.status.success()) {
            return name.into();
        }
    }
    panic!(
        "this test renders the report in a real headless browser and found none: install \
         Chromium (apt-get install chromium; `cargo xtask test` does it as root) or set \
         RELAY_CHROMIUM to a Chromium or Chrome binary"
    );
}

#[test]
fn a_real_browser_renders_the_page_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_sample_folder(dir.path());
    let page = write(dir.path()).unwrap();
    let url = format!("file://{}", page.display());
    let browser = chromium();
    let headless = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let out = std::process::Command::new(&browser)
        .args(headless)
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // The browser parsed every picture as SVG elements of the document.
    assert_eq!(dom.matches("<svg").count(), 5, "{dom}");
    assert!(dom.contains("<title>relay report:"), "{dom}");
    for bad in ["Uncaught", "CONSOLE(", "Failed to load"] {
        assert!(!log.contains(bad), "the browser reported {bad}: {log}");
    }
    let png = dir.path().join("page.png");
    let out = std::process::Command::new(&browser)
        .args(headless)
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1000,3000", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(
        bytes.len() > 20_000,
        "a page of plots, not a blank one: {} bytes",
        bytes.len()
    );
}
