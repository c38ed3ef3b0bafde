//! `relay probe reflect`, `run` and `mesh`: the UDP shells around the core's [`Reflector`] and
//! [`Prober`]. One blocking socket each, kernel receive stamps where the kernel gives them.

use std::collections::HashMap;
use std::io::{BufWriter, ErrorKind, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use std::sync::atomic::{AtomicBool, Ordering};

use relay_core::probe::{
    ProbeRecord, Prober, ProberConfig, Reflector, ReflectorStats, MIN_PROBE_LEN,
};
use relay_core::seal::Secret;
use relay_core::wire::SEAL_LEN;
use relay_host::clock::realtime_ns;

use crate::cli::probe::{ProbeArgs, ProbeCommand, ReflectArgs, RunArgs};
use crate::receive::rx_time::kernel::{self, StampedReceiver};

/// Longest datagram either side reads.
const BUFFER: usize = 65_536;
/// How often a blocked receive looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);

mod mesh;

pub use mesh::DATASET_HEADER;

pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    match args.command {
        ProbeCommand::Reflect(args) => reflect(args),
        ProbeCommand::Run(args) => probe(args),
        ProbeCommand::Mesh(args) => mesh::run(args),
    }
}

fn secret(path: Option<&Path>) -> anyhow::Result<Option<Secret>> {
    Ok(path.map(Secret::from_file).transpose()?)
}

/// A socket with kernel receive stamps (said on stderr when the kernel refuses them).
fn socket(addr: SocketAddr, who: &str) -> anyhow::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))?;
    if let Err(e) = kernel::enable(&socket) {
        eprintln!(
            "relay probe {who}: no kernel receive stamps ({e}); using the receive call's time"
        );
    }
    Ok(socket)
}

fn reflect(args: ReflectArgs) -> anyhow::Result<()> {
    let secret = secret(args.key_file.as_deref())?;
    let stop = relay_host::signals::catch_stop_signals()?;
    let socket = socket(args.listen, "reflect")?;
    let until = args
        .duration
        .map(|secs| crate::cli::config::positive_secs("--duration", secs))
        .transpose()?
        .map(|d| Instant::now() + d);
    eprintln!(
        "relay probe reflect: answering on {}{}",
        socket.local_addr()?,
        if secret.is_some() {
            " (sealed probes only)"
        } else {
            ""
        }
    );
    let stats = reflect_on(&socket, secret.as_ref(), &stop, until)?;
    eprintln!("relay probe reflect: {}", serde_json::to_string(&stats)?);
    Ok(())
}

/// Answers probes on `socket` until `stop` is raised or `until` passes.
pub(crate) fn reflect_on(
    socket: &UdpSocket,
    secret: Option<&Secret>,
    stop: &AtomicBool,
    until: Option<Instant>,
) -> anyhow::Result<ReflectorStats> {
    socket.set_read_timeout(Some(POLL))?;
    let mut reflector = Reflector::new(secret);
    let mut receiver = StampedReceiver::default();
    let (mut buf, mut out) = (vec![0u8; BUFFER], vec![0u8; BUFFER]);
    while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u) {
        let (n, stamps, from) = match receiver.recv(socket.as_raw_fd(), &mut buf, 0) {
            Ok(got) => got,
            Err(e) if quiet(&e) => continue,
            Err(e) => return Err(e).context("receiving probes"),
        };
        let Some(from) = from else { continue };
        let rx = stamps.software.unwrap_or_else(realtime_ns);
        if let Some(len) = reflector.handle(from, &buf[..n], rx, realtime_ns(), &mut out) {
            // A reply that cannot go out is the prober's loss to see; the reflector carries on.
            let _ = socket.send_to(&out[..len], from);
        }
    }
    Ok(reflector.stats().clone())
}

/// Receive errors that only mean "nothing usable this time": a timeout, a signal, a datagram
/// too long to be ours, an ICMP port unreachable for an earlier send.
fn quiet(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted
            | ErrorKind::InvalidData
            | ErrorKind::ConnectionRefused
    )
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("--to {target:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("--to {target:?} resolved to no address"))
}

fn millis(flag: &str, ms: f64) -> anyhow::Result<Duration> {
    crate::cli::config::positive_secs(flag, ms / 1000.0)
}

