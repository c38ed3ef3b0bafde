//! Relay planning (seed 001, "Shortcuts through Colocation Facilities"): from RTT samples between
//! nodes, which pairs a one-hop relay would make faster (triangle-inequality violations), through
//! which relay, by how much, and how few relays give most of the gain.
//!
//! * The direct RTT of a pair is the median of all its samples, in both directions.
//! * The relayed RTT of `src`-`dst` via `r` is `direct(src, r) + direct(r, dst)`; every node other
//!   than `src` and `dst` with both legs measured is a candidate (or only those in `relays`).
//! * The best relay has the smallest relayed RTT (ties: the first name); the improvement is
//!   `direct - relayed`, and a pair is improved when it is above 0.
//! * Relays are ranked by how many improved pairs they are the best relay for (ties by name);
//!   `gain_by_top_relays[k-1]` is the fraction of all pairs that some relay among the top `k`
//!   improves (the paper's Fig. 3); `thresholds` count pairs improved by at least 1, 5, 10, 20,
//!   50 and 100 ms (Fig. 4).
//!
//! Pure computation over [`Sample`]s; [`input`] reads them from CSV, `relay plan` prints the
//! result as a table or JSON.

pub mod input;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use input::{parse_csv, Input, InputError, Sample};

/// The improvement thresholds of the paper's Fig. 4, in ms.
pub const THRESHOLDS_MS: [f64; 6] = [1.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// One pair of nodes (named in order: `src` < `dst`) and its best one-hop detour.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairPlan {
    pub src: String,
    pub dst: String,
    /// Median of every sample of the pair, both directions.
    pub direct_ms: f64,
    pub samples: usize,
    /// Coefficient of variation of the pair's samples (population stddev / mean): how stable the
    /// path was over the samples; absent with fewer than two samples or a zero mean.
    pub rtt_cv: Option<f64>,
    /// The candidate with the smallest relayed RTT; absent when no candidate has both legs.
    pub best_relay: Option<String>,
    pub relayed_ms: Option<f64>,
    /// `direct_ms - relayed_ms` (negative: the detour is slower).
    pub improvement_ms: Option<f64>,
}

impl PairPlan {
    pub fn improved(&self) -> bool {
        self.improvement_ms.is_some_and(|i| i > 0.0)
    }
}

/// A relay and the improved pairs it is the best relay for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RelayRank {
    pub relay: String,
    pub best_for_improved_pairs: usize,
}

/// Pairs improved by at least `min_improvement_ms`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Threshold {
    pub min_improvement_ms: f64,
    pub pairs: usize,
    pub fraction: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub nodes: Vec<String>,
    /// Every measured pair, the most improved first (then by name).
    pub pairs: Vec<PairPlan>,
    pub improved_pairs: usize,
    /// Improved pairs over all measured pairs.
    pub improved_fraction: f64,
    pub relays: Vec<RelayRank>,
    /// Index `k - 1`: the fraction of all pairs some relay among the top `k` improves.
    pub gain_by_top_relays: Vec<f64>,
    pub thresholds: Vec<Threshold>,
    /// Input rows without an RTT (rounds that got no reply): in no figure, counted here.
    pub rows_without_rtt: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("no RTT samples")]
    NoSamples,
    #[error("relay {0:?} is not a node of the input")]
    UnknownRelay(String),
}

/// Median of `values` (the mean of the middle two for an even count); sorts `values`.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn coefficient_of_variation(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return None;
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Some(variance.sqrt() / mean)
}

