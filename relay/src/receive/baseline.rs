//! baseline mode: the receiver holds the exchange WebSocket itself, through the same session and
//! io_uring link as the relay, and records each message as it is read.

use std::cell::Cell;
use std::rc::Rc;

use crossbeam_channel::Sender;
use relay_wire::UpstreamGap;

use super::recorder::Record;
use super::summary::Reconnects;
use super::{Outcome, Progress, ReceiveSettings};
use crate::clock::realtime_ns;
use crate::event_time::{event_time, TimeUnit};
use crate::exchange_link::{self, LinkConfig, LinkHandler};
use crate::report::{self, Report};

/// Same cap as the relay's default, so both paths recover alike.
const RECONNECT_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(30);

struct Direct {
    records: Sender<Record>,
    time_unit: TimeUnit,
    next_sequence: u64,
    reconnects: Rc<Cell<Reconnects>>,
    progress: Rc<Cell<Progress>>,
}

impl LinkHandler for Direct {
    fn on_open(&mut self, _generation: u32, gap: Option<UpstreamGap>) {
        if let Some(gap) = gap {
            let mut r = self.reconnects.get();
            r.count += 1;
            r.total_ns += gap.up_at_ns.saturating_sub(gap.down_at_ns);
            self.reconnects.set(r);
        }
    }

    fn on_message(&mut self, payload: &[u8], _binary: bool, rx_ns: u64) {
        let record = Record {
            sequence: self.next_sequence,
            event_time_ns: event_time(payload).and_then(|raw| self.time_unit.to_ns(raw)),
            event_time_micros: self.time_unit == TimeUnit::Micros,
            app_ns: rx_ns,
            payload_len: payload.len() as u32,
            fragments: 1,
            ..Record::default()
        };
        let record = Record {
            done_ns: realtime_ns(),
            ..record
        };
        self.next_sequence += 1;
        // The recorder only goes away if it failed; its error is reported when it is joined.
        let _ = self.records.send(record);
        let mut p = self.progress.get();
        p.messages += 1;
        p.reconnects = self.reconnects.get().count;
        self.progress.set(p);
    }

    async fn flush(&mut self) {}
}

pub fn receive(settings: &ReceiveSettings, records: Sender<Record>) -> anyhow::Result<Outcome> {
    let link = LinkConfig::new(
        &settings.endpoint,
        settings.ca_file.as_deref(),
        &settings.streams,
        RECONNECT_MAX_DELAY,
    )?;
    let (reports, printer) = report::spawn::<Progress>("receiver");
    eprintln!(
        "receiver: baseline mode, connecting to {} for {:?}",
        settings.endpoint.url, settings.duration
    );
    let reconnects = Rc::new(Cell::new(Reconnects::default()));
    let progress = Rc::new(Cell::new(Progress::default()));
    let mut direct = Direct {
        records,
        time_unit: settings.endpoint.time_unit,
        next_sequence: 1,
        reconnects: reconnects.clone(),
        progress: progress.clone(),
    };
    let stopped = tokio_uring::start(async {
        let notify = report::link_notifier(&reports);
        let progress_lines = async {
            let mut ticker = tokio::time::interval(settings.report_interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let _ = reports.try_send(Report::Stats(progress.get()));
            }
        };
        exchange_link::run_until(
            &link,
            &mut direct,
            &notify,
            progress_lines,
            crate::signals::stop_requested(Some(settings.duration)),
        )
        .await
    });
    drop(direct);
    drop(reports);
    let _ = printer.join();
    stopped?;
    Ok(Outcome {
        counters: None,
        reconnects: reconnects.get(),
        ebpf: None,
    })
}
