//! The end-to-end report: results of one run of `e2e`, the ratios between paths and the targets
//! judged on them.

use relay_core::stats::ComponentSummary;
use serde::{Deserialize, Serialize};

use super::floors::{cpu_out_of_reach, p999_out_of_reach, throughput_out_of_reach};
use super::render::fmt_rate;
use crate::publish::Machine;

/// A step of the ramp counts as sustained when nothing was lost, the messages arrived at no
/// less than this fraction of the offered rate, and their p99 latency stayed under
/// [`SUSTAIN_P99_US`] (no standing backlog).
pub const SUSTAIN_FRACTION: f64 = 0.95;
/// A path that keeps up shows a p99 of a few ms here (the simulator's 1 ms bursts plus scheduling
/// noise of a shared machine); one that falls behind builds a backlog of tens of ms within the
/// 1 s step even while it delivers 95% of the rate.
pub const SUSTAIN_P99_US: f64 = 50_000.0;

/// Frames per second the relay must sustain with zero loss on one core.
pub const THROUGHPUT_GOAL: u64 = 1_000_000;

/// What carried the messages from the simulator to the bench receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// A bare UDP sender -> receiver on loopback (sender stamps, receiver measures).
    UdpFloor,
    /// The simulator's TLS WebSocket read directly by the bench (no forwarder, no UDP).
    WsDirect,
    /// A thread that only passes the exchange's TCP bytes on as UDP datagrams, sleeping in a
    /// blocking read between them (`bench::sleep_floor`): the least CPU a forwarder that sleeps
    /// can spend per message.
    SleepFloor,
    /// `relay forward` pinned to its core, spinning there (`--idle spin`, its default on a core).
    Relay,
    /// `relay forward` pinned likewise but sleeping in io_uring between reads (`--idle park`).
    RelayParked,
    /// The reference forwarder: tokio + tokio-tungstenite + tokio-rustls + tokio UdpSocket.
    Reference,
    /// `websocat -u -b wss://.. udp:..`.
    Websocat,
}

impl PathKind {
    /// Every path, in the order a run measures them.
    pub const ALL: [PathKind; 7] = [
        PathKind::UdpFloor,
        PathKind::WsDirect,
        PathKind::SleepFloor,
        PathKind::Relay,
        PathKind::RelayParked,
        PathKind::Reference,
        PathKind::Websocat,
    ];

    /// The name on the command line, in the JSON and in log file names (`udp-floor`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PathKind::UdpFloor => "udp-floor",
            PathKind::WsDirect => "ws-direct",
            PathKind::SleepFloor => "sleep-floor",
            PathKind::Relay => "relay",
            PathKind::RelayParked => "relay-parked",
            PathKind::Reference => "reference",
            PathKind::Websocat => "websocat",
        }
    }

    /// The name in the report's tables.
    pub fn label(self) -> &'static str {
        match self {
            PathKind::UdpFloor => "UDP floor",
            PathKind::WsDirect => "TLS WS direct floor",
            PathKind::SleepFloor => "sleeping-forwarder floor",
            PathKind::Relay => "relay (spinning)",
            PathKind::RelayParked => "relay (parked)",
            PathKind::Reference => "reference (tokio)",
            PathKind::Websocat => "websocat",
        }
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
    pub latency: Option<ComponentSummary>,
    /// Relay only: relay read the exchange bytes (`relay_rx_ns`) -> receive call returned.
    pub hop: Option<ComponentSummary>,
    /// Relay only: relay read -> relay handed the datagram to the kernel (`relay_tx_ns`).
    pub dwell: Option<ComponentSummary>,
    /// Relay only: relay send (`relay_tx_ns`) -> receive call returned: the UDP leg, which is
    /// the kernel's and the receiver's time, not the relay's.
    #[serde(default)]
    pub leg: Option<ComponentSummary>,
    /// Relay only: how its reads left it.
    #[serde(default)]
    pub reads: Option<ReadSummary>,
    /// Messages per receive call of the bench receiver (how bursty the arrivals were).
    pub messages_per_receive: Option<f64>,
    /// UDP datagrams the bench receiver got per message (below 1: messages packed together;
    /// none for the direct read).
    #[serde(default)]
    pub datagrams_per_message: Option<f64>,
    /// Forwarders only: the forwarder process's time on a CPU (all threads, schedstat) per delivered message.
    pub cpu_us_per_msg: Option<f64>,
    /// Forwarders only: the system (kernel) share of that CPU time, 0..1.
    pub cpu_sys_share: Option<f64>,
    /// Why the run has no figures (the forwarder failed to start, ...).
    pub error: Option<String>,
}

