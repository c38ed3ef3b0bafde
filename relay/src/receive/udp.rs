//! aws-backbone mode: relay datagrams from a UDP socket into the accounting, records out to the
//! recorder thread.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::Sender;
use socket2::{Domain, Protocol, Socket, Type};

use bytes::Bytes;
use relay_core::binance::stream::is_wrapped;
use relay_core::receive::accounting::{Accounting, AccountingConfig, Event};
use relay_core::receive::recovery::RecoveryConfig;
use relay_core::receive::stamp_join::first_stamp;
use relay_core::record::exchange_ids::ExchangeIds;
use relay_core::record::summary::RecoverySummary;
use relay_core::record::summary::{Outcome, Reconnects};
use relay_core::record::Record;
use relay_core::wire::message_flags;
use relay_host::clock::realtime_ns;

use super::rx_time::attach::NicStamps;
use super::rx_time::hardware;
use super::rx_time::kernel::{self, StampedBatch};
use super::Progress;
use crate::cli::receive::ReceiveSettings;
use crate::report::{self, Report};

/// How often the loop looks at the clock and the stop flag when no datagram arrives.
const POLL: Duration = Duration::from_millis(50);

fn bind(settings: &ReceiveSettings, listen: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .context("creating the UDP socket")?;
    socket
        .set_recv_buffer_size(settings.recv_buffer)
        .context("setting SO_RCVBUF")?;
    // A multicast group (a receiver's --serve-udp feed, say): join it on any interface, and
    // let other consumers on this host bind the same group and port.
    let group = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_multicast() => Some(ip),
        _ => None,
    };
    if group.is_some() {
        socket
            .set_reuse_address(true)
            .context("setting SO_REUSEADDR")?;
    }
    socket
        .bind(&listen.into())
        .with_context(|| format!("listening on UDP {listen} (is another receiver running?)"))?;
    if let Some(group) = group {
        socket
            .join_multicast_v4(&group, &std::net::Ipv4Addr::UNSPECIFIED)
            .with_context(|| format!("joining the multicast group {group}"))?;
    }
    socket
        .set_read_timeout(Some(POLL))
        .context("setting the socket timeout")?;
    kernel::enable(&socket).context("enabling SO_TIMESTAMPING receive stamps")?;
    Ok(socket.into())
}

