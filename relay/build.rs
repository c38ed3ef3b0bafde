//! Builds the receiver's eBPF program (`relay-ebpf`, its own workspace beside this one) for
//! `bpfel-unknown-none` with the nightly toolchain through aya-build, so `src/receive/ebpf.rs` can
//! embed it.
//!
//! The eBPF toolchain (nightly with rust-src, bpf-linker) is optional for building the relay: when
//! a piece is missing, or the eBPF build fails, this prints a cargo warning and the relay is built
//! without the object (`EBPF_OBJECT_AVAILABLE == false`). `cargo xtask build-ebpf` and
//! `cargo xtask test` install the toolchain and set `RELAY_EBPF_REQUIRED=1`, which turns both cases
//! into build errors.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Name of the eBPF package and of its binary (the object file aya-build copies into OUT_DIR).
const EBPF_PACKAGE: &str = "relay-ebpf";
const TOOLCHAIN: &str = "nightly";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(relay_ebpf_object)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RELAY_EBPF_REQUIRED");
    println!("cargo:rerun-if-env-changed=PATH");

    let required = env::var("RELAY_EBPF_REQUIRED").is_ok_and(|v| v == "1" || v == "true");
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf_dir = manifest_dir
        .parent()
        .expect("relay sits inside the workspace")
        .join(EBPF_PACKAGE);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let object = out_dir.join(EBPF_PACKAGE);

    // (An object left from an earlier build is only embedded if this build succeeds.)
    let outcome = check_toolchain().and_then(|()| build(&ebpf_dir, &manifest_dir, &object));
    match outcome {
        Ok(()) => println!("cargo:rustc-cfg=relay_ebpf_object"),
        Err(reason) => {
            if required {
                panic!("relay-ebpf not built (RELAY_EBPF_REQUIRED is set): {reason}");
            }
            // One line per cargo warning: keep the reason on the first one.
            let mut lines = reason.lines();
            println!(
                "cargo:warning=relay-ebpf not built: {}; run cargo xtask test (or cargo xtask build-ebpf) to install what it needs",
                lines.next().unwrap_or("unknown reason")
            );
            for line in lines.take(20) {
                println!("cargo:warning=  {line}");
            }
            let first = reason.lines().next().unwrap_or("unknown reason");
            println!("cargo:rustc-env=RELAY_EBPF_NOT_BUILT={first}");
        }
    }
}

/// Checks the pieces aya-build needs, so a missing one gives a clear reason instead of a wall of
/// compiler errors. Paths of the pieces are watched, so installing one later rebuilds this.
fn check_toolchain() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        return Err("AYA_BUILD_SKIP is set".into());
    }
    let rustup = find_in_path("rustup").ok_or("rustup is not on PATH")?;
    let sysroot = Command::new(&rustup)
        .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output()
        .map_err(|e| format!("running rustup: {e}"))?;
    if !sysroot.status.success() {
        return Err(format!(
            "the {TOOLCHAIN} toolchain is not installed ({})",
            String::from_utf8_lossy(&sysroot.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
        ));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let core_src = sysroot.join("lib/rustlib/src/rust/library/core");
    // A missing path is always "changed", so the check runs again on every build until it exists.
    println!("cargo:rerun-if-changed={}", core_src.display());
    if !core_src.exists() {
        return Err(format!(
            "the {TOOLCHAIN} toolchain has no rust-src component"
        ));
    }
    match find_in_path("bpf-linker") {
        Some(linker) => {
            println!("cargo:rerun-if-changed={}", linker.display());
            Ok(())
        }
        None => {
            if let Some(home) = cargo_home() {
                println!(
                    "cargo:rerun-if-changed={}",
                    home.join("bin/bpf-linker").display()
                );
            }
            Err("bpf-linker is not on PATH".into())
        }
    }
}

fn build(ebpf_dir: &Path, manifest_dir: &Path, object: &Path) -> Result<(), String> {
    // aya-build watches the eBPF crate; the wire crate it shares is ours to watch.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("wire/src").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("wire/Cargo.toml").display()
    );
    // Only problems, not every "Compiling" line, come back as cargo warnings.
    env::set_var("CARGO_TERM_QUIET", "true");
    // aya-build runs `cargo build --package relay-ebpf` in the current directory; relay-ebpf is
    // its own workspace (this workspace excludes it), so run it from there.
    env::set_current_dir(ebpf_dir).map_err(|e| format!("entering {}: {e}", ebpf_dir.display()))?;
    let ebpf_dir_str = ebpf_dir
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir: ebpf_dir_str,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .map_err(|e| format!("{e:#}"))?;
    if !object.exists() {
        return Err(format!("aya-build produced no {}", object.display()));
    }
    Ok(())
}

/// Finds `program` on PATH, then in `$CARGO_HOME/bin` (where `cargo install` puts bpf-linker);
/// a hit there that PATH lacks is added to PATH for the eBPF build, which runs the linker by name.
fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    if let Some(found) = env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
    {
        return Some(found);
    }
    let bin = cargo_home()?.join("bin");
    let found = bin.join(program);
    if !found.is_file() {
        return None;
    }
    let mut dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    dirs.push(bin);
    if let Ok(joined) = env::join_paths(dirs) {
        env::set_var("PATH", joined);
    }
    Some(found)
}

fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}
