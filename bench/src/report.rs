//! The end-to-end report: results of one run of `e2e`, the ratios between paths, the targets,
//! and their markdown and JSON forms.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::Percentiles;

/// A step of the ramp counts as sustained when nothing was lost, the messages arrived at no
/// less than this fraction of the offered rate, and their p99 latency stayed under
/// [`SUSTAIN_P99_US`] (no standing backlog).
pub const SUSTAIN_FRACTION: f64 = 0.95;
/// A path that keeps up shows a p99 of a few ms here (the simulator's 1 ms bursts plus scheduling
/// noise of a shared machine); one that falls behind builds a backlog of tens of ms within the
/// 1 s step even while it delivers 95% of the rate.
pub const SUSTAIN_P99_US: f64 = 50_000.0;

/// What carried the messages from the simulator to the bench receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// A bare UDP sender -> receiver on loopback (sender stamps, receiver measures).
    UdpFloor,
    /// The simulator's TLS WebSocket read directly by the bench (no forwarder, no UDP).
    WsDirect,
    /// `relay forward` (io_uring, sans-io session, wire header).
    Relay,
    /// The reference forwarder: tokio + tokio-tungstenite + tokio-rustls + tokio UdpSocket.
    Reference,
    /// `websocat -u -b wss://.. udp:..`.
    Websocat,
}

impl PathKind {
    pub fn label(self) -> &'static str {
        match self {
            PathKind::UdpFloor => "UDP loopback floor",
            PathKind::WsDirect => "TLS WS direct floor",
            PathKind::Relay => "relay",
            PathKind::Reference => "reference (tokio)",
            PathKind::Websocat => "websocat",
        }
    }

    pub fn is_forwarder(self) -> bool {
        matches!(
            self,
            PathKind::Relay | PathKind::Reference | PathKind::Websocat
        )
    }
}

/// One measured run of one path at one offered rate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub path: Option<PathKind>,
    /// Offered messages per second.
    pub rate: u64,
    /// Planned sending time in seconds.
    pub secs: f64,
    /// Messages the source sent.
    pub expected: u64,
    /// Distinct messages the bench receiver got within the drain time.
    pub received: u64,
    /// `expected - received`: lost, or later than the drain time.
    pub lost: u64,
    pub duplicates: u64,
    /// Messages per second between the first and the last arrival.
    pub achieved_rate: f64,
    /// Source time (event time `E`, or the UDP sender's stamp) -> receive call returned.
    pub latency: Option<Percentiles>,
    /// Relay only: relay read the exchange bytes (`relay_rx_ns`) -> receive call returned.
    pub hop: Option<Percentiles>,
    /// Relay only: relay read -> relay handed the datagram to the kernel (`relay_tx_ns`).
    pub dwell: Option<Percentiles>,
    /// Messages per receive call of the bench receiver (how bursty the arrivals were).
    pub messages_per_receive: Option<f64>,
    /// Forwarders only: the forwarder process's CPU time (user + system) per delivered message.
    pub cpu_us_per_msg: Option<f64>,
    /// Forwarders only: the system (kernel) share of that CPU time, 0..1.
    pub cpu_sys_share: Option<f64>,
    /// Why the run has no figures (the forwarder failed to start, ...).
    pub error: Option<String>,
}

impl RunResult {
    pub fn failed(path: PathKind, rate: u64, secs: f64, error: String) -> RunResult {
        RunResult {
            path: Some(path),
            rate,
            secs,
            error: Some(error),
            ..RunResult::default()
        }
    }

    /// Zero loss at (nearly) the offered rate, without a standing backlog.
    pub fn sustained(&self) -> bool {
        self.error.is_none()
            && self.expected > 0
            && self.lost == 0
            && self.achieved_rate >= SUSTAIN_FRACTION * self.rate as f64
            && self
                .latency
                .as_ref()
                .is_none_or(|l| l.p99_us <= SUSTAIN_P99_US)
    }
}

/// The ramp of one path: rising rates until the first step that is not sustained.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ramp {
    pub path: Option<PathKind>,
    pub steps: Vec<RunResult>,
}

