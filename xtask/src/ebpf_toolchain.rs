//! Installs what building the eBPF program (`relay-ebpf`) needs, idempotently: the nightly
//! toolchain with rust-src (`-Z build-std=core` for `bpfel-unknown-none`) and bpf-linker, which
//! links against LLVM 22 from Debian (`llvm-22-dev`, `libpolly-22-dev`).
//!
//! Each piece is checked first and installed only when missing; every install says what it
//! installs, why, and how long it took.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

const TOOLCHAIN: &str = "nightly";
/// The bpf-linker release verified here (its `llvm-22` feature matches Debian's llvm-22-dev).
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const APT_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev"];
/// Not needed to build; handy to inspect the program (`bpftool prog show` gives run_time_ns).
const APT_OPTIONAL: &[&str] = &["bpftool"];

/// Makes sure `nightly` + rust-src and bpf-linker are installed; installs what is missing.
pub fn ensure_ebpf_toolchain() -> Result<()> {
    let started = Instant::now();
    ensure_nightly_with_rust_src()?;
    ensure_bpf_linker()?;
    eprintln!(
        "xtask: eBPF toolchain ready (nightly + rust-src, bpf-linker) [{:.1} s]",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Makes sure the nightly toolchain (with rust-src) is there: the eBPF build and the fuzz
/// targets need it.
pub fn ensure_nightly_with_rust_src() -> Result<()> {
    if which("rustup").is_none() {
        bail!(
            "rustup is not on PATH: the eBPF program needs the {TOOLCHAIN} toolchain through rustup \
             (install rustup, then run this again)"
        );
    }
    match nightly_sysroot() {
        None => {
            timed(
                &format!(
                    "installing the {TOOLCHAIN} toolchain with rust-src (eBPF builds core for \
                     bpfel-unknown-none with -Z build-std)"
                ),
                Command::new("rustup").args([
                    "toolchain",
                    "install",
                    TOOLCHAIN,
                    "--profile",
                    "minimal",
                    "--component",
                    "rust-src",
                ]),
            )?;
        }
        Some(sysroot) if !has_rust_src(&sysroot) => {
            timed(
                &format!("adding rust-src to {TOOLCHAIN} (eBPF builds core with -Z build-std)"),
                Command::new("rustup").args([
                    "component",
                    "add",
                    "rust-src",
                    "--toolchain",
                    TOOLCHAIN,
                ]),
            )?;
        }
        Some(_) => {}
    }
    let sysroot = nightly_sysroot()
        .with_context(|| format!("the {TOOLCHAIN} toolchain is still not usable"))?;
    if !has_rust_src(&sysroot) {
        bail!("rust-src is still missing from {}", sysroot.display());
    }
    Ok(())
}

/// The nightly sysroot, if that toolchain is installed (never installs it by itself).
fn nightly_sysroot() -> Option<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn has_rust_src(sysroot: &Path) -> bool {
    sysroot.join("lib/rustlib/src/rust/library/core").is_dir()
}

fn ensure_bpf_linker() -> Result<()> {
    if let Some(linker) = which("bpf-linker") {
        if runs(Command::new(&linker).arg("--version")) {
            return Ok(());
        }
        eprintln!(
            "xtask: {} is installed but does not run (LLVM library missing?); reinstalling it",
            linker.display()
        );
    }
    ensure_llvm()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut install = Command::new(cargo);
    install
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        // Debian keeps LLVM 22 under its own prefix: point llvm-sys and bpf-linker's build there.
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
        // A throw-away target dir, not the workspace's.
        .env_remove("CARGO_TARGET_DIR");
    timed(
        &format!(
            "installing bpf-linker {BPF_LINKER_VERSION} with LLVM 22 (links the eBPF program; \
             takes a few minutes)"
        ),
        &mut install,
    )?;
    let linker = which("bpf-linker").context("bpf-linker was installed but is not found")?;
    if !runs(Command::new(&linker).arg("--version")) {
        bail!("{} was installed but does not run", linker.display());
    }
    Ok(())
}

/// LLVM 22 development files for bpf-linker, from Debian.
fn ensure_llvm() -> Result<()> {
    let llvm_config = Path::new(LLVM_PREFIX).join("bin/llvm-config");
    let polly = Path::new(LLVM_PREFIX).join("lib/libPolly.a");
    let headers = Path::new(LLVM_PREFIX).join("include/llvm-c/Core.h");
    if llvm_config.is_file() && polly.is_file() && headers.is_file() {
        return Ok(());
    }
    if which("apt-get").is_none() {
        bail!(
            "bpf-linker needs LLVM 22 development files under {LLVM_PREFIX} ({}); this system has \
             no apt-get: install them with its package manager",
            APT_PACKAGES.join(", ")
        );
    }
    if effective_uid() != 0 {
        bail!(
            "bpf-linker needs LLVM 22 development files; run as root, or first: \
             sudo apt-get update && sudo apt-get install -y {}",
            APT_PACKAGES.join(" ")
        );
    }
    timed(
        "updating the apt package lists (for LLVM 22, which bpf-linker links against)",
        Command::new("apt-get").arg("update"),
    )?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y"])
        .args(APT_PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive");
    timed(
        &format!(
            "installing {} (LLVM 22 for bpf-linker)",
            APT_PACKAGES.join(", ")
        ),
        &mut install,
    )?;
    if which("bpftool").is_none() {
        let mut optional = Command::new("apt-get");
        optional
            .args(["install", "-y"])
            .args(APT_OPTIONAL)
            .env("DEBIAN_FRONTEND", "noninteractive");
        if let Err(e) = timed(
            "installing bpftool (optional: inspects loaded programs)",
            &mut optional,
        ) {
            eprintln!("xtask: {e:#}; going on without bpftool");
        }
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // `id -u` instead of libc: xtask has no libc dependency.
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(u32::MAX)
}

/// Runs an install step, printing what and why before and how long after.
fn timed(what: &str, command: &mut Command) -> Result<()> {
    eprintln!("xtask: {what}: {command:?}");
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{what} failed ({status}) after {secs:.1} s");
    }
    eprintln!("xtask: done in {secs:.1} s: {what}");
    Ok(())
}

fn runs(command: &mut Command) -> bool {
    command.output().is_ok_and(|o| o.status.success())
}

/// `program` on PATH, or in `$CARGO_HOME/bin` (where `cargo install` puts bpf-linker; the
/// relay's build script looks there too).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"));
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
