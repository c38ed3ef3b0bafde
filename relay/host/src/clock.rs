//! The clocks. CLOCK_REALTIME is the one every timestamp on the wire uses: stamps are compared
//! across hosts kept in sync by NTP/PTP, and kernel socket timestamps use the same clock.

/// `clock` now, in ns (a vDSO call for the clocks below, no syscall).
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_REALTIME now, in ns since the Unix epoch.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CLOCK_MONOTONIC now, in ns (the clock absolute timers and delay lines run on).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time the calling thread has used, in ns.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

#[cfg(test)]
mod tests {
    #[test]
    fn realtime_agrees_with_system_time() {
        let ours = super::realtime_ns();
        let std = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(ours.abs_diff(std) < 1_000_000_000, "{ours} vs {std}");
        let a = super::monotonic_ns();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(2) {}
        assert!(super::monotonic_ns() - a >= 2_000_000);
        assert!(super::thread_cpu_ns() > 0);
    }
}
