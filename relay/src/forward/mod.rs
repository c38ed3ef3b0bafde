//! `relay forward`: the Tokyo side. One thread, pinned to one core, io_uring for every socket:
//! exchange WebSocket in, sequenced UDP datagrams out to every receiver. The core's
//! [`Forwarder`] decides what to send; this shell owns the sockets and the timers.

pub mod fanout;

use std::fmt;

use relay_core::metrics::{Exposition, Kind};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use crossbeam_channel::Sender;
use relay_core::exchange_link::{ExchangeLink, LinkEvent};
use relay_core::forward::framer::Framer;
use relay_core::forward::{ForwardStats, Forwarder};
use relay_core::seal::Direction;

use crate::cli::forward::{ForwardArgs, ForwardSettings};
use crate::exchange::{self, LinkHandler, Stop};
use crate::report::{self, Report};
use fanout::{Fanout, FanoutStats};

/// What the relay reports every few seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub forward: ForwardStats,
    pub udp: FanoutStats,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (forward, udp, answers) = (&self.forward, &self.udp, &self.forward.answers);
        write!(
            f,
            "forwarded {} messages ({} datagrams in {} sends, {} bytes, {} send errors, {} seal errors), {} too large, {} heartbeats, connection #{}; \
             NAKs {} ({} datagrams sent again, {} unavailable, {} rate-limited, {} ignored, \
             {} unauthenticated, {} replayed)",
            forward.messages,
            udp.datagrams_sent,
            udp.send_calls,
            udp.bytes_sent,
            udp.send_errors,
            udp.seal_errors,
            forward.too_large,
            forward.heartbeats,
            forward.generation,
            answers.naks,
            answers.retransmitted,
            answers.unavailable,
            answers.rate_limited,
            answers.naks_ignored,
            answers.naks_unauthenticated,
            answers.naks_replayed
        )
    }
}

/// The relay thread's one owner of everything the link's events touch: the core's forwarder,
/// the UDP fan-out and the progress reports.
struct Relay {
    forwarder: Forwarder,
    fanout: Fanout,
    reports: Sender<Report<Progress>>,
    report_every: std::time::Duration,
    next_report: Instant,
}

impl LinkHandler for Relay {
    fn on_event(&mut self, event: LinkEvent<'_>, now: Instant) {
        let fanout = &mut self.fanout;
        self.forwarder.on_event(event, now, &mut |d| fanout.send(d));
    }

    fn flush(&mut self) {
        // The read is consumed: the last messages it completed go out (full datagrams already
        // went out as they filled, during the read).
        let fanout = &mut self.fanout;
        self.forwarder
            .flush(Instant::now(), &mut |d| fanout.send(d));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.forwarder.poll_timeout().min(self.next_report))
    }

    fn side_socket(&self) -> Option<Rc<tokio_uring::net::UdpSocket>> {
        Some(self.fanout.socket())
    }

    fn on_side_datagram(&mut self, nak: &[u8], from: SocketAddr, now: Instant) {
        let fanout = &mut self.fanout;
        self.forwarder
            .on_nak(now, nak, &mut |d| fanout.send_to(from, d));
    }

    fn handle_timeout(&mut self, now: Instant, upstream_down_since_ns: Option<u64>) {
        let fanout = &mut self.fanout;
        self.forwarder
            .handle_timeout(now, upstream_down_since_ns, &mut |d| fanout.send(d));
        if now >= self.next_report {
            self.next_report = now + self.report_every;
            let progress = Progress {
                forward: self.forwarder.stats(),
                udp: self.fanout.stats(),
            };
            let _ = self.reports.try_send(Report::Stats(progress));
        }
    }
}