/// The pair's key, its two names in order.
fn key<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Plans relays for `samples`; `relays` restricts the candidates (every node when `None`).
pub fn plan(samples: &[Sample], relays: Option<&[String]>) -> Result<Plan, PlanError> {
    if samples.is_empty() {
        return Err(PlanError::NoSamples);
    }
    let mut by_pair: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for s in samples {
        by_pair
            .entry(key(&s.src, &s.dst))
            .or_default()
            .push(s.rtt_ms);
    }
    let nodes: BTreeSet<&str> = by_pair.keys().flat_map(|&(a, b)| [a, b]).collect();
    let candidates: Vec<&str> = match relays {
        None => nodes.iter().copied().collect(),
        Some(list) => {
            let mut chosen = BTreeSet::new();
            for r in list {
                let node = nodes
                    .get(r.as_str())
                    .ok_or_else(|| PlanError::UnknownRelay(r.clone()))?;
                chosen.insert(*node);
            }
            chosen.into_iter().collect()
        }
    };
    let mut direct: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    let mut pairs = Vec::with_capacity(by_pair.len());
    for (&(src, dst), rtts) in &mut by_pair {
        let cv = coefficient_of_variation(rtts);
        let d = median(rtts);
        direct.insert((src, dst), d);
        pairs.push((src, dst, d, rtts.len(), cv));
    }
    let relayed = |src: &str, dst: &str, r: &str| -> Option<f64> {
        if r == src || r == dst {
            return None;
        }
        Some(direct.get(&key(src, r))? + direct.get(&key(r, dst))?)
    };
    let mut best_counts: BTreeMap<&str, usize> = candidates.iter().map(|&c| (c, 0)).collect();
    let mut plans = Vec::with_capacity(pairs.len());
    for &(src, dst, direct_ms, samples, rtt_cv) in &pairs {
        let best = candidates
            .iter()
            .filter_map(|&r| relayed(src, dst, r).map(|ms| (r, ms)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
        let plan = PairPlan {
            src: src.to_string(),
            dst: dst.to_string(),
            direct_ms,
            samples,
            rtt_cv,
            best_relay: best.map(|(r, _)| r.to_string()),
            relayed_ms: best.map(|(_, ms)| ms),
            improvement_ms: best.map(|(_, ms)| direct_ms - ms),
        };
        if let (true, Some((r, _))) = (plan.improved(), best) {
            *best_counts.entry(r).or_default() += 1;
        }
        plans.push(plan);
    }
    let mut ranked: Vec<(&str, usize)> = best_counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total = plans.len() as f64;
    // For each pair, the best rank (0-based) among the relays that improve it.
    let rank_of: BTreeMap<&str, usize> = ranked.iter().enumerate().map(|(i, r)| (r.0, i)).collect();
    let mut first_improving_rank = vec![0usize; ranked.len() + 1];
    for &(src, dst, direct_ms, _, _) in &pairs {
        let first = candidates
            .iter()
            .filter(|&&r| relayed(src, dst, r).is_some_and(|ms| ms < direct_ms))
            .map(|r| rank_of[r])
            .min();
        if let Some(rank) = first {
            first_improving_rank[rank] += 1;
        }
    }
    let mut covered = 0usize;
    let gain_by_top_relays = first_improving_rank[..ranked.len()]
        .iter()
        .map(|&n| {
            covered += n;
            covered as f64 / total
        })
        .collect();
    let improved_pairs = plans.iter().filter(|p| p.improved()).count();
    let thresholds = THRESHOLDS_MS
        .iter()
        .map(|&t| {
            let n = plans
                .iter()
                .filter(|p| p.improvement_ms.is_some_and(|i| i >= t))
                .count();
            Threshold {
                min_improvement_ms: t,
                pairs: n,
                fraction: n as f64 / total,
            }
        })
        .collect();
    plans.sort_by(|a, b| {
        let gain = |p: &PairPlan| p.improvement_ms.unwrap_or(f64::NEG_INFINITY);
        gain(b)
            .total_cmp(&gain(a))
            .then_with(|| (&a.src, &a.dst).cmp(&(&b.src, &b.dst)))
    });
    Ok(Plan {
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        pairs: plans,
        improved_pairs,
        improved_fraction: improved_pairs as f64 / total,
        relays: ranked
            .into_iter()
            .map(|(relay, n)| RelayRank {
                relay: relay.to_string(),
                best_for_improved_pairs: n,
            })
            .collect(),
        gain_by_top_relays,
        thresholds,
        rows_without_rtt: 0,
    })
}

impl Plan {
    /// The plan for people: the totals, the relays by rank with the cumulative gain, the
    /// thresholds, then the `top` most improved pairs.
    pub fn table(&self, top: usize) -> String {
        let pct = |f: f64| format!("{:.1}%", f * 100.0);
        let mut out = format!(
            "{} nodes, {} pairs: {} improved by a one-hop relay ({})\n",
            self.nodes.len(),
            self.pairs.len(),
            self.improved_pairs,
            pct(self.improved_fraction)
        );
        if self.rows_without_rtt > 0 {
            out.push_str(&format!(
                "({} input rows had no RTT: rounds without a reply)\n",
                self.rows_without_rtt
            ));
        }
        out.push('\n');
        out.push_str("| rank | relay | best relay for | pairs improved by the top k |\n|---:|---|---:|---:|\n");
        for (i, (r, gain)) in self.relays.iter().zip(&self.gain_by_top_relays).enumerate() {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                i + 1,
                r.relay,
                r.best_for_improved_pairs,
                pct(*gain)
            ));
        }
        out.push_str("\n| improved by at least | pairs | share |\n|---:|---:|---:|\n");
        for t in &self.thresholds {
            out.push_str(&format!(
                "| {} ms | {} | {} |\n",
                t.min_improvement_ms,
                t.pairs,
                pct(t.fraction)
            ));
        }
        out.push_str("\n| src | dst | direct ms | best relay | relayed ms | improvement ms | samples | RTT CV |\n|---|---|---:|---|---:|---:|---:|---:|\n");
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        for p in self.pairs.iter().take(top) {
            out.push_str(&format!(
                "| {} | {} | {:.3} | {} | {} | {} | {} | {} |\n",
                p.src,
                p.dst,
                p.direct_ms,
                p.best_relay.as_deref().unwrap_or("-"),
                ms(p.relayed_ms),
                ms(p.improvement_ms),
                p.samples,
                p.rtt_cv.map_or("-".to_string(), |cv| format!("{cv:.3}"))
            ));
        }
        if self.pairs.len() > top {
            out.push_str(&format!(
                "({} more pairs: --top N, or --format json)\n",
                self.pairs.len() - top
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
