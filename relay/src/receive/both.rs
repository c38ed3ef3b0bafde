//! `relay receive --mode both`: the relay's datagrams and a direct exchange connection at once,
//! each on its own thread as in the single modes, A/B-arbitrated on this one
//! ([`relay_core::receive::arbitration`]): every event goes to the recorder once, from whichever
//! path delivered it first.

use crossbeam_channel::{select, Receiver, Sender};
use relay_core::receive::arbitration::{Arbitration, DEFAULT_WINDOW};
use relay_core::record::summary::Outcome;
use relay_core::record::Record;

use super::{baseline, udp};
use crate::cli::receive::ReceiveSettings;

/// The paths, in the order the summary's `arbitration.paths` lists them.
pub const PATHS: [&str; 2] = ["relay", "direct"];

/// Passes the first copy of every event on to `records`; returns the arbiter once both paths
/// have ended.
fn arbitrate(paths: [Receiver<Record>; 2], records: &Sender<Record>) -> Arbitration {
    let mut arbiter = Arbitration::new(&PATHS, DEFAULT_WINDOW);
    let [relay, direct] = paths;
    let never = crossbeam_channel::never();
    let (mut relay_open, mut direct_open) = (true, true);
    while relay_open || direct_open {
        let (path, got) = select! {
            recv(if relay_open { &relay } else { &never }) -> r => (0, r),
            recv(if direct_open { &direct } else { &never }) -> r => (1, r),
        };
        let Ok(record) = got else {
            if path == 0 {
                relay_open = false;
            } else {
                direct_open = false;
            }
            continue;
        };
        // A message without an identity cannot be matched: it is delivered as it comes.
        let first = record
            .event
            .is_none_or(|id| arbiter.offer(path, id, record.done_ns));
        if first && records.send(record).is_err() {
            break; // the recorder failed; its error is reported when it is joined
        }
    }
    arbiter.finish();
    arbiter
}

pub fn receive(
    settings: &ReceiveSettings,
    records: Sender<Record>,
    board: Option<crate::metrics::Board>,
) -> anyhow::Result<Outcome> {
    let (relay_tx, relay_rx) = crossbeam_channel::bounded(1 << 16);
    let (direct_tx, direct_rx) = crossbeam_channel::bounded(1 << 16);
    let (relayed, direct, arbiter) = std::thread::scope(|scope| {
        let relayed = std::thread::Builder::new()
            .name("relay-path".into())
            .spawn_scoped(scope, || udp::receive(settings, relay_tx, board))
            .expect("spawning the relay path");
        let direct = std::thread::Builder::new()
            .name("direct-path".into())
            .spawn_scoped(scope, || baseline::receive(settings, direct_tx, None))
            .expect("spawning the direct path");
        let arbiter = arbitrate([relay_rx, direct_rx], &records);
        (relayed.join(), direct.join(), arbiter)
    });
    let relayed = relayed.map_err(|_| anyhow::anyhow!("the relay path panicked"))??;
    let direct = direct.map_err(|_| anyhow::anyhow!("the direct path panicked"))??;
    // The relay path's accounting (loss, recovery, seal, eBPF) as in aws-backbone mode; the
    // direct path's reconnects; both paths' errors; the arbitration.
    Ok(Outcome {
        reconnects: direct.reconnects,
        errors: relayed
            .errors
            .iter()
            .map(|e| format!("relay path: {e}"))
            .chain(direct.errors.iter().map(|e| format!("direct path: {e}")))
            .collect(),
        authenticated: relayed.authenticated && direct.authenticated,
        arbitration: Some(arbiter.summary()),
        ..relayed
    })
}
