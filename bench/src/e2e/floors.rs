//! What this machine itself costs, for the targets it puts out of reach. A goal is judged out of
//! reach at a rate only with figures of the same run that no path could beat.
//!
//! CPU per message: a forwarder that sleeps between reads pays, whatever its own code does,
//! the wake-up, the TCP read and the UDP send (which on one host also wakes the receiver). The
//! sleeping-forwarder floor (`bench::sleep_floor`) pays only that: it passes the exchange's bytes
//! on undecrypted, one blocking read and one `sendmmsg` at a time. When it alone spends more per
//! message than the goal allows, the goal is out of reach for a design that sleeps on this
//! machine.
//!
//! Latency p99.9: every message's latency is the exchange's leg up to the relay's read, its dwell
//! in the relay, and the UDP leg from the relay's send stamp to the receive, which is the
//! kernel's and the receiver's time (its wake-up, its scheduling), not the relay's. The p99.9 of
//! the latencies is at least the p99.9 of the UDP legs alone, so when that is above the goal, the
//! relay would miss it even with no time of its own at all: the tail is the machine's.
//!
//! Throughput: no forwarder can pass on more than its source gives it. The simulator read
//! directly by the bench (no forwarder, no UDP, its core to itself) is that source's ceiling here;
//! when its ramp stops below the goal, no relay could be shown to reach the goal on this machine.

use super::render::fmt_rate;

/// Why a parked relay's CPU per message of at most `goal_us` is out of reach, if this run shows
/// it: the sleeping-forwarder floor spent `floor_us` per message, more than the goal.
pub fn cpu_out_of_reach(goal_us: f64, floor_us: f64) -> Option<String> {
    (floor_us > goal_us).then(|| {
        format!(
            "out of reach: the sleeping-forwarder floor alone spends {floor_us:.2} µs per \
             message, above the ≤ {goal_us:.2} µs allowed"
        )
    })
}

/// Why a relay p99.9 of at most `goal_us` is out of reach, if this run shows it: the p99.9 of
/// the relay's UDP legs (`leg_us`: its send stamp to the receive) is already above the goal.
pub fn p999_out_of_reach(goal_us: f64, leg_us: f64) -> Option<String> {
    (leg_us > goal_us).then(|| {
        format!(
            "out of reach: the UDP leg after the relay's send alone has p99.9 {leg_us:.0} µs, \
             above the ≤ {goal_us:.0} µs allowed"
        )
    })
}

/// Why a relay throughput of `goal_rate` msg/s is out of reach, if this run shows it: the
/// simulator read directly (no forwarder) sustained at most `source_rate` msg/s, below the goal.
pub fn throughput_out_of_reach(goal_rate: u64, source_rate: Option<u64>) -> Option<String> {
    let source = source_rate?;
    (source < goal_rate).then(|| {
        format!(
            "out of reach: the simulator read directly, with no forwarder, sustained only \
             {} msg/s",
            fmt_rate(source)
        )
    })
}
