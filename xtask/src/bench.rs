//! `cargo xtask bench`: every benchmark of `bench/` with one command (the core's microbenchmarks,
//! the end-to-end comparison, and as root the eBPF stamper), then one report of all three:
//! `<target>/bench/report.md`. Each benchmark still writes its own `.md` and `.json` there.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::process::{cargo, require_ebpf, step, target_dir};

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

/// The report being written, and the benchmarks that failed.
struct Report {
    text: String,
    failed: Vec<&'static str>,
}

impl Report {
    /// Runs benchmark `part` (saying `what` it is), noting a failure.
    fn run(&mut self, part: &'static str, what: &str, cmd: std::process::Command) -> Result<()> {
        let outcome = step(what, cmd);
        if outcome.is_err() {
            self.failed.push(part);
        }
        outcome
    }

    /// One section: the benchmark's own markdown (`md` in the bench folder), or why it is
    /// missing.
    fn section(&mut self, title: &str, command: &str, outcome: &Result<()>, md: &str) {
        let path = target_dir().join("bench").join(md);
        let body = match (outcome, std::fs::read_to_string(&path)) {
            (Ok(()), Ok(text)) => text,
            (Ok(()), Err(e)) => format!(
                "**No report**: {} could not be read ({e}).\n",
                path.display()
            ),
            (Err(e), _) => format!("**Not measured**: {e:#}\n"),
        };
        self.text
            .push_str(&format!("## {title}\n\n`{command}`\n\n{body}\n"));
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(cores) = &args.cores {
        if cores.len() != 2 {
            bail!("--cores takes two cores, FORWARDER,BENCH (e.g. --cores 3,2)");
        }
    }
    let mut report = Report {
        text: format!(
            "# Benchmarks\n\n`cargo xtask bench{}{}`, started {}.\n\n",
            if args.quick { " --quick" } else { "" },
            args.secs.map_or(String::new(), |s| format!(" --secs {s}")),
            relay_host::clock::utc_now(),
        ),
        failed: Vec::new(),
    };
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
        let outcome = report.run("micro", "microbenchmarks (criterion)", cmd);
        report.section(
            "Microbenchmarks",
            "cargo bench -p bench",
            &outcome,
            "micro.md",
        );
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
        let outcome = report.run("e2e", "end-to-end comparison", cmd);
        report.section(
            "End to end",
            "cargo run --release -p bench --bin e2e",
            &outcome,
            "e2e.md",
        );
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
            report.run("ebpf", "eBPF receive stamper", cmd)
        };
        if let Err(e) = &outcome {
            eprintln!("xtask: bench: eBPF stamper not measured: {e:#}");
        }
        report.section(
            "eBPF receive stamper",
            "cargo run --release -p bench --bin ebpf",
            &outcome,
            "ebpf.md",
        );
    }

    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("report.md");
    std::fs::write(&path, &report.text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: bench: wrote {}", path.display());
    if !report.failed.is_empty() {
        bail!(
            "benchmarks failed: {} (see the report)",
            report.failed.join(", ")
        );
    }
    Ok(())
}
