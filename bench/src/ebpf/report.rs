//! The eBPF stamper benchmark's report (`src/bin/ebpf/` runs it): the measured runs, their
//! medians and spreads, ratios to the no-program baseline of the same repeat, the per-packet
//! program cost from kernel BPF statistics and the verdicts.

use relay_wire::stamp::Hook;
use serde::{Deserialize, Serialize};

use super::hook_serde;
use crate::publish::Machine;

/// The brief's goal for the program's cost per packet.
pub const COST_GOAL_NS: f64 = 100.0;

/// What was attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Program {
    /// Nothing: the baseline.
    None,
    /// A two-instruction program that only returns "pass" (the hook's own cost, and with
    /// statistics on, the statistics' floor).
    Null,
    /// The relay's stamper (`RxStamper`), drained by the receive loop.
    Stamper,
}

/// One configuration of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Config {
    #[serde(default, with = "hook_serde::option")]
    pub hook: Option<Hook>,
    pub program: Program,
    /// Kernel BPF run-time statistics on during the run.
    pub stats: bool,
}

impl Config {
    pub const BASELINE: Config = Config {
        hook: None,
        program: Program::None,
        stats: false,
    };

    pub fn new(hook: Hook, program: Program, stats: bool) -> Config {
        Config {
            hook: Some(hook),
            program,
            stats,
        }
    }

    /// The configurations of one repeat, in the order they run: the baseline, then per hook the
    /// stamper without and with statistics and (with `control`) the null program likewise.
    pub fn all(hooks: &[Hook], control: bool) -> Vec<Config> {
        let mut all = vec![Config::BASELINE];
        for &hook in hooks {
            all.push(Config::new(hook, Program::Stamper, false));
            all.push(Config::new(hook, Program::Stamper, true));
            if control {
                all.push(Config::new(hook, Program::Null, false));
                all.push(Config::new(hook, Program::Null, true));
            }
        }
        all
    }

    pub fn label(&self) -> String {
        let what = match self.program {
            Program::None => return "no program (baseline)".to_string(),
            Program::Null => "null program",
            Program::Stamper => "stamper",
        };
        format!("{} {what}", self.hook.map_or("?", Hook::name))
    }
}

/// The stamper's counters after a run (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub matched: u64,
    pub other: u64,
    pub malformed: u64,
    pub ring_full: u64,
}

/// One measured run of one configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub config: Config,
    /// Which repeat (0-based); configurations of one repeat ran back to back.
    pub repeat: u32,
    /// Datagrams the sender handed to the kernel, and for how long it sent.
    pub sent: u64,
    pub send_secs: f64,
    /// Relay datagrams the receiver got, and the time from the first to the last of them.
    pub received: u64,
    pub receive_secs: f64,
    /// The receiving namespace's UDP `RcvbufErrors` during the run (socket buffer full).
    pub rcvbuf_errors: u64,
    /// recvmmsg calls that returned datagrams.
    pub receive_calls: u64,
    /// Stamps the receive loop drained from the ring (stamper only).
    pub stamps_drained: Option<u64>,
    pub counters: Option<Counters>,
    /// Kernel BPF statistics of the attached program over the run (statistics on only).
    pub run_time_ns: Option<u64>,
    pub run_cnt: Option<u64>,
    /// `kernel.bpf_stats_enabled` read during the run: 1 in a run without statistics means
    /// something else on the host had them on.
    pub stats_on_host: bool,
    /// CPU time of the sending thread while it sent (CLOCK_THREAD_CPUTIME_ID). This kernel
    /// charges softirq work to the task it interrupts, and veth delivers inside the sender's
    /// `sendmmsg`: the receive path up to the socket, the program included, is in here.
    pub sender_cpu_ns: u64,
    /// The sender's voluntary (it blocked) and involuntary (it was preempted) context switches.
    pub sender_switches: [u64; 2],
    /// CPU time of the receiving thread (recvmmsg, the drains).
    pub receiver_cpu_ns: u64,
    /// CPU time of the ksoftirqd threads during the run (softirq work deferred out of the
    /// sender's context).
    pub softirqd_cpu_ns: u64,
    pub error: Option<String>,
}

impl Sample {
    pub fn failed(config: Config, repeat: u32, error: String) -> Sample {
        Sample {
            config,
            repeat,
            sent: 0,
            send_secs: 0.0,
            received: 0,
            receive_secs: 0.0,
            rcvbuf_errors: 0,
            receive_calls: 0,
            stamps_drained: None,
            counters: None,
            run_time_ns: None,
            run_cnt: None,
            stats_on_host: false,
            sender_cpu_ns: 0,
            sender_switches: [0, 0],
            receiver_cpu_ns: 0,
            softirqd_cpu_ns: 0,
            error: Some(error),
        }
    }

