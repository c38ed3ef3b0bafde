//! What `demo` and `lab` share around a run: waiting for the simulator, reading the receivers'
//! JSON summaries and printing the seed's comparison side by side.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::process::Children;

/// Waits until `child` wrote `path` (the simulator writes its CA file only once it listens).
pub fn wait_for_file(children: &mut Children, child: &str, path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if path.exists() {
            return Ok(());
        }
        if crate::process::interrupted() {
            bail!("interrupted");
        }
        children.check_running(child)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{child} did not write {} within 15 s", path.display())
}

pub fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The summary fields the comparison shows, the seed's first.
pub const COMPARED_FIELDS: [&str; 19] = [
    "sample_count",
    "events_lost",
    "latency_sample_count",
    "messages_without_event_time",
    "avg_latency_ms",
    "median_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "p999_latency_ms",
    "min_latency_ms",
    "max_latency_ms",
    "jitter_stddev_ms",
    "backbone_avg_latency_ms",
    "backbone_median_latency_ms",
    "duplicates",
    "reordered",
    "fragmented_messages",
    "reconnect_gaps",
    "malformed_datagrams",
];

pub fn print_comparison(baseline: &Value, backbone: &Value) {
    println!(
        "| {:<28} | {:>14} | {:>14} |",
        "field", "baseline", "aws-backbone"
    );
    println!("|{:-<30}|{:->16}|{:->16}|", "", "", "");
    for field in COMPARED_FIELDS {
        println!(
            "| {:<28} | {:>14} | {:>14} |",
            field,
            show(&baseline[field]),
            show(&backbone[field])
        );
    }
    if let (Some(a), Some(b)) = (
        baseline["avg_latency_ms"].as_f64(),
        backbone["avg_latency_ms"].as_f64(),
    ) {
        println!(
            "\nDifference (aws-backbone - baseline avg_latency_ms): {:+.3} ms",
            b - a
        );
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// The default results folder of a run: `results/<kind>-<unix time>` in the workspace.
pub fn default_out(kind: &str) -> std::path::PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    crate::workspace_root()
        .join("results")
        .join(format!("{kind}-{}", now.as_secs()))
}