/// How a relay's reads of the exchange left it (from its datagrams' read and send stamps, over
/// the measured messages): the messages and datagrams of one read, and the time from one send
/// of a read to the next (the send before, then decoding and packing the next datagram).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadSummary {
    pub messages_per_read: f64,
    pub datagrams_per_read: f64,
    /// None when no read had two datagrams.
    pub send_gap: Option<ComponentSummary>,
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
    /// Missed, and at every rate it was missed this run measured what no path could beat here
    /// (the detail says what: `floors`).
    OutOfReach,
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
pub struct Report {
    pub date_utc: String,
    pub machine: Machine,
    pub quick: bool,
    /// Core the forwarders (and the UDP floor's sender, the direct floor's reader, the sleeping
    /// floor) run on.
    pub forwarder_core: Option<usize>,
    /// Core the simulator and the bench receiver run on.
    pub bench_core: Option<usize>,
    /// websocat: its version and path, or why it was not run.
    pub websocat: String,
    /// The forwarders and the simulator ran in one network namespace and the bench receiver in
    /// another, over a veth pair (`--veth`), instead of all on loopback.
    #[serde(default)]
    pub veth: bool,
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

/// The successful run of `path` at `rate`.
pub(super) fn find(runs: &[RunResult], path: PathKind, rate: u64) -> Option<&RunResult> {
    runs.iter()
        .find(|r| r.path == Some(path) && r.rate == rate && r.error.is_none())
}

/// The rates that were run, ascending.
pub(super) fn rates(runs: &[RunResult]) -> Vec<u64> {
    let mut rates: Vec<u64> = runs.iter().map(|r| r.rate).collect();
    rates.sort_unstable();
    rates.dedup();
    rates
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

/// One per-rate ratio target: evaluates `value(rate)` against the goal at every rate; where it
/// is missed, `reach(rate)` gives the measurement that puts it out of reach, if this run has one.
fn per_rate_target(
    name: &str,
    goal: &str,
    runs: &[RunResult],
    value: impl Fn(u64) -> Option<f64>,
    check: impl Fn(f64) -> (bool, String),
    reach: impl Fn(u64) -> Option<String>,
    missing: &str,
) -> Target {
    let mut measured = Vec::new();
    let mut misses = Vec::new();
    let mut all_out_of_reach = true;
    for rate in rates(runs) {
        if let Some(v) = value(rate) {
            let (ok, text) = check(v);
            measured.push(format!("{}: {v:.2}x", fmt_rate(rate)));
            if !ok {
                misses.push(format!("at {} msg/s {text}", fmt_rate(rate)));
                match reach(rate) {
                    Some(why) => misses.push(why),
                    None => all_out_of_reach = false,
                }
            }
        }
    }
    let (verdict, detail) = if measured.is_empty() {
        (Verdict::NotMeasured, missing.to_string())
    } else if misses.is_empty() {
        (Verdict::Met, "met at every rate".to_string())
    } else if all_out_of_reach {
        (Verdict::OutOfReach, misses.join("; "))
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

/// The brief's targets, judged on this run's figures (measured, never asserted).
pub fn evaluate_targets(runs: &[RunResult], ramps: &[Ramp], websocat: &str) -> Vec<Target> {
    let none = |_| None;
    let p50 = |path, rate| find(runs, path, rate).and_then(|r| r.latency.map(|l| l.p50_us));
    let p999 = |path, rate| find(runs, path, rate).and_then(|r| r.latency.map(|l| l.p999_us));
    let hop_p50 = |rate| find(runs, PathKind::Relay, rate).and_then(|r| r.hop.map(|h| h.p50_us));
    let mut targets = vec![per_rate_target(
        "relay hop p50 vs UDP floor",
        "relay hop p50 ≤ 2x the UDP floor p50 (a bare sender, same path)",
        runs,
        |rate| ratio(hop_p50(rate)?, p50(PathKind::UdpFloor, rate)?),
        |v| check_at_most(v, 2.0),
        none,
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
            none,
            missing,
        ));
        targets.push(per_rate_target(
            &format!("relay p99.9 vs {}", other.label()),
            &format!("relay p99.9 ≥ 3x lower than {}", other.label()),
            runs,
            |rate| ratio(p999(other, rate)?, p999(PathKind::Relay, rate)?),
            |v| check_at_least(v, 3.0),
            |rate| {
                let leg = find(runs, PathKind::Relay, rate)?.leg?.p999_us;
                p999_out_of_reach(p999(other, rate)? / 3.0, leg)
            },
            missing,
        ));
    }
    targets.push(throughput_target(ramps));
    targets.push(per_rate_target(
        "relay p50 vs TLS WS direct floor",
        "relay p50 ≤ 1.2x the direct TLS WebSocket read's p50 (no forwarder at all)",
        runs,
        |rate| ratio(p50(PathKind::Relay, rate)?, p50(PathKind::WsDirect, rate)?),
        |v| check_at_most(v, 1.2),
        none,
        "relay or direct read not measured",
    ));
    // A spinning relay burns its whole core by design (its CPU per message is 1 s / rate), so
    // the cost of the work itself is judged on the parked relay.
    let cpu = |path, rate| find(runs, path, rate).and_then(|r| r.cpu_us_per_msg);
    targets.push(per_rate_target(
        "relay CPU per message vs reference (tokio)",
        "parked relay CPU per message ≤ 0.5x the reference's",
        runs,
        |rate| {
            ratio(
                cpu(PathKind::RelayParked, rate)?,
                cpu(PathKind::Reference, rate)?,
            )
        },
        |v| check_at_most(v, 0.5),
        |rate| {
            let goal = 0.5 * cpu(PathKind::Reference, rate)?;
            cpu_out_of_reach(goal, cpu(PathKind::SleepFloor, rate)?)
        },
        "parked relay or reference not measured (or no CPU figure)",
    ));
    targets
}

pub(super) fn throughput_target(ramps: &[Ramp]) -> Target {
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
            match throughput_out_of_reach(THROUGHPUT_GOAL, source) {
                Some(why) => {
                    detail.push(why);
                    Verdict::OutOfReach
                }
                None => Verdict::Missed,
            }
        }
    };
    if let Some(f) = failure {
        detail.push(f);
    }
    if let (Verdict::Missed, Some(s)) = (verdict, source) {
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
