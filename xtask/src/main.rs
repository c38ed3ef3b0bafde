//! `cargo xtask <command>`: the project's build, run and test entry points.

mod demo;
mod lab;
mod process;
mod results;

use std::path::PathBuf;

use anyhow::Result;
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
    /// Run every check CI runs: formatting, clippy (warnings are errors) and all tests.
    Test,
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
    /// Build in release mode and run `relay receive` with the given arguments.
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
        Command::Lab(args) => lab::run(args),
        Command::Demo(args) => demo::run(args),
        Command::RunRelay { args } => run_relay_binary("forward", args),
        Command::RunReceiver { args } => run_relay_binary("receive", args),
        Command::FeedSim { args } => run_relay_binary("feed-sim", args),
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
    process::step(
        "checking formatting",
        process::cargo(&["fmt", "--all", "--", "--check"]),
    )?;
    process::step(
        "running clippy",
        process::cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    process::step(
        "running the tests",
        process::cargo(&["test", "--workspace", "--locked"]),
    )?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

fn run_relay_binary(subcommand: &str, args: Vec<String>) -> Result<()> {
    let relay = process::build_release_relay()?;
    let mut command = std::process::Command::new(relay);
    command.arg(subcommand).args(args);
    process::exec(command)
}
