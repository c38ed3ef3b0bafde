//! The recorder thread: takes one [`Record`] per delivered message over a crossbeam channel and
//! runs it through the core's [`Recorded`] (CSV row, latency statistics), so the receiving
//! thread only accounts.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::thread::JoinHandle;

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};
use relay_core::record::{Record, Recorded};

/// Starts the recorder writing `csv_path`; it finishes when the sender is dropped.
pub fn spawn(
    csv_path: &Path,
) -> anyhow::Result<(Sender<Record>, JoinHandle<anyhow::Result<Recorded>>)> {
    let file =
        File::create(csv_path).with_context(|| format!("creating {}", csv_path.display()))?;
    let path = csv_path.to_path_buf();
    // Deep enough to ride out a slow disk for a while; a full channel blocks the receiver
    // (its socket buffer then absorbs the burst) rather than dropping a record.
    let (tx, rx) = crossbeam_channel::bounded(1 << 20);
    let handle = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            record_all(rx, BufWriter::with_capacity(1 << 20, file))
                .with_context(|| format!("writing {}", path.display()))
        })
        .context("spawning the recorder thread")?;
    Ok((tx, handle))
}

fn record_all(rx: Receiver<Record>, mut csv: impl Write) -> anyhow::Result<Recorded> {
    Recorded::write_header(&mut csv)?;
    let mut recorded = Recorded::default();
    for record in rx {
        recorded.record(&record, &mut csv)?;
    }
    csv.flush()?;
    Ok(recorded)
}
