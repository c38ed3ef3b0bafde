//! HdrHistogram interval logs (`--hlog FILE`): the standard `.hlog` text format of the Java
//! `HistogramLogWriter`, readable by HdrHistogram's own tools (`HistogramLogProcessor`,
//! HdrHistogram_py's `HistogramLogReader`, the Rust crate's `IntervalLogIterator`). Each interval
//! writes, per tag (a latency component), the histogram of what was recorded since the last one,
//! in ns, compressed (V2 + deflate, base64).
//!
//! Pure writing into an `io::Write`; the caller passes the times.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::stats::LatencyStats;

/// The legend line every interval log carries after its headers.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

/// An interval log being written.
pub struct IntervalLog<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
    /// Each tag's cumulative histogram at the end of its last interval.
    last: HashMap<&'static str, Histogram<u64>>,
}

impl<W: Write> IntervalLog<W> {
    /// Writes the headers: `base_unix_secs` is the run's start (StartTime and BaseTime);
    /// interval timestamps are seconds since then.
    pub fn begin(mut out: W, base_unix_secs: f64, comment: &str) -> io::Result<IntervalLog<W>> {
        let mut serializer = V2DeflateSerializer::new();
        let base = std::time::UNIX_EPOCH + Duration::from_secs_f64(base_unix_secs.max(0.0));
        IntervalLogWriterBuilder::new()
            .add_comment(comment)
            .with_start_time(base)
            .with_base_time(base)
            .begin_log_with(&mut out, &mut serializer)?;
        writeln!(out, "{LEGEND}")?;
        Ok(IntervalLog {
            out,
            serializer,
            last: HashMap::new(),
        })
    }

    /// Writes `tag`'s interval: what `stats` recorded since this tag's last interval, which
    /// started `start` after the base time and lasted `length`. Nothing is written for an
    /// interval without samples.
    pub fn interval(
        &mut self,
        tag: &'static str,
        stats: &LatencyStats,
        start: Duration,
        length: Duration,
    ) -> io::Result<()> {
        let now = stats.histogram();
        let mut delta = now.clone();
        if let Some(last) = self.last.get(tag) {
            delta
                .subtract(last)
                .map_err(|e| io::Error::other(format!("hlog interval for {tag}: {e:?}")))?;
        }
        self.last.insert(tag, now.clone());
        if delta.is_empty() {
            return Ok(());
        }
        IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)?
            .write_histogram(&delta, start, length, Tag::new(tag))
            .map_err(|e| io::Error::other(format!("writing the hlog: {e}")))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn intervals_hold_what_was_recorded_since_the_last_and_read_back() {
        let mut stats = LatencyStats::default();
        let mut log = IntervalLog::begin(Vec::new(), 1_700_000_000.0, "relay receive").unwrap();
        for ms in [1, 2, 3] {
            stats.record(ms * 1_000_000);
        }
        log.interval("end_to_end", &stats, Duration::ZERO, Duration::from_secs(1))
            .unwrap();
        log.interval(
            "end_to_end",
            &stats,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap();
        stats.record(50_000_000);
        log.interval(
            "end_to_end",
            &stats,
            Duration::from_secs(2),
            Duration::from_secs(1),
        )
        .unwrap();
        let text = String::from_utf8(log.out).unwrap();
        assert!(
            text.starts_with("#relay receive\n#[StartTime: 1700000000.000"),
            "{text}"
        );
        assert!(text.contains(LEGEND), "{text}");
        let mut histograms = Vec::new();
        for entry in IntervalLogIterator::new(text.as_bytes()) {
            if let LogEntry::Interval(h) = entry.unwrap() {
                assert_eq!(h.tag().map(|t| t.as_str()), Some("end_to_end"));
                let decoded: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
                    .deserialize(&mut base64_decode(h.encoded_histogram()).as_slice())
                    .unwrap();
                histograms.push((h.start_timestamp(), decoded));
            }
        }
        assert_eq!(
            histograms.len(),
            2,
            "the empty second interval is not written"
        );
        assert_eq!(histograms[0].1.len(), 3);
        assert_eq!(histograms[1].0, Duration::from_secs(2));
        assert_eq!(histograms[1].1.len(), 1, "only what came since");
        assert!(histograms[1].1.max() >= 50_000_000);
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    }
}
