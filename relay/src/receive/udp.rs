//! aws-backbone mode: relay datagrams from a UDP socket into the accounting, records out to the
//! recorder thread.

use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::Sender;
use socket2::{Domain, Protocol, Socket, Type};

use super::accounting::{Accounting, AccountingConfig, Counters, Event};
use super::recorder::Record;
use super::summary::Reconnects;
use super::{Progress, ReceiveSettings};
use crate::clock::realtime_ns;
use crate::report::{self, Report};

/// How often the loop looks at the clock and the stop flag when no datagram arrives.
const POLL: Duration = Duration::from_millis(50);

fn bind(settings: &ReceiveSettings) -> anyhow::Result<std::net::UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(settings.listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .context("creating the UDP socket")?;
    socket
        .set_recv_buffer_size(settings.recv_buffer)
        .context("setting SO_RCVBUF")?;
    socket.bind(&settings.listen.into()).with_context(|| {
        format!(
            "listening on UDP {} (is another receiver running?)",
            settings.listen
        )
    })?;
    socket
        .set_read_timeout(Some(POLL))
        .context("setting the socket timeout")?;
    Ok(socket.into())
}

pub fn receive(
    settings: &ReceiveSettings,
    records: Sender<Record>,
) -> anyhow::Result<(Option<Counters>, Reconnects)> {
    let socket = bind(settings)?;
    let stop = crate::signals::stop_flag()?;
    let (reports, printer) = report::spawn::<Progress>("receiver");
    eprintln!(
        "receiver: aws-backbone mode, listening on UDP {} for {:?}",
        settings.listen, settings.duration
    );
    let deadline = Instant::now() + settings.duration;
    let mut next_report = Instant::now() + settings.report_interval;
    let mut accounting = Accounting::new(AccountingConfig::default());
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_report {
            next_report = now + settings.report_interval;
            let _ = reports.try_send(Report::Stats(Progress::of(accounting.counters())));
        }
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e).context("receiving a datagram"),
        };
        let receive_ns = realtime_ns();
        if let Event::Message(delivered) = accounting.on_datagram(&buf[..n]) {
            let h = delivered.header;
            let record = Record {
                sequence: h.sequence,
                epoch: h.epoch,
                event_time_ns: h.has_event_time().then_some(h.event_time_ns),
                event_time_micros: h.flags & relay_wire::flags::EVENT_TIME_MICROS != 0,
                relay_rx_ns: Some(h.relay_rx_ns),
                relay_tx_ns: Some(h.relay_tx_ns),
                receive_ns,
                payload_len: delivered.payload.len() as u32,
                fragments: delivered.fragments,
                reordered: delivered.reordered,
            };
            if records.send(record).is_err() {
                anyhow::bail!("the recorder thread stopped early");
            }
        }
    }
    accounting.finish();
    let counters = accounting.counters().clone();
    let _ = reports.try_send(Report::Stats(Progress::of(&counters)));
    drop(reports);
    let _ = printer.join();
    let reconnects = Reconnects {
        count: counters.upstream_generation_changes,
        total_ns: counters.upstream_gap_total_ns,
    };
    Ok((Some(counters), reconnects))
}
