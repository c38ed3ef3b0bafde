//! The machine's own wake-up lateness on each core, measured before the paths (cyclictest's
//! method): one thread per core, pinned, sleeping to absolute deadlines `WAKE_INTERVAL_US` apart
//! on CLOCK_MONOTONIC, all cores at once; how late each wake-up came is the sample.

use std::time::Duration;

use anyhow::{bail, Context};
use bench::e2e::floors::WAKE_INTERVAL_US;
use bench::e2e::WakeLatency;
use relay_host::cpu;

fn monotonic_ns() -> i64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// Sleeps to `count` deadlines on `core`; the lateness of each wake-up, ns.
fn sleep_on(core: usize, count: usize) -> anyhow::Result<Vec<i64>> {
    cpu::pin_current_thread(core).with_context(|| format!("pinning to core {core}"))?;
    let interval = WAKE_INTERVAL_US as i64 * 1000;
    let mut samples = Vec::with_capacity(count);
    let mut deadline = monotonic_ns() + interval;
    for _ in 0..count {
        let at = libc::timespec {
            tv_sec: deadline / 1_000_000_000,
            tv_nsec: deadline % 1_000_000_000,
        };
        // SAFETY: a valid timespec; TIMER_ABSTIME sleeps until it (EINTR only cuts it short,
        // which then counts as an early, zero-late wake-up).
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &at,
                std::ptr::null_mut(),
            )
        };
        samples.push((monotonic_ns() - deadline).max(0));
        deadline += interval;
    }
    Ok(samples)
}

/// `secs` of sleeping and waking on each of `cores`, all at once.
pub fn measure(cores: &[usize], secs: f64) -> anyhow::Result<Vec<WakeLatency>> {
    let count = (Duration::from_secs_f64(secs).as_micros() as u64 / WAKE_INTERVAL_US).max(1);
    let handles: Vec<_> = cores
        .iter()
        .map(|&core| {
            (
                core,
                std::thread::spawn(move || sleep_on(core, count as usize)),
            )
        })
        .collect();
    let mut out = Vec::new();
    for (core, handle) in handles {
        let Ok(samples) = handle.join() else {
            bail!("the wake-up probe on core {core} panicked");
        };
        let lateness = relay_core::stats::exact(&mut samples?)
            .with_context(|| format!("no wake-up measured on core {core}"))?;
        out.push(WakeLatency {
            core,
            interval_us: WAKE_INTERVAL_US,
            lateness,
        });
    }
    Ok(out)
}
