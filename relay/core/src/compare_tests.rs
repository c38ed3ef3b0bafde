use super::*;

/// The seed's example summary (003, "Output Files"), as its own tool writes it.
const SEED_BASELINE: &str = r#"{
  "setup_type": "baseline",
  "sample_count": 18234,
  "events_lost": 0,
  "avg_latency_ms": 245.67,
  "median_latency_ms": 243.21,
  "p95_latency_ms": 289.45,
  "p99_latency_ms": 312.78,
  "min_latency_ms": 198.34,
  "max_latency_ms": 456.12,
  "jitter_stddev_ms": 23.45,
  "backbone_avg_latency_ms": null,
  "backbone_median_latency_ms": null
}"#;

fn figures(mean: f64, sample_count: u64, events_lost: u64) -> Figures {
    let json = format!(
        r#"{{"setup_type": "x", "sample_count": {sample_count}, "events_lost": {events_lost},
            "avg_latency_ms": {mean}, "median_latency_ms": null, "p95_latency_ms": null,
            "p99_latency_ms": null, "jitter_stddev_ms": null}}"#
    );
    Figures::from_json(&json, None).unwrap()
}

#[test]
fn latency_verdicts_follow_seed_002_at_both_sides_of_each_limit() {
    // 200 ms direct: OK below 200 + max(20, 30) = 230 ms.
    assert_eq!(latency_verdict(200.0, 199.9), Verdict::Optimized);
    assert_eq!(latency_verdict(200.0, 200.0), Verdict::Ok);
    assert_eq!(latency_verdict(200.0, 229.9), Verdict::Ok);
    assert_eq!(latency_verdict(200.0, 230.0), Verdict::Bad);
    // 100 ms direct: 15% is 15 ms, so the 20 ms floor applies: OK below 120 ms.
    assert_eq!(latency_verdict(100.0, 119.9), Verdict::Ok);
    assert_eq!(latency_verdict(100.0, 120.0), Verdict::Bad);
    assert_eq!(latency_ok_limit_ms(245.67), 245.67 + 245.67 * 0.15);
}

#[test]
fn loss_verdicts_allow_less_than_one_point_worse() {
    assert_eq!(loss_verdict(0.5, 0.4), Verdict::Optimized);
    assert_eq!(loss_verdict(0.5, 0.5), Verdict::Ok);
    assert_eq!(loss_verdict(0.5, 1.49), Verdict::Ok);
    assert_eq!(loss_verdict(0.5, 1.5), Verdict::Bad);
    assert_eq!(loss_verdict(0.0, 3.0), Verdict::Bad);
}

#[test]
fn loss_is_events_lost_over_all_expected_messages() {
    assert_eq!(figures(1.0, 99, 1).loss_pct, Some(1.0));
    assert_eq!(figures(1.0, 3, 1).loss_pct, Some(25.0));
    assert_eq!(figures(1.0, 0, 0).loss_pct, None, "nothing expected");
}

#[test]
fn the_seeds_own_summary_compares_with_ours() {
    let direct = Figures::from_json(SEED_BASELINE, None).unwrap();
    assert_eq!(direct.setup_type, "baseline");
    assert_eq!(direct.p999_latency_ms, None, "the seed has no p99.9");
    let mut overlay = figures(230.0, 18230, 4);
    overlay.jitter_stddev_ms = Some(11.45);
    let c = Comparison::of(direct, overlay);
    // 230 - 245.67 = -15.67 ms, 6.378% of 245.67.
    assert!((c.difference_ms.unwrap() + 15.67).abs() < 1e-9);
    assert!((c.improvement_pct.unwrap() - 15.67 * 100.0 / 245.67).abs() < 1e-9);
    assert_eq!(c.latency_verdict, Some(Verdict::Optimized));
    // 4 of 18234 = 0.0219%: less than a point worse than 0.
    assert!((c.loss_difference_points.unwrap() - 400.0 / 18234.0).abs() < 1e-9);
    assert_eq!(c.loss_verdict, Some(Verdict::Ok));
    assert!((c.jitter_difference_ms.unwrap() + 12.0).abs() < 1e-9);
    assert_eq!(c.p95_difference_ms, None, "the overlay has no p95");
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["latency_verdict"], "OPTIMIZED");
    assert_eq!(json["loss_verdict"], "OK");
    assert_eq!(json["direct"]["avg_latency_ms"], 245.67);
    let table = c.table();
    assert!(
        table.contains("| avg_latency_ms       |        245.670 |        230.000 |      -15.670 |"),
        "{table}"
    );
    assert!(
        table.contains(
            "latency: OPTIMIZED (difference -15.670 ms, 6.38% faster; OK below 282.520 ms)"
        ),
        "{table}"
    );
    assert!(table.contains("loss: OK (+0.022 points"), "{table}");
}

