//! baseline mode: the receiver holds the exchange WebSocket itself, through the same core link
//! and io_uring shell as the relay, and records each message as it is read.

use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;
use relay_core::binance::stream::is_wrapped;
use relay_core::binance::{event_time, TimeUnit};
use relay_core::exchange_link::{ExchangeLink, LinkEvent, DEFAULT_ROTATE_AFTER};
use relay_core::reconnect::DEFAULT_MAX_DELAY;
use relay_core::record::exchange_ids::ExchangeIds;
use relay_core::record::summary::{Outcome, Reconnects};
use relay_core::record::Record;
use relay_host::clock::realtime_ns;

use super::Progress;
use crate::cli::receive::ReceiveSettings;
use crate::exchange::{self, Idle, LinkHandler, Stop};
use crate::report::{self, Report};

/// The one owner of the baseline receiver's state on its thread.
struct Direct {
    records: Sender<Record>,
    time_unit: TimeUnit,
    next_sequence: u64,
    reconnects: Reconnects,
    progress: Progress,
    reports: Sender<Report<Progress>>,
    report_every: Duration,
    next_report: Instant,
    /// The exchange connection messages now come on, and their ids.
    generation: u32,
    exchange_ids: ExchangeIds,
    /// When serving, each message goes along to the delivery stage (one copy per message).
    serving: bool,
}

impl LinkHandler for Direct {
    fn on_event(&mut self, event: LinkEvent<'_>, _now: Instant) {
        match event {
            LinkEvent::Open { gap, generation } => {
                self.generation = generation;
                if let Some(gap) = gap {
                    self.reconnects.count += 1;
                    self.reconnects.total_ns += gap.up_at_ns.saturating_sub(gap.down_at_ns);
                    self.progress.reconnects = self.reconnects.count;
                }
            }
            LinkEvent::Message { payload, rx_ns, .. } => {
                let event = self.exchange_ids.on_message(self.generation, payload);
                let record = Record {
                    sequence: self.next_sequence,
                    event_time_ns: event_time(payload).and_then(|raw| self.time_unit.to_ns(raw)),
                    event_time_micros: self.time_unit == TimeUnit::Micros,
                    app_ns: rx_ns,
                    payload_len: payload.len() as u32,
                    fragments: 1,
                    event: Some(event),
                    wrapped: is_wrapped(payload),
                    payload: self.serving.then(|| Bytes::copy_from_slice(payload)),
                    ..Record::default()
                };
                let record = Record {
                    done_ns: realtime_ns(),
                    ..record
                };
                self.next_sequence += 1;
                // The recorder only goes away if it failed; its error is reported when it is joined.
                let _ = self.records.send(record);
                self.progress.messages += 1;
            }
        }
    }

    fn flush(&mut self) {}

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_report)
    }

    fn side_socket(&self) -> Option<std::rc::Rc<tokio_uring::net::UdpSocket>> {
        None
    }

    fn on_side_datagram(&mut self, _: &[u8], _: std::net::SocketAddr, _: Instant) {}

    fn handle_timeout(&mut self, now: Instant, _upstream_down_since_ns: Option<u64>) {
        if now >= self.next_report {
            self.next_report = now + self.report_every;
            let _ = self.reports.try_send(Report::Stats(self.progress));
        }
    }
}

pub fn receive(
    settings: &ReceiveSettings,
    records: Sender<Record>,
    board: Option<crate::metrics::Board>,
) -> anyhow::Result<Outcome> {
    let session = exchange::session_config(
        &settings.endpoint,
        settings.ca_file.as_deref(),
        &settings.streams,
    )?;
    let (reports, printer) = report::spawn::<Progress>("receiver", settings.report_interval, board);
    eprintln!(
        "receiver: baseline mode, connecting to {} for {:?}",
        settings.endpoint.url, settings.duration
    );
    let mut direct = Direct {
        records,
        time_unit: settings.endpoint.time_unit,
        next_sequence: 1,
        reconnects: Reconnects::default(),
        progress: Progress::default(),
        reports: reports.clone(),
        report_every: report::send_every(settings.report_interval),
        next_report: Instant::now() + report::send_every(settings.report_interval),
        generation: 0,
        exchange_ids: ExchangeIds::default(),
        serving: settings.serving(),
    };
    // Same reconnect cap as the relay's default, so both paths recover alike.
    let mut link = ExchangeLink::new(session, DEFAULT_MAX_DELAY, DEFAULT_ROTATE_AFTER);
    // With --busy-poll the baseline spins on its exchange socket as the relay does on its own
    // core: both paths then read the exchange without a thread wake-up.
    let idle = if settings.busy_poll {
        Idle::Spin
    } else {
        Idle::Park
    };
    let stop = Stop::after(Some(settings.duration))?;
    tokio_uring::start(async {
        let notify = report::notice_sender(&reports);
        exchange::run_until(&mut link, &mut direct, &notify, stop, idle).await
    });
    let errors = link.never_delivered().into_iter().collect();
    let outage_open = link
        .down_since_ns()
        .map(|since| realtime_ns().saturating_sub(since));
    let reconnects = direct.reconnects;
    let exchange = direct.exchange_ids.report();
    drop(direct);
    drop(reports);
    let _ = printer.join();
    Ok(Outcome {
        counters: None,
        reconnects,
        ebpf: None,
        recovery: None,
        exchange: Some(exchange),
        exchange_outage_open_ns: outage_open,
        authenticated: settings.endpoint.tls,
        errors,
        ..Outcome::default()
    })
}
