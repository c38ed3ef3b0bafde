//! A forwarder under test as a child process: pinned to its core, its output in a log file, its
//! CPU time read from /proc, stopped (SIGTERM, then SIGKILL) when dropped.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

    /// CPU the process has used so far (see [`Cpu`]).
    pub fn cpu(&self) -> Option<Cpu> {
        let pid = self.child.lock().expect("child lock").id();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        Cpu::read(
            Path::new(&format!("/proc/{pid}")),
            tasks.flatten().map(|t| t.path()),
        )
    }

    /// The last three lines of its log, on one line.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

/// A forwarder's CPU use at one moment: its threads' time on a CPU in ns (the scheduler's own
/// accounting, `schedstat`, exact), and its user and system clock ticks (`stat`, in 10 ms
/// units, sampled by the scheduler tick: only good for the user/system split).
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    pub on_cpu_ns: u64,
    pub user_ticks: u64,
    pub sys_ticks: u64,
}

impl Cpu {
    /// One thread of this process.
    pub fn of_thread(tid: libc::pid_t) -> Option<Cpu> {
        let dir = PathBuf::from(format!("/proc/self/task/{tid}"));
        Cpu::read(&dir, std::iter::once(dir.clone()))
    }

    /// The ticks in `dir/stat` and the time on a CPU of every thread directory in `tasks`.
    fn read(dir: &Path, tasks: impl Iterator<Item = PathBuf>) -> Option<Cpu> {
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let user_ticks: u64 = fields.get(11)?.parse().ok()?;
        let sys_ticks: u64 = fields.get(12)?.parse().ok()?;
        let on_cpu_ns = tasks
            .filter_map(|task| {
                let schedstat = std::fs::read_to_string(task.join("schedstat")).ok()?;
                schedstat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        Some(Cpu {
            on_cpu_ns,
            user_ticks,
            sys_ticks,
        })
    }

    /// CPU µs per message between `self` and the later `after`, and the system share of it.
    pub fn per_message(self, after: Cpu, messages: u64) -> (f64, Option<f64>) {
        let ns = after.on_cpu_ns.saturating_sub(self.on_cpu_ns);
        let user = after.user_ticks.saturating_sub(self.user_ticks);
        let sys = after.sys_ticks.saturating_sub(self.sys_ticks);
        let share = (user + sys > 0).then(|| sys as f64 / (user + sys) as f64);
        (ns as f64 / 1e3 / messages.max(1) as f64, share)
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
