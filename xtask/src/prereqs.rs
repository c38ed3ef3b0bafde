//! Things the tests need from outside the Rust workspace, installed on demand.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// What the interop test imports (the `websockets.asyncio` API exists from version 13 on).
const WEBSOCKETS_IMPORT: &str = "import websockets.asyncio.server";
const WEBSOCKETS_REQUIREMENT: &str = "websockets>=13";

/// Makes sure `python3` can import the `websockets` package that `relay/tests/interop.rs` runs
/// its exchange on, installing it with pip if it is missing (or too old).
pub fn ensure_python_websockets() -> Result<()> {
    let check = Command::new("python3")
        .args(["-c", WEBSOCKETS_IMPORT])
        .output()
        .context(
            "the interop test needs python3, which could not be started (is Python 3 installed?)",
        )?;
    if check.status.success() {
        return Ok(());
    }
    let pip = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .context("starting python3 -m pip --version")?;
    if !pip.status.success() {
        bail!(
            "the interop test needs the Python 'websockets' package, and python3 has no pip to \
             install it with (install pip, e.g. the python3-pip package, then rerun): {}",
            String::from_utf8_lossy(&pip.stderr).trim()
        );
    }
    eprintln!(
        "xtask: installing the Python 'websockets' package (used by the interop test) with pip"
    );
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", WEBSOCKETS_REQUIREMENT])
        .status()
        .context("starting python3 -m pip install")?;
    if !status.success() {
        bail!("`python3 -m pip install --quiet '{WEBSOCKETS_REQUIREMENT}'` failed ({status})");
    }
    let recheck = Command::new("python3")
        .args(["-c", WEBSOCKETS_IMPORT])
        .output()
        .context("starting python3")?;
    if !recheck.status.success() {
        bail!(
            "pip installed '{WEBSOCKETS_REQUIREMENT}' but python3 still cannot `{WEBSOCKETS_IMPORT}`: {}",
            String::from_utf8_lossy(&recheck.stderr).trim()
        );
    }
    Ok(())
}
