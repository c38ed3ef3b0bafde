//! The eBPF report's tests: spreads, pairing by repeat, costs and verdicts, markdown and JSON.

use relay_wire::stamp::Hook;

use super::*;

fn sample(config: Config, repeat: u32, rate: f64, cpu_ns: f64, ns_per_run: Option<f64>) -> Sample {
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
    assert_eq!(Hook::from_name("xdp-generic"), Some(Hook::XdpGeneric));
    assert_eq!(Hook::from_name("xdp"), None);
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
    assert!(json.contains(r#""hook":"xdp-native""#), "{json}");
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
