//! What every benchmark report shares: the machine it ran on, its date, where it is written and
//! how it gets into README.md.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
}

impl Machine {
    /// This machine: online CPUs, CPU model, kernel release.
    pub fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        Machine {
            // Online CPUs of the machine, not of this (possibly pinned) thread.
            // SAFETY: sysconf has no preconditions.
            nproc: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(0) as usize,
            cpu_model,
            kernel,
        }
    }
}

/// The workspace root (bench/ sits one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ sits in the workspace")
        .to_path_buf()
}

/// The directory the running benchmark binary sits in (`<target>/release`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the benchmark executable")?;
    Ok(exe
        .parent()
        .context("the executable has a directory")?
        .to_path_buf())
}

/// Where a benchmark binary writes its reports by default: `<target>/bench`.
pub fn default_out_dir() -> anyhow::Result<PathBuf> {
    Ok(bin_dir()?
        .parent()
        .context("the executable sits in <target>/release")?
        .join("bench"))
}

/// Writes a benchmark's markdown to `md_path`, prints it, and with `update_readme` puts it into
/// README.md between the `start` and `end` markers. `tool` names the benchmark in messages.
pub fn publish(
    tool: &str,
    md: &str,
    md_path: &Path,
    update_readme: bool,
    (start, end): (&str, &str),
) -> anyhow::Result<()> {
    std::fs::write(md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    println!("{md}");
    eprintln!("{tool}: wrote {}", md_path.display());
    if update_readme {
        let readme = workspace_root().join("README.md");
        let doc = std::fs::read_to_string(&readme)?;
        let Some(new) = replace_between(&doc, start, end, md) else {
            anyhow::bail!("README.md has no {start} .. {end} block");
        };
        std::fs::write(&readme, new)?;
        eprintln!("{tool}: updated {}", readme.display());
    }
    Ok(())
}

/// Replaces the text between `start` and `end` markers (kept) with `body`; `None` if a marker is
/// missing or out of order.
pub fn replace_between(doc: &str, start: &str, end: &str, body: &str) -> Option<String> {
    let s = doc.find(start)? + start.len();
    let e = s + doc[s..].find(end)?;
    let mut out = String::with_capacity(doc.len() + body.len());
    out.push_str(&doc[..s]);
    out.push('\n');
    out.push_str(body.trim_end());
    out.push('\n');
    out.push_str(&doc[e..]);
    Some(out)
}

pub use relay_host::clock::{utc_now, utc_timestamp};

/// `v` with one decimal, without a trailing `.0`: `1.5` -> `1.5`, `3.0` -> `3`.
pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// `rate` with an SI suffix: in millions with `decimals_m` decimals from 1e6 (`1.25M`), in
/// thousands with `decimals_k` from 1e3 (`412k`), else whole.
pub fn fmt_scaled(rate: f64, decimals_m: usize, decimals_k: usize) -> String {
    if rate >= 1e6 {
        format!("{:.*}M", decimals_m, rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.*}k", decimals_k, rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_block_is_replaced_between_markers() {
        let doc = "a\n<!-- s -->\nold\n<!-- e -->\nb\n";
        let new = replace_between(doc, "<!-- s -->", "<!-- e -->", "new\n\n").unwrap();
        assert_eq!(new, "a\n<!-- s -->\nnew\n<!-- e -->\nb\n");
        assert_eq!(replace_between(doc, "<!-- e -->", "<!-- s -->", "x"), None);
    }
}
