//! The eBPF stamper benchmark's report as markdown: machine and method, the per-configuration
//! table, the cost table, the verdicts.

use std::fmt::Write as _;

use super::report::{CostVerdict, EbpfReport, Program, Spread, COST_GOAL_NS};
use crate::publish::{fmt_scaled, trim_float};

impl EbpfReport {
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
            trim_float(self.secs),
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

/// `412345.6` -> `412.3k`, `1234567` -> `1.235M`.
fn fmt_rate(rate: f64) -> String {
    fmt_scaled(rate, 3, 1)
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
