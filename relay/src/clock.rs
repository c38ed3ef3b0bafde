//! The one clock every timestamp on the wire uses: CLOCK_REALTIME in nanoseconds since the epoch.
//!
//! Realtime (not monotonic) because stamps are compared across hosts kept in sync by NTP/PTP,
//! and because kernel socket timestamps use the same clock.

/// CLOCK_REALTIME now, in ns (a vDSO call, no syscall).
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn agrees_with_system_time() {
        let ours = super::realtime_ns();
        let std = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(ours.abs_diff(std) < 1_000_000_000, "{ours} vs {std}");
    }
}