    /// Datagrams per second received (first to last arrival).
    pub fn rate(&self) -> Option<f64> {
        (self.error.is_none() && self.received > 1 && self.receive_secs > 0.0)
            .then(|| (self.received - 1) as f64 / self.receive_secs)
    }

    /// Datagrams per second the sender offered.
    pub fn send_rate(&self) -> Option<f64> {
        (self.error.is_none() && self.send_secs > 0.0).then(|| self.sent as f64 / self.send_secs)
    }

    /// Fraction of the sent datagrams that never reached the receiver.
    pub fn loss(&self) -> Option<f64> {
        (self.error.is_none() && self.sent > 0)
            .then(|| self.sent.saturating_sub(self.received) as f64 / self.sent as f64)
    }

    /// CPU ns spent per received datagram: sender (with the receive path in its softirqs),
    /// receiver and ksoftirqd together. Unlike the rate, time other processes take from our
    /// threads does not count.
    pub fn cpu_ns_per_datagram(&self) -> Option<f64> {
        let cpu = self.sender_cpu_ns + self.receiver_cpu_ns + self.softirqd_cpu_ns;
        (self.error.is_none() && self.received > 0 && cpu > 0)
            .then(|| cpu as f64 / self.received as f64)
    }

    /// Share of the sending time the sender thread was on a CPU (1.0: nothing else ran on its
    /// core; lower: it was preempted, and the rate understates what the path can do).
    pub fn sender_busy(&self) -> Option<f64> {
        (self.error.is_none() && self.send_secs > 0.0 && self.sender_cpu_ns > 0)
            .then(|| self.sender_cpu_ns as f64 / (self.send_secs * 1e9))
    }

    /// Kernel-measured nanoseconds per program run.
    pub fn ns_per_run(&self) -> Option<f64> {
        match (self.run_time_ns, self.run_cnt) {
            (Some(ns), Some(runs)) if runs > 0 => Some(ns as f64 / runs as f64),
            _ => None,
        }
    }
}

/// Median and range of a few values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// `None` when there is no finite value.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// Range as a share of the median, in percent (max - min) / median.
    pub fn range_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median.abs() * 100.0
        }
    }
}

/// One configuration over all its repeats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub config: Config,
    pub label: String,
    pub runs: usize,
    pub failed: usize,
    /// Received datagrams per second.
    pub rate: Option<Spread>,
    /// This configuration's rate over the baseline's of the same repeat.
    pub vs_baseline: Option<Spread>,
    /// Loss in percent of the sent datagrams.
    pub loss_pct: Option<Spread>,
    /// Socket-buffer drops in percent of the sent datagrams.
    pub rcvbuf_pct: Option<Spread>,
    pub send_rate: Option<Spread>,
    /// Kernel ns per program run (statistics on).
    pub ns_per_run: Option<Spread>,
    /// CPU ns per received datagram (all our threads and ksoftirqd).
    pub cpu_ns: Option<Spread>,
    /// Sender thread's CPU time over its sending time.
    pub sender_busy: Option<Spread>,
    /// Program runs per datagram sent (1.0: the program saw our traffic and nothing else).
    pub runs_per_datagram: Option<f64>,
    /// Stamps drained per datagram received (stamper only; ≥ 1 means every received datagram
    /// was stamped).
    pub stamps_per_received: Option<f64>,
    pub ring_full: Option<u64>,
    /// Some run without statistics found them on host-wide.
    pub stats_on_host: bool,
}

