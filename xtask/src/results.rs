//! What `demo`, `lab` and `soak` share around a run: its results folder and key, waiting for the
//! simulator, reading the receivers' JSON summaries and printing the seed's comparison side by
//! side.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use relay_core::record::summary::Summary;

use crate::process::Children;

/// Waits until `child` wrote `path` (the simulator writes its CA file only once it listens).
pub fn wait_for_file(children: &mut Children, child: &str, path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if path.exists() {
            return Ok(());
        }
        if relay_host::signals::stop_requested() {
            bail!("interrupted");
        }
        children.check_running(child)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{child} did not write {} within 15 s", path.display())
}

/// A receiver's JSON summary, read with the type it was written from.
pub fn read_summary(path: &Path) -> Result<Summary> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A figure of a summary for the comparison table (`-` when absent).
type Field = fn(&Summary) -> Option<String>;

fn count(n: u64) -> Option<String> {
    Some(n.to_string())
}

fn figure(v: Option<f64>) -> Option<String> {
    v.map(|v| v.to_string())
}

/// The summary fields the comparison shows, the seed's first.
pub const COMPARED_FIELDS: [(&str, Field); 23] = [
    ("sample_count", |s| count(s.sample_count)),
    ("events_lost", |s| count(s.events_lost)),
    ("recovered", |s| count(s.recovered)),
    ("exchange_events_missed", |s| {
        count(s.exchange_events_missed)
    }),
    ("authenticated", |s| Some(s.authenticated.to_string())),
    ("unauthenticated_datagrams", |s| {
        count(s.unauthenticated_datagrams)
    }),
    ("latency_sample_count", |s| count(s.latency_sample_count)),
    ("messages_without_event_time", |s| {
        count(s.messages_without_event_time)
    }),
    ("avg_latency_ms", |s| figure(s.avg_latency_ms)),
    ("median_latency_ms", |s| figure(s.median_latency_ms)),
    ("p95_latency_ms", |s| figure(s.p95_latency_ms)),
    ("p99_latency_ms", |s| figure(s.p99_latency_ms)),
    ("p999_latency_ms", |s| figure(s.p999_latency_ms)),
    ("min_latency_ms", |s| figure(s.min_latency_ms)),
    ("max_latency_ms", |s| figure(s.max_latency_ms)),
    ("jitter_stddev_ms", |s| figure(s.jitter_stddev_ms)),
    ("backbone_avg_latency_ms", |s| {
        figure(s.backbone_avg_latency_ms)
    }),
    ("backbone_median_latency_ms", |s| {
        figure(s.backbone_median_latency_ms)
    }),
    ("duplicates", |s| count(s.duplicates)),
    ("reordered", |s| count(s.reordered)),
    ("fragmented_messages", |s| count(s.fragmented_messages)),
    ("reconnect_gaps", |s| count(s.reconnect_gaps)),
    ("malformed_datagrams", |s| count(s.malformed_datagrams)),
];

pub fn print_comparison(baseline: &Summary, backbone: &Summary) {
    println!(
        "| {:<28} | {:>14} | {:>14} |",
        "field", "baseline", "aws-backbone"
    );
    println!("|{:-<30}|{:->16}|{:->16}|", "", "", "");
    let show = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    for (field, value) in COMPARED_FIELDS {
        println!(
            "| {:<28} | {:>14} | {:>14} |",
            field,
            show(value(baseline)),
            show(value(backbone))
        );
    }
    let verdicts = relay_core::compare::Comparison::of_summaries(baseline, backbone).verdicts();
    println!("\n{verdicts}(the same comparison: relay compare BASELINE.json BACKBONE.json)");
}

/// Writes the results folder's report (`relay report OUT`: one HTML page of plots) and says
/// where it is.
pub fn write_report(relay: &Path, out: &Path) -> Result<()> {
    let done = std::process::Command::new(relay)
        .arg("report")
        .arg(out)
        .output()
        .with_context(|| format!("starting {} report", relay.display()))?;
    if !done.status.success() {
        bail!(
            "relay report {} failed: {}",
            out.display(),
            String::from_utf8_lossy(&done.stderr).trim()
        );
    }
    println!(
        "\nReport (open it in a browser): {}",
        String::from_utf8_lossy(&done.stdout).trim()
    );
    Ok(())
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

/// A fresh shared secret for a relay and its receivers (`relay.key` in `out`, mode 0600): the
/// lab and the soak run sealed, as a deployment should.
pub fn write_key(out: &Path) -> Result<PathBuf> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut secret))
        .context("reading /dev/urandom for the lab's key")?;
    let path = out.join("relay.key");
    let _ = std::fs::remove_file(&path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(&secret))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The results folder of a run: `given`, or `results/<kind>-<unix time>`; created.
pub fn out_dir(given: Option<&Path>, kind: &str) -> Result<PathBuf> {
    let out = given.map_or_else(|| default_out(kind), Path::to_path_buf);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    Ok(out)
}
