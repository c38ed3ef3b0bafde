//! What this machine itself costs, measured in the same run, for the targets it puts out of
//! reach: how late a thread that sleeps wakes up on each core (cyclictest's method), and the
//! kernel's share of a forwarder's CPU.
//!
//! A goal is judged out of reach at a rate only with a measurement that no path could beat:
//! - p99.9: where the receiver sleeps between messages (≤ [`SLEEPING_RECEIVER_MAX`] per receive
//!   call), every message waits for a wake-up on the receiver's core, so a path's p99.9 cannot
//!   be below that core's wake-up tail (p99.9 minus p50 of the sleeper's lateness).
//! - CPU per message: a forwarder that sleeps between reads cannot spend less than its kernel
//!   time (its wake-up, the TCP read, the UDP send, which on one host also wakes the receiver),
//!   whatever its own code does.

use relay_core::stats::ComponentSummary;
use serde::{Deserialize, Serialize};

use super::render::fmt_rate;

/// Period of the sleeping thread, µs: a message every 1 ms at 1k msg/s.
pub const WAKE_INTERVAL_US: u64 = 1_000;

/// Messages per receive call at or below which the bench receiver counts as asleep between
/// arrivals (a burst of two is one wake-up).
pub const SLEEPING_RECEIVER_MAX: f64 = 2.5;

/// How late a thread sleeping [`WAKE_INTERVAL_US`] at a time on `core` woke up (absolute
/// deadlines on CLOCK_MONOTONIC, µs past each deadline).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WakeLatency {
    pub core: usize,
    pub interval_us: u64,
    pub lateness: ComponentSummary,
}

impl WakeLatency {
    /// What the machine adds at p99.9 on top of an ordinary wake-up: p99.9 minus p50.
    pub fn tail_us(&self) -> f64 {
        (self.lateness.p999_us - self.lateness.p50_us).max(0.0)
    }
}

/// The wake-up measured on the receiver's core: `bench_core`'s, or with no pinning the core
/// with the smaller tail (the receiver may run on either).
pub fn receiver_wake(wakeups: &[WakeLatency], bench_core: Option<usize>) -> Option<&WakeLatency> {
    match bench_core {
        Some(core) => wakeups.iter().find(|w| w.core == core),
        None => wakeups
            .iter()
            .min_by(|a, b| a.tail_us().total_cmp(&b.tail_us())),
    }
}

/// Why a relay p99.9 of at most `goal_us` is out of reach at `rate`, if this run shows it:
/// the receiver slept between messages (`per_receive`) and its core's wake-up tail alone is
/// longer than the goal.
pub fn p999_out_of_reach(
    rate: u64,
    goal_us: f64,
    per_receive: Option<f64>,
    wake: Option<&WakeLatency>,
) -> Option<String> {
    let (per_receive, wake) = (per_receive?, wake?);
    (per_receive <= SLEEPING_RECEIVER_MAX && wake.tail_us() > goal_us).then(|| {
        format!(
            "out of reach at {} msg/s: the receiver sleeps between messages ({per_receive:.1} per \
             receive call), and a thread sleeping {} ms at a time on its core {} woke {:.0} µs \
             late at p99.9 and {:.0} µs at p50: {:.0} µs of tail against the ≤ {goal_us:.0} µs \
             the goal needs",
            fmt_rate(rate),
            wake.interval_us as f64 / 1000.0,
            wake.core,
            wake.lateness.p999_us,
            wake.lateness.p50_us,
            wake.tail_us()
        )
    })
}

/// Why a parked relay's CPU per message of at most `goal_us` is out of reach at `rate`, if this
/// run shows it: its kernel time alone (`cpu_us` x `sys_share`) is above the goal.
/// `reference_kernel_us` (the reference's kernel time) shows that every forwarder pays it.
pub fn cpu_out_of_reach(
    rate: u64,
    goal_us: f64,
    cpu_us: Option<f64>,
    sys_share: Option<f64>,
    reference_kernel_us: Option<f64>,
) -> Option<String> {
    let kernel_us = cpu_us? * sys_share?;
    (kernel_us > goal_us).then(|| {
        format!(
            "out of reach at {} msg/s for a forwarder that sleeps between reads: the parked \
             relay's kernel time alone is {kernel_us:.1} µs/msg, above the ≤ {goal_us:.1} µs \
             the goal allows (its wake-up, the TCP read and the UDP send, which on one host \
             also wakes the receiver{})",
            fmt_rate(rate),
            reference_kernel_us.map_or_else(String::new, |r| format!(
                "; the reference spends {r:.1} µs/msg in the kernel"
            ))
        )
    })
}