/// The per-packet cost of one hook, from kernel statistics and from throughput.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HookCost {
    #[serde(with = "hook_serde")]
    pub hook: Hook,
    /// The stamper's ns per run as the kernel measures it (includes the statistics' own clock
    /// reads).
    pub stamper_ns: Option<Spread>,
    /// The null program's ns per run in the same hook: the statistics' floor.
    pub null_ns: Option<Spread>,
    /// `stamper_ns - null_ns` (medians): the stamper's own work.
    pub net_ns: Option<f64>,
    /// Stamper (no statistics) rate over the baseline's, paired by repeat.
    pub stamper_vs_baseline: Option<Spread>,
    /// Null program (no statistics) rate over the baseline's: the hook alone.
    pub null_vs_baseline: Option<Spread>,
    /// Stamper with statistics over stamper without, paired by repeat.
    pub stats_on_vs_off: Option<Spread>,
    /// Extra CPU ns per datagram, paired by repeat: stamper (no statistics) vs baseline,
    /// stamper vs null program, stamper with statistics vs without.
    pub cpu_ns_vs_baseline: Option<Spread>,
    pub cpu_ns_vs_null: Option<Spread>,
    pub cpu_ns_stats: Option<Spread>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CostVerdict {
    /// The kernel's own figure is within the goal.
    Met,
    /// Over the goal as the kernel measures it, within it once the statistics' floor (the null
    /// program in the same hook) is taken off.
    MetNetOfStats,
    Missed,
    NotMeasured,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostTarget {
    #[serde(with = "hook_serde")]
    pub hook: Hook,
    pub verdict: CostVerdict,
    pub detail: String,
}

/// Judges one hook's cost against [`COST_GOAL_NS`].
pub fn judge_cost(cost: &HookCost) -> CostTarget {
    let Some(raw) = cost.stamper_ns.map(|s| s.median) else {
        return CostTarget {
            hook: cost.hook,
            verdict: CostVerdict::NotMeasured,
            detail: "no run with statistics on".to_string(),
        };
    };
    let over = |v: f64| (v / COST_GOAL_NS - 1.0) * 100.0;
    let (verdict, detail) = match cost.net_ns {
        _ if raw <= COST_GOAL_NS => (
            CostVerdict::Met,
            format!(
                "{raw:.0} ns ≤ {COST_GOAL_NS:.0} ns, {:.0} ns to spare",
                COST_GOAL_NS - raw
            ),
        ),
        Some(net) if net <= COST_GOAL_NS => (
            CostVerdict::MetNetOfStats,
            format!(
                "kernel figure {raw:.0} ns is {:.0}% over; net of the statistics' floor ({:.0} ns, null program) {net:.0} ns, {:.0} ns to spare",
                over(raw),
                raw - net,
                COST_GOAL_NS - net
            ),
        ),
        Some(net) => (
            CostVerdict::Missed,
            format!(
                "kernel figure {raw:.0} ns is {:.0}% over; net of the statistics' floor still {net:.0} ns, {:.0}% over",
                over(raw),
                over(net)
            ),
        ),
        None => (
            CostVerdict::Missed,
            format!(
                "kernel figure {raw:.0} ns is {:.0}% over (no null-program floor measured)",
                over(raw)
            ),
        ),
    };
    CostTarget {
        hook: cost.hook,
        verdict,
        detail,
    }
}

/// A whole run of the benchmark.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EbpfReport {
    pub date_utc: String,
    pub machine: Machine,
    /// Seconds of sending per run, repeats per configuration.
    pub secs: f64,
    pub repeats: u32,
    /// Datagrams per sendmmsg / recvmmsg call.
    pub batch: usize,
    /// Bytes after the 64-byte header.
    pub payload_bytes: usize,
    pub sender_core: Option<usize>,
    pub receiver_core: Option<usize>,
    /// `kernel.bpf_stats_enabled` before the benchmark started.
    pub stats_on_at_start: bool,
    pub samples: Vec<Sample>,
    pub wall_secs: f64,
}

/// `combine(metric(run), metric(reference run of the same repeat))` over the repeats.
fn paired(
    samples: &[Sample],
    config: Config,
    reference: Config,
    metric: fn(&Sample) -> Option<f64>,
    combine: fn(f64, f64) -> f64,
) -> Option<Spread> {
    let values: Vec<f64> = samples
        .iter()
        .filter(|s| s.config == config)
        .filter_map(|s| {
            let r = samples
                .iter()
                .find(|b| b.config == reference && b.repeat == s.repeat)?;
            Some(combine(metric(s)?, metric(r)?))
        })
        .collect();
    Spread::of(&values)
}

fn ratio(a: f64, b: f64) -> f64 {
    a / b
}

fn difference(a: f64, b: f64) -> f64 {
    a - b
}

impl EbpfReport {
    /// The configurations present, in run order.
    pub fn configs(&self) -> Vec<Config> {
        let mut configs: Vec<Config> = Vec::new();
        for s in &self.samples {
            if !configs.contains(&s.config) {
                configs.push(s.config);
            }
        }
        configs
    }

