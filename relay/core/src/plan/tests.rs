use std::collections::HashMap;

use super::*;
use crate::rng::Rng;

fn sample(src: &str, dst: &str, rtt_ms: f64) -> Sample {
    Sample {
        src: src.into(),
        dst: dst.into(),
        rtt_ms,
    }
}

/// Tokyo-Frankfurt direct 240 ms; via Singapore 70 + 160 = 230 (10 ms better); via Virginia
/// 150 + 90 = 240 (no better). Singapore-Virginia direct 220 is beaten via Tokyo (70 + 150).
fn four_nodes() -> Vec<Sample> {
    vec![
        sample("tokyo", "frankfurt", 238.0),
        sample("frankfurt", "tokyo", 242.0), // median of both directions: 240
        sample("tokyo", "singapore", 70.0),
        sample("singapore", "frankfurt", 160.0),
        sample("tokyo", "virginia", 150.0),
        sample("virginia", "frankfurt", 90.0),
        sample("singapore", "virginia", 220.0),
    ]
}

#[test]
fn a_hand_computed_mesh() {
    let plan = plan(&four_nodes(), None).unwrap();
    assert_eq!(plan.nodes, ["frankfurt", "singapore", "tokyo", "virginia"]);
    assert_eq!(plan.pairs.len(), 6);
    let pair = |a: &str, b: &str| {
        plan.pairs
            .iter()
            .find(|p| p.src == a && p.dst == b)
            .unwrap()
    };
    let ft = pair("frankfurt", "tokyo");
    assert_eq!(ft.direct_ms, 240.0);
    assert_eq!(ft.samples, 2);
    assert_eq!(ft.best_relay.as_deref(), Some("singapore"));
    assert_eq!(ft.relayed_ms, Some(230.0));
    assert_eq!(ft.improvement_ms, Some(10.0));
    // population stddev of 238, 242 is 2; / 240.
    assert!((ft.rtt_cv.unwrap() - 2.0 / 240.0).abs() < 1e-12);
    let sv = pair("singapore", "virginia");
    assert_eq!(sv.best_relay.as_deref(), Some("tokyo"));
    assert_eq!(
        sv.improvement_ms,
        Some(0.0),
        "220 vs 70 + 150: equal is not improved"
    );
    assert!(!sv.improved());
    // Every other pair: the detour is slower (e.g. tokyo-singapore 70 vs 160 + 240).
    assert_eq!(plan.improved_pairs, 1);
    assert_eq!(plan.improved_fraction, 1.0 / 6.0);
    assert_eq!(plan.pairs[0].src, "frankfurt", "the most improved first");
    assert_eq!(
        plan.relays[0],
        RelayRank {
            relay: "singapore".into(),
            best_for_improved_pairs: 1
        }
    );
    assert_eq!(plan.relays.len(), 4);
    assert_eq!(plan.relays[1].relay, "frankfurt", "ties by name");
    assert_eq!(plan.gain_by_top_relays, [1.0 / 6.0; 4]);
    let t: Vec<usize> = plan.thresholds.iter().map(|t| t.pairs).collect();
    assert_eq!(t, [1, 1, 1, 0, 0, 0]);
    let table = plan.table(2);
    assert!(
        table.contains("4 nodes, 6 pairs: 1 improved by a one-hop relay (16.7%)"),
        "{table}"
    );
    assert!(
        table
            .contains("| frankfurt | tokyo | 240.000 | singapore | 230.000 | 10.000 | 2 | 0.008 |"),
        "{table}"
    );
    assert!(table.contains("(4 more pairs"), "{table}");
}

#[test]
fn restricting_the_relays_restricts_the_candidates() {
    let plan = plan(&four_nodes(), Some(&["virginia".to_string()])).unwrap();
    assert_eq!(plan.improved_pairs, 0);
    assert_eq!(plan.relays.len(), 1);
    let ft = plan
        .pairs
        .iter()
        .find(|p| p.src == "frankfurt" && p.dst == "tokyo")
        .unwrap();
    assert_eq!(ft.best_relay.as_deref(), Some("virginia"));
    assert_eq!(ft.improvement_ms, Some(0.0));
    let fv = plan
        .pairs
        .iter()
        .find(|p| p.dst == "virginia" && p.src == "frankfurt")
        .unwrap();
    assert_eq!(fv.best_relay, None, "virginia cannot relay its own pair");
    assert_eq!(
        super::plan(&four_nodes(), Some(&["osaka".to_string()])),
        Err(PlanError::UnknownRelay("osaka".into()))
    );
    assert_eq!(super::plan(&[], None), Err(PlanError::NoSamples));
}

/// The same definitions, computed another way: a full matrix with `NaN` for unmeasured pairs,
/// every relay tried for every ordered pair, medians by sorting a copy.
struct Naive {
    names: Vec<String>,
    rtt: Vec<Vec<f64>>,
}

impl Naive {
    fn new(samples: &[Sample]) -> Naive {
        let mut names: Vec<String> = samples
            .iter()
            .flat_map(|s| [s.src.clone(), s.dst.clone()])
            .collect();
        names.sort();
        names.dedup();
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let n = names.len();
        let mut lists = vec![vec![Vec::new(); n]; n];
        for s in samples {
            let (a, b) = (index[s.src.as_str()], index[s.dst.as_str()]);
            lists[a][b].push(s.rtt_ms);
            lists[b][a].push(s.rtt_ms);
        }
        let rtt = lists
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|mut l| {
                        if l.is_empty() {
                            return f64::NAN;
                        }
                        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
                        let m = l.len();
                        if m % 2 == 1 {
                            l[m / 2]
                        } else {
                            (l[m / 2 - 1] + l[m / 2]) / 2.0
                        }
                    })
                    .collect()
            })
            .collect();
        Naive { names, rtt }
    }

    /// Best relayed RTT of (a, b) over `relays`, with the relay.
    fn best(&self, a: usize, b: usize) -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        for r in 0..self.names.len() {
            let via = self.rtt[a][r] + self.rtt[r][b];
            if r == a || r == b || via.is_nan() {
                continue;
            }
            if best.is_none_or(|(_, b)| via < b) {
                best = Some((r, via));
            }
        }
        best
    }
}

