//! Things the tests need from outside the Rust workspace, installed on demand.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The Python packages the interop tests import (module to import, pip requirement, test):
/// `websockets.asyncio` exists from version 13 on.
const PYTHON_PACKAGES: [(&str, &str, &str); 5] = [
    (
        "websockets.asyncio.server",
        "websockets>=13",
        "relay/tests/interop.rs",
    ),
    (
        "cryptography.hazmat.primitives.ciphers.aead",
        "cryptography>=3.1",
        "relay/tests/seal_interop.rs",
    ),
    (
        "prometheus_client.parser",
        "prometheus-client>=0.17",
        "relay/tests/metrics.rs",
    ),
    ("hdrh.log", "hdrhistogram>=0.10", "relay/tests/metrics.rs"),
    // Binance's official Python connector, as a real client of `relay receive --serve-ws`.
    (
        "binance.websocket.spot.websocket_stream",
        "binance-connector==3.12.0",
        "relay/tests/serve.rs",
    ),
];

fn python_imports(module: &str) -> Result<std::process::Output> {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .context(
            "the interop tests need python3, which could not be started (is Python 3 installed?)",
        )
}

/// Makes sure `python3` can import the packages the interop tests run against (the WebSocket
/// server of `relay/tests/interop.rs`, the independent seal of `relay/tests/seal_interop.rs`,
/// Prometheus's own text parser and HdrHistogram's interval-log reader for
/// `relay/tests/metrics.rs`),
/// installing what is missing (or too old) with pip.
pub fn ensure_python_packages() -> Result<()> {
    for (module, requirement, test) in PYTHON_PACKAGES {
        if python_imports(module)?.status.success() {
            continue;
        }
        let pip = Command::new("python3")
            .args(["-m", "pip", "--version"])
            .output()
            .context("starting python3 -m pip --version")?;
        if !pip.status.success() {
            bail!(
                "{test} needs the Python package '{requirement}', and python3 has no pip to \
                 install it with (install pip, e.g. the python3-pip package, then rerun): {}",
                String::from_utf8_lossy(&pip.stderr).trim()
            );
        }
        eprintln!("xtask: installing the Python package '{requirement}' (used by {test}) with pip");
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", requirement])
            .status()
            .context("starting python3 -m pip install")?;
        if !status.success() {
            bail!("`python3 -m pip install --quiet '{requirement}'` failed ({status})");
        }
        let recheck = python_imports(module)?;
        if !recheck.status.success() {
            bail!(
                "pip installed '{requirement}' but python3 still cannot `import {module}`: {}",
                String::from_utf8_lossy(&recheck.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Makes sure a headless Chromium is there for `relay/report`'s browser test, installing
/// Debian's `chromium` package as root when it is missing.
pub fn ensure_chromium() -> Result<()> {
    let works = |name: &str| {
        Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if std::env::var_os("RELAY_CHROMIUM").is_some() || works("chromium") {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the report's browser test (relay/report) needs a headless Chromium: install it \
             (sudo apt-get install chromium) or set RELAY_CHROMIUM to a Chromium or Chrome binary"
        );
    }
    eprintln!(
        "xtask: installing Debian's chromium (the report's browser test renders the page in it)"
    );
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install().is_ok_and(|s| s.success()) {
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        let status = install().context("starting apt-get")?;
        if !status.success() {
            bail!("`apt-get install -y chromium` failed ({status})");
        }
    }
    if !works("chromium") {
        bail!("chromium was installed but `chromium --version` does not run");
    }
    Ok(())
}
