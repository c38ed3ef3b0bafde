//! The recorder thread: takes one [`Record`] per delivered message over a crossbeam channel and
//! runs it through the core's [`Recorded`] (CSV row, latency statistics), so the receiving
//! thread only accounts.
//!
//! The CSV is flushed at least every second, so a crash loses at most the last second of rows. A
//! write error (a full disk) stops the CSV, not the run: the statistics go on, and the error is
//! handed back for the summary.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use relay_core::record::{Record, Recorded};

/// Longest a written row waits in the buffer before it reaches the file.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What the recorder made of the run: the figures, and why the CSV stopped early if it did.
pub struct RecorderOutcome {
    pub recorded: Recorded,
    pub csv_error: Option<String>,
}

/// Starts the recorder writing `csv_path` (created now, so an unwritable path fails at once);
/// it finishes when the sender is dropped.
pub fn spawn(csv_path: &Path) -> anyhow::Result<(Sender<Record>, JoinHandle<RecorderOutcome>)> {
    let file = File::create(csv_path)
        .with_context(|| format!("cannot create the CSV {}", csv_path.display()))?;
    let path = csv_path.to_path_buf();
    // Deep enough to ride out a slow disk for a while; a full channel blocks the receiver
    // (its socket buffer then absorbs the burst) rather than dropping a record.
    let (tx, rx) = crossbeam_channel::bounded(1 << 20);
    let handle = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || record_all(rx, BufWriter::with_capacity(1 << 20, file), &path))
        .context("spawning the recorder thread")?;
    Ok((tx, handle))
}

fn record_all(rx: Receiver<Record>, file: impl Write, path: &Path) -> RecorderOutcome {
    let mut recorded = Recorded::default();
    let mut csv = Csv {
        out: Some(file),
        error: None,
        rows: 0,
        path,
    };
    let mut row = Vec::with_capacity(512);
    // Rows are built in memory (which cannot fail) and then written, so the figures never
    // depend on the disk.
    let _ = Recorded::write_header(&mut row);
    csv.write(&row);
    let mut flushed = Instant::now();
    loop {
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(record) => {
                row.clear();
                let _ = recorded.record(&record, &mut row);
                csv.write(&row);
                csv.rows += 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if flushed.elapsed() >= FLUSH_EVERY {
            csv.flush();
            flushed = Instant::now();
        }
    }
    csv.flush();
    RecorderOutcome {
        recorded,
        csv_error: csv.error,
    }
}

/// The CSV file until a write fails; then only the error.
struct Csv<'p, W: Write> {
    out: Option<W>,
    error: Option<String>,
    rows: u64,
    path: &'p Path,
}

impl<W: Write> Csv<'_, W> {
    fn write(&mut self, bytes: &[u8]) {
        let result = self.out.as_mut().map(|out| out.write_all(bytes));
        self.check(result);
    }

    fn flush(&mut self) {
        let result = self.out.as_mut().map(Write::flush);
        self.check(result);
    }

    fn check(&mut self, result: Option<std::io::Result<()>>) {
        if let Some(Err(e)) = result {
            self.error = Some(format!(
                "writing {} failed after {} rows: {e}; the CSV is incomplete, the summary is not",
                self.path.display(),
                self.rows
            ));
            self.out = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that fills up after `room` bytes.
    struct Full {
        room: usize,
        written: Vec<u8>,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.written.len() + buf.len() > self.room {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_stops_the_csv_not_the_figures() {
        let (tx, rx) = crossbeam_channel::unbounded();
        for sequence in 1..=100 {
            tx.send(Record {
                sequence,
                event_time_ns: Some(1_000),
                done_ns: 2_000_000,
                ..Record::default()
            })
            .unwrap();
        }
        drop(tx);
        let full = Full {
            room: 2_000,
            written: Vec::new(),
        };
        let outcome = record_all(rx, full, Path::new("results.csv"));
        assert_eq!(outcome.recorded.messages, 100);
        assert_eq!(outcome.recorded.end_to_end.summary().unwrap().count, 100);
        let error = outcome.csv_error.unwrap();
        assert!(
            error.contains("results.csv") && error.contains("No space left on device"),
            "{error}"
        );
    }
}
