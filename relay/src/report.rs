//! Progress reporting off the hot thread: the hot thread sends plain values over a crossbeam
//! channel (`try_send`, never blocking) about once a second ([`crate::metrics::REFRESH`]); this
//! thread prints them to stderr every `--report-secs` and, with `--metrics`, puts them on the
//! metrics page each time.

use std::fmt::Display;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::metrics::{Board, Part};

use crossbeam_channel::{Receiver, Sender};

use relay_core::exchange_link::{Notice, RotationReason};

pub enum Report<S> {
    Link(Notice),
    Stats(S),
    /// The figures at the end of the run: always printed.
    Final(S),
}

/// Figures that go on the metrics page.
pub trait Figures {
    /// The figures as Prometheus text ([`relay_core::metrics::Exposition`]).
    fn exposition(&self) -> String;
}

/// How often a producer sends its figures: the metrics page's refresh, or the print interval
/// when that is shorter.
pub fn send_every(print_every: Duration) -> Duration {
    print_every.min(crate::metrics::REFRESH)
}

/// Room for bursts of connection events; a full channel drops the report, never blocks.
const CAPACITY: usize = 1024;

/// Starts the printer thread, printing figures every `print_every` and posting them on `board`
/// (with `--metrics`); it ends when every sender is dropped.
pub fn spawn<S: Display + Figures + Send + 'static>(
    name: &'static str,
    print_every: Duration,
    board: Option<Board>,
) -> (Sender<Report<S>>, JoinHandle<()>) {
    let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
    let handle = std::thread::Builder::new()
        .name(format!("{name}-report"))
        .spawn(move || print_reports(name, rx, print_every, board))
        .expect("spawning the report thread");
    (tx, handle)
}

fn print_reports<S: Display + Figures>(
    name: &str,
    rx: Receiver<Report<S>>,
    print_every: Duration,
    board: Option<Board>,
) {
    // Figures come about once a second; half of that is slack, so a 5 s interval prints every
    // fifth rather than every sixth.
    let slack = send_every(print_every) / 2;
    let mut printed = Instant::now();
    for report in rx {
        let (stats, last) = match report {
            Report::Link(notice) => {
                eprintln!("{name}: {}", describe(&notice));
                continue;
            }
            Report::Stats(stats) => (stats, false),
            Report::Final(stats) => (stats, true),
        };
        if let Some(board) = &board {
            board.set(Part::Counters, stats.exposition());
        }
        if last || printed.elapsed() + slack >= print_every {
            eprintln!("{name}: {stats}");
            printed = Instant::now();
        }
    }
}

fn describe(notice: &Notice) -> String {
    match notice {
        Notice::Connecting { url } => format!("connecting to {url}"),
        Notice::Open { connection } => {
            format!("exchange WebSocket open (connection #{connection})")
        }
        Notice::Reply(text) => format!("exchange replied {text}"),
        Notice::ServerShutdown => "exchange announced serverShutdown".to_string(),
        Notice::Closed { reason } => match relay_core::exchange_link::advice(reason) {
            Some(advice) => format!("exchange connection lost: {reason} ({advice})"),
            None => format!("exchange connection lost: {reason}"),
        },
        Notice::Retrying { delay } => format!("reconnecting in {:.2} s", delay.as_secs_f64()),
        Notice::Rotating { reason } => format!(
            "opening a new exchange connection beside the current one ({})",
            match reason {
                RotationReason::Age => "it nears the exchange's connection age limit",
                RotationReason::ServerShutdown => "the exchange announced serverShutdown",
            }
        ),
        Notice::Rotated {
            connection,
            duplicates,
        } => format!(
            "connection #{connection} took over without a gap; the old one closes \
             ({duplicates} duplicate events dropped so far)"
        ),
    }
}

/// A notice callback that posts into a report channel without ever blocking.
pub fn notice_sender<S>(reports: &Sender<Report<S>>) -> impl Fn(Notice) + '_ {
    move |notice| {
        let _ = reports.try_send(Report::Link(notice));
    }
}