fn create(path: &Path) -> anyhow::Result<BufWriter<std::fs::File>> {
    Ok(BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    ))
}

fn probe(args: RunArgs) -> anyhow::Result<()> {
    let secret = secret(args.key_file.as_deref())?;
    let stop = relay_host::signals::catch_stop_signals()?;
    let addrs = args
        .targets
        .iter()
        .map(|t| resolve(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if addrs.iter().collect::<std::collections::HashSet<_>>().len() != addrs.len() {
        bail!("a --to target is given twice");
    }
    let bind = args.bind.unwrap_or_else(|| {
        if addrs[0].is_ipv6() {
            "[::]:0".parse().expect("address")
        } else {
            "0.0.0.0:0".parse().expect("address")
        }
    });
    let epoch = crate::forward::random_epoch()?;
    let config = ProberConfig {
        targets: args.targets.clone(),
        count: args.count,
        interval: millis("--interval-ms", args.interval_ms)?,
        length: args
            .length
            .unwrap_or(MIN_PROBE_LEN + if secret.is_some() { SEAL_LEN } else { 0 }),
        timeout: millis("--timeout-ms", args.timeout_ms)?,
        epoch,
    };
    let mut prober = Prober::new(config.clone(), secret.as_ref())?;
    let mut output = args.output.as_deref().map(create).transpose()?;
    let socket = socket(bind, "run")?;
    let clock = crate::clock_state::read().ok();
    if let Some(doubt) = clock.and_then(|c| c.one_way_doubt(None)) {
        eprintln!("relay probe run: warning: {doubt} (RTTs are unaffected)");
    }
    probe_on(
        &socket,
        &mut prober,
        &addrs,
        &stop,
        |record| match &mut output {
            Some(out) => writeln!(out, "{}", record.json_line()),
            None => Ok(()),
        },
    )?;
    if let Some(mut out) = output {
        out.flush()?;
    }
    let targets = prober.summaries();
    let summary = serde_json::json!({
        "targets": targets,
        "count": config.count,
        "interval_ms": args.interval_ms,
        "length": config.length,
        "timeout_ms": args.timeout_ms,
        "sealed": secret.is_some(),
        "rejected_replies": prober.rejected(),
        "completed": prober.is_done(),
        "clock": clock,
    });
    if let Some(path) = &args.summary {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", relay_core::probe::summary::table(&targets));
    Ok(())
}

/// Runs `prober` to the end (or until `stop`) on `socket`, its targets at `addrs`, handing each
/// record to `on_record` as it is resolved.
pub(crate) fn probe_on(
    socket: &UdpSocket,
    prober: &mut Prober,
    addrs: &[SocketAddr],
    stop: &AtomicBool,
    mut on_record: impl FnMut(ProbeRecord) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let index: HashMap<SocketAddr, usize> =
        addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
    let mut receiver = StampedReceiver::default();
    let mut buf = vec![0u8; BUFFER];
    loop {
        let now = Instant::now();
        while let Some((target, len)) = prober.poll_transmit(now, realtime_ns(), &mut buf) {
            // A probe the kernel refuses is lost like one the network drops.
            let _ = socket.send_to(&buf[..len], addrs[target]);
        }
        prober.handle_timeout(Instant::now());
        while let Some(record) = prober.poll_record() {
            on_record(record).context("writing a probe record")?;
        }
        if prober.is_done() || stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let wait = prober
            .poll_timeout()
            .map_or(POLL, |t| t.saturating_duration_since(Instant::now()))
            .clamp(Duration::from_micros(50), POLL);
        socket.set_read_timeout(Some(wait))?;
        match receiver.recv(socket.as_raw_fd(), &mut buf, 0) {
            Ok((n, stamps, Some(from))) => {
                let wall = stamps.software.unwrap_or_else(realtime_ns);
                // A datagram from no target is handed over as target "none" and counted.
                let target = index.get(&from).copied().unwrap_or(usize::MAX);
                prober.handle_datagram(target, &buf[..n], wall);
            }
            Ok(_) => {}
            Err(e) if quiet(&e) => {}
            Err(e) => return Err(e).context("receiving replies"),
        }
    }
}
