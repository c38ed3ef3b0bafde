//! What this machine itself costs, for the targets it puts out of reach. A goal is judged out of
//! reach at a rate only with figures of the same run that no path could beat.
//!
//! CPU per message: a forwarder that sleeps between reads cannot spend less than its kernel time
//! per message (its wake-up, the TCP read, the UDP send, which on one host also wakes the
//! receiver), whatever its own code does. When every forwarder measured (the parked relay, the
//! reference, websocat), each doing that work its own way, spends more in the kernel alone than
//! the goal allows in all, the goal is out of reach for a design that sleeps on this machine.
//!
//! Latency p99.9: every message's latency is its time outside the relay (the exchange's TCP up
//! to the relay's read, the UDP leg from its send to the receive) plus its dwell inside. The
//! p99.9 of the latencies is at least the p99.9 of the time outside alone, so when that is above
//! the goal, the relay would miss it even with no dwell at all: the tail is the machine's
//! (the simulator's and the receiver's scheduling, the kernel), not the relay's code.

use super::render::fmt_rate;

/// Why a parked relay's CPU per message of at most `goal_us` is out of reach at `rate`, if this
/// run shows it: `kernels` (each forwarder measured, the parked relay among them: its label and
/// kernel µs per message, CPU x system share) are all above the goal.
pub fn cpu_out_of_reach(rate: u64, goal_us: f64, kernels: &[(&str, f64)]) -> Option<String> {
    if kernels.is_empty() || kernels.iter().any(|&(_, k)| k <= goal_us) {
        return None;
    }
    let spent: Vec<String> = kernels
        .iter()
        .map(|(label, k)| format!("{label} {k:.1}"))
        .collect();
    Some(format!(
        "out of reach at {} msg/s for a forwarder that sleeps between reads: the kernel time \
         alone per message is above the ≤ {goal_us:.1} µs the goal allows for every forwarder \
         measured ({} µs: the wake-up, the TCP read and the UDP send, which on one host also \
         wakes the receiver)",
        fmt_rate(rate),
        spent.join(", ")
    ))
}

/// Why a relay p99.9 of at most `goal_us` is out of reach at `rate`, if this run shows it: the
/// p99.9 of the relay's time outside its own code (`outside_us`) is already above the goal.
pub fn p999_out_of_reach(rate: u64, goal_us: f64, outside_us: f64) -> Option<String> {
    (outside_us > goal_us).then(|| {
        format!(
            "out of reach at {} msg/s: outside the relay's own code alone (latency − dwell: the \
             exchange's TCP up to its read, the UDP leg from its send) the p99.9 is \
             {outside_us:.0} µs, above the ≤ {goal_us:.0} µs the goal allows in all",
            fmt_rate(rate)
        )
    })
}
