//! `relay`: the relay (forward), the receiver (receive) and the exchange simulator (feed-sim).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "relay",
    version,
    about = "Low-latency market-data relay: exchange WebSocket -> sequenced UDP -> accounted receiver",
    long_about = "Low-latency market-data relay.\n\n\
        relay forward   holds exchange WebSocket streams (Tokyo) and forwards every message as sequenced UDP\n\
        relay receive   accounts relay datagrams, a direct exchange connection, or both A/B-arbitrated; writes JSON + CSV (Frankfurt)\n\
        relay feed-sim  a Binance-compatible TLS WebSocket exchange simulator for tests, benchmarks and the lab\n\
        relay probe     irtt-style UDP probing: reflect (answer), run (send), mesh (seed 002's schedule)\n\
        relay compare   two receiver summaries side by side, with OPTIMIZED/OK/BAD verdicts\n\
        relay plan      which one-hop relays beat the direct paths of an RTT matrix\n\
        relay report    one HTML page of plots from a results folder\n\
        relay doctor    what to change on this host for the relay and the receiver\n\n\
        The wire format is documented in relay/PROTOCOL.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Forward an exchange WebSocket to one or more receivers over UDP (the Tokyo relay).
    Forward(relay::cli::forward::ForwardArgs),
    /// Receive and account relay datagrams, a direct exchange feed, or both A/B-arbitrated (the
    /// Frankfurt receiver).
    Receive(relay::cli::receive::ReceiveArgs),
    /// Run the built-in Binance-compatible exchange simulator (the `feed-sim` crate; builds
    /// without the `feed-sim` feature leave it out).
    #[cfg(feature = "feed-sim")]
    FeedSim(feed_sim::FeedSimArgs),
    /// Probe paths with UDP (irtt style): `reflect` answers, `run` sends and summarises.
    Probe(relay::cli::probe::ProbeArgs),
    /// Compare a direct run's summary with an overlay run's: differences and verdicts.
    Compare(relay::cli::analyse::CompareArgs),
    /// Plan relays from RTT samples: improved pairs, best relays, gain by number of relays.
    Plan(relay::cli::analyse::PlanArgs),
    /// Write DIR/report.html: the plots of a results folder on one self-contained page.
    Report(relay::cli::analyse::ReportArgs),
    /// Inspect this host (read only): CPU isolation, IRQs, governor, busy polling, socket
    /// buffers, io_uring, BTF, clock sync, the receiver's interface. Exit 0 unless something
    /// blocks.
    Doctor(DoctorArgs),
}

#[derive(clap::Args)]
struct DoctorArgs {
    /// The core the relay will be pinned to (`relay forward --core`) [default: the last].
    #[arg(long, value_name = "N")]
    core: Option<usize>,
    /// The receiver's interface (`relay receive --iface`): driver, hardware timestamps.
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Forward(args) => relay::forward::run(args),
        Command::Receive(args) => relay::receive::run(args).map(|_| ()),
        #[cfg(feature = "feed-sim")]
        Command::FeedSim(args) => feed_sim::run(args),
        Command::Probe(args) => relay::probe::run(args),
        Command::Compare(args) => relay::analyse::compare(args),
        Command::Plan(args) => relay::analyse::plan(args),
        Command::Report(args) => relay::analyse::report(args),
        Command::Doctor(args) => {
            let found = relay::doctor::checks::findings(&relay::doctor::facts(
                args.core,
                args.iface.as_deref(),
            ));
            print!("{}", relay::doctor::render(&found));
            return std::process::ExitCode::from(relay::doctor::checks::exit_code(&found));
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
