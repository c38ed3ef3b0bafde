//! The end-to-end report's tests: targets, ramps, markdown and JSON.

use relay_core::stats::ComponentSummary;

use super::render::fmt_rate;
use super::report::{ratio, throughput_target};
use super::*;
use crate::publish::utc_timestamp;

fn lat(p50: f64, p999: f64) -> Option<ComponentSummary> {
    Some(ComponentSummary {
        count: 100,
        avg_us: p50,
        p50_us: p50,
        p95_us: (p50 + p999) / 2.0,
        p99_us: (p50 + p999) / 2.0,
        p999_us: p999,
        min_us: p50 / 2.0,
        max_us: p999 * 2.0,
        negative: 0,
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

/// Gives every run of `path` this CPU per message and system share.
fn set_cpu(runs: &mut [RunResult], path: PathKind, us: f64, sys: Option<f64>) {
    for r in runs.iter_mut().filter(|r| r.path == Some(path)) {
        r.cpu_us_per_msg = Some(us);
        r.cpu_sys_share = sys;
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
    assert_eq!(targets[6].verdict, Verdict::NotMeasured, "no direct read");
    assert_eq!(targets[7].verdict, Verdict::NotMeasured, "no parked relay");
}

#[test]
fn floor_and_cpu_targets_judge_the_relay_against_the_direct_read_and_the_reference() {
    let mut runs = sample_runs();
    runs.push(run(PathKind::WsDirect, 1000, 25.0, 80.0)); // relay 30 / 25 = 1.2x: met
    runs.push(run(PathKind::WsDirect, 10_000, 10.0, 80.0)); // 20 / 10 = 2x: missed
    runs.push(run(PathKind::RelayParked, 1000, 60.0, 200.0));
    set_cpu(&mut runs, PathKind::RelayParked, 3.0, None);
    set_cpu(&mut runs, PathKind::Reference, 10.0, None);
    let targets = evaluate_targets(&runs, &[], "-");
    let floor = &targets[6];
    assert_eq!(floor.verdict, Verdict::Missed);
    assert!(floor.measured.contains("1k: 1.20x") && floor.measured.contains("10k: 2.00x"));
    assert!(floor.detail.contains("at 10k msg/s") && !floor.detail.contains("at 1k"));
    let cpu = &targets[7];
    assert_eq!(cpu.verdict, Verdict::Met, "{cpu:?}");
    assert_eq!(cpu.measured, "1k: 0.30x");
}

#[test]
fn a_cpu_miss_is_out_of_reach_when_the_sleeping_floor_alone_spends_more_than_the_goal() {
    let mut runs = sample_runs();
    runs.push(run(PathKind::RelayParked, 1000, 60.0, 200.0));
    set_cpu(&mut runs, PathKind::RelayParked, 20.0, Some(0.8));
    set_cpu(&mut runs, PathKind::Reference, 25.0, Some(0.9));
    // 20 / 25 = 0.8x vs <= 0.5x, and no floor measured: a plain miss.
    let t = &evaluate_targets(&runs, &[], "-")[7];
    assert_eq!(t.verdict, Verdict::Missed, "{t:?}");
    assert!(!t.detail.contains("out of reach"), "{}", t.detail);
    // The floor spends 14 µs, above the 12.5 µs allowed.
    runs.push(run(PathKind::SleepFloor, 1000, 50.0, 150.0));
    set_cpu(&mut runs, PathKind::SleepFloor, 14.0, Some(1.0));
    let t = &evaluate_targets(&runs, &[], "-")[7];
    assert_eq!(t.verdict, Verdict::OutOfReach, "{t:?}");
    assert!(
        t.detail
            .contains("floor alone spends 14.00 µs per message, above the ≤ 12.50 µs"),
        "{}",
        t.detail
    );
    let md = Report {
        targets: evaluate_targets(&runs, &[], "-"),
        ..Report::default()
    }
    .markdown();
    assert!(
        md.contains("| **missed: out of reach here** | at 1k msg/s 0.80x"),
        "{md}"
    );
    // A floor under the goal leaves the relay's own work as the miss.
    set_cpu(&mut runs, PathKind::SleepFloor, 12.0, Some(1.0));
    assert_eq!(
        evaluate_targets(&runs, &[], "-")[7].verdict,
        Verdict::Missed
    );
}

#[test]
fn a_p999_miss_is_out_of_reach_when_the_udp_leg_alone_exceeds_the_goal() {
    let mut runs = sample_runs();
    let leg = |runs: &mut Vec<RunResult>, p999: Option<f64>| {
        let relay = runs
            .iter_mut()
            .find(|r| r.path == Some(PathKind::Relay) && r.rate == 10_000)
            .expect("the 10k relay run");
        relay.leg = p999.and_then(|p| lat(12.0, p));
    };
    // At 10k: reference 100 / relay 50 = 2x vs >= 3x, so the goal allows 33 µs; 1k is met.
    leg(&mut runs, Some(45.0));
    let t = &evaluate_targets(&runs, &[], "-")[2];
    assert_eq!(t.verdict, Verdict::OutOfReach, "{t:?}");
    assert!(
        t.detail.contains("at 10k msg/s 2.00x")
            && t.detail
                .contains("send alone has p99.9 45 µs, above the ≤ 33 µs allowed"),
        "{}",
        t.detail
    );
    // A 30 µs leg: the rest of the relay's 50 µs is what misses.
    leg(&mut runs, Some(30.0));
    let t = &evaluate_targets(&runs, &[], "-")[2];
    assert_eq!(t.verdict, Verdict::Missed, "{t:?}");
    assert!(!t.detail.contains("out of reach"), "{}", t.detail);
    // No figure (a report from before it was measured): a plain miss.
    leg(&mut runs, None);
    assert_eq!(
        evaluate_targets(&runs, &[], "-")[2].verdict,
        Verdict::Missed
    );
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
fn throughput_is_out_of_reach_only_when_the_source_itself_falls_short() {
    let ramp = |path, top: u64| Ramp {
        path: Some(path),
        steps: [100_000, 300_000, 700_000, 1_000_000]
            .into_iter()
            .map(|rate| {
                let mut step = run(path, rate, 1.0, 1.0);
                if rate > top {
                    step.lost = 1;
                }
                step
            })
            .collect(),
    };
    // The direct read stops at 700k: 1M cannot be shown here, whatever the relay does.
    let t = throughput_target(&[
        ramp(PathKind::Relay, 300_000),
        ramp(PathKind::WsDirect, 700_000),
    ]);
    assert_eq!(t.verdict, Verdict::OutOfReach, "{t:?}");
    assert!(
        t.detail
            .contains("with no forwarder, sustained only 700k msg/s"),
        "{}",
        t.detail
    );
    assert!(t.detail.contains("short by 700000 msg/s"), "{}", t.detail);
    // A source that keeps up makes the same relay a plain miss.
    let t = throughput_target(&[
        ramp(PathKind::Relay, 300_000),
        ramp(PathKind::WsDirect, 1_000_000),
    ]);
    assert_eq!(t.verdict, Verdict::Missed, "{t:?}");
    assert!(
        t.detail
            .contains("the simulator read directly sustained 1M msg/s"),
        "{}",
        t.detail
    );
    // Without a direct ramp there is no proof either way.
    let t = throughput_target(&[ramp(PathKind::Relay, 300_000)]);
    assert_eq!(t.verdict, Verdict::Missed, "{t:?}");
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
            .contains("short by 700000 msg/s (3.33x more needed)"),
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
        steps: vec![run(PathKind::Relay, 1_000_000, 1.0, 1.0)],
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
    assert!(
        md.contains("| 1k | relay (spinning) | 1000/1000 | 0 | 30.0 |"),
        "{md}"
    );
    // Relay p50 30 over the floor's 10.
    assert!(
        md.contains("| 30.0 | 65.0 | 100.0 | 200.0 | 3.00x | 2.50x |"),
        "{md}"
    );
    assert!(md.contains("| 1k | relay hop (read → receive) |"), "{md}");
    assert!(md.contains("| 1k | reference (tokio) | 3.00x | "), "{md}");
    assert!(md.contains("websocat: not installed"), "{md}");
    assert!(md.contains("**missed**"));
    assert!(
        !md.contains("How the relay's reads"),
        "no reads, no table: {md}"
    );
    let mut runs = report.runs.clone();
    runs[1].datagrams_per_message = Some(0.1136);
    runs[1].leg = lat(22.0, 80.0);
    runs[1].reads = Some(ReadSummary {
        messages_per_read: 229.6,
        datagrams_per_read: 26.04,
        send_gap: lat(6.6, 30.0),
    });
    let md = Report {
        runs,
        ..report.clone()
    }
    .markdown();
    // The relay's row (no msgs/recv in this sample) ends with its datagrams per message.
    assert!(md.contains("|  | 0.114 |\n"), "{md}");
    assert!(
        md.contains("| 1k | relay UDP leg (send → receive) |  |  | 22.0 |"),
        "{md}"
    );
    assert!(
        md.contains("| 1k | relay (spinning) | 229.6 | 26.0 | 6.60 | 18.3 |"),
        "{md}"
    );
    let json = serde_json::to_string(&report).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert!(json.contains("\"path\":\"udp-floor\""), "{json}");
}

#[test]
fn path_names_are_their_json_names() {
    for path in PathKind::ALL {
        let json = serde_json::to_string(&path).unwrap();
        assert_eq!(json, format!("\"{}\"", path.name()));
    }
}
