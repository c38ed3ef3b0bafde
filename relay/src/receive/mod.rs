//! `relay receive`: the Frankfurt side. Takes relay datagrams (aws-backbone mode), connects
//! straight to the exchange (baseline mode), or both at once, A/B-arbitrated (both mode), and
//! accounts every message: loss, duplicates, reordering, latency, then writes the seed's JSON
//! summary and CSV.

mod baseline;
mod deliver;
mod paths;
mod recorder;
pub mod rx_time;
mod serve;
mod udp;

pub use serve::DEFAULT_QUEUE as SERVE_QUEUE;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use relay_core::binance::stream::StreamNames;
use relay_core::receive::accounting;
use relay_core::record::summary::Summary;

use crate::cli::receive::{Mode, ReceiveArgs, ReceiveSettings};

/// Runs the receiver for the configured duration (or until Ctrl-C) and writes its results. The
/// JSON is written whatever happened (atomically: a temporary file renamed into place); what
/// went wrong is in its `errors` and makes this return an error afterwards.
pub fn run(args: ReceiveArgs) -> anyhow::Result<Summary> {
    let settings = ReceiveSettings::resolve(args)?;
    let json = JsonOutput::create(&settings.json_path)?;
    let board = crate::metrics::board_for(settings.metrics, "receiver")?;
    let (records, recorder) =
        recorder::spawn(&settings.csv_path, board.clone(), settings.hlog.as_deref())?;
    let endpoint = settings
        .serve_ws
        .map(|address| {
            // The unit of the events' times is known when this receiver connects itself.
            let unit = (settings.mode != Mode::AwsBackbone).then_some(settings.endpoint.time_unit);
            serve::Endpoint::start(address, settings.serve_queue, stream_names(&settings), unit)
        })
        .transpose()?;
    let feed = settings
        .serve_udp
        .map(|to| serve::datagrams::DatagramFeed::start(to, settings.secret.as_ref()))
        .transpose()?;
    let started = Instant::now();
    let staged = endpoint.is_some() || feed.is_some() || settings.relay_ports.len() > 1;
    let outcome = match settings.mode {
        Mode::AwsBackbone if !staged => {
            udp::receive(&settings, settings.listen, true, records, board)
        }
        Mode::Baseline if !staged => baseline::receive(&settings, records, board),
        _ => paths::receive(&settings, records, board, endpoint, feed),
    };
    let recorded = recorder
        .join()
        .map_err(|_| anyhow::anyhow!("the recorder thread panicked"))?;
    let mut outcome = outcome?;
    outcome.clock = crate::clock_state::read().ok();
    let summary = Summary::build(
        settings.mode.setup_type(),
        &recorded.recorded,
        outcome,
        started.elapsed().as_secs_f64(),
        recorded.errors.as_slice(),
    );
    json.write(&summary)?;
    if let Some(c) = &summary.accounting {
        for (count, why) in [
            (c.unsealed, "were not sealed: does the relay have the same --key-file, or is something else sending here?"),
            (c.bad_seal, "did not open with the key: another key, or forged"),
            (c.sealed_without_key, "were sealed, and this receiver has no --key-file: give it the relay's"),
        ] {
            if count > 0 {
                eprintln!("receiver: {count} datagrams {why}");
            }
        }
    }
    if let Some(doubt) = &summary.clock_warning {
        eprintln!("receiver: warning: {doubt}");
    }
    eprintln!(
        "receiver: {} messages, {} lost, results in {} and {}",
        summary.sample_count,
        summary.events_lost,
        settings.json_path.display(),
        settings.csv_path.display()
    );
    if !summary.errors.is_empty() {
        anyhow::bail!("{}", summary.errors.join("; "));
    }
    Ok(summary)
}

/// The streams `--serve-ws` names raw messages by: the `--stream` ones, and the exchange URL's
/// when this receiver connects to it (in aws-backbone mode the relay's URL is not known here).
fn stream_names(settings: &ReceiveSettings) -> StreamNames {
    let from_url = match settings.mode {
        Mode::AwsBackbone => Vec::new(),
        Mode::Baseline | Mode::Both => StreamNames::of_url(&settings.endpoint.url),
    };
    StreamNames::new(from_url.into_iter().chain(settings.streams.iter().cloned()))
}

