//! Running cargo and the relay binary, and keeping child processes from outliving xtask.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::workspace_root;

/// A `cargo` command run from the workspace root.
pub fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args).current_dir(workspace_root());
    command
}

/// Runs one step, saying what it is; fails with the step's name.
pub fn step(what: &str, mut command: Command) -> Result<()> {
    eprintln!("xtask: {what}: {command:?}");
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Builds the relay binary in release mode and returns its path. With `with_ebpf`, first installs
/// the eBPF toolchain if it is missing and fails unless the eBPF program is embedded.
pub fn build_release_relay(with_ebpf: bool) -> Result<PathBuf> {
    let mut build = cargo(&["build", "--release", "--locked", "-p", "relay"]);
    if with_ebpf {
        crate::ebpf_toolchain::ensure_ebpf_toolchain()?;
        build = require_ebpf(build);
    }
    step("building the relay (release)", build)?;
    Ok(target_dir().join("release").join("relay"))
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The relay's build script then fails on an eBPF build problem instead of warning and building
/// the relay without the program.
pub fn require_ebpf(mut command: Command) -> Command {
    command.env("RELAY_EBPF_REQUIRED", "1");
    command
}

/// Replaces this process's work with `command`, passing its exit status on.
pub fn exec(mut command: Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} exited with {status}");
    }
    Ok(())
}

/// Child processes that are stopped (SIGTERM, then killed) when the guard is dropped, so a failed
/// or interrupted run leaves nothing behind.
#[derive(Default)]
pub struct Children(Vec<(String, Child)>);

impl Children {
    pub fn spawn(&mut self, name: &str, mut command: Command) -> Result<()> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        self.0.push((name.to_string(), child));
        Ok(())
    }

    /// Like [`Children::spawn`], with every line the child prints to stdout or stderr passed on to
    /// stderr behind `[name]`, so the output of several children stays readable.
    pub fn spawn_labelled(&mut self, name: &str, mut command: Command) -> Result<()> {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.spawn(name, command)?;
        let (_, child) = self.0.last_mut().expect("just spawned");
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let label = name.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("[{label}] {line}");
                }
            });
        }
        Ok(())
    }

    /// The named child's process id.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c.id())
    }

    /// Fails if the named child has already exited (e.g. it could not bind its port).
    pub fn check_running(&mut self, name: &str) -> Result<()> {
        let (_, child) = self
            .0
            .iter_mut()
            .find(|(n, _)| n == name)
            .with_context(|| format!("no child {name}"))?;
        match child.try_wait()? {
            Some(status) => bail!("{name} exited early ({status})"),
            None => Ok(()),
        }
    }

    /// True once the named child has exited successfully (it is then forgotten); fails if it
    /// exited with an error.
    pub fn finished(&mut self, name: &str) -> Result<bool> {
        let index = self
            .0
            .iter()
            .position(|(n, _)| n == name)
            .with_context(|| format!("no child {name}"))?;
        match self.0[index].1.try_wait()? {
            None => Ok(false),
            Some(status) => {
                self.0.remove(index);
                if !status.success() {
                    bail!("{name} failed ({status})");
                }
                Ok(true)
            }
        }
    }

    /// Waits for the named child to exit by itself and checks it succeeded.
    pub fn wait(&mut self, name: &str) -> Result<()> {
        let index = self
            .0
            .iter()
            .position(|(n, _)| n == name)
            .with_context(|| format!("no child {name}"))?;
        let (_, mut child) = self.0.remove(index);
        let status = child
            .wait()
            .with_context(|| format!("waiting for {name}"))?;
        if !status.success() {
            bail!("{name} failed ({status})");
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        for (name, child) in &mut self.0 {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(50))
                    }
                    _ => {
                        eprintln!("xtask: {name} did not stop on SIGTERM; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}
