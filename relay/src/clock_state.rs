//! Reads this host's clock state for the summaries (`adjtimex`, read only: no privileges; and
//! chrony's offset when `chronyc` answers).

use relay_core::record::clock::{chrony_offset_us, ClockState};

/// What the kernel knows of this host's clock discipline.
pub fn read() -> std::io::Result<ClockState> {
    // SAFETY: an all-zero timex is valid input; modes 0 asks for a read only.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: adjtimex writes only into the timex we pass.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ClockState {
        synchronized: tx.status & libc::STA_UNSYNC == 0 && state != libc::TIME_ERROR,
        est_error_us: tx.esterror as i64,
        max_error_us: tx.maxerror as i64,
        tai_offset_s: tx.tai,
        chrony_offset_us: chrony(),
    })
}

/// chrony's offset, when chrony runs here (`chronyc -c tracking`; a missing `chronyc` or daemon
/// is no error, just no figure).
fn chrony() -> Option<f64> {
    let out = std::process::Command::new("chronyc")
        .args(["-c", "tracking"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| chrony_offset_us(&String::from_utf8_lossy(&out.stdout)))
        .flatten()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_state_reads_without_privileges() {
        let state = super::read().unwrap();
        assert!(
            state.max_error_us >= 0 && state.est_error_us >= 0,
            "{state:?}"
        );
        // The kernel caps maxerror at 16 s (it grows to that while unsynchronised).
        assert!(state.max_error_us <= 16_000_000, "{state:?}");
    }
}