#[test]
fn random_meshes_agree_with_a_naive_computation() {
    let mut rng = Rng::seeded(7, "plan", 0);
    for round in 0..40 {
        let nodes = 3 + (rng.next_u64() % 9) as usize;
        let mut samples = Vec::new();
        for a in 0..nodes {
            for b in 0..nodes {
                // Some pairs unmeasured, some with several samples in either direction.
                if a == b || rng.chance(20) {
                    continue;
                }
                for _ in 0..1 + rng.next_u64() % 3 {
                    let rtt = 1.0 + (rng.next_u64() % 300_000) as f64 / 1000.0;
                    samples.push(sample(&format!("n{a:02}"), &format!("n{b:02}"), rtt));
                }
            }
        }
        if samples.is_empty() {
            continue;
        }
        let naive = Naive::new(&samples);
        let got = plan(&samples, None).unwrap();
        let n = naive.names.len();
        let mut measured = 0;
        let mut improved = 0;
        let mut thresholds = [0usize; 6];
        let mut best_counts = vec![0usize; n];
        for a in 0..n {
            for b in a + 1..n {
                if naive.rtt[a][b].is_nan() {
                    continue;
                }
                measured += 1;
                let p = got
                    .pairs
                    .iter()
                    .find(|p| p.src == naive.names[a] && p.dst == naive.names[b])
                    .unwrap_or_else(|| panic!("round {round}: pair {a}-{b} missing"));
                assert_eq!(p.direct_ms, naive.rtt[a][b]);
                match naive.best(a, b) {
                    None => assert_eq!(p.relayed_ms, None),
                    Some((r, via)) => {
                        assert_eq!(p.relayed_ms, Some(via), "round {round}");
                        let gain = naive.rtt[a][b] - via;
                        if gain > 0.0 {
                            improved += 1;
                            best_counts[r] += 1;
                        }
                        for (i, t) in THRESHOLDS_MS.iter().enumerate() {
                            thresholds[i] += usize::from(gain >= *t);
                        }
                    }
                }
            }
        }
        assert_eq!(got.pairs.len(), measured, "round {round}");
        assert_eq!(got.improved_pairs, improved, "round {round}");
        let t: Vec<usize> = got.thresholds.iter().map(|t| t.pairs).collect();
        assert_eq!(t, thresholds, "round {round}");
        // The ranking's counts, and the cumulative gain of its top k by brute force.
        let mut counts: Vec<usize> = got
            .relays
            .iter()
            .map(|r| r.best_for_improved_pairs)
            .collect();
        let mut expected_counts = best_counts.clone();
        expected_counts.sort_unstable_by(|a, b| b.cmp(a));
        counts.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(counts, expected_counts, "round {round}");
        for k in 1..=got.relays.len() {
            let top: Vec<usize> = got.relays[..k]
                .iter()
                .map(|r| naive.names.iter().position(|n| *n == r.relay).unwrap())
                .collect();
            let mut covered = 0;
            for a in 0..n {
                for b in a + 1..n {
                    let direct = naive.rtt[a][b];
                    if !direct.is_nan()
                        && top.iter().any(|&r| {
                            r != a && r != b && naive.rtt[a][r] + naive.rtt[r][b] < direct
                        })
                    {
                        covered += 1;
                    }
                }
            }
            let expected = covered as f64 / measured as f64;
            assert!(
                (got.gain_by_top_relays[k - 1] - expected).abs() < 1e-12,
                "round {round} k {k}"
            );
        }
    }
}

#[test]
fn csv_input_names_its_columns_and_its_bad_lines() {
    let parse = |text: &[u8]| {
        let mut input = Input::default();
        parse_csv(text, &mut input).map(|()| input)
    };
    let text = "time,dst,src,rtt_ms\n1,b,a,10.5\n2, a , b ,11\n3,a,b,\n";
    let input = parse(text.as_bytes()).unwrap();
    assert_eq!(
        input.samples,
        [sample("a", "b", 10.5), sample("b", "a", 11.0)]
    );
    assert_eq!(
        input.rows_without_rtt, 1,
        "an empty rtt_ms: a round without replies"
    );
    // Several files add up.
    let mut both = input.clone();
    parse_csv(b"src,dst,rtt_ms\nc,a,3\n", &mut both).unwrap();
    assert_eq!(both.samples.len(), 3);
    let missing = parse(b"src,dst,rtt\na,b,1\n").unwrap_err();
    assert!(missing.to_string().contains("\"rtt_ms\""), "{missing}");
    for (bad, says) in [
        (
            "src,dst,rtt_ms\na,b,1\na,b,fast\n",
            "line 3: rtt_ms \"fast\"",
        ),
        (
            "src,dst,rtt_ms\na,a,1\n",
            "line 2: src and dst are both \"a\"",
        ),
        ("src,dst,rtt_ms\na,b,-1\n", "not a non-negative"),
        ("src,dst,rtt_ms\na,b,NaN\n", "not a non-negative"),
        ("src,dst,rtt_ms\n,b,1\n", "empty node name"),
        ("src,dst,rtt_ms\na,b\n", "CSV"),
    ] {
        let err = parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
    assert!(parse(b"src,dst,rtt_ms\n").unwrap().samples.is_empty());
}
