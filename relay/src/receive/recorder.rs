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
use relay_core::hlog::IntervalLog;
use relay_core::metrics::{Exposition, Kind};
use relay_core::record::{Record, Recorded};

use crate::metrics::{Board, Part};

/// Longest a written row waits in the buffer before it reaches the file.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What the recorder made of the run: the figures, and why the CSV stopped early if it did.
pub struct RecorderOutcome {
    pub recorded: Recorded,
    /// Why the CSV (or the interval log) stopped early, if it did.
    pub errors: Vec<String>,
}

/// Starts the recorder writing `csv_path` (created now, so an unwritable path fails at once);
/// it finishes when the sender is dropped.
pub fn spawn(
    csv_path: &Path,
    board: Option<Board>,
    hlog_path: Option<&Path>,
) -> anyhow::Result<(Sender<Record>, JoinHandle<RecorderOutcome>)> {
    let file = File::create(csv_path)
        .with_context(|| format!("cannot create the CSV {}", csv_path.display()))?;
    let hlog = hlog_path
        .map(|path| {
            let file = File::create(path)
                .with_context(|| format!("cannot create the interval log {}", path.display()))?;
            let base = relay_host::clock::realtime_ns() as f64 / 1e9;
            IntervalLog::begin(
                BufWriter::new(file),
                base,
                "relay receive: latency per component, ns",
            )
            .with_context(|| format!("writing {}", path.display()))
            .map(|log| Intervals {
                log,
                base: Instant::now(),
                from: Instant::now(),
                error: None,
                path: path.to_path_buf(),
            })
        })
        .transpose()?;
    let path = csv_path.to_path_buf();
    // Deep enough to ride out a slow disk for a while; a full channel blocks the receiver
    // (its socket buffer then absorbs the burst) rather than dropping a record.
    let (tx, rx) = crossbeam_channel::bounded(1 << 20);
    let handle = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            record_all(
                rx,
                BufWriter::with_capacity(1 << 20, file),
                &path,
                board,
                hlog,
            )
        })
        .context("spawning the recorder thread")?;
    Ok((tx, handle))
}

fn record_all(
    rx: Receiver<Record>,
    file: impl Write,
    path: &Path,
    board: Option<Board>,
    mut hlog: Option<Intervals>,
) -> RecorderOutcome {
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
            if let Some(board) = &board {
                board.set(Part::Latency, latency_exposition(&recorded));
            }
            if let Some(hlog) = &mut hlog {
                hlog.write(&recorded);
            }
            flushed = Instant::now();
        }
    }
    csv.flush();
    let hlog_error = hlog.and_then(|mut h| {
        h.write(&recorded);
        h.error
    });
    RecorderOutcome {
        recorded,
        errors: csv.error.into_iter().chain(hlog_error).collect(),
    }
}

/// `--hlog`: the interval log and where its current interval began.
struct Intervals {
    log: IntervalLog<BufWriter<File>>,
    base: Instant,
    from: Instant,
    /// Set when a write failed; the log then stops, the run goes on.
    error: Option<String>,
    path: std::path::PathBuf,
}

impl Intervals {
    /// Writes the interval that ends now, one histogram per component.
    fn write(&mut self, r: &Recorded) {
        if self.error.is_some() {
            return;
        }
        let now = Instant::now();
        let (start, length) = (self.from - self.base, now - self.from);
        self.from = now;
        let result = components(r)
            .into_iter()
            .try_for_each(|(tag, stats)| self.log.interval(tag, stats, start, length))
            .and_then(|()| self.log.flush());
        if let Err(e) = result {
            self.error = Some(format!(
                "writing the interval log {} failed: {e}; it is incomplete",
                self.path.display()
            ));
        }
    }
}

/// The latency components, named as the metrics and the interval log name them.
fn components(r: &Recorded) -> [(&'static str, &relay_core::stats::LatencyStats); 9] {
    let split = &r.split;
    [
        ("end_to_end", &r.end_to_end),
        ("backbone", &r.backbone),
        ("exchange_to_relay", &split.exchange_to_relay),
        ("relay_dwell", &split.relay_dwell),
        ("network", &split.network),
        ("kernel", &split.kernel),
        ("kernel_to_socket", &split.kernel_to_socket),
        ("socket_to_app", &split.socket_to_app),
        ("application", &split.application),
    ]
}

/// The latency histograms for the metrics page, one per component of the split (and the
/// end-to-end and backbone figures), as `relay_latency_seconds{component=...}`.
fn latency_exposition(r: &Recorded) -> String {
    let mut e = Exposition::default();
    e.family(
        "relay_latency_seconds",
        Kind::Histogram,
        "Latency per component: end_to_end (E to accounted), backbone (relay send to accounted), and the split's parts.",
    );
    for (component, stats) in components(r) {
        e.histogram("relay_latency_seconds", &[("component", component)], stats);
    }
    e.finish()
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
        let outcome = record_all(rx, full, Path::new("results.csv"), None, None);
        assert_eq!(outcome.recorded.messages, 100);
        assert_eq!(outcome.recorded.end_to_end.summary().unwrap().count, 100);
        let error = outcome.errors[0].clone();
        assert!(
            error.contains("results.csv") && error.contains("No space left on device"),
            "{error}"
        );
    }
}
