//! The delivery stage, on its own thread between the receiving paths and the recorder. With
//! several paths (`--mode both`) every event is A/B-arbitrated ([`Arbitration`]: the first copy
//! goes on, later ones are dropped and counted) and stamped `arbitrated_ns`; with `--serve-ws`
//! it goes to the local endpoint's clients and is stamped `served_ns`. Those two stamps are the
//! split's `arbitration` and `serve` parts.

use crossbeam_channel::{Receiver, Select, Sender};
use relay_core::receive::arbitration::{Arbitration, ArbitrationSummary, DEFAULT_WINDOW};
use relay_core::record::Record;
use relay_core::serve::ServeSummary;
use relay_host::clock::realtime_ns;

use super::serve::Endpoint;

/// What the stage made of the run.
pub struct Delivered {
    pub arbitration: Option<ArbitrationSummary>,
    pub serve: Option<ServeSummary>,
    pub errors: Vec<String>,
}

/// Runs until every path has ended; `paths` are named as the summary's `arbitration.paths`.
pub fn deliver(
    paths: &[(&str, Receiver<Record>)],
    records: &Sender<Record>,
    mut endpoint: Option<Endpoint>,
) -> Delivered {
    let names: Vec<&str> = paths.iter().map(|(name, _)| *name).collect();
    let mut arbiter = (paths.len() > 1).then(|| Arbitration::new(&names, DEFAULT_WINDOW));
    // Whether each path's messages come in the combined-stream wrapper (from its first one).
    let mut wrapped: Vec<Option<bool>> = vec![None; paths.len()];
    let mut select = Select::new();
    for (_, path) in paths {
        select.recv(path);
    }
    let controls = endpoint.as_ref().map(|e| e.controls().clone());
    let control_index = controls.as_ref().map(|c| select.recv(c));
    let mut open = paths.len();
    while open > 0 {
        let op = select.select();
        let index = op.index();
        if Some(index) == control_index {
            match (op.recv(controls.as_ref().expect("selected")), &mut endpoint) {
                (Ok(control), Some(e)) => e.apply(control),
                _ => select.remove(index),
            }
            continue;
        }
        let Ok(mut record) = op.recv(&paths[index].1) else {
            select.remove(index);
            open -= 1;
            continue;
        };
        wrapped[index].get_or_insert(record.wrapped);
        if let Some(arbiter) = &mut arbiter {
            // A message without an identity cannot be matched: it is delivered as it comes.
            let first = record
                .event
                .is_none_or(|id| arbiter.offer(index, id, record.done_ns));
            if !first {
                continue;
            }
            record.arbitrated_ns = Some(realtime_ns());
        }
        if let (Some(e), Some(payload)) = (&mut endpoint, record.payload.take()) {
            e.serve(&payload);
            record.served_ns = Some(realtime_ns());
        }
        if records.send(record).is_err() {
            break; // the recorder failed; its error is reported when it is joined
        }
    }
    let mut errors = Vec::new();
    if let [Some(a), .., Some(b)] = wrapped.as_slice() {
        if a != b {
            errors.push(format!(
                "the {} path's messages come {} the combined-stream wrapper and the {} path's {}: \
                 the same event cannot be matched across them, so each came twice; give both \
                 the same URL form (/stream?streams=... or /ws/...)",
                names[0],
                if *a { "in" } else { "without" },
                names[names.len() - 1],
                if *b { "do" } else { "do not" },
            ));
        }
    }
    Delivered {
        arbitration: arbiter.map(|mut a| {
            a.finish();
            a.summary()
        }),
        serve: endpoint.map(Endpoint::finish),
        errors,
    }
}
