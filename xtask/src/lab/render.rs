//! The lab's report on stdout: the seed's comparison, the ground-truth table, the links.

use super::experiment::LabOutcome;
use crate::results::print_comparison;

fn ms(us: Option<f64>) -> String {
    us.map_or("-".to_string(), |us| format!("{:.3}", us / 1e3))
}

pub fn print_outcome(outcome: &LabOutcome) {
    println!();
    print_comparison(&outcome.baseline, &outcome.backbone);

    println!("\nGround truth: p50 one-way delay injected by the delay lines vs measured by the receivers (ms)");
    println!(
        "| {:<12} | {:<44} | {:>9} | {:>9} | {:>9} | {:>9} | {:>7} | {:<30} |",
        "path", "stretch", "injected", "achieved", "measured", "meas-inj", "n", "check"
    );
    println!(
        "|{:-<14}|{:-<46}|{:->11}|{:->11}|{:->11}|{:->11}|{:->9}|{:-<32}|",
        "", "", "", "", "", "", "", ""
    );
    for s in &outcome.ground_truth {
        let difference = s.measured_us.zip(s.injected_us).map(|(m, i)| m - i);
        let check = s.check.as_ref().map_or(String::new(), |c| {
            format!(
                "{}: meas-ach {:+.3} {} {:.3}",
                if c.passed { "ok" } else { "FLAG" },
                c.difference_us / 1e3,
                if c.passed { "<=" } else { ">" },
                c.tolerance_us / 1e3
            )
        });
        println!(
            "| {:<12} | {:<44} | {:>9} | {:>9} | {:>9} | {:>9} | {:>7} | {:<30} |",
            s.path,
            s.what,
            ms(s.injected_us),
            ms(s.achieved_us),
            ms(s.measured_us),
            difference.map_or("-".to_string(), |d| format!("{:+.3}", d / 1e3)),
            s.samples,
            check
        );
    }
    println!(
        "injected: the delay lines' planned hold; achieved: their actual hold (kernel arrival \
         stamp -> send); measured: exact p50 over the receivers' CSV rows. On the E -> receiver \
         rows, meas-inj is the processing outside the links: simulator (E is stamped when the \
         message is built), TLS/WebSocket, relay, receiver wake-up."
    );

    if let Some(a) = &outcome.both.arbitration {
        println!(
            "\nA/B arbitration (frankfurt, --mode both: the relay's datagrams and the direct \
             connection; each event from whichever came first): {} events, {} later copies \
             dropped; trade ids no path brought: {} while both paths ran, {} in all (a path's \
             start or end); {} delivered out of order",
            a.events,
            a.duplicates_dropped,
            a.events_missing_where_all_paths_delivered,
            a.events_missing,
            a.delivered_out_of_order
        );
        println!(
            "| {:<7} | {:>7} | {:>7} | {:>8} | {:>16} | {:>17} |",
            "path", "copies", "wins", "win rate", "margin p50 ms", "only on this path"
        );
        println!(
            "|{:-<9}|{:->9}|{:->9}|{:->10}|{:->18}|{:->19}|",
            "", "", "", "", "", ""
        );
        for p in &a.paths {
            println!(
                "| {:<7} | {:>7} | {:>7} | {:>7.1}% | {:>16} | {:>17} |",
                p.path,
                p.copies,
                p.wins,
                p.win_rate * 100.0,
                p.margin
                    .map_or("-".to_string(), |m| format!("{:.3}", m.p50_us / 1e3)),
                p.only_on_this_path
            );
        }
    }

    println!(
        "\nPaths (seed 000: relay probe inside a region and across the WAN; RTT without the \
         reflector's time)"
    );
    println!(
        "| {:<22} | {:<13} | {:>6} | {:>5} | {:>12} | {:>12} |",
        "path", "link", "probes", "lost", "RTT p50 ms", "RTT p99 ms"
    );
    println!(
        "|{:-<24}|{:-<15}|{:->8}|{:->7}|{:->14}|{:->14}|",
        "", "", "", "", "", ""
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    for p in &outcome.paths {
        println!(
            "| {:<22} | {:<13} | {:>6} | {:>5} | {:>12} | {:>12} |",
            format!("{} -> {}", p.src, p.dst),
            p.link,
            p.sent,
            p.lost,
            ms(p.rtt_p50_ms),
            ms(p.rtt_p99_ms)
        );
    }
    println!("(every probe's RTT is in paths.csv: relay plan --rtt paths.csv)");

    println!("\nLinks (delay lines; per direction)");
    println!(
        "| {:<13} | {:<21} | {:>7} | {:>5} | {:>5} | {:>19} | {:>19} | {:>5} |",
        "link",
        "direction",
        "frames",
        "lost",
        "reord",
        "injected p50/p99 ms",
        "hold err p50/p99 us",
        "cpu %"
    );
    println!(
        "|{:-<15}|{:-<23}|{:->9}|{:->7}|{:->7}|{:->21}|{:->21}|{:->7}|",
        "", "", "", "", "", "", "", ""
    );
    for link in &outcome.links {
        for d in &link.directions {
            println!(
                "| {:<13} | {:<21} | {:>7} | {:>5} | {:>5} | {:>19} | {:>19} | {:>5.1} |",
                link.name,
                format!("{} -> {}", d.from, d.to),
                d.frames,
                d.lost,
                d.reordered,
                format!(
                    "{:.3} / {:.3}",
                    d.injected.p50_us / 1e3,
                    d.injected.p99_us / 1e3
                ),
                format!("{:.1} / {:.1}", d.hold_error.p50_us, d.hold_error.p99_us),
                link.cpu_percent
            );
            let odd = d.oversize + d.send_errors + d.queue_full + d.unstamped;
            if odd > 0 {
                println!(
                    "  {}: {} oversize, {} send errors, {} queue full, {} unstamped",
                    link.name, d.oversize, d.send_errors, d.queue_full, d.unstamped
                );
            }
        }
    }
    let sources = outcome.backbone.nic_time_sources;
    match &outcome.backbone.ebpf {
        Some(ebpf) => println!(
            "\nReceive stamps: eBPF hook {} on frankfurt's backbone interface ({} messages \
             stamped, {} without a stamp); first stamp per message from hardware {}, eBPF {}, \
             software {}, none {}.",
            ebpf.hook.as_deref().unwrap_or("none (not attached)"),
            ebpf.messages_with_stamp,
            ebpf.messages_without_stamp,
            sources.hardware,
            sources.ebpf,
            sources.software,
            sources.none
        ),
        None => println!("\nReceive stamps: no eBPF report from the backbone receiver."),
    }
    let mut checks = outcome.checks().peekable();
    if checks.peek().is_none() {
        println!("Ground truth check not possible: no latency split or no link report.");
    }
    for (segment, check) in checks {
        let what = segment.what.trim_start_matches("  split: ");
        match (check.passed, segment.what.contains("network")) {
            (true, true) => println!(
                "Ground truth check passed: {what} is within {:.0} us (p50) of the backbone's \
                 achieved delay ({:+.1} us): the injected delay shows up where it belongs.",
                check.tolerance_us, check.difference_us
            ),
            (false, true) => println!(
                "Ground truth check FLAGGED: {what} is {:+.1} us off the backbone's achieved delay \
                 (tolerance {:.0} us).",
                check.difference_us, check.tolerance_us
            ),
            (true, false) => {}
            (false, false) => println!(
                "FLAG: {what} takes {:.1} us at p50 with nothing injected there (over {:.0} us). \
                 This is the component's own cost, a finding rather than a measuring error{}.",
                check.difference_us,
                check.tolerance_us,
                if what.starts_with("kernel") {
                    format!(
                        "; a blocking receive's thread wake-up lands here (receive floor {:.1} us \
                         p50 during the run)",
                        outcome.receive_floor.p50_us
                    )
                } else {
                    String::new()
                }
            ),
        }
    }
    println!(
        "\nxtask: lab results (receivers' JSON + CSV, links.json, lab-settings.json) are in {}",
        outcome.out.display()
    );
}
