//! What a results folder holds, read for plotting: the receivers' runs (JSON summary + CSV,
//! streamed into bounded series) and probe-mesh datasets.

use std::path::{Path, PathBuf};

use anyhow::Context;
use relay_core::plan::Input;
use relay_core::record::csv::column;
use relay_core::record::summary::Summary;
use relay_core::stats::LatencyStats;

/// At most this many points on a time axis; longer runs get wider intervals.
const MAX_INTERVALS: f64 = 600.0;

/// One interval of a run's time series.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Interval {
    /// Sum and count of the end-to-end latencies (ms) of the messages accounted in it.
    pub latency_sum_ms: f64,
    pub latency_count: u64,
    /// Messages accounted in it.
    pub delivered: u64,
    /// Sequences skipped when a message arrived past them (missing at that moment).
    pub missing: u64,
    /// Messages that arrived after a later one (reordered, or recovered by a NAK).
    pub late: u64,
}

impl Interval {
    pub fn mean_ms(&self) -> Option<f64> {
        (self.latency_count > 0).then(|| self.latency_sum_ms / self.latency_count as f64)
    }
}

/// One receiver run.
pub struct Run {
    /// The JSON's file stem, e.g. `backbone-results`.
    pub name: String,
    pub summary: Summary,
    /// End-to-end latency of every row with one, in ns (for the CDF).
    pub latency: LatencyStats,
    pub interval_secs: f64,
    pub intervals: Vec<Interval>,
}

/// Everything found in a folder.
#[derive(Default)]
pub struct Inputs {
    pub runs: Vec<Run>,
    /// Probe-mesh datasets (or any CSV with src, dst and rtt_ms columns), all together.
    pub rtt: Option<Input>,
    pub rtt_files: Vec<PathBuf>,
    /// Files that looked like inputs but could not be read, with the reason.
    pub skipped: Vec<String>,
}

fn cell(row: &csv::StringRecord, at: Option<usize>) -> Option<&str> {
    at.and_then(|i| row.get(i)).filter(|v| !v.is_empty())
}

/// Streams a receiver CSV into a [`Run`] (bounded memory whatever its length).
fn read_run(name: String, summary: Summary, csv_path: &Path) -> anyhow::Result<Run> {
    let mut reader = csv::Reader::from_path(csv_path)
        .with_context(|| format!("opening {}", csv_path.display()))?;
    let interval_secs = (summary.duration_secs / MAX_INTERVALS).ceil().max(1.0);
    let relayed = summary.setup_type == "aws-backbone";
    let (seq_at, epoch_at, time_at, e2e_at, reordered_at) = (
        column("sequence_id"),
        column("epoch"),
        column("frankfurt_time"),
        column("end_to_end_latency_ms"),
        column("reordered"),
    );
    let mut run = Run {
        name,
        summary,
        latency: LatencyStats::default(),
        interval_secs,
        intervals: Vec::new(),
    };
    let mut first_ns: Option<u64> = None;
    // (epoch, highest sequence seen in it)
    let mut highest: Option<(u64, u64)> = None;
    for row in reader.records() {
        let row = row.with_context(|| format!("reading {}", csv_path.display()))?;
        let Some(t) = cell(&row, time_at).and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let start = *first_ns.get_or_insert(t);
        let index = (t.saturating_sub(start) as f64 / 1e9 / interval_secs) as usize;
        if index >= MAX_INTERVALS as usize * 2 {
            continue; // a time far past the run's own duration: not plotted
        }
        if run.intervals.len() <= index {
            run.intervals.resize(index + 1, Interval::default());
        }
        let interval = &mut run.intervals[index];
        interval.delivered += 1;
        if let Some(ms) = cell(&row, e2e_at).and_then(|v| v.parse::<f64>().ok()) {
            interval.latency_sum_ms += ms;
            interval.latency_count += 1;
            run.latency.record((ms * 1e6) as i64);
        }
        if cell(&row, reordered_at) == Some("1") {
            interval.late += 1;
        }
        if relayed {
            let seq = cell(&row, seq_at).and_then(|v| v.parse::<u64>().ok());
            let epoch = cell(&row, epoch_at).and_then(|v| v.parse::<u64>().ok());
            if let (Some(seq), Some(epoch)) = (seq, epoch) {
                match highest {
                    Some((e, h)) if e == epoch && seq > h => {
                        interval.missing += seq - h - 1;
                        highest = Some((e, seq));
                    }
                    Some((e, _)) if e == epoch => {}
                    _ => highest = Some((epoch, seq)),
                }
            }
        }
    }
    Ok(run)
}

/// Reads every receiver run and RTT dataset in `dir`.
pub fn read(dir: &Path) -> anyhow::Result<Inputs> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    let mut inputs = Inputs::default();
    for path in &paths {
        let ext = path.extension().and_then(|e| e.to_str());
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if ext == Some("json") {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            // Only receiver summaries (they have setup_type); settings and reports are not runs.
            if !text.contains("\"setup_type\"") {
                continue;
            }
            let summary: Summary = match serde_json::from_str(&text) {
                Ok(s) => s,
                Err(e) => {
                    inputs.skipped.push(format!(
                        "{}: not a receiver summary of this version ({e})",
                        path.display()
                    ));
                    continue;
                }
            };
            let csv = path.with_extension("csv");
            match read_run(stem.to_string(), summary, &csv) {
                Ok(run) => inputs.runs.push(run),
                Err(e) => inputs.skipped.push(format!("{}: {e:#}", path.display())),
            }
        } else if ext == Some("csv") {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            let header = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
            let header = String::from_utf8_lossy(header);
            let names: Vec<&str> = header.trim().split(',').map(str::trim).collect();
            if !["src", "dst", "rtt_ms"].iter().all(|c| names.contains(c)) {
                continue; // a receiver CSV, or something else
            }
            let input = inputs.rtt.get_or_insert_with(Input::default);
            match relay_core::plan::parse_csv(&bytes, input) {
                Ok(()) => inputs.rtt_files.push(path.clone()),
                Err(e) => inputs.skipped.push(format!("{}: {e}", path.display())),
            }
        }
    }
    Ok(inputs)
}

/// Seed 002's smoothing: a centred rolling median of 3 (pandas' `rolling_median(window=3,
/// center=True)`): absent at both ends and wherever a neighbour is absent.
pub fn rolling_median3(values: &[Option<f64>]) -> Vec<Option<f64>> {
    (0..values.len())
        .map(|i| {
            if i == 0 || i + 1 >= values.len() {
                return None;
            }
            let mut w = [values[i - 1]?, values[i]?, values[i + 1]?];
            w.sort_by(f64::total_cmp);
            Some(w[1])
        })
        .collect()
}
