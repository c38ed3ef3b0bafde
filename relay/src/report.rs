//! Progress reporting off the hot thread: the hot thread sends plain values over a crossbeam
//! channel (`try_send`, never blocking) and this thread formats and prints them to stderr.

use std::fmt::Display;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::exchange_link::LinkEvent;

pub enum Report<S> {
    Link(LinkEvent),
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
            Report::Link(event) => eprintln!("{name}: {}", describe(&event)),
            Report::Stats(stats) => eprintln!("{name}: {stats}"),
        }
    }
}

fn describe(event: &LinkEvent) -> String {
    match event {
        LinkEvent::Connecting { url } => format!("connecting to {url}"),
        LinkEvent::Open { generation } => {
            format!("exchange WebSocket open (connection #{generation})")
        }
        LinkEvent::Reply(text) => format!("exchange replied {text}"),
        LinkEvent::ServerShutdown => "exchange announced serverShutdown".to_string(),
        LinkEvent::Closed { reason } => format!("exchange connection lost: {reason}"),
        LinkEvent::Retrying { delay } => format!("reconnecting in {:.2} s", delay.as_secs_f64()),
    }
}

/// A link-event callback that posts into a report channel without ever blocking.
pub fn link_notifier<S>(reports: &Sender<Report<S>>) -> impl Fn(LinkEvent) + '_ {
    move |event| {
        let _ = reports.try_send(Report::Link(event));
    }
}
