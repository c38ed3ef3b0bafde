//! `relay compare`, `relay plan` and `relay report`: the seeds' analyses of results already
//! written.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// How an analysis prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables for people.
    Table,
    /// One JSON object for machines.
    Json,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Verdicts (seed 002): latency OPTIMIZED if the overlay's mean is below the \
    direct mean, OK if below direct + max(20 ms, 15% of direct), else BAD; loss (events_lost / \
    (sample_count + events_lost) x 100) OPTIMIZED if lower, OK if equal or less than 1 point \
    worse, else BAD. Either file may be the seed tool's own summary (its twelve fields)."
)]
pub struct CompareArgs {
    /// Receiver summary of the direct path (`relay receive --mode baseline`).
    #[arg(value_name = "DIRECT.json")]
    pub direct: PathBuf,
    /// Receiver summary of the overlay path (`relay receive --mode aws-backbone`).
    #[arg(value_name = "OVERLAY.json")]
    pub overlay: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Probe summaries: the target to compare in both files.
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Probe summaries: the target of the direct file (e.g. both paths probed in one run).
    #[arg(long, value_name = "HOST:PORT")]
    pub direct_target: Option<String>,
    /// Probe summaries: the target of the overlay file.
    #[arg(long, value_name = "HOST:PORT")]
    pub overlay_target: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "The direct RTT of a pair is the median of all its samples in both \
    directions; via relay r it is direct(src, r) + direct(r, dst). A pair is improved when its \
    best relay's RTT is below the direct one. Relays are ranked by the improved pairs they are \
    best for; gain_by_top_relays[k-1] is the share of all pairs some relay among the top k \
    improves (seed 001)."
)]
pub struct PlanArgs {
    /// CSV of RTT samples with a header naming src, dst and rtt_ms (other columns are ignored;
    /// `relay probe mesh` datasets as they are); repeat to read several.
    #[arg(long, value_name = "FILE", required = true)]
    pub rtt: Vec<PathBuf>,
    /// Only these nodes may relay (comma-separated or repeated) [default: every node].
    #[arg(long, value_name = "NODE", value_delimiter = ',')]
    pub relays: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Pairs to list in the table, the most improved first (JSON lists them all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Reads the receivers' JSON summaries with their CSVs and any RTT datasets \
    (CSV with src, dst, rtt_ms: relay probe mesh's) in DIR and writes DIR/report.html: one \
    self-contained page (SVG inline, no script) with the comparison and its verdicts, latency CDFs, \
    latency over time with seed 002's rolling median, missing and late messages over time, the \
    latency split, the RTT matrix and the gain by number of relays."
)]
pub struct ReportArgs {
    /// A results folder (`cargo xtask lab`, `demo`, or your own runs).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}
