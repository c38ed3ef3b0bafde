//! What this machine itself costs, measured in the same run, for the targets it puts out of
//! reach: how late a thread that sleeps on the receiver's core wakes up while each path runs
//! (cyclictest's method), and the kernel's share of a forwarder's CPU.
//!
//! A goal is judged out of reach at a rate only with a measurement that no path could beat:
//! - p99.9: every message is forwarded on the forwarder's core and received on the bench
//!   receiver's. While the relay's run went on, a thread sleeping [`WAKE_INTERVAL_US`] at a time
//!   on each at SCHED_FIFO (it preempts everything else there) sampled how long that core was
//!   unavailable to anyone: the host pausing the vCPU, interrupts. A message that meets such a
//!   stall waits out the rest of it, and the sleeper's wake-ups and the messages meet the stalls
//!   alike (the share of either delayed beyond `d` is the stalls' total length beyond `d` over
//!   the run's). So if a sleeper's p99.9 lateness beyond its p50 (the tail) is longer than the
//!   goal, a p99.9 within the goal was out of reach in that run, whatever the path.
//! - CPU per message: a forwarder that sleeps between reads cannot spend less than its kernel
//!   time (its wake-up, the TCP read, the UDP send, which on one host also wakes the receiver),
//!   whatever its own code does.

use relay_core::stats::ComponentSummary;

use super::render::fmt_rate;

/// Period of the sleeping thread, µs.
pub const WAKE_INTERVAL_US: u64 = 1_000;

/// What the machine added at p99.9 on top of an ordinary wake-up: p99.9 minus p50 lateness.
pub fn wake_tail_us(lateness: &ComponentSummary) -> f64 {
    (lateness.p999_us - lateness.p50_us).max(0.0)
}

/// Why a relay p99.9 of at most `goal_us` was out of reach at `rate`, if the run shows it: the
/// wake-up tail of a core the relay's messages cross (`wakes`: the core's name and what its
/// sleeper measured during the relay's run) was longer than the goal. The longer tail is named.
pub fn p999_out_of_reach(
    rate: u64,
    goal_us: f64,
    wakes: &[(&str, Option<&ComponentSummary>)],
) -> Option<String> {
    let (core, wake) = wakes
        .iter()
        .filter_map(|&(core, wake)| Some((core, wake?)))
        .max_by(|a, b| wake_tail_us(a.1).total_cmp(&wake_tail_us(b.1)))?;
    let tail = wake_tail_us(wake);
    (tail > goal_us).then(|| {
        format!(
            "out of reach at {} msg/s: during the relay's run a real-time thread sleeping {} ms \
             at a time on the {core} core woke {:.0} µs late at p99.9 and {:.0} µs at p50: the \
             core stalled {tail:.0} µs for 0.1% of the run, against the ≤ {goal_us:.0} µs the \
             goal needs",
            fmt_rate(rate),
            WAKE_INTERVAL_US as f64 / 1000.0,
            wake.p999_us,
            wake.p50_us,
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
