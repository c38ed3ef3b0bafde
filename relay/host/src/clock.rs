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

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix time in seconds.
pub fn utc_timestamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rest = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rest / 3600,
        (rest % 3600) / 60
    )
}

/// [`utc_timestamp`] of now (CLOCK_REALTIME).
pub fn utc_now() -> String {
    utc_timestamp(realtime_ns() / 1_000_000_000)
}

#[cfg(test)]
mod tests {

    #[test]
    fn dates_are_civil() {
        assert_eq!(super::utc_timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc_timestamp(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc_timestamp(1_700_000_000), "2023-11-14 22:13 UTC");
    }

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