impl Ramp {
    /// The highest offered rate that was sustained, below the first one that was not.
    pub fn max_sustained(&self) -> Option<u64> {
        self.steps
            .iter()
            .take_while(|s| s.sustained())
            .map(|s| s.rate)
            .last()
    }

    pub fn first_failure(&self) -> Option<&RunResult> {
        self.steps.iter().find(|s| !s.sustained())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Met,
    Missed,
    NotMeasured,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub goal: String,
    /// The figures per rate (or the ramp's result).
    pub measured: String,
    pub verdict: Verdict,
    /// For a miss: where and by how much.
    pub detail: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
}

impl Machine {
    /// This machine: online CPUs, CPU model, kernel release.
    pub fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        Machine {
            // Online CPUs of the machine, not of this (possibly pinned) thread.
            // SAFETY: sysconf has no preconditions.
            nproc: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(0) as usize,
            cpu_model,
            kernel,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub date_utc: String,
    pub machine: Machine,
    pub quick: bool,
    /// Core the forwarders (and the UDP floor's sender, the direct floor's reader) run on.
    pub forwarder_core: Option<usize>,
    /// Core the simulator and the bench receiver run on.
    pub bench_core: Option<usize>,
    /// websocat: its version and path, or why it was not run.
    pub websocat: String,
    pub runs: Vec<RunResult>,
    pub ramps: Vec<Ramp>,
    pub targets: Vec<Target>,
    pub wall_secs: f64,
}

/// `numerator / denominator`, when both are positive.
pub fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (numerator > 0.0 && denominator > 0.0 && numerator.is_finite() && denominator.is_finite())
        .then(|| numerator / denominator)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.2}x"))
}

