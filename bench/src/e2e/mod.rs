//! The end-to-end benchmark's report (`src/bin/e2e/` runs the measurements): the results of one
//! run ([`report`]: paths, runs, ramps, the targets judged on them), the machine's own floors
//! that put a target out of reach ([`floors`]) and their markdown form ([`render`]).

pub mod floors;
pub mod render;
pub mod report;

pub use report::{
    evaluate_targets, PathKind, Ramp, ReadSummary, Report, RunResult, Target, Verdict,
};

#[cfg(test)]
mod tests;
