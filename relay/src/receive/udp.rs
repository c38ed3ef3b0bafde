//! aws-backbone mode: relay datagrams from a UDP socket into the accounting, records out to the
//! recorder thread.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::Sender;
use socket2::{Domain, Protocol, Socket, Type};

use relay_core::receive::accounting::{Accounting, AccountingConfig};
use relay_core::receive::stamp_join::first_stamp;
use relay_core::record::summary::{Outcome, Reconnects};
use relay_core::record::Record;
use relay_core::wire::message_flags;
use relay_host::clock::realtime_ns;

use super::rx_time::attach::NicStamps;
use super::rx_time::kernel::{self, StampedReceiver};
use super::Progress;
use crate::cli::receive::ReceiveSettings;
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
    kernel::enable(&socket).context("enabling SO_TIMESTAMPING receive stamps")?;
    Ok(socket.into())
}

pub fn receive(settings: &ReceiveSettings, records: Sender<Record>) -> anyhow::Result<Outcome> {
    // Attach before binding: once the port is open, every datagram is stamped.
    let mut nic_stamps = settings
        .iface
        .as_deref()
        .map(|iface| NicStamps::attach(iface, settings.ebpf_mode, settings.listen.port()));
    let socket = bind(settings)?;
    let fd = socket.as_raw_fd();
    relay_host::signals::catch_stop_signals().context("installing the signal handlers")?;
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
    while !relay_host::signals::stop_requested() {
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
        let ebpf_ns = nic_stamps
            .as_mut()
            .and_then(|stamps| stamps.stamp_of(&buf[..n]));
        // One receive stamp per datagram, for each of the messages it completes.
        let nic = first_stamp(kernel, ebpf_ns);
        let mut recorder_gone = false;
        accounting.on_datagram(&buf[..n], &mut |delivered| {
            if let Some(stamps) = nic_stamps.as_mut() {
                stamps.count_message(ebpf_ns.is_some());
            }
            let block = delivered.block;
            let record = Record {
                sequence: delivered.sequence,
                epoch: delivered.epoch,
                event_time_ns: block.has_event_time().then_some(block.event_time_ns),
                event_time_micros: block.flags & message_flags::EVENT_TIME_MICROS != 0,
                relay_rx_ns: Some(block.relay_rx_ns),
                relay_tx_ns: Some(delivered.relay_tx_ns),
                nic,
                socket_ns: kernel.software,
                app_ns,
                done_ns: realtime_ns(),
                payload_len: delivered.payload.len() as u32,
                fragments: delivered.fragments,
                reordered: delivered.reordered,
            };
            recorder_gone |= records.send(record).is_err();
        });
        if recorder_gone {
            anyhow::bail!("the recorder thread stopped early");
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
    Ok(Outcome {
        counters: Some(counters),
        reconnects,
        ebpf: nic_stamps.map(NicStamps::finish),
    })
}