fn fmt_us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `1000` -> `1k`, `250000` -> `250k`, `1500000` -> `1.5M`.
pub fn fmt_rate(rate: u64) -> String {
    if rate >= 1_000_000 && rate.is_multiple_of(100_000) {
        let m = rate as f64 / 1e6;
        format!("{}M", trim_float(m))
    } else if rate >= 1_000 && rate.is_multiple_of(100) {
        format!("{}k", trim_float(rate as f64 / 1e3))
    } else {
        rate.to_string()
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// A ≤-goal (smaller is better): `measured / limit`, e.g. 2.3x vs ≤ 2x is 15% over.
fn check_at_most(value: f64, limit: f64) -> (bool, String) {
    if value <= limit {
        (true, format!("{value:.2}x (≤ {limit}x)"))
    } else {
        let over = (value / limit - 1.0) * 100.0;
        (false, format!("{value:.2}x vs ≤ {limit}x: {over:.0}% over"))
    }
}

/// A ≥-goal (bigger is better), e.g. 1.2x vs ≥ 2x needs 1.67x more.
fn check_at_least(value: f64, need: f64) -> (bool, String) {
    if value >= need {
        (true, format!("{value:.2}x (≥ {need}x)"))
    } else {
        (
            false,
            format!(
                "{value:.2}x vs ≥ {need}x: needs {:.2}x more",
                need / value.max(1e-9)
            ),
        )
    }
}

fn find(runs: &[RunResult], path: PathKind, rate: u64) -> Option<&RunResult> {
    runs.iter()
        .find(|r| r.path == Some(path) && r.rate == rate && r.error.is_none())
}

fn rates(runs: &[RunResult]) -> Vec<u64> {
    let mut rates: Vec<u64> = runs.iter().map(|r| r.rate).collect();
    rates.sort_unstable();
    rates.dedup();
    rates
}

/// One per-rate ratio target: evaluates `value(rate)` against the goal at every rate.
fn per_rate_target(
    name: &str,
    goal: &str,
    runs: &[RunResult],
    value: impl Fn(u64) -> Option<f64>,
    check: impl Fn(f64) -> (bool, String),
    missing: &str,
) -> Target {
    let mut measured = Vec::new();
    let mut misses = Vec::new();
    for rate in rates(runs) {
        if let Some(v) = value(rate) {
            let (ok, text) = check(v);
            measured.push(format!("{}: {v:.2}x", fmt_rate(rate)));
            if !ok {
                misses.push(format!("at {} msg/s {text}", fmt_rate(rate)));
            }
        }
    }
    let (verdict, detail) = if measured.is_empty() {
        (Verdict::NotMeasured, missing.to_string())
    } else if misses.is_empty() {
        (Verdict::Met, "met at every rate".to_string())
    } else {
        (Verdict::Missed, misses.join("; "))
    };
    Target {
        name: name.to_string(),
        goal: goal.to_string(),
        measured: if measured.is_empty() {
            "-".to_string()
        } else {
            measured.join(", ")
        },
        verdict,
        detail,
    }
}

/// Frames per second the relay must sustain with zero loss on one core.
pub const THROUGHPUT_GOAL: u64 = 500_000;

/// The brief's targets, judged on this run's figures (measured, never asserted).
pub fn evaluate_targets(runs: &[RunResult], ramps: &[Ramp], websocat: &str) -> Vec<Target> {
    let p50 =
        |path, rate| find(runs, path, rate).and_then(|r| r.latency.as_ref().map(|l| l.p50_us));
    let p999 =
        |path, rate| find(runs, path, rate).and_then(|r| r.latency.as_ref().map(|l| l.p999_us));
    let hop_p50 =
        |rate| find(runs, PathKind::Relay, rate).and_then(|r| r.hop.as_ref().map(|h| h.p50_us));
    let mut targets = vec![per_rate_target(
        "relay hop p50 vs UDP floor",
        "relay hop p50 ≤ 2x the UDP loopback floor p50",
        runs,
        |rate| ratio(hop_p50(rate)?, p50(PathKind::UdpFloor, rate)?),
        |v| check_at_most(v, 2.0),
        "relay or UDP floor not measured",
    )];
    for (other, missing) in [
        (PathKind::Reference, "reference forwarder not measured"),
        (PathKind::Websocat, websocat),
    ] {
        targets.push(per_rate_target(
            &format!("relay p50 vs {}", other.label()),
            &format!("relay p50 ≥ 2x lower than {}", other.label()),
            runs,
            |rate| ratio(p50(other, rate)?, p50(PathKind::Relay, rate)?),
            |v| check_at_least(v, 2.0),
            missing,
        ));
        targets.push(per_rate_target(
            &format!("relay p99.9 vs {}", other.label()),
            &format!("relay p99.9 ≥ 3x lower than {}", other.label()),
            runs,
            |rate| ratio(p999(other, rate)?, p999(PathKind::Relay, rate)?),
            |v| check_at_least(v, 3.0),
            missing,
        ));
    }
    targets.push(throughput_target(ramps));
    targets
}

fn throughput_target(ramps: &[Ramp]) -> Target {
    let name = "relay throughput".to_string();
    let goal = format!(
        "≥ {} frames/s through the relay on one core, zero loss",
        fmt_rate(THROUGHPUT_GOAL)
    );
    let Some(ramp) = ramps.iter().find(|r| r.path == Some(PathKind::Relay)) else {
        return Target {
            name,
            goal,
            measured: "-".to_string(),
            verdict: Verdict::NotMeasured,
            detail: "no ramp was run".to_string(),
        };
    };
    let best = ramp.max_sustained();
    let measured = format!(
        "highest sustained {}",
        best.map_or_else(|| "none".to_string(), |r| format!("{} msg/s", fmt_rate(r)))
    );
    let source = ramps
        .iter()
        .find(|r| r.path == Some(PathKind::WsDirect))
        .and_then(Ramp::max_sustained);
    let failure = ramp.first_failure().map(|f| {
        format!(
            "first failing step {} msg/s: {} of {} delivered, {:.0} msg/s achieved",
            fmt_rate(f.rate),
            f.received,
            f.expected,
            f.achieved_rate
        )
    });
    let mut detail = Vec::new();
    let verdict = match best {
        Some(r) if r >= THROUGHPUT_GOAL => Verdict::Met,
        _ => {
            let got = best.unwrap_or(0);
            detail.push(format!(
                "short by {} msg/s ({:.2}x more needed)",
                THROUGHPUT_GOAL - got,
                THROUGHPUT_GOAL as f64 / (got.max(1)) as f64
            ));
            Verdict::Missed
        }
    };
    if let Some(f) = failure {
        detail.push(f);
    }
    if let Some(s) = source {
        detail.push(format!(
            "the simulator read directly sustained {} msg/s",
            fmt_rate(s)
        ));
    }
    Target {
        name,
        goal,
        measured,
        verdict,
        detail: detail.join("; "),
    }
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "**met**",
        Verdict::Missed => "**missed**",
        Verdict::NotMeasured => "not measured",
    }
}

impl Report {
    /// The report as markdown: machine, latency table, ratios, ramp, targets.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Run {} ({}), {} cores, {}, kernel {}; forwarders on core {}, simulator and receiver on core {}; wall time {:.0} s.\n",
            self.date_utc,
            if self.quick { "--quick" } else { "default" },
            m.nproc,
            m.cpu_model,
            m.kernel,
            self.forwarder_core.map_or("any".to_string(), |c| c.to_string()),
            self.bench_core.map_or("any".to_string(), |c| c.to_string()),
            self.wall_secs
        );
        md.push_str("Latency in µs: source time (simulator event time `E`, µs; the UDP floor's send stamp) to the bench receiver's receive call returning (CLOCK_REALTIME). Relay `hop`: the relay's read of the exchange bytes (`relay_rx_ns`) to the same receive; `dwell`: that read to the relay's send stamp (`relay_tx_ns`). Ratios: the row's figure over the UDP floor's at the same rate. CPU: the forwarder process's user + system time per delivered message (system share in brackets). msgs/recv: messages per receive call of the bench receiver (higher: burstier arrivals, fewer receiver wake-ups).\n\n");
        md.push_str("| rate (msg/s) | path | delivered | lost | p50 | p99 | p99.9 | max | p50 ÷ UDP floor | p99.9 ÷ UDP floor | CPU µs/msg (sys) | msgs/recv |\n");
        md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for rate in rates(&self.runs) {
            let floor = find(&self.runs, PathKind::UdpFloor, rate).and_then(|r| r.latency.clone());
            for run in self.runs.iter().filter(|r| r.rate == rate) {
                let label = run.path.map_or("?", PathKind::label);
                if let Some(e) = &run.error {
                    let _ = writeln!(
                        md,
                        "| {} | {label} | - | - | - | - | - | - | - | - | - | - | <!-- {} -->",
                        fmt_rate(rate),
                        e.replace('|', "/")
                    );
                    continue;
                }
                let mut rows = vec![(label.to_string(), run.latency.clone())];
                if let Some(hop) = &run.hop {
                    rows.push(("relay hop (read → receive)".to_string(), Some(hop.clone())));
                }
                if let Some(dwell) = &run.dwell {
                    rows.push(("relay dwell (read → send)".to_string(), Some(dwell.clone())));
                }
                for (i, (label, lat)) in rows.into_iter().enumerate() {
                    let per_recv = match run.messages_per_receive {
                        Some(m) if i == 0 => format!("{m:.1}"),
                        _ => String::new(),
                    };
                    let (delivered, lost, cpu) = if i == 0 {
                        (
                            format!("{}/{}", run.received, run.expected),
                            run.lost.to_string(),
                            match (run.cpu_us_per_msg, run.cpu_sys_share) {
                                (Some(us), Some(sys)) => {
                                    format!("{us:.2} ({:.0}%)", sys * 100.0)
                                }
                                _ => String::new(),
                            },
                        )
                    } else {
                        (String::new(), String::new(), String::new())
                    };
                    let cells = match &lat {
                        Some(l) => format!(
                            "{} | {} | {} | {} | {} | {}",
                            fmt_us(l.p50_us),
                            fmt_us(l.p99_us),
                            fmt_us(l.p999_us),
                            fmt_us(l.max_us),
                            fmt_ratio(floor.as_ref().and_then(|f| ratio(l.p50_us, f.p50_us))),
                            fmt_ratio(floor.as_ref().and_then(|f| ratio(l.p999_us, f.p999_us))),
                        ),
                        None => "- | - | - | - | - | -".to_string(),
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {label} | {delivered} | {lost} | {cells} | {cpu} | {per_recv} |",
                        fmt_rate(rate)
                    );
                }
            }
        }
        let errors: Vec<String> = self
            .runs
            .iter()
            .filter_map(|r| {
                r.error.as_ref().map(|e| {
                    format!(
                        "- {} at {} msg/s: {e}",
                        r.path.map_or("?", PathKind::label),
                        fmt_rate(r.rate)
                    )
                })
            })
            .collect();
        if !errors.is_empty() {
            md.push('\n');
            md.push_str(&errors.join("\n"));
            md.push('\n');
        }
        let _ = writeln!(md, "\nwebsocat: {}\n", self.websocat);

        md.push_str("How many times lower the relay's latency is than the other forwarder's (other ÷ relay; > 1 means the relay is faster):\n\n");
        md.push_str("| rate (msg/s) | relay vs | p50 | p99 | p99.9 |\n|---:|---|---:|---:|---:|\n");
        for rate in rates(&self.runs) {
            let Some(relay) =
                find(&self.runs, PathKind::Relay, rate).and_then(|r| r.latency.clone())
            else {
                continue;
            };
            for other in [PathKind::Reference, PathKind::Websocat] {
                if let Some(o) = find(&self.runs, other, rate).and_then(|r| r.latency.clone()) {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} |",
                        fmt_rate(rate),
                        other.label(),
                        fmt_ratio(ratio(o.p50_us, relay.p50_us)),
                        fmt_ratio(ratio(o.p99_us, relay.p99_us)),
                        fmt_ratio(ratio(o.p999_us, relay.p999_us)),
                    );
                }
            }
        }

        if !self.ramps.is_empty() {
            let _ = writeln!(
                md,
                "\nRamp, {} s per step (sustained: zero loss, ≥ {:.0}% of the offered rate delivered and p99 ≤ {:.0} ms; each step: delivered/sent, achieved msg/s, p50/p99 µs; ✗ not sustained):\n",
                self.ramps
                    .iter()
                    .flat_map(|r| r.steps.first())
                    .map(|s| s.secs)
                    .next()
                    .unwrap_or(1.0),
                SUSTAIN_FRACTION * 100.0,
                SUSTAIN_P99_US / 1000.0
            );
            md.push_str("| path | steps | highest sustained |\n|---|---|---:|\n");
            for ramp in &self.ramps {
                let steps: Vec<String> = ramp
                    .steps
                    .iter()
                    .map(|s| {
                        let lat = s.latency.as_ref().map_or("-".to_string(), |l| {
                            format!("{}/{}", fmt_us(l.p50_us), fmt_us(l.p99_us))
                        });
                        match &s.error {
                            Some(_) => format!("{}: error", fmt_rate(s.rate)),
                            None => format!(
                                "{}: {}/{}, {}/s, {lat}{}",
                                fmt_rate(s.rate),
                                s.received,
                                s.expected,
                                fmt_rate_f(s.achieved_rate),
                                if s.sustained() { "" } else { " ✗" }
                            ),
                        }
                    })
                    .collect();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    ramp.path.map_or("?", PathKind::label),
                    steps.join("; "),
                    ramp.max_sustained()
                        .map_or_else(|| "none".to_string(), fmt_rate)
                );
            }
        }

        md.push_str("\nTargets (measured, not asserted):\n\n| target | goal | measured | verdict | detail |\n|---|---|---|---|---|\n");
        for t in &self.targets {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                t.name,
                t.goal,
                t.measured,
                verdict_text(t.verdict),
                t.detail
            );
        }
        md
    }
}

