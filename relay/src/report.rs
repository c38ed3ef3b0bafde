//! Progress reporting off the hot thread: the hot thread sends plain values over a crossbeam
//! channel (`try_send`, never blocking) and this thread formats and prints them to stderr.

use std::fmt::Display;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use relay_core::exchange_link::{Notice, RotationReason};

pub enum Report<S> {
    Link(Notice),
    Stats(S),
}

/// Room for bursts of connection events; a full channel drops the report, never blocks.
const CAPACITY: usize = 1024;

/// Starts the printer thread; it ends when every sender is dropped.
pub fn spawn<S: Display + Send + 'static>(
    name: &'static str,
) -> (Sender<Report<S>>, JoinHandle<()>) {
    let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
    let handle = std::thread::Builder::new()
        .name(format!("{name}-report"))
        .spawn(move || print_reports(name, rx))
        .expect("spawning the report thread");
    (tx, handle)
}

fn print_reports<S: Display>(name: &str, rx: Receiver<Report<S>>) {
    for report in rx {
        match report {
            Report::Link(notice) => eprintln!("{name}: {}", describe(&notice)),
            Report::Stats(stats) => eprintln!("{name}: {stats}"),
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
