//! The eBPF stamper benchmark's pieces (`src/bin/ebpf/` runs the measurements): the report
//! ([`report`]: samples, medians, paired ratios, per-packet cost, verdicts), its markdown form
//! ([`render`]), the hook names in its JSON ([`hook_serde`]) and the null program of the control
//! runs ([`null_prog`]).

pub mod hook_serde;
pub mod null_prog;
pub mod render;
pub mod report;

pub use report::{
    judge_cost, Config, CostTarget, CostVerdict, Counters, EbpfReport, HookCost, Program, Row,
    Sample, Spread, COST_GOAL_NS,
};

#[cfg(test)]
mod tests;
