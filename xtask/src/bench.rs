//! `cargo xtask bench`: every benchmark of `bench/` with one command (the core's microbenchmarks,
//! the end-to-end comparison, and as root the eBPF stamper), then one report of all three:
//! `<target>/bench/report.md`. Each benchmark still writes its own `.md` and `.json` there.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::process::{cargo, require_ebpf, step};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Shorter runs: e2e `--quick`, eBPF 1 s x 1 repeat, criterion 1 s per benchmark.
    #[arg(long)]
    quick: bool,
    /// Seconds of sending per e2e latency run and per eBPF run (longer runs on bare metal).
    #[arg(long, value_name = "SECS")]
    secs: Option<f64>,
    /// The forwarders' core and the simulator + receiver's core, e.g. `--cores 3,2` on a host
    /// with isolated cores [default: the last core and the first].
    #[arg(long, value_name = "FORWARDER,BENCH", value_delimiter = ',')]
    cores: Option<Vec<usize>>,
    /// websocat binary for the e2e comparison [default: on PATH or in ~/.cargo/bin]; install it
    /// yourself (`cargo install websocat --version 1.14.1 --locked`): this never installs it.
    #[arg(long, value_name = "PATH")]
    websocat: Option<PathBuf>,
    /// Run the end-to-end comparison across a veth pair between two namespaces (needs root)
    /// instead of on loopback.
    #[arg(long)]
    veth: bool,
    /// Leave out these benchmarks (micro, e2e, ebpf; comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    skip: Vec<Part>,
    /// Put every table of this run into README.md's Benchmarks section.
    #[arg(long)]
    update_readme: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Micro,
    E2e,
    Ebpf,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::workspace_root().join("target"), PathBuf::from)
}

/// One section of the report: the benchmark's own markdown, or why it is missing.
fn section(title: &str, command: &str, outcome: &Result<()>, md: &str) -> String {
    let path = target_dir().join("bench").join(md);
    let body = match (outcome, std::fs::read_to_string(&path)) {
        (Ok(()), Ok(text)) => text,
        (Ok(()), Err(e)) => format!(
            "**No report**: {} could not be read ({e}).\n",
            path.display()
        ),
        (Err(e), _) => format!("**Not measured**: {e:#}\n"),
    };
    format!("## {title}\n\n`{command}`\n\n{body}\n")
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(cores) = &args.cores {
        if cores.len() != 2 {
            bail!("--cores takes two cores, FORWARDER,BENCH (e.g. --cores 3,2)");
        }
    }
    let mut failed = Vec::new();
    let mut report = format!(
        "# Benchmarks\n\n`cargo xtask bench{}{}`, started {}.\n\n",
        if args.quick { " --quick" } else { "" },
        args.secs.map_or(String::new(), |s| format!(" --secs {s}")),
        relay_host::clock::utc_now(),
    );
    let readme = |cmd: &mut std::process::Command| {
        if args.update_readme {
            cmd.arg("--update-readme");
        }
    };

    if !args.skip.contains(&Part::Micro) {
        let mut cmd = cargo(&["bench", "--locked", "-p", "bench", "--bench", "core", "--"]);
        if args.quick {
            cmd.args(["--warm-up-time", "0.5", "--measurement-time", "1"]);
        }
        if args.update_readme {
            cmd.env("RELAY_BENCH_UPDATE_README", "1");
        }
        let outcome = step("microbenchmarks (criterion)", cmd);
        failed.extend(outcome.is_err().then_some("micro"));
        report.push_str(&section(
            "Microbenchmarks",
            "cargo bench -p bench",
            &outcome,
            "micro.md",
        ));
    }

    if !args.skip.contains(&Part::E2e) {
        let mut cmd = cargo(&[
            "run",
            "--release",
            "--locked",
            "-p",
            "bench",
            "--bin",
            "e2e",
            "--",
        ]);
        if args.quick {
            cmd.arg("--quick");
        }
        if let Some(secs) = args.secs {
            cmd.args(["--secs", &secs.to_string()]);
        }
        if let Some(cores) = &args.cores {
            cmd.args(["--forwarder-core", &cores[0].to_string()]);
            cmd.args(["--bench-core", &cores[1].to_string()]);
        }
        if let Some(w) = &args.websocat {
            cmd.arg("--websocat").arg(w);
        }
        if args.veth {
            cmd.arg("--veth");
        }
        readme(&mut cmd);
        let outcome = step("end-to-end comparison", cmd);
        failed.extend(outcome.is_err().then_some("e2e"));
        report.push_str(&section(
            "End to end",
            "cargo run --release -p bench --bin e2e",
            &outcome,
            "e2e.md",
        ));
    }

    if !args.skip.contains(&Part::Ebpf) {
        // SAFETY: geteuid has no preconditions.
        let outcome = if unsafe { libc::geteuid() } != 0 {
            Err(anyhow::anyhow!(
                "the eBPF benchmark needs root (veth pair between network namespaces, XDP and \
                 tc programs): sudo -E env \"PATH=$PATH\" cargo xtask bench"
            ))
        } else {
            crate::ebpf_toolchain::ensure_ebpf_toolchain()?;
            let mut cmd = require_ebpf(cargo(&[
                "run",
                "--release",
                "--locked",
                "-p",
                "bench",
                "--bin",
                "ebpf",
                "--",
            ]));
            if args.quick {
                cmd.args(["--secs", "1", "--repeats", "1"]);
            } else if let Some(secs) = args.secs {
                cmd.args(["--secs", &secs.to_string()]);
            }
            readme(&mut cmd);
            let outcome = step("eBPF receive stamper", cmd);
            failed.extend(outcome.is_err().then_some("ebpf"));
            outcome
        };
        if let Err(e) = &outcome {
            eprintln!("xtask: bench: eBPF stamper not measured: {e:#}");
        }
        report.push_str(&section(
            "eBPF receive stamper",
            "cargo run --release -p bench --bin ebpf",
            &outcome,
            "ebpf.md",
        ));
    }

    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("report.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: bench: wrote {}", path.display());
    if !failed.is_empty() {
        bail!("benchmarks failed: {} (see the report)", failed.join(", "));
    }
    Ok(())
}
