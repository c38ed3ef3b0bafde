//! What this machine itself costs, for the targets it puts out of reach. A goal is judged out of
//! reach at a rate only with a figure of the same run that no path could beat.
//!
//! CPU per message: a forwarder that sleeps between reads cannot spend less than its kernel time
//! (its wake-up, the TCP read, the UDP send, which on one host also wakes the receiver), whatever
//! its own code does. So when the parked relay's kernel time alone is above the goal, the goal
//! is out of reach for a parked design on this machine.

use super::render::fmt_rate;

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
