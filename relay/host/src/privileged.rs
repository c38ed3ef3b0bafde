//! Tests that need root (network namespaces, AF_PACKET, BPF) never pass silently: where they
//! cannot run they print a loud SKIPPED line, and under `CI=true` (CI runs as root) they fail.

use std::io::Write;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

static PRIVILEGED: Mutex<()> = Mutex::new(());

/// Why this process cannot run privileged tests (not root, no `ip`), if it cannot.
pub fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root: network namespaces, AF_PACKET and BPF programs".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("needs iproute2 (`ip`)".into());
    }
    None
}

/// Fails under CI=true, otherwise says loudly that `test` did not run and why.
pub fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: cannot run under CI: {reason}");
    }
    // Straight to the stderr file descriptor: the test harness captures eprintln! of a passing
    // test, and a skip must not pass silently.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!! {test}: SKIPPED ({reason}) !!!!!\n"
    );
}

/// The lock a privileged test holds while it runs (one at a time, so their timings do not
/// disturb each other), or `None` after [`skip_or_fail`] when it cannot run: because of
/// [`missing`], or `also_missing` (a requirement of the caller's, e.g. the eBPF object).
pub fn guard(test: &str, also_missing: Option<String>) -> Option<MutexGuard<'static, ()>> {
    if let Some(reason) = missing().or(also_missing) {
        skip_or_fail(test, &reason);
        return None;
    }
    Some(PRIVILEGED.lock().unwrap_or_else(|e| e.into_inner()))
}
