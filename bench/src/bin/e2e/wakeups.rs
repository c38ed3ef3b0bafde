//! How late anything on the receiver's core gets to run while a path is measured (cyclictest's
//! method): a thread, pinned there at a real-time priority, sleeping to absolute deadlines
//! `WAKE_INTERVAL_US` apart on CLOCK_MONOTONIC until stopped; how late each wake-up came is the
//! sample. At SCHED_FIFO it preempts the simulator and the receiver the moment it wakes, so what
//! it measures is the core itself being unavailable (the host pausing the vCPU, interrupts), not
//! the bench's own work queued there; without the privilege it measures nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bench::e2e::floors::WAKE_INTERVAL_US;
use relay_core::stats::ComponentSummary;
use relay_host::cpu;

/// Samples kept at most (an hour of wake-ups); later ones are not recorded.
const MAX_SAMPLES: usize = 3_600_000_000 / WAKE_INTERVAL_US as usize;

fn monotonic_ns() -> i64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// The sleeping thread; [`Sleeper::finish`] stops it and summarises its lateness.
pub struct Sleeper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<Vec<i64>>>,
}

impl Sleeper {
    /// Starts sleeping on `core` (anywhere when `None`); measures nothing unless it may run at
    /// SCHED_FIFO (root).
    pub fn start(core: Option<usize>) -> Sleeper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // Unpinned it still measures, on whichever core the scheduler gives it.
            let _ = core.map(cpu::pin_current_thread);
            if !cpu::set_realtime(1) {
                return None;
            }
            let interval = WAKE_INTERVAL_US as i64 * 1000;
            let mut samples = Vec::with_capacity(60_000);
            let mut deadline = monotonic_ns() + interval;
            while !flag.load(Ordering::Relaxed) {
                let at = libc::timespec {
                    tv_sec: deadline / 1_000_000_000,
                    tv_nsec: deadline % 1_000_000_000,
                };
                // SAFETY: a valid timespec; TIMER_ABSTIME sleeps until it (EINTR only cuts it
                // short, which then counts as a wake-up on time).
                unsafe {
                    libc::clock_nanosleep(
                        libc::CLOCK_MONOTONIC,
                        libc::TIMER_ABSTIME,
                        &at,
                        std::ptr::null_mut(),
                    )
                };
                if samples.len() < MAX_SAMPLES {
                    samples.push((monotonic_ns() - deadline).max(0));
                }
                deadline += interval;
            }
            Some(samples)
        });
        Sleeper { stop, thread }
    }

    /// Stops the thread; its lateness (`None` without SCHED_FIFO, or if it never woke).
    pub fn finish(self) -> Option<ComponentSummary> {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = self.thread.join().ok()??;
        relay_core::stats::exact(&mut samples)
    }
}
