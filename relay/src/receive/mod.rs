//! `relay receive`: the Frankfurt side. Takes relay datagrams (aws-backbone mode) or connects
//! straight to the exchange (baseline mode) and accounts every message: loss, duplicates,
//! reordering, latency, then writes the seed's JSON summary and CSV.

mod baseline;
mod recorder;
pub mod rx_time;
mod udp;

use std::time::Instant;

use anyhow::Context;
use relay_core::receive::accounting;
use relay_core::record::summary::Summary;

use crate::cli::receive::{Mode, ReceiveArgs, ReceiveSettings};

/// Runs the receiver for the configured duration (or until Ctrl-C) and writes its results.
pub fn run(args: ReceiveArgs) -> anyhow::Result<Summary> {
    let settings = ReceiveSettings::resolve(args)?;
    let (records, recorder) = recorder::spawn(&settings.csv_path)?;
    let started = Instant::now();
    let outcome = match settings.mode {
        Mode::AwsBackbone => udp::receive(&settings, records),
        Mode::Baseline => baseline::receive(&settings, records),
    };
    let recorded = recorder
        .join()
        .map_err(|_| anyhow::anyhow!("the recorder thread panicked"))??;
    let summary = Summary::build(
        settings.mode.setup_type(),
        &recorded,
        outcome?,
        started.elapsed().as_secs_f64(),
    );
    let json = serde_json::to_string_pretty(&summary).context("encoding the summary")?;
    std::fs::write(&settings.json_path, json + "\n")
        .with_context(|| format!("writing {}", settings.json_path.display()))?;
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
    eprintln!(
        "receiver: {} messages, {} lost, results in {} and {}",
        summary.sample_count,
        summary.events_lost,
        settings.json_path.display(),
        settings.csv_path.display()
    );
    Ok(summary)
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
