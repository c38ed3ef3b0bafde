//! `relay probe`'s command lines: `reflect` (answer probes) and `run` (send them).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(subcommand)]
    pub command: ProbeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProbeCommand {
    /// Answer probes on a UDP port: each reply carries when the probe arrived, when it was
    /// answered and how many probes of its session arrived so far; a reply is never longer than
    /// its probe.
    Reflect(ReflectArgs),
    /// Send isochronous probes to one or more reflectors and write one JSON line per probe, then
    /// a summary per target (loss by direction, RTT, one-way delays, IPDV).
    Run(RunArgs),
    /// Seed 002's mesh: every node answers probes and, every period, probes every other node,
    /// appending one row per pair to a dataset `relay plan --rtt` reads.
    Mesh(MeshArgs),
}

#[derive(Debug, Args)]
pub struct ReflectArgs {
    /// Address and port to answer on.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Shared secret: answer only probes sealed with it, and seal the replies.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Stop after this many seconds [default: until SIGINT/SIGTERM].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "RTT = reply received - probe sent - (reflector sent - reflector \
    received): the reflector's own time is left out. One-way delays need the two hosts' clocks \
    in agreement; the summary records this host's clock state (adjtimex) and warns when it is \
    not synchronised. A probe without a reply within --timeout is lost; a reply after that \
    counts as late. Times are kernel receive stamps (SO_TIMESTAMPING) where the kernel gives \
    them, else the receive call's return."
)]
pub struct RunArgs {
    /// A reflector (`relay probe reflect`) to probe; repeat for several, each probed every
    /// interval.
    #[arg(long = "to", value_name = "HOST:PORT", required = true)]
    pub targets: Vec<String>,
    /// Probes per target.
    #[arg(long, default_value_t = 10)]
    pub count: u64,
    /// Milliseconds between probes.
    #[arg(long, value_name = "MS", default_value_t = 1000.0)]
    pub interval_ms: f64,
    /// Bytes per probe datagram (UDP payload, seal included); replies are the same length
    /// [default: the shortest, 72, or 96 with --key-file].
    #[arg(long, value_name = "BYTES")]
    pub length: Option<usize>,
    /// Milliseconds after which a probe without a reply is lost.
    #[arg(long, value_name = "MS", default_value_t = 3000.0)]
    pub timeout_ms: f64,
    /// Local address to send from [default: any, an ephemeral port].
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<SocketAddr>,
    /// Shared secret: seal the probes, believe only replies sealed with it.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// JSON Lines, one per probe and target, written as each is resolved.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The summary: `{"targets": [...]}` with one object per target.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "mesh.json: {\"nodes\": [{\"name\": \"tokyo\", \"address\": \"10.0.1.5:9000\"}, \
    ...], \"probes\": 10, \"every_secs\": 600, \"interval_ms\": 1000, \"timeout_ms\": 3000, \
    \"length\": 72, \"key_file\": \"mesh.key\", \"dataset\": \"mesh-{node}.csv\"}; only nodes is \
    required (the rest: seed 002's schedule and these defaults). A node's optional \"listen\" is \
    the address its reflector binds, when \"address\" is what others reach (NAT). Each round \
    appends one row per other node to the dataset: time,src,dst,rtt_ms,loss_pct,sent,received,\
    rtt_min_ms,rtt_p50_ms,rtt_max_ms (rtt_ms: the round's mean, empty when nothing came back), \
    which `relay plan --rtt` reads as it is."
)]
pub struct MeshArgs {
    /// The mesh: every node's name and address, and the schedule.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Which node of the mesh this host is: it answers on that node's address and probes all the
    /// others.
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Stop after this many rounds (then keep answering for one more period, so the other
    /// nodes' last round is answered) [default: until SIGINT/SIGTERM].
    #[arg(long, value_name = "N")]
    pub rounds: Option<u64>,
}
