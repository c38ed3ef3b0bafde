//! CPU cores: which ones this process may run on, and pinning a thread to one.

use std::io;

/// Cores this process may run on, in order.
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Restricts the calling thread (and threads and processes it starts later) to `core`.
/// Async-signal-safe, so it may run in a `pre_exec` hook.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "core number out of range",
        ));
    }
    // SAFETY: as above; sched_setaffinity reads the set we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pins the calling thread to `core`, or to the last allowed core when `None`; returns the core.
/// The error names the cores there are.
pub fn pin_to(core: Option<usize>) -> Result<usize, String> {
    let cores = allowed_cores();
    let chosen = match core {
        Some(id) if cores.contains(&id) => id,
        Some(id) => return Err(format!("core {id}: no such core (have {cores:?})")),
        None => *cores
            .last()
            .ok_or("no CPU core is allowed for this process")?,
    };
    pin_current_thread(chosen).map_err(|e| format!("pinning to core {chosen}: {e}"))?;
    Ok(chosen)
}

/// Puts the calling thread under SCHED_FIFO `priority`; false when not allowed. Async-signal-
/// safe, so it may run in a `pre_exec` hook (the child then runs at that priority).
pub fn set_realtime(priority: libc::c_int) -> bool {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: changes only the calling thread's policy; the parameter lives across the call.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_a_thread_restricts_it_to_one_core() {
        let cores = allowed_cores();
        assert!(!cores.is_empty());
        let last = *cores.last().unwrap();
        std::thread::spawn(move || {
            assert_eq!(pin_to(None), Ok(last));
            assert_eq!(allowed_cores(), vec![last]);
            let err = pin_to(Some(100_000)).unwrap_err();
            assert!(err.contains("no such core"), "{err}");
        })
        .join()
        .unwrap();
    }
}
