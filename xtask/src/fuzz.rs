//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `relay/core/fuzz` (libFuzzer), installing
//! nightly and cargo-fuzz first if they are missing; `cargo xtask test` runs each target for
//! [`SMOKE_SECS`]. A crash fails the run and leaves its input under `relay/core/fuzz/artifacts/`.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::ebpf_toolchain::{ensure_nightly_with_rust_src, which};
use crate::workspace_root;

/// The targets (see `relay/core/fuzz/README.md`).
pub const TARGETS: [&str; 4] = ["datagram", "event_fields", "session_input", "probe"];
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// How long `cargo xtask test` fuzzes each target.
pub const SMOKE_SECS: u64 = 20;

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Executions per target instead of a time limit (the documented runs use 10000000).
    #[arg(long)]
    runs: Option<u64>,
    /// Only this target (repeatable): datagram, event_fields, session_input, probe.
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    if let Some(unknown) = targets.iter().find(|t| !TARGETS.contains(t)) {
        bail!(
            "no fuzz target {unknown:?}; the targets are {}",
            TARGETS.join(", ")
        );
    }
    let limit = match args.runs {
        Some(runs) => format!("-runs={runs}"),
        None => format!("-max_total_time={}", args.secs),
    };
    fuzz_all(&targets, &limit)
}

/// What `cargo xtask test` runs: every target for [`SMOKE_SECS`].
pub fn smoke() -> Result<()> {
    fuzz_all(&TARGETS, &format!("-max_total_time={SMOKE_SECS}"))
}

fn fuzz_all(targets: &[&str], limit: &str) -> Result<()> {
    ensure_nightly_with_rust_src()?;
    ensure_cargo_fuzz()?;
    for target in targets {
        let started = Instant::now();
        let executions = fuzz(target, limit)?;
        eprintln!(
            "xtask: fuzz {target}: {executions} executions in {:.0} s, no crash",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Runs one target; returns how many inputs it executed.
fn fuzz(target: &str, limit: &str) -> Result<u64> {
    let dir = workspace_root().join("relay/core/fuzz");
    let mut command = Command::new("rustup");
    command
        .args([
            "run",
            "nightly",
            "cargo",
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            target,
        ])
        .args(["--", limit, "-print_final_stats=1"])
        .current_dir(&dir)
        .env_remove("CARGO_TARGET_DIR")
        .stderr(Stdio::piped());
    eprintln!("xtask: fuzzing {target} ({limit}): {command:?}");
    let output = command
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        bail!(
            "fuzz target {target} failed ({}); its input is under {}:\n{}",
            output.status,
            dir.join("artifacts").join(target).display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    log.lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("fuzz target {target}: no execution count in its output"))
}

fn ensure_cargo_fuzz() -> Result<()> {
    if which("cargo-fuzz").is_some() {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (the fuzz targets need it; about a minute)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ])
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .context("starting cargo install cargo-fuzz")?;
    if !status.success() {
        bail!(
            "`cargo install cargo-fuzz --version {CARGO_FUZZ_VERSION} --locked` failed ({status})"
        );
    }
    Ok(())
}
