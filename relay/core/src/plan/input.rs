//! The planner's input: CSV with a header naming at least `src`, `dst` and `rtt_ms` (in any
//! order; other columns, such as a timestamp, are ignored), one RTT sample per row, any number of
//! samples per pair and direction. A row whose `rtt_ms` is empty (a probe mesh round that got no
//! reply) has no sample and is counted.

/// One RTT sample between two nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub src: String,
    pub dst: String,
    pub rtt_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("the CSV header has no {0:?} column (it needs src, dst and rtt_ms)")]
    MissingColumn(&'static str),
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
    #[error("reading the CSV: {0}")]
    Csv(#[from] csv::Error),
}

fn row_error(record: &csv::StringRecord, message: String) -> InputError {
    InputError::Row {
        line: record.position().map_or(0, |p| p.line()),
        message,
    }
}

/// What a CSV held.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Input {
    pub samples: Vec<Sample>,
    /// Rows with an empty `rtt_ms`: nothing measured.
    pub rows_without_rtt: u64,
}

/// Parses `bytes` as the planner's CSV, adding to `input`.
pub fn parse_csv(bytes: &[u8], input: &mut Input) -> Result<(), InputError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader.headers()?.clone();
    let column = |name: &'static str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(InputError::MissingColumn(name))
    };
    let (src, dst, rtt) = (column("src")?, column("dst")?, column("rtt_ms")?);
    for record in reader.records() {
        let record = record?;
        let field = |i: usize| record.get(i).unwrap_or_default();
        let (s, d, r) = (field(src), field(dst), field(rtt));
        if s.is_empty() || d.is_empty() {
            return Err(row_error(&record, "empty node name".into()));
        }
        if s == d {
            return Err(row_error(&record, format!("src and dst are both {s:?}")));
        }
        if r.is_empty() {
            input.rows_without_rtt += 1;
            continue;
        }
        let rtt_ms = r
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                row_error(
                    &record,
                    format!("rtt_ms {r:?} is not a non-negative number of ms"),
                )
            })?;
        input.samples.push(Sample {
            src: s.to_string(),
            dst: d.to_string(),
            rtt_ms,
        });
    }
    Ok(())
}