    fn of(&self, config: Config) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.config == config)
    }

    pub fn row(&self, config: Config) -> Row {
        let samples: Vec<&Sample> = self.of(config).collect();
        let ok: Vec<&&Sample> = samples.iter().filter(|s| s.error.is_none()).collect();
        let sum = |f: fn(&Sample) -> Option<u64>| -> Option<u64> {
            let v: Vec<u64> = ok.iter().filter_map(|s| f(s)).collect();
            (!v.is_empty()).then(|| v.iter().sum())
        };
        let sent: u64 = ok.iter().map(|s| s.sent).sum();
        let received: u64 = ok.iter().map(|s| s.received).sum();
        Row {
            config,
            label: config.label(),
            runs: samples.len(),
            failed: samples.len() - ok.len(),
            rate: Spread::of(&ok.iter().filter_map(|s| s.rate()).collect::<Vec<_>>()),
            vs_baseline: (config != Config::BASELINE)
                .then(|| paired(&self.samples, config, Config::BASELINE, Sample::rate, ratio))
                .flatten(),
            loss_pct: Spread::of(
                &ok.iter()
                    .filter_map(|s| s.loss().map(|l| l * 100.0))
                    .collect::<Vec<_>>(),
            ),
            rcvbuf_pct: Spread::of(
                &ok.iter()
                    .filter(|s| s.sent > 0)
                    .map(|s| s.rcvbuf_errors as f64 * 100.0 / s.sent as f64)
                    .collect::<Vec<_>>(),
            ),
            send_rate: Spread::of(&ok.iter().filter_map(|s| s.send_rate()).collect::<Vec<_>>()),
            ns_per_run: Spread::of(&ok.iter().filter_map(|s| s.ns_per_run()).collect::<Vec<_>>()),
            cpu_ns: Spread::of(
                &ok.iter()
                    .filter_map(|s| s.cpu_ns_per_datagram())
                    .collect::<Vec<_>>(),
            ),
            sender_busy: Spread::of(
                &ok.iter()
                    .filter_map(|s| s.sender_busy())
                    .collect::<Vec<_>>(),
            ),
            runs_per_datagram: sum(|s| s.run_cnt)
                .filter(|_| sent > 0)
                .map(|runs| runs as f64 / sent as f64),
            stamps_per_received: sum(|s| s.stamps_drained)
                .filter(|_| received > 0)
                .map(|stamps| stamps as f64 / received as f64),
            ring_full: sum(|s| s.counters.map(|c| c.ring_full)),
            stats_on_host: !config.stats && ok.iter().any(|s| s.stats_on_host),
        }
    }

    pub fn rows(&self) -> Vec<Row> {
        self.configs().into_iter().map(|c| self.row(c)).collect()
    }

    pub fn hooks(&self) -> Vec<Hook> {
        let mut hooks: Vec<Hook> = self.samples.iter().filter_map(|s| s.config.hook).collect();
        hooks.sort();
        hooks.dedup();
        hooks
    }

    pub fn cost(&self, hook: Hook) -> HookCost {
        let stamper = Config::new(hook, Program::Stamper, false);
        let stamper_stats = Config::new(hook, Program::Stamper, true);
        let null = Config::new(hook, Program::Null, false);
        let null_stats = Config::new(hook, Program::Null, true);
        let ns = |c: Config| {
            Spread::of(
                &self
                    .of(c)
                    .filter_map(Sample::ns_per_run)
                    .collect::<Vec<_>>(),
            )
        };
        let stamper_ns = ns(stamper_stats);
        let null_ns = ns(null_stats);
        let s = &self.samples;
        let cpu = Sample::cpu_ns_per_datagram;
        HookCost {
            hook,
            stamper_ns,
            null_ns,
            net_ns: match (stamper_ns, null_ns) {
                (Some(a), Some(b)) => Some(a.median - b.median),
                _ => None,
            },
            stamper_vs_baseline: paired(s, stamper, Config::BASELINE, Sample::rate, ratio),
            null_vs_baseline: paired(s, null, Config::BASELINE, Sample::rate, ratio),
            stats_on_vs_off: paired(s, stamper_stats, stamper, Sample::rate, ratio),
            cpu_ns_vs_baseline: paired(s, stamper, Config::BASELINE, cpu, difference),
            cpu_ns_vs_null: paired(s, stamper, null, cpu, difference),
            cpu_ns_stats: paired(s, stamper_stats, stamper, cpu, difference),
        }
    }

    pub fn costs(&self) -> Vec<HookCost> {
        self.hooks().into_iter().map(|h| self.cost(h)).collect()
    }

    pub fn cost_targets(&self) -> Vec<CostTarget> {
        self.costs().iter().map(judge_cost).collect()
    }

    /// The JSON written beside the markdown: the samples plus everything derived from them.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "report": self,
            "rows": self.rows(),
            "costs": self.costs(),
            "cost_targets": self.cost_targets(),
        })
    }
}