fn fmt_rate_f(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.0}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

/// The workspace root (bench/ sits one level below it).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ sits in the workspace")
        .to_path_buf()
}

/// Writes a benchmark's markdown to `md_path`, prints it, and with `update_readme` puts it into
/// README.md between the `start` and `end` markers. `tool` names the benchmark in messages.
pub fn publish(
    tool: &str,
    md: &str,
    md_path: &std::path::Path,
    update_readme: bool,
    (start, end): (&str, &str),
) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::write(md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    println!("{md}");
    eprintln!("{tool}: wrote {}", md_path.display());
    if update_readme {
        let readme = workspace_root().join("README.md");
        let doc = std::fs::read_to_string(&readme)?;
        let Some(new) = replace_between(&doc, start, end, md) else {
            anyhow::bail!("README.md has no {start} .. {end} block");
        };
        std::fs::write(&readme, new)?;
        eprintln!("{tool}: updated {}", readme.display());
    }
    Ok(())
}

/// Replaces the text between `start` and `end` markers (kept) with `body`; `None` if a marker is
/// missing or out of order.
pub fn replace_between(doc: &str, start: &str, end: &str, body: &str) -> Option<String> {
    let s = doc.find(start)? + start.len();
    let e = s + doc[s..].find(end)?;
    let mut out = String::with_capacity(doc.len() + body.len());
    out.push_str(&doc[..s]);
    out.push('\n');
    out.push_str(body.trim_end());
    out.push('\n');
    out.push_str(&doc[e..]);
    Some(out)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix time in seconds.
pub fn utc_timestamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rest = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rest / 3600,
        (rest % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(p50: f64, p999: f64) -> Option<Percentiles> {
        Some(Percentiles {
            count: 100,
            p50_us: p50,
            p99_us: (p50 + p999) / 2.0,
            p999_us: p999,
            max_us: p999 * 2.0,
            mean_us: p50,
        })
    }

    fn run(path: PathKind, rate: u64, p50: f64, p999: f64) -> RunResult {
        RunResult {
            path: Some(path),
            rate,
            secs: 1.0,
            expected: rate,
            received: rate,
            achieved_rate: rate as f64,
            latency: lat(p50, p999),
            ..RunResult::default()
        }
    }

    fn sample_runs() -> Vec<RunResult> {
        let mut relay = run(PathKind::Relay, 1000, 30.0, 100.0);
        relay.hop = lat(25.0, 90.0);
        let mut relay_fast = run(PathKind::Relay, 10_000, 20.0, 50.0);
        relay_fast.hop = lat(15.0, 40.0);
        vec![
            run(PathKind::UdpFloor, 1000, 10.0, 40.0),
            relay,
            run(PathKind::Reference, 1000, 90.0, 400.0),
            run(PathKind::UdpFloor, 10_000, 10.0, 40.0),
            relay_fast,
            run(PathKind::Reference, 10_000, 30.0, 100.0),
        ]
    }

    #[test]
    fn ratios_need_two_positive_numbers() {
        assert_eq!(ratio(30.0, 10.0), Some(3.0));
        assert_eq!(ratio(30.0, 0.0), None);
        assert_eq!(ratio(0.0, 10.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    #[test]
    fn rates_print_short() {
        assert_eq!(fmt_rate(1000), "1k");
        assert_eq!(fmt_rate(250_000), "250k");
        assert_eq!(fmt_rate(1_500_000), "1.5M");
        assert_eq!(fmt_rate(999), "999");
    }

    #[test]
    fn targets_report_met_and_missed_with_the_margin() {
        let runs = sample_runs();
        let targets = evaluate_targets(&runs, &[], "not installed (cargo install websocat)");
        let hop = &targets[0];
        // 25/10 = 2.5x at 1k (missed, 25% over), 15/10 = 1.5x at 10k (met).
        assert_eq!(hop.verdict, Verdict::Missed);
        assert!(hop.measured.contains("1k: 2.50x") && hop.measured.contains("10k: 1.50x"));
        assert!(hop.detail.contains("at 1k msg/s") && hop.detail.contains("25% over"));
        assert!(!hop.detail.contains("10k"), "{}", hop.detail);
        // p50: 90/30 = 3x (met), 30/20 = 1.5x (missed: needs 1.33x more).
        let p50 = &targets[1];
        assert_eq!(p50.verdict, Verdict::Missed);
        assert!(p50.detail.contains("needs 1.33x more"), "{}", p50.detail);
        // p99.9: 400/100 = 4x, 100/50 = 2x vs >= 3x.
        assert_eq!(targets[2].verdict, Verdict::Missed);
        assert!(targets[2].measured.contains("1k: 4.00x"));
        // websocat not run: not measured, and the reason is carried.
        assert_eq!(targets[3].verdict, Verdict::NotMeasured);
        assert!(targets[3].detail.contains("cargo install websocat"));
        assert_eq!(targets[5].verdict, Verdict::NotMeasured, "no ramp");
    }

    #[test]
    fn all_rates_met_is_met() {
        let mut runs = sample_runs();
        runs.retain(|r| r.rate == 1000);
        let targets = evaluate_targets(&runs, &[], "-");
        assert_eq!(targets[1].verdict, Verdict::Met);
        assert_eq!(targets[2].verdict, Verdict::Met);
    }

    #[test]
    fn ramp_stops_at_the_first_unsustained_step() {
        let mut lossy = run(PathKind::Relay, 400_000, 1.0, 1.0);
        lossy.lost = 1;
        let mut slow = run(PathKind::Relay, 200_000, 1.0, 1.0);
        slow.achieved_rate = 180_000.0; // 90% < 95%
        let ramp = Ramp {
            path: Some(PathKind::Relay),
            steps: vec![
                run(PathKind::Relay, 100_000, 1.0, 1.0),
                run(PathKind::Relay, 300_000, 1.0, 1.0),
                lossy,
            ],
        };
        assert_eq!(ramp.max_sustained(), Some(300_000));
        let t = throughput_target(std::slice::from_ref(&ramp));
        assert_eq!(t.verdict, Verdict::Missed);
        assert!(
            t.detail
                .contains("short by 200000 msg/s (1.67x more needed)"),
            "{}",
            t.detail
        );
        assert!(t.detail.contains("first failing step 400k"), "{}", t.detail);
        assert!(!slow.sustained());
        let mut backlog = run(PathKind::Relay, 100_000, 1.0, 1.0);
        assert!(backlog.sustained());
        backlog.latency.as_mut().unwrap().p99_us = 80_000.0;
        assert!(!backlog.sustained(), "a standing backlog is not sustained");
        let ok = Ramp {
            path: Some(PathKind::Relay),
            steps: vec![run(PathKind::Relay, 500_000, 1.0, 1.0)],
        };
        assert_eq!(throughput_target(&[ok]).verdict, Verdict::Met);
        let none = Ramp {
            path: Some(PathKind::Relay),
            steps: vec![slow],
        };
        assert_eq!(none.max_sustained(), None);
    }

    #[test]
    fn markdown_has_one_row_per_path_and_the_ratios() {
        let runs = sample_runs();
        let report = Report {
            date_utc: utc_timestamp(0),
            websocat: "not installed (cargo install websocat)".into(),
            targets: evaluate_targets(&runs, &[], "not installed"),
            runs,
            ..Report::default()
        };
        let md = report.markdown();
        assert!(md.contains("| 1k | relay | 1000/1000 | 0 | 30.0 |"), "{md}");
        // Relay p50 30 over the floor's 10.
        assert!(
            md.contains("| 30.0 | 65.0 | 100.0 | 200.0 | 3.00x | 2.50x |"),
            "{md}"
        );
        assert!(md.contains("| 1k | relay hop (read → receive) |"), "{md}");
        assert!(md.contains("| 1k | reference (tokio) | 3.00x | "), "{md}");
        assert!(md.contains("websocat: not installed"), "{md}");
        assert!(md.contains("**missed**"));
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert!(json.contains("\"path\":\"udp-floor\""), "{json}");
    }

    #[test]
    fn readme_block_is_replaced_between_markers() {
        let doc = "a\n<!-- s -->\nold\n<!-- e -->\nb\n";
        let new = replace_between(doc, "<!-- s -->", "<!-- e -->", "new\n\n").unwrap();
        assert_eq!(new, "a\n<!-- s -->\nnew\n<!-- e -->\nb\n");
        assert_eq!(replace_between(doc, "<!-- e -->", "<!-- s -->", "x"), None);
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14 22:13 UTC");
    }
}
