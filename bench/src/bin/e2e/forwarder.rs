//! A forwarder under test as a child process: pinned to its core, its output in a log file, its
//! CPU time read from /proc, stopped (SIGTERM, then SIGKILL) when dropped.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use relay_host::cpu;

/// A forwarder child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Forwarder {
    child: Arc<Mutex<Child>>,
    /// Raised once the process has exited (a watcher thread polls it).
    pub exited: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
    log: PathBuf,
}

impl Forwarder {
    /// Starts `cmd` with its output into `log`, pinned to `core` if given.
    pub fn spawn(mut cmd: Command, core: Option<usize>, log: PathBuf) -> anyhow::Result<Forwarder> {
        let file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if let Some(core) = core {
            // SAFETY: only sched_setaffinity (async-signal-safe) runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || cpu::pin_current_thread(core));
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        let child = Arc::new(Mutex::new(child));
        let exited = Arc::new(AtomicBool::new(false));
        let (c, e) = (child.clone(), exited.clone());
        let watcher = std::thread::spawn(move || loop {
            if e.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(Some(_)) = c.lock().expect("child lock").try_wait() {
                e.store(true, Ordering::Relaxed);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        });
        Ok(Forwarder {
            child,
            exited,
            watcher: Some(watcher),
            log,
        })
    }

    /// User and system CPU seconds the process has used so far (all its threads).
    pub fn cpu_secs(&self) -> Option<(f64, f64)> {
        let pid = self.child.lock().expect("child lock").id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some((utime / hz, stime / hz))
    }

    /// The last three lines of its log, on one line.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let mut child = self.child.lock().expect("child lock");
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(child);
        self.exited.store(true, Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}
