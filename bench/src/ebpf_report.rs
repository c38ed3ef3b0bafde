//! The eBPF stamper benchmark's report (`src/bin/ebpf.rs`): the measured runs, their medians and
//! spreads, ratios to the no-program baseline of the same repeat, the per-packet program cost
//! from kernel BPF statistics, the verdicts, and their markdown form.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::report::Machine;

/// The brief's goal for the program's cost per packet.
pub const COST_GOAL_NS: f64 = 100.0;

/// Where a program was attached on the receiving veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    XdpNative,
    XdpGeneric,
    TcIngress,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::XdpNative, Hook::XdpGeneric, Hook::TcIngress];

    /// The name `relay receive --ebpf-mode` and the stamper use.
    pub fn name(self) -> &'static str {
        match self {
            Hook::XdpNative => "xdp-native",
            Hook::XdpGeneric => "xdp-generic",
            Hook::TcIngress => "tc-ingress",
        }
    }

    pub fn parse(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }
}

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

    /// The report as markdown: machine and method, the per-configuration table, the cost table,
    /// the verdicts.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let core = |c: Option<usize>| c.map_or("any core".to_string(), |c| format!("core {c}"));
        let _ = writeln!(
            md,
            "Run {}, {} cores, {}, kernel {}; {} repeats x {} s per configuration, interleaved; sender on {}, receiver on {}; {} datagrams per sendmmsg/recvmmsg, {} + {} bytes each; wall time {:.0} s.\n",
            self.date_utc,
            m.nproc,
            m.cpu_model,
            m.kernel,
            self.repeats,
            trim(self.secs),
            core(self.sender_core),
            core(self.receiver_core),
            self.batch,
            relay_wire::HEADER_LEN,
            self.payload_bytes,
            self.wall_secs
        );
        if self.stats_on_at_start {
            md.push_str("**Note:** `kernel.bpf_stats_enabled` was already 1 when the run started, so the runs \"without statistics\" had them on as well.\n\n");
        }
        md.push_str("Received/s: relay datagrams per second received by one thread on `recvmmsg` in the receiving namespace (first to last arrival); median of the repeats, range min–max. `÷ baseline`: the run's rate over the no-program run of the same repeat (median, range). Loss: sent but not received, % of sent (socket-buffer drops in brackets). CPU ns/datagram: CPU time of the sender thread (veth delivers in its softirq: the whole receive path, the program included, is charged to it), the receiver thread and ksoftirqd, per received datagram; time other processes took from our threads does not count in it, as it does in the rate. Sender busy: the sender thread's CPU time over its sending time (below 1: it was preempted). ns/run: kernel BPF statistics, run_time_ns / run_cnt over the run (statistics on only). The stamper's receive loop drains the ring after every `recvmmsg`.\n\n");
        md.push_str("| configuration | BPF stats | received/s | range | ÷ baseline (range) | loss % (rcvbuf) | CPU ns/datagram (range) | sender busy | ns/run (range) | runs/datagram | stamps/received |\n");
        md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for row in self.rows() {
            let rate = row.rate.map_or("-".to_string(), |r| fmt_rate(r.median));
            let range = row.rate.map_or("-".to_string(), |r| {
                format!(
                    "{}–{} (±{:.1}%)",
                    fmt_rate(r.min),
                    fmt_rate(r.max),
                    r.range_pct() / 2.0
                )
            });
            let loss = match (row.loss_pct, row.rcvbuf_pct) {
                (Some(l), Some(r)) => format!("{} ({})", fmt_pct(l.median), fmt_pct(r.median)),
                (Some(l), None) => fmt_pct(l.median),
                _ => "-".to_string(),
            };
            let stats = if row.config.program == Program::None {
                "-"
            } else if row.config.stats {
                "on"
            } else if row.stats_on_host {
                "off (on host-wide!)"
            } else {
                "off"
            };
            let failed = if row.failed > 0 {
                format!(" ({} of {} runs failed)", row.failed, row.runs)
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "| {}{failed} | {stats} | {rate} | {range} | {} | {loss} | {} | {} | {} | {} | {} |",
                row.label,
                fmt_spread(row.vs_baseline, |v| format!("{v:.3}x")),
                fmt_spread(row.cpu_ns, |v| format!("{v:.0}")),
                row.sender_busy.map_or("-".to_string(), |b| format!("{:.2}", b.median)),
                fmt_spread(row.ns_per_run, |v| format!("{v:.1}")),
                row.runs_per_datagram
                    .map_or("-".to_string(), |r| format!("{r:.4}")),
                row.stamps_per_received
                    .map_or("-".to_string(), |r| format!("{r:.4}")),
            );
        }
        let errors: Vec<String> = self
            .samples
            .iter()
            .filter_map(|s| {
                let e = s.error.as_ref()?;
                Some(format!(
                    "- {} (repeat {}): {e}",
                    s.config.label(),
                    s.repeat + 1
                ))
            })
            .collect();
        if !errors.is_empty() {
            md.push('\n');
            md.push_str(&errors.join("\n"));
            md.push('\n');
        }
        let rings: Vec<String> = self
            .rows()
            .iter()
            .filter(|r| r.ring_full.is_some_and(|n| n > 0))
            .map(|r| format!("{}: {}", r.label, r.ring_full.unwrap_or(0)))
            .collect();
        if !rings.is_empty() {
            let _ = writeln!(md, "\nStamps lost to a full ring: {}.", rings.join(", "));
        }

        md.push_str("\nThe stamper's cost per packet, per hook. Kernel: the stamper's ns/run with statistics on. Floor: the null program's (`r0 = pass; exit`) ns/run in the same hook, which is what the statistics' own two clock reads and the call add to any program's figure. Net: kernel − floor, the stamper's own work. Throughput cost (statistics off): rate ÷ the baseline's, and extra CPU ns per datagram against the baseline and against the null program in the same hook (the stamper's work without the hook's own cost); paired by repeat, median (range). Statistics: the stamper's rate with them on ÷ off, and the CPU ns per datagram they add.\n\n");
        md.push_str("| hook | kernel ns/run | floor ns/run | net ns | rate ÷ baseline: hook alone (null) | stamper | extra CPU ns/datagram vs baseline | vs null program | statistics: rate on ÷ off | statistics: extra CPU ns/datagram |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for c in self.costs() {
            let ns = |s: Option<Spread>| s.map_or("-".to_string(), |s| format!("{:.1}", s.median));
            let x = |s: Option<Spread>| fmt_spread(s, |v| format!("{v:.3}x"));
            let d = |s: Option<Spread>| fmt_spread(s, |v| format!("{v:.0}"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.hook.name(),
                ns(c.stamper_ns),
                ns(c.null_ns),
                c.net_ns.map_or("-".to_string(), |n| format!("{n:.1}")),
                x(c.null_vs_baseline),
                x(c.stamper_vs_baseline),
                d(c.cpu_ns_vs_baseline),
                d(c.cpu_ns_vs_null),
                x(c.stats_on_vs_off),
                d(c.cpu_ns_stats),
            );
        }

        let _ = writeln!(
            md,
            "\nTarget (measured, not asserted): the stamper's cost ≤ {COST_GOAL_NS:.0} ns per packet.\n"
        );
        md.push_str("| hook | verdict | detail |\n|---|---|---|\n");
        for t in self.cost_targets() {
            let verdict = match t.verdict {
                CostVerdict::Met => "**met**",
                CostVerdict::MetNetOfStats => "**met net of the statistics' floor**",
                CostVerdict::Missed => "**missed**",
                CostVerdict::NotMeasured => "not measured",
            };
            let _ = writeln!(md, "| {} | {verdict} | {} |", t.hook.name(), t.detail);
        }
        md
    }
}

