//! The receiver with a delivery stage ([`super::deliver`]): `--mode both` (relay datagrams and a
//! direct exchange connection at once, A/B-arbitrated), several relays (`--port` repeated: each
//! relay a path of its own), and either single mode when `--serve-ws` or `--serve-udp` serves
//! what it delivers.
//! Each path runs on its own thread as in the single modes; the stage runs on this one.

use std::net::SocketAddr;

use crossbeam_channel::Sender;
use relay_core::record::summary::Outcome;
use relay_core::record::Record;

use super::deliver::deliver;
use super::serve::datagrams::DatagramFeed;
use super::serve::Endpoint;
use super::{baseline, udp};
use crate::cli::receive::{Mode, ReceiveSettings};

/// Depth of each path's channel to the stage.
const PATH_QUEUE: usize = 1 << 16;

pub fn receive(
    settings: &ReceiveSettings,
    records: Sender<Record>,
    board: Option<crate::metrics::Board>,
    endpoint: Option<Endpoint>,
    feed: Option<DatagramFeed>,
) -> anyhow::Result<Outcome> {
    let relay_ports: &[u16] = match settings.mode {
        Mode::AwsBackbone | Mode::Both => &settings.relay_ports,
        Mode::Baseline => &[],
    };
    let direct = matches!(settings.mode, Mode::Baseline | Mode::Both);
    // The summary's path names: `relay` for one relay, `relay:<port>` for several; `direct`.
    let mut names: Vec<String> = relay_ports
        .iter()
        .map(|port| match relay_ports.len() {
            1 => "relay".to_string(),
            _ => format!("relay:{port}"),
        })
        .collect();
    if direct {
        names.push("direct".to_string());
    }
    let (senders, receivers): (Vec<_>, Vec<_>) = names
        .iter()
        .map(|_| crossbeam_channel::bounded::<Record>(PATH_QUEUE))
        .unzip();
    let paths: Vec<(&str, _)> = names.iter().map(String::as_str).zip(receivers).collect();
    let (relayed, direct_outcome, delivered) = std::thread::scope(|scope| {
        let mut senders = senders.into_iter();
        let relay_threads: Vec<_> = relay_ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let tx = senders.next().expect("one channel per path");
                // The first relay path owns the progress lines, the metrics and the stamper.
                let board = if i == 0 { board.clone() } else { None };
                let listen = SocketAddr::new(settings.listen.ip(), port);
                std::thread::Builder::new()
                    .name(format!("relay-path-{port}"))
                    .spawn_scoped(scope, move || {
                        udp::receive(settings, listen, i == 0, tx, board)
                    })
                    .expect("spawning a relay path")
            })
            .collect();
        let direct_board = if relay_ports.is_empty() { board } else { None };
        let direct_thread = direct.then(|| {
            let tx = senders.next().expect("one channel per path");
            std::thread::Builder::new()
                .name("direct-path".into())
                .spawn_scoped(scope, move || baseline::receive(settings, tx, direct_board))
                .expect("spawning the direct path")
        });
        let delivered = deliver(&paths, &records, endpoint, feed);
        let relayed: Vec<_> = relay_threads.into_iter().map(|t| t.join()).collect();
        (relayed, direct_thread.map(|t| t.join()), delivered)
    });
    let panicked = |path: &str| anyhow::anyhow!("the {path} path panicked");
    let relayed = relayed
        .into_iter()
        .zip(&names)
        .map(|(r, name)| r.map_err(|_| panicked(name))?)
        .collect::<anyhow::Result<Vec<Outcome>>>()?;
    let direct = direct_outcome
        .map(|r| r.map_err(|_| panicked("direct"))?)
        .transpose()?;
    let several = names.len() > 1;
    let outcomes: Vec<(&str, &Outcome)> = names
        .iter()
        .map(String::as_str)
        .zip(relayed.iter().chain(direct.iter()))
        .collect();
    let errors: Vec<String> = outcomes
        .iter()
        .flat_map(|(path, o)| {
            o.errors.iter().map(move |e| match several {
                true => format!("{path} path: {e}"),
                false => e.clone(),
            })
        })
        .chain(delivered.errors)
        .collect();
    let authenticated = outcomes.iter().all(|(_, o)| o.authenticated);
    let mut arbitration = delivered.arbitration;
    if let Some(a) = &mut arbitration {
        for (path, (_, outcome)) in a.paths.iter_mut().zip(&outcomes) {
            path.events_lost = outcome.counters.as_ref().map(|c| c.lost);
        }
    }
    // The first relay path's accounting (loss, recovery, seal, eBPF) as in aws-backbone mode;
    // the direct path's reconnects.
    let reconnects = direct.as_ref().map(|d| d.reconnects);
    let base = relayed.into_iter().next().or(direct).unwrap_or_default();
    Ok(Outcome {
        reconnects: reconnects.unwrap_or(base.reconnects),
        errors,
        authenticated,
        arbitration,
        serve: delivered.serve,
        ..base
    })
}