/// The JSON summary's path and the temporary file beside it, created at the start so that an
/// unwritable place fails before the run rather than after it.
struct JsonOutput {
    path: PathBuf,
    partial: PathBuf,
}

impl JsonOutput {
    fn create(path: &Path) -> anyhow::Result<JsonOutput> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        std::fs::File::create(&partial).with_context(|| {
            format!(
                "cannot write the results next to {}: creating {}",
                path.display(),
                partial.display()
            )
        })?;
        Ok(JsonOutput {
            path: path.to_path_buf(),
            partial,
        })
    }

    /// Writes the summary to the temporary file and renames it into place; if that fails, the
    /// summary goes to stdout so the run is not lost.
    fn write(self, summary: &Summary) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(summary).context("encoding the summary")? + "\n";
        let written = std::fs::write(&self.partial, &json)
            .and_then(|()| std::fs::rename(&self.partial, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&self.partial);
            println!("{json}");
            anyhow::bail!(
                "writing {} failed: {e}; the summary is on stdout above",
                self.path.display()
            );
        }
        Ok(())
    }
}

/// The receiver's progress line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Counting relay datagrams (aws-backbone) rather than a direct connection (baseline).
    pub relayed: bool,
    pub messages: u64,
    pub datagrams: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub malformed: u64,
    /// Datagrams dropped for their seal.
    pub unauthenticated: u64,
    pub reconnects: u64,
    /// New relay epochs that took over.
    pub relay_restarts: u64,
    /// Messages that arrived again by recovery.
    pub recovered: u64,
}

impl Progress {
    fn of(c: &accounting::Counters) -> Progress {
        Progress {
            relayed: true,
            messages: c.messages,
            datagrams: c.datagrams,
            lost: c.lost,
            duplicates: c.duplicates,
            reordered: c.reordered,
            malformed: c.malformed.total(),
            unauthenticated: c.unauthenticated(),
            reconnects: c.upstream_generation_changes,
            relay_restarts: c.relay_restarts,
            recovered: c.retransmitted,
        }
    }
}

impl crate::report::Figures for Progress {
    fn exposition(&self) -> String {
        let mut e = relay_core::metrics::Exposition::default();
        for (name, help, value) in [
            (
                "relay_receiver_messages_total",
                "Messages delivered (each once).",
                self.messages,
            ),
            (
                "relay_receiver_datagrams_total",
                "Relay datagrams received.",
                self.datagrams,
            ),
            (
                "relay_receiver_lost_total",
                "Messages counted lost.",
                self.lost,
            ),
            (
                "relay_receiver_recovered_total",
                "Messages that came back by recovery.",
                self.recovered,
            ),
            (
                "relay_receiver_duplicates_total",
                "Duplicate messages dropped.",
                self.duplicates,
            ),
            (
                "relay_receiver_reordered_total",
                "Messages that arrived after a later one.",
                self.reordered,
            ),
            (
                "relay_receiver_malformed_datagrams_total",
                "Datagrams that are not valid relay datagrams.",
                self.malformed,
            ),
            (
                "relay_receiver_unauthenticated_datagrams_total",
                "Datagrams dropped for their seal.",
                self.unauthenticated,
            ),
            (
                "relay_receiver_exchange_reconnects_total",
                "Exchange reconnects (relay or direct).",
                self.reconnects,
            ),
            (
                "relay_receiver_relay_restarts_total",
                "New relay epochs that took over.",
                self.relay_restarts,
            ),
        ] {
            e.counter(name, help, value);
        }
        e.finish()
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.relayed {
            return write!(
                f,
                "{} messages, exchange reconnects {}",
                self.messages, self.reconnects
            );
        }
        write!(
            f,
            "{} messages from {} datagrams; lost {}, recovered {}, duplicates {}, reordered {}, malformed {}, unauthenticated {}, exchange reconnects {}, relay restarts {}",
            self.messages, self.datagrams, self.lost, self.recovered, self.duplicates, self.reordered, self.malformed, self.unauthenticated, self.reconnects, self.relay_restarts
        )
    }
}
