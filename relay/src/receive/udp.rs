//! aws-backbone mode: relay datagrams from a UDP socket into the accounting, records out to the
//! recorder thread.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::Sender;
use socket2::{Domain, Protocol, Socket, Type};

use super::accounting::{Accounting, AccountingConfig, Counters, Event};
use super::recorder::{NicSource, Record};
use super::summary::Reconnects;
use super::timestamping::{self, KernelStamps, StampedReceiver};
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
    timestamping::enable(&socket).context("enabling SO_TIMESTAMPING receive stamps")?;
    Ok(socket.into())
}

/// The first stamp the receiving host put on a datagram: the NIC's clock when it has one,
/// else the kernel's software stamp.
fn first_stamp(kernel: KernelStamps) -> Option<(u64, NicSource)> {
    kernel
        .hardware
        .map(|ns| (ns, NicSource::Hardware))
        .or(kernel.software.map(|ns| (ns, NicSource::Software)))
}

pub fn receive(
    settings: &ReceiveSettings,
    records: Sender<Record>,
) -> anyhow::Result<(Option<Counters>, Reconnects)> {
    let socket = bind(settings)?;
    let fd = socket.as_raw_fd();
    let stop = crate::signals::stop_flag()?;
    let (reports, printer) = report::spawn::<Progress>("receiver");
    eprintln!(
        "receiver: aws-backbone mode, listening on UDP {} for {:?}{}",
        settings.listen,
        settings.duration,
        if settings.busy_poll {
            ", busy-polling"
        } else {
            ""
        }
    );
    // A busy-polling receive never sleeps in the kernel: no thread wake-up in the latency.
    let recv_flags = if settings.busy_poll {
        libc::MSG_DONTWAIT
    } else {
        0
    };
    let deadline = Instant::now() + settings.duration;
    let mut next_report = Instant::now() + settings.report_interval;
    let mut accounting = Accounting::new(AccountingConfig::default());
    let mut receiver = StampedReceiver::default();
    // Larger than any UDP payload, so a datagram is never cut short (MSG_TRUNC).
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
        let (n, kernel) = match receiver.recv(fd, &mut buf, recv_flags) {
            Ok(received) => received,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                std::hint::spin_loop();
                continue;
            }
            Err(e) => return Err(e).context("receiving a datagram"),
        };
        let app_ns = realtime_ns();
        if let Event::Message(delivered) = accounting.on_datagram(&buf[..n]) {
            let h = delivered.header;
            let record = Record {
                sequence: h.sequence,
                epoch: h.epoch,
                event_time_ns: h.has_event_time().then_some(h.event_time_ns),
                event_time_micros: h.flags & relay_wire::flags::EVENT_TIME_MICROS != 0,
                relay_rx_ns: Some(h.relay_rx_ns),
                relay_tx_ns: Some(h.relay_tx_ns),
                nic: first_stamp(kernel),
                socket_ns: kernel.software,
                app_ns,
                done_ns: realtime_ns(),
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