/// `median (min–max)` with `f` formatting each, or `-`.
fn fmt_spread(s: Option<Spread>, f: impl Fn(f64) -> String) -> String {
    s.map_or("-".to_string(), |s| {
        format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
    })
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// `412345.6` -> `412.3k`, `1234567` -> `1.235M`.
pub fn fmt_rate(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.3}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn fmt_pct(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v < 0.01 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        config: Config,
        repeat: u32,
        rate: f64,
        cpu_ns: f64,
        ns_per_run: Option<f64>,
    ) -> Sample {
        let received = (rate * 2.0) as u64 + 1;
        let cpu = |share: f64| (cpu_ns * share * received as f64).round() as u64;
        Sample {
            config,
            repeat,
            sent: received + 10,
            send_secs: 2.0,
            received,
            receive_secs: 2.0,
            rcvbuf_errors: 4,
            receive_calls: received / 32,
            stamps_drained: (config.program == Program::Stamper).then_some(received + 10),
            counters: None,
            run_time_ns: ns_per_run.map(|ns| (ns * (received + 10) as f64) as u64),
            run_cnt: ns_per_run.map(|_| received + 10),
            stats_on_host: config.stats,
            sender_cpu_ns: cpu(0.8),
            sender_switches: [0, 0],
            receiver_cpu_ns: cpu(0.15),
            softirqd_cpu_ns: cpu(0.05),
            error: None,
        }
    }

    /// Baseline at 1M/s, 1000 CPU ns/datagram; xdp-native stamper at 800k/s and +150 ns (null
    /// program 900k/s, +40 ns), statistics 750k/s and +50 ns, 130 ns/run over a 40 ns floor.
    fn report() -> EbpfReport {
        let hook = Hook::XdpNative;
        let mut samples = Vec::new();
        for (repeat, wobble) in [(0u32, 1.0), (1, 1.02), (2, 0.97)] {
            let rate = |r: f64| r * wobble;
            let cpu = |ns: f64| ns + 10.0 * repeat as f64;
            let stamper = Config::new(hook, Program::Stamper, false);
            let stamper_stats = Config::new(hook, Program::Stamper, true);
            let null = Config::new(hook, Program::Null, false);
            let null_stats = Config::new(hook, Program::Null, true);
            samples.push(sample(
                Config::BASELINE,
                repeat,
                rate(1e6),
                cpu(1000.0),
                None,
            ));
            samples.push(sample(stamper, repeat, rate(800e3), cpu(1150.0), None));
            let ns = Some(130.0 + repeat as f64);
            samples.push(sample(stamper_stats, repeat, rate(750e3), cpu(1200.0), ns));
            samples.push(sample(null, repeat, rate(900e3), cpu(1040.0), None));
            samples.push(sample(
                null_stats,
                repeat,
                rate(880e3),
                cpu(1060.0),
                Some(40.0),
            ));
        }
        EbpfReport {
            date_utc: "2026-11-24 10:00 UTC".into(),
            secs: 3.0,
            repeats: 3,
            batch: 64,
            payload_bytes: 130,
            samples,
            ..EbpfReport::default()
        }
    }

    #[test]
    fn median_and_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(even.median, 2.5);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
        assert_eq!(Spread::of(&[f64::NAN, 5.0]).unwrap().median, 5.0);
        assert!((Spread::of(&[90.0, 100.0, 110.0]).unwrap().range_pct() - 20.0).abs() < 1e-9);
    }

    #[test]
    fn ratios_are_paired_with_the_baseline_of_the_same_repeat() {
        let r = report();
        let row = r.row(Config::new(Hook::XdpNative, Program::Stamper, false));
        // 800k/1M in every repeat despite the repeats' wobble: exactly 0.8 (±1 datagram).
        let vs = row.vs_baseline.unwrap();
        assert!((vs.median - 0.8).abs() < 1e-5, "{vs:?}");
        assert!(vs.max - vs.min < 1e-5, "{vs:?}");
        // The rates themselves do wobble: median of 800k, 816k, 776k.
        let rate = row.rate.unwrap();
        assert!((rate.median - 800e3).abs() < 1.0, "{rate:?}");
        assert!((rate.min - 776e3).abs() < 1.0 && (rate.max - 816e3).abs() < 1.0);
        assert_eq!(r.row(Config::BASELINE).vs_baseline, None);
        // 10 of ~1.6M lost, 4 of them to the socket buffer.
        let loss = row.loss_pct.unwrap().median;
        assert!(loss > 0.0 && loss < 0.001, "{loss}");
        assert!(row.rcvbuf_pct.unwrap().median < loss);
        assert!(row.stamps_per_received.unwrap() > 1.0);
        assert_eq!(row.runs_per_datagram, None, "no statistics in this config");
    }

    #[test]
    fn cost_is_kernel_figure_minus_null_floor() {
        let r = report();
        let c = r.cost(Hook::XdpNative);
        assert!((c.stamper_ns.unwrap().median - 131.0).abs() < 0.01, "{c:?}");
        assert!((c.null_ns.unwrap().median - 40.0).abs() < 0.01);
        assert!((c.net_ns.unwrap() - 91.0).abs() < 0.01);
        // CPU per datagram, paired by repeat: +150 ns vs baseline, +110 vs the null program,
        // +50 for statistics, in every repeat although the repeats' own figures drift.
        let vs_base = c.cpu_ns_vs_baseline.unwrap();
        assert!((vs_base.median - 150.0).abs() < 0.01, "{vs_base:?}");
        assert!(vs_base.max - vs_base.min < 0.01, "{vs_base:?}");
        assert!((c.cpu_ns_vs_null.unwrap().median - 110.0).abs() < 0.01);
        assert!((c.cpu_ns_stats.unwrap().median - 50.0).abs() < 0.01);
        assert!((c.stats_on_vs_off.unwrap().median - 0.9375).abs() < 1e-4);
        let t = judge_cost(&c);
        assert_eq!(t.verdict, CostVerdict::MetNetOfStats, "{}", t.detail);
        assert!(t.detail.contains("31% over"), "{}", t.detail);
        assert!(t.detail.contains("9 ns to spare"), "{}", t.detail);
    }

    #[test]
    fn cost_verdicts() {
        let spread = |v: f64| Spread::of(&[v]);
        let mut c = HookCost {
            hook: Hook::TcIngress,
            stamper_ns: spread(95.0),
            null_ns: spread(30.0),
            net_ns: Some(65.0),
            stamper_vs_baseline: None,
            null_vs_baseline: None,
            stats_on_vs_off: None,
            cpu_ns_vs_baseline: None,
            cpu_ns_vs_null: None,
            cpu_ns_stats: None,
        };
        assert_eq!(judge_cost(&c).verdict, CostVerdict::Met);
        c.stamper_ns = spread(180.0);
        c.net_ns = Some(150.0);
        let t = judge_cost(&c);
        assert_eq!(t.verdict, CostVerdict::Missed);
        assert!(t.detail.contains("80% over") && t.detail.contains("50% over"));
        c.net_ns = None;
        assert_eq!(judge_cost(&c).verdict, CostVerdict::Missed);
        c.stamper_ns = None;
        assert_eq!(judge_cost(&c).verdict, CostVerdict::NotMeasured);
    }

    #[test]
    fn configs_interleave_in_a_fixed_order() {
        let all = Config::all(&[Hook::XdpNative, Hook::TcIngress], true);
        assert_eq!(all.len(), 9);
        assert_eq!(all[0], Config::BASELINE);
        assert_eq!(all[1].label(), "xdp-native stamper");
        assert_eq!(all[3].label(), "xdp-native null program");
        assert_eq!(Config::all(&Hook::ALL, false).len(), 7);
        assert_eq!(Hook::parse("xdp-generic"), Some(Hook::XdpGeneric));
        assert_eq!(Hook::parse("xdp"), None);
    }

    #[test]
    fn markdown_has_the_rows_the_costs_and_the_verdict() {
        let mut r = report();
        r.samples
            .push(Sample::failed(Config::BASELINE, 3, "boom".to_string()));
        let md = r.markdown();
        assert!(
            md.contains("| no program (baseline) (1 of 4 runs failed) | - | 1.000M | 970.0k–1.020M (±2.5%) | - |"),
            "{md}"
        );
        assert!(
            md.contains("| xdp-native stamper | off | 800.0k | 776.0k–816.0k (±2.5%) | 0.800x (0.800x–0.800x) | 0.0006 (0.0002) | 1160 (1150–1170) |"),
            "{md}"
        );
        assert!(md.contains("| xdp-native stamper | on | 750.0k |"), "{md}");
        assert!(md.contains("| 131.0 (130.0–132.0) | 1.0000 |"), "{md}");
        assert!(
            md.contains("| xdp-native | 131.0 | 40.0 | 91.0 | 0.900x (0.900x–0.900x) | 0.800x (0.800x–0.800x) | 150 (150–150) | 110 (110–110) | 0.938x (0.938x–0.938x) | 50 (50–50) |"),
            "{md}"
        );
        assert!(
            md.contains("| xdp-native | **met net of the statistics' floor** |"),
            "{md}"
        );
        assert!(
            md.contains("- no program (baseline) (repeat 4): boom"),
            "{md}"
        );
        assert!(
            !md.contains("on host-wide"),
            "statistics runs are not flagged"
        );
        let json = serde_json::to_string(&r).unwrap();
        let back: EbpfReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(r.to_json()["costs"][0]["net_ns"].as_f64().is_some());
    }

    #[test]
    fn stats_left_on_by_someone_else_is_flagged() {
        let mut r = report();
        for s in &mut r.samples {
            if s.config == Config::new(Hook::XdpNative, Program::Stamper, false) {
                s.stats_on_host = true;
            }
        }
        assert!(r
            .markdown()
            .contains("| xdp-native stamper | off (on host-wide!) |"));
    }
}
