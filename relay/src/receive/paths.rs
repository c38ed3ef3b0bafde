//! The receiver with a delivery stage ([`super::deliver`]): `--mode both` (the relay's datagrams
//! and a direct exchange connection at once, A/B-arbitrated), and either single mode when
//! `--serve-ws` serves what it delivers. Each path runs on its own thread as in the single
//! modes; the stage runs on this one.

use crossbeam_channel::Sender;
use relay_core::record::summary::Outcome;
use relay_core::record::Record;

use super::deliver::deliver;
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
) -> anyhow::Result<Outcome> {
    let (relay_tx, relay_rx) = crossbeam_channel::bounded(PATH_QUEUE);
    let (direct_tx, direct_rx) = crossbeam_channel::bounded(PATH_QUEUE);
    let relayed = matches!(settings.mode, Mode::AwsBackbone | Mode::Both);
    let direct = matches!(settings.mode, Mode::Baseline | Mode::Both);
    let mut paths = Vec::new();
    if relayed {
        paths.push(("relay", relay_rx));
    }
    if direct {
        paths.push(("direct", direct_rx));
    }
    let (relay_outcome, direct_outcome, delivered) = std::thread::scope(|scope| {
        let relay_board = board.clone();
        let relay_thread = relayed.then(|| {
            std::thread::Builder::new()
                .name("relay-path".into())
                .spawn_scoped(scope, move || udp::receive(settings, relay_tx, relay_board))
                .expect("spawning the relay path")
        });
        // The progress lines and metrics come from the relay path when there is one.
        let direct_board = if relayed { None } else { board };
        let direct_thread = direct.then(|| {
            std::thread::Builder::new()
                .name("direct-path".into())
                .spawn_scoped(scope, move || {
                    baseline::receive(settings, direct_tx, direct_board)
                })
                .expect("spawning the direct path")
        });
        let delivered = deliver(&paths, &records, endpoint);
        (
            relay_thread.map(|t| t.join()),
            direct_thread.map(|t| t.join()),
            delivered,
        )
    });
    let relayed = relay_outcome
        .map(|r| r.map_err(|_| anyhow::anyhow!("the relay path panicked"))?)
        .transpose()?;
    let direct = direct_outcome
        .map(|r| r.map_err(|_| anyhow::anyhow!("the direct path panicked"))?)
        .transpose()?;
    let both = relayed.is_some() && direct.is_some();
    let label = |path: &str, e: &String| {
        if both {
            format!("{path} path: {e}")
        } else {
            e.clone()
        }
    };
    let errors: Vec<String> = relayed
        .iter()
        .flat_map(|o| o.errors.iter().map(|e| label("relay", e)))
        .chain(
            direct
                .iter()
                .flat_map(|o| o.errors.iter().map(|e| label("direct", e))),
        )
        .chain(delivered.errors)
        .collect();
    let authenticated = relayed.as_ref().is_none_or(|o| o.authenticated)
        && direct.as_ref().is_none_or(|o| o.authenticated);
    // The relay path's accounting (loss, recovery, seal, eBPF) as in aws-backbone mode, the
    // direct path's reconnects.
    let reconnects = direct.as_ref().map(|d| d.reconnects);
    let base = relayed.or(direct).unwrap_or_default();
    Ok(Outcome {
        reconnects: reconnects.unwrap_or(base.reconnects),
        errors,
        authenticated,
        arbitration: delivered.arbitration,
        serve: delivered.serve,
        ..base
    })
}