#[test]
fn a_run_without_event_times_is_not_judged_on_latency() {
    let direct = Figures::from_json(SEED_BASELINE, None).unwrap();
    let overlay = Figures::from_json(
        r#"{"sample_count": 5, "events_lost": 0, "avg_latency_ms": null,
            "median_latency_ms": null, "p95_latency_ms": null, "p99_latency_ms": null,
            "jitter_stddev_ms": null}"#,
        None,
    )
    .unwrap();
    let c = Comparison::of(direct, overlay);
    assert_eq!(c.latency_verdict, None);
    assert_eq!(c.difference_ms, None);
    assert!(c.table().contains("latency: not judged"), "{}", c.table());
    assert_eq!(c.loss_verdict, Some(Verdict::Ok));
}

#[test]
fn a_file_that_is_not_a_summary_is_an_error_naming_the_field() {
    let err = Figures::from_json(r#"{"setup_type": "baseline"}"#, None).unwrap_err();
    assert!(err.to_string().contains("sample_count"), "{err}");
    assert!(Figures::from_json("[1, 2]", None).is_err());
    let err = Figures::from_json(r#"{"sample_count": -1, "events_lost": 0}"#, None).unwrap_err();
    assert!(err.to_string().contains("invalid value"), "{err}");
}

/// Two targets of a `relay probe run --summary`, as it writes them.
const PROBES: &str = r#"{"targets": [
  {"target": "direct:9000", "sent": 100, "received": 98, "lost": 2,
   "rtt_ms": {"count": 98, "min": 240.0, "p50": 250.0, "p90": 260.0, "p99": 300.0, "max": 310.0,
              "mean": 252.0, "stddev": 12.0}},
  {"target": "relay:9000", "sent": 100, "received": 100, "lost": 0,
   "rtt_ms": {"count": 100, "min": 220.0, "p50": 228.0, "p90": 231.0, "p99": 240.0, "max": 250.0,
              "mean": 229.0, "stddev": 4.0}}],
  "count": 100}"#;

#[test]
fn probe_summaries_compare_by_target_with_rtt_as_the_latency() {
    let direct = Figures::from_json(PROBES, Some("direct:9000")).unwrap();
    let overlay = Figures::from_json(PROBES, Some("relay:9000")).unwrap();
    assert_eq!(direct.setup_type, "probe direct:9000");
    assert_eq!(direct.loss_pct, Some(2.0));
    let c = Comparison::of(direct, overlay);
    assert_eq!(c.difference_ms, Some(-23.0));
    assert_eq!(c.latency_verdict, Some(Verdict::Optimized));
    assert_eq!(c.loss_verdict, Some(Verdict::Optimized));
    assert_eq!(c.jitter_difference_ms, Some(-8.0));
    assert_eq!(c.p95_difference_ms, None, "probes have no p95");
    let err = Figures::from_json(PROBES, None).unwrap_err().to_string();
    assert!(
        err.contains("several targets (direct:9000, relay:9000)"),
        "{err}"
    );
    let err = Figures::from_json(PROBES, Some("x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no target \"x\""), "{err}");
}