/// Receives one relay's datagrams on `listen`; only the path that owns the eBPF stamper
/// (`stamped`: the first relay port) attaches it to `--iface`.
pub fn receive(
    settings: &ReceiveSettings,
    listen: SocketAddr,
    stamped: bool,
    records: Sender<Record>,
    board: Option<crate::metrics::Board>,
) -> anyhow::Result<Outcome> {
    let hardware_timestamps = settings
        .iface
        .as_deref()
        .filter(|_| stamped && settings.hw_timestamps)
        .map(hardware::request);
    // Attach before binding: once the port is open, every datagram is stamped.
    let mut nic_stamps = settings
        .iface
        .as_deref()
        .filter(|_| stamped)
        .map(|iface| NicStamps::attach(iface, settings.ebpf_mode, listen.port()));
    let socket = bind(settings, listen)?;
    let fd = socket.as_raw_fd();
    let recv_buffer = kernel::receive_buffer(&socket).ok();
    if let Some(got) = recv_buffer.filter(|&got| got < settings.recv_buffer) {
        eprintln!(
            "receiver: WARNING: the kernel gave the socket a {got}-byte receive buffer, not the \
             {} asked for (net.core.rmem_max caps it; raise it with sysctl -w \
             net.core.rmem_max={}); bursts may be dropped (counted in kernel_receive_drops)",
            settings.recv_buffer, settings.recv_buffer
        );
    }
    relay_host::signals::catch_stop_signals().context("installing the signal handlers")?;
    let (reports, printer) = report::spawn::<Progress>("receiver", settings.report_interval, board);
    eprintln!(
        "receiver: aws-backbone mode, listening on UDP {} for {:?}{}",
        listen,
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
    let report_every = report::send_every(settings.report_interval);
    let mut next_report = Instant::now() + report_every;
    if settings.secret.is_none() {
        eprintln!(
            "receiver: WARNING: no --key-file: anyone who can send UDP to port {} can inject data \
             that is recorded as real (the summary says \"authenticated\": false); give the \
             receiver the relay's --key-file",
            listen.port()
        );
    }
    let mut accounting = Accounting::new(AccountingConfig {
        recovery: settings.recovery.then(RecoveryConfig::default),
        secret: settings.secret.clone(),
        ..AccountingConfig::default()
    });
    let mut batch = StampedBatch::default();
    // When serving, each message goes along to the delivery stage (one copy per message).
    let serving = settings.serving();
    let mut exchange_ids = ExchangeIds::default();
    // Where NAKs go: the address the relay's datagrams come from (so NAT needs no set-up).
    let mut relay_addr: Option<SocketAddr> = None;
    let mut nak_errors = 0u64;
    // Once the run is over, gaps still being recovered get a few round trips to fill.
    let mut draining_until: Option<Instant> = None;
    // The last receive emptied the socket.
    let mut drained = true;
    loop {
        let now = Instant::now();
        match draining_until {
            None if now >= deadline || relay_host::signals::stop_requested() => {
                if accounting.close() == 0 {
                    break;
                }
                draining_until = Some(now + drain_time(&accounting));
            }
            Some(until) if now >= until || accounting.under_way() == 0 => break,
            _ => {}
        }
        if now >= next_report {
            next_report = now + report_every;
            let _ = reports.try_send(Report::Stats(Progress::of(accounting.counters())));
        }
        let nak_due = accounting.poll_timeout();
        // What is missing is judged on everything that has arrived: a NAK waits until the socket
        // is empty (the last receive got less than a full batch), so the receiver's own delay in
        // reading never looks like loss.
        if (nak_due.is_some_and(|at| at <= now) && drained) || draining_until.is_some() {
            accounting.handle_timeout(now, &mut |nak| {
                let sent = relay_addr.map(|to| socket.send_to(nak, to));
                nak_errors += u64::from(!matches!(sent, Some(Ok(_))));
            });
        }
        // While a NAK is due soon, wait for datagrams only until then.
        let flags = match nak_due {
            Some(at) if !settings.busy_poll => {
                if !readable(fd, at.saturating_duration_since(now).min(POLL)) {
                    drained = true;
                    continue;
                }
                libc::MSG_DONTWAIT
            }
            _ => recv_flags,
        };
        let count = match batch.recv(fd, flags) {
            Ok(count) => count,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                drained = true;
                std::hint::spin_loop();
                continue;
            }
            Err(e) => return Err(e).context("receiving datagrams"),
        };
        drained = count < kernel::BATCH;
        // The receive call returned: the same application stamp for the whole batch.
        let app_ns = realtime_ns();
        for i in 0..count {
            let (datagram, kernel, from) = batch.get(i).context("receiving a datagram")?;
            let now = Instant::now();
            let ebpf_ns = nic_stamps
                .as_mut()
                .and_then(|stamps| stamps.stamp_of(datagram));
            // One receive stamp per datagram, for each of the messages it completes.
            let nic = first_stamp(kernel, ebpf_ns);
            let mut recorder_gone = false;
            let event = accounting.on_datagram(now, datagram, &mut |delivered| {
                if let Some(stamps) = nic_stamps.as_mut() {
                    stamps.count_message(ebpf_ns.is_some());
                }
                let block = delivered.block;
                let event =
                    exchange_ids.on_message(delivered.upstream_generation, delivered.payload);
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
                    event: Some(event),
                    wrapped: is_wrapped(delivered.payload),
                    payload: serving.then(|| Bytes::copy_from_slice(delivered.payload)),
                    ..Record::default()
                };
                recorder_gone |= records.send(record).is_err();
            });
            if recorder_gone {
                anyhow::bail!("the recorder thread stopped early");
            }
            // NAKs go where accepted datagrams come from: nothing dropped (malformed, unsealed,
            // forged, of another epoch) can redirect them.
            if !matches!(event, Event::Dropped(_)) {
                relay_addr = from.or(relay_addr);
            }
        }
    }
    accounting.finish();
    let counters = accounting.counters().clone();
    let _ = reports.try_send(Report::Final(Progress::of(&counters)));
    drop(reports);
    let _ = printer.join();
    let reconnects = Reconnects {
        count: counters.upstream_generation_changes,
        total_ns: counters.upstream_gap_total_ns,
    };
    let recovery = accounting
        .recovery()
        .map(|r| RecoverySummary::of(r, nak_errors));
    let outage_open = Some(counters.upstream_down_at_end_ns).filter(|&ns| ns > 0);
    let mut errors = Vec::new();
    if counters.datagrams == 0 {
        errors.push(format!(
            "no datagram arrived on UDP {} in {:?}: is the relay forwarding to this host and \
             port (relay forward --to), and does the firewall let UDP in?",
            listen, settings.duration
        ));
    }
    Ok(Outcome {
        counters: Some(counters),
        reconnects,
        ebpf: nic_stamps.map(NicStamps::finish),
        recovery,
        exchange: Some(exchange_ids.report()),
        exchange_outage_open_ns: outage_open,
        authenticated: settings.secret.is_some(),
        errors,
        kernel_receive_drops: batch.kernel_drops(),
        recv_buffer_bytes: recv_buffer.map(|b| b as u64),
        clock: None, // read by the caller, once the run is over
        hardware_timestamps,
        ..Outcome::default()
    })
}

/// How long to wait for the recoveries (and fragmented messages) under way when the run ends:
/// three round trips (one second when none was measured) and a bit, at most the recovery
/// deadline.
fn drain_time(accounting: &Accounting) -> Duration {
    let srtt = accounting.recovery().and_then(|r| r.srtt());
    let deadline = RecoveryConfig::default().deadline;
    (srtt.map_or(Duration::from_secs(1), |s| 3 * s) + Duration::from_millis(100)).min(deadline)
}

/// Waits at most `timeout` for `fd` to be readable (ppoll: µs resolution, unlike a socket
/// timeout).
fn readable(fd: std::os::fd::RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one live pollfd and a live timespec; no signal mask change.
    unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) > 0 }
}
