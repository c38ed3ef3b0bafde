//! The end-to-end report as markdown: the latency table with the ratios to the floor, the
//! relay against the other forwarders, the ramp and the targets.

use std::fmt::Write as _;

use super::report::{
    find, rates, ratio, PathKind, Report, Verdict, SUSTAIN_FRACTION, SUSTAIN_P99_US,
};
use crate::publish::{fmt_scaled, trim_float};

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "**met**",
        Verdict::Missed => "**missed**",
        Verdict::OutOfReach => "**missed: out of reach here**",
        Verdict::NotMeasured => "not measured",
    }
}

impl Report {
    /// How the relay's reads left it, per relay run: what bounds its dwell when reads are large.
    fn reads_table(&self, md: &mut String) {
        let runs: Vec<_> = self.runs.iter().filter(|r| r.reads.is_some()).collect();
        if runs.is_empty() {
            return;
        }
        md.push_str("\nHow the relay's reads of the exchange left it (from its datagrams' stamps: one read is one `relay_rx_ns`, one datagram one `relay_tx_ns`): messages and datagrams per read, and the time from one send of a read to the next (the send before it, then decoding and packing the next datagram's messages), µs. A read's last message waits behind all its datagrams' sends before it:\n\n");
        md.push_str("| rate (msg/s) | path | msgs/read | dgrams/read | send to next send p50 | p99 |\n|---:|---|---:|---:|---:|---:|\n");
        for run in runs {
            let Some(reads) = run.reads else { continue };
            let (p50, p99) = reads
                .send_gap
                .map_or(("-".to_string(), "-".to_string()), |g| {
                    (fmt_us(g.p50_us), fmt_us(g.p99_us))
                });
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {:.1} | {p50} | {p99} |",
                fmt_rate(run.rate),
                run.path.map_or("?", PathKind::label),
                reads.messages_per_read,
                reads.datagrams_per_read,
            );
        }
    }

    /// The report as markdown: machine, latency table, ratios, ramp, targets.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Run {} ({}{}), {} cores, {}, kernel {}; forwarders on core {}, simulator and receiver on core {}; wall time {:.0} s.\n",
            self.date_utc,
            if self.quick { "--quick" } else { "default" },
            if self.veth {
                "; --veth: simulator and forwarders in one namespace, the receiver in another, over a veth pair"
            } else {
                "; loopback"
            },
            m.nproc,
            m.cpu_model,
            m.kernel,
            self.forwarder_core.map_or("any".to_string(), |c| c.to_string()),
            self.bench_core.map_or("any".to_string(), |c| c.to_string()),
            self.wall_secs
        );
        md.push_str("Latency in µs: source time (simulator event time `E`, µs; the UDP floor's send stamp) to the bench receiver's receive call returning (CLOCK_REALTIME). Relay `hop`: the relay's read of the exchange bytes (`relay_rx_ns`) to the same receive; `dwell`: that read to the relay's send stamp (`relay_tx_ns`), and the UDP `leg`: that send stamp to the receive (the kernel's and the receiver's time). Ratios: the row's figure over the UDP floor's at the same rate. CPU: the forwarder process's time on a CPU from its first delivered message to the end, per delivered message (all its threads, the sleeping floor's one thread, from the scheduler's schedstat; system share of its clock ticks in brackets; a spinning relay's is its whole core: 1 s ÷ rate). msgs/recv: messages per receive call of the bench receiver (higher: burstier arrivals, fewer receiver wake-ups). dgrams/msg: UDP datagrams received per message (below 1: several messages packed in one datagram).\n\n");
        md.push_str("| rate (msg/s) | path | delivered | lost | p50 | p99 | p99.9 | max | p50 ÷ UDP floor | p99.9 ÷ UDP floor | CPU µs/msg (sys) | msgs/recv | dgrams/msg |\n");
        md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for rate in rates(&self.runs) {
            let floor = find(&self.runs, PathKind::UdpFloor, rate).and_then(|r| r.latency);
            for run in self.runs.iter().filter(|r| r.rate == rate) {
                let label = run.path.map_or("?", PathKind::label);
                if let Some(e) = &run.error {
                    let _ = writeln!(
                        md,
                        "| {} | {label} | - | - | - | - | - | - | - | - | - | - | - | <!-- {} -->",
                        fmt_rate(rate),
                        e.replace('|', "/")
                    );
                    continue;
                }
                let mut rows = vec![(label.to_string(), run.latency)];
                if let Some(hop) = run.hop {
                    rows.push(("relay hop (read → receive)".to_string(), Some(hop)));
                }
                if let Some(dwell) = run.dwell {
                    rows.push(("relay dwell (read → send)".to_string(), Some(dwell)));
                }
                if let Some(leg) = run.leg {
                    rows.push(("relay UDP leg (send → receive)".to_string(), Some(leg)));
                }
                for (i, (label, lat)) in rows.into_iter().enumerate() {
                    let per_recv = match run.messages_per_receive {
                        Some(m) if i == 0 => format!("{m:.1}"),
                        _ => String::new(),
                    };
                    let per_dgram = match run.datagrams_per_message {
                        Some(d) if i == 0 => format!("{d:.3}"),
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
                        "| {} | {label} | {delivered} | {lost} | {cells} | {cpu} | {per_recv} | {per_dgram} |",
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
            let Some(relay) = find(&self.runs, PathKind::Relay, rate).and_then(|r| r.latency)
            else {
                continue;
            };
            for other in [PathKind::Reference, PathKind::Websocat] {
                if let Some(o) = find(&self.runs, other, rate).and_then(|r| r.latency) {
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
        self.reads_table(&mut md);

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

/// An achieved rate: `1.23M`, `412k`.
fn fmt_rate_f(rate: f64) -> String {
    fmt_scaled(rate, 2, 0)
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
