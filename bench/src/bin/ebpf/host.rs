//! What the host counts for us: kernel BPF statistics being on, a thread's context switches, the
//! ksoftirqd threads' run time, the namespace's UDP socket-buffer drops.

use anyhow::{bail, Context};

/// `kernel.bpf_stats_enabled` is 1 (someone, maybe us, has BPF run-time statistics on).
pub fn stats_enabled_host() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
}

/// Voluntary and involuntary context switches of the calling thread so far.
pub fn thread_switches() -> (u64, u64) {
    // SAFETY: an all-zero rusage is valid; getrusage writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (usage.ru_nvcsw as u64, usage.ru_nivcsw as u64)
}

/// The ksoftirqd threads (one per CPU): softirq work the kernel defers out of the interrupted
/// task runs there.
pub fn softirqd_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}

/// Summed run time in ns (`/proc/PID/schedstat`, first field) of `pids`.
pub fn run_time_ns(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// `Udp: RcvbufErrors` of the calling thread's network namespace.
pub fn udp_rcvbuf_errors() -> anyhow::Result<u64> {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")
        .context("reading /proc/thread-self/net/snmp")?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        bail!("no Udp lines in /proc/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .context("no Udp RcvbufErrors in /proc/net/snmp")
}
