//! Stopping on a signal: SIGINT, SIGTERM and SIGHUP only raise a flag, so a run can stop its
//! children, write its results and undo what it set up; a second signal ends the process at once
//! (exit status 130), for a user who means it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the handlers (once per process; later calls only return the flag).
pub fn catch_stop_signals() -> io::Result<Arc<AtomicBool>> {
    if let Some(flag) = STOP.get() {
        return Ok(flag.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        // Order matters: the shutdown hook checks the flag before the second hook raises it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone())?;
        signal_hook::flag::register(signal, flag.clone())?;
    }
    Ok(STOP.get_or_init(|| flag).clone())
}

/// True once a stop signal arrived after [`catch_stop_signals`].
pub fn stop_requested() -> bool {
    STOP.get().is_some_and(|flag| flag.load(Ordering::SeqCst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_raises_the_flag() {
        let flag = catch_stop_signals().unwrap();
        assert!(!stop_requested());
        // SAFETY: raise delivers SIGHUP to this process, whose handler only stores to atomics.
        assert_eq!(unsafe { libc::raise(SIGHUP) }, 0);
        assert!(flag.load(Ordering::SeqCst));
        assert!(stop_requested());
    }
}