impl report::Figures for Progress {
    fn exposition(&self) -> String {
        let (forward, udp, answers) = (&self.forward, &self.udp, &self.forward.answers);
        let mut e = Exposition::default();
        for (name, help, value) in [
            (
                "relay_messages_total",
                "Exchange messages forwarded.",
                forward.messages,
            ),
            (
                "relay_datagrams_sent_total",
                "Datagram copies handed to the kernel (all receivers).",
                udp.datagrams_sent,
            ),
            ("relay_send_calls_total", "sendmmsg calls.", udp.send_calls),
            (
                "relay_bytes_sent_total",
                "Bytes handed to the kernel.",
                udp.bytes_sent,
            ),
            (
                "relay_send_errors_total",
                "Datagram copies the kernel refused.",
                udp.send_errors,
            ),
            (
                "relay_seal_errors_total",
                "Datagrams that could not be sealed.",
                udp.seal_errors,
            ),
            (
                "relay_messages_too_large_total",
                "Messages too large to forward.",
                forward.too_large,
            ),
            (
                "relay_heartbeats_total",
                "Heartbeats sent.",
                forward.heartbeats,
            ),
            ("relay_naks_total", "NAKs answered.", answers.naks),
            (
                "relay_retransmitted_datagrams_total",
                "Datagrams sent again for NAKs.",
                answers.retransmitted,
            ),
            (
                "relay_unavailable_total",
                "Unavailable notices sent.",
                answers.unavailable,
            ),
            (
                "relay_naks_rate_limited_total",
                "NAK answers held back by the rate limit.",
                answers.rate_limited,
            ),
            (
                "relay_naks_ignored_total",
                "NAKs ignored (another epoch, malformed).",
                answers.naks_ignored,
            ),
            (
                "relay_naks_unauthenticated_total",
                "NAKs refused for their seal.",
                answers.naks_unauthenticated,
            ),
            (
                "relay_naks_replayed_total",
                "Replayed NAKs refused.",
                answers.naks_replayed,
            ),
        ] {
            e.counter(name, help, value);
        }
        e.family(
            "relay_exchange_connection",
            Kind::Gauge,
            "Exchange connections opened in this epoch.",
        )
        .sample(
            "relay_exchange_connection",
            &[],
            f64::from(forward.generation),
        );
        e.finish()
    }
}

/// Runs the relay until the duration passes or a signal arrives.
pub fn run(args: ForwardArgs) -> anyhow::Result<()> {
    let settings = ForwardSettings::resolve(args)?;
    let socket = fanout::udp_socket(&settings.targets, &settings.socket)?;
    let epoch = random_epoch()?;
    let framer = Framer::new(
        epoch,
        settings.datagram_budget,
        settings.endpoint.time_unit,
        settings.secret.is_some(),
    )?;
    let session = exchange::session_config(
        &settings.endpoint,
        settings.ca_file.as_deref(),
        &settings.streams,
    )?;
    let stop = Stop::after(settings.duration)?;
    relay_host::cpu::pin_to(settings.core)
        .map_err(|e| anyhow::anyhow!("--core: could not pin the relay thread: {e}"))?;
    let board = crate::metrics::board_for(settings.metrics, "relay")?;
    let (reports, printer) = report::spawn::<Progress>("relay", settings.report_interval, board);
    if settings.secret.is_none() {
        eprintln!(
            "relay: WARNING: no --key-file: datagrams go out unsealed (readable on the path, and \
             anyone can send NAKs); give the relay and its receivers the same --key-file"
        );
    }
    eprintln!(
        "relay: epoch {epoch:#010x}, forwarding {} to {}",
        settings.endpoint.url,
        settings
            .targets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let result = tokio_uring::start(async {
        let now = Instant::now();
        let mut relay = Relay {
            forwarder: Forwarder::new(
                framer,
                settings.heartbeat_interval,
                settings
                    .retransmit
                    .as_ref()
                    .map(|r| (r, settings.datagram_budget)),
                settings.secret.as_ref(),
                now,
            ),
            fanout: Fanout::new(
                socket,
                settings.targets.clone(),
                settings.secret.as_ref().map(|s| s.sealer(Direction::Relay)),
            ),
            reports: reports.clone(),
            report_every: report::send_every(settings.report_interval),
            next_report: now + report::send_every(settings.report_interval),
        };
        let mut link =
            ExchangeLink::new(session, settings.reconnect_max_delay, settings.rotate_after);
        let notify = report::notice_sender(&reports);
        exchange::run_until(&mut link, &mut relay, &notify, stop, settings.idle).await;
        link.never_delivered()
    });
    drop(reports);
    let _ = printer.join();
    // A relay that forwarded nothing for its whole run says why, and fails.
    match result {
        Some(why) => anyhow::bail!("{why}"),
        None => Ok(()),
    }
}

/// A random, non-zero session epoch (a relay's; a prober's session id).
pub fn random_epoch() -> anyhow::Result<u32> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the session epoch: {e}"))?;
    Ok(u32::from_le_bytes(bytes).max(1))
}
