//! `cargo xtask <command>`: the project's build, run and test entry points.

mod bench;
mod demo;
mod ebpf_toolchain;
mod fuzz;
mod lab;
mod prereqs;
mod process;
mod results;
mod soak;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run and test the market-data relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every check CI runs: formatting, clippy (warnings are errors), all tests and a short
    /// run of each fuzz target. Installs the eBPF toolchain first if it is missing (see
    /// build-ebpf), and cargo-fuzz.
    Test,
    /// Every benchmark with one command: the core's microbenchmarks, the end-to-end comparison
    /// (relay vs the tokio reference and websocat) and, as root, the eBPF stamper; writes one
    /// report, <target>/bench/report.md. Not part of CI.
    Bench(bench::BenchArgs),
    /// A long loopback run (sealed relay, high rate, periodic serverShutdowns) sampling the
    /// relay's and the receiver's memory; not part of CI.
    Soak(soak::SoakArgs),
    /// Run the fuzz targets of relay/core/fuzz (datagram decoding and accounting, the exchange
    /// message scanners, the session's input, the prober and reflector) with libFuzzer; installs
    /// cargo-fuzz if missing.
    Fuzz(fuzz::FuzzArgs),
    /// Install the eBPF toolchain if missing (nightly + rust-src, LLVM 22, bpf-linker), then build
    /// the relay with its eBPF program embedded and lint the program.
    BuildEbpf,
    /// The seed experiment in network namespaces with emulated WAN links (needs root).
    ///
    /// Simulated exchange -> 1 ms -> Tokyo relay -> 118 ms backbone -> Frankfurt receiver, next to
    /// a baseline receiver over a 125 ms "internet" link; prints both summaries side by side and
    /// the ground truth (delay injected by the links vs measured by the receivers).
    Lab(lab::LabArgs),
    /// Simulated exchange -> relay -> receiver on loopback, next to a baseline receiver connected
    /// straight to the exchange; prints both summaries side by side.
    Demo(demo::DemoArgs),
    /// Build in release mode and run `relay forward` with the given arguments.
    RunRelay {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build in release mode, with the eBPF program (installing its toolchain if missing), and
    /// run `relay receive` with the given arguments.
    RunReceiver {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build in release mode and run the exchange simulator (`relay feed-sim`) with the given arguments.
    FeedSim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Test => test(),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Soak(args) => soak::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BuildEbpf => build_ebpf(),
        Command::Lab(args) => lab::run(args),
        Command::Demo(args) => demo::run(args),
        Command::RunRelay { args } => run_relay_binary("forward", args, false),
        Command::RunReceiver { args } => run_relay_binary("receive", args, true),
        Command::FeedSim { args } => run_relay_binary("feed-sim", args, false),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn test() -> Result<()> {
    ebpf_toolchain::ensure_ebpf_toolchain()?;
    prereqs::ensure_python_packages()?;
    prereqs::ensure_chromium()?;
    process::step(
        "checking formatting",
        process::cargo(&["fmt", "--all", "--", "--check"]),
    )?;
    process::step(
        "checking formatting of relay-ebpf (its own workspace)",
        process::cargo(&[
            "fmt",
            "--manifest-path",
            "relay-ebpf/Cargo.toml",
            "--all",
            "--",
            "--check",
        ]),
    )?;
    process::step(
        "checking formatting of the fuzz targets (their own workspace)",
        process::cargo(&[
            "fmt",
            "--manifest-path",
            "relay/core/fuzz/Cargo.toml",
            "--all",
            "--",
            "--check",
        ]),
    )?;
    process::step(
        "running clippy",
        process::require_ebpf(process::cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])),
    )?;
    process::step("running clippy on relay-ebpf", ebpf_clippy())?;
    check_dependency_trees()?;
    process::step(
        "running the tests",
        process::require_ebpf(process::cargo(&["test", "--workspace", "--locked"])),
    )?;
    fuzz::smoke()?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// Crates that must stay out of a package's normal dependency tree.
const LAYERING: [(&str, &[&str], &[&str]); 2] = [
    // The core is sans-io: no I/O runtime at all.
    (
        "relay-core",
        &[],
        &["tokio", "tokio-uring", "io-uring", "mio", "aya", "socket2"],
    ),
    // A production relay carries no simulator (tokio-tungstenite it does carry: the receiver's
    // `--serve-ws` endpoint is a WebSocket server).
    (
        "relay",
        &["--no-default-features"],
        &["feed-sim", "rcgen", "tokio-rustls"],
    ),
];

/// Checks [`LAYERING`] with `cargo tree`.
fn check_dependency_trees() -> Result<()> {
    for (package, flags, banned) in LAYERING {
        eprintln!(
            "xtask: checking that {package} {} depends on none of {banned:?}",
            flags.join(" ")
        );
        let output = process::cargo(&[
            "tree", "--locked", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p",
            package,
        ])
        .args(flags)
        .output()
        .with_context(|| format!("running cargo tree -p {package}"))?;
        if !output.status.success() {
            anyhow::bail!(
                "cargo tree -p {package} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&output.stdout);
        let found: Vec<&str> = tree
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| banned.contains(name))
            .collect();
        if !found.is_empty() {
            anyhow::bail!(
                "{package} {} depends on {found:?}, which it must not",
                flags.join(" ")
            );
        }
    }
    Ok(())
}

fn build_ebpf() -> Result<()> {
    ebpf_toolchain::ensure_ebpf_toolchain()?;
    process::step(
        "building the relay with its eBPF program",
        process::require_ebpf(process::cargo(&["build", "--locked", "-p", "relay"])),
    )?;
    process::step("running clippy on relay-ebpf", ebpf_clippy())?;
    eprintln!("xtask: relay-ebpf built and embedded in the relay");
    Ok(())
}

/// Clippy for the eBPF crate, built the way aya-build builds it (nightly, BPF target, core from
/// source), in its own target directory.
fn ebpf_clippy() -> std::process::Command {
    let target_dir = process::target_dir().join("relay-ebpf-clippy");
    let mut command = std::process::Command::new("rustup");
    command
        .args(["run", "nightly", "cargo", "clippy", "--locked", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--", "-D", "warnings"])
        .current_dir(workspace_root().join("relay-ebpf"))
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH),
        )
        // Let rustup pick nightly rather than the toolchain xtask itself runs under.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC");
    command
}

fn run_relay_binary(subcommand: &str, args: Vec<String>, with_ebpf: bool) -> Result<()> {
    let relay = process::build_release_relay(with_ebpf)?;
    let mut command = std::process::Command::new(relay);
    command.arg(subcommand).args(args);
    process::exec(command)
}
