//! The delivery stage, on its own thread between the receiving paths and the recorder. With
//! several paths (`--mode both`, several relays) every event is A/B-arbitrated ([`Arbitration`]:
//! the first copy goes on, later ones are dropped and counted) and stamped `arbitrated_ns`; with
//! `--serve-ws` it goes to the local endpoint's clients, with `--serve-udp` into the datagram
//! feed (messages that are ready together share a datagram), and is stamped `served_ns`. Those
//! two stamps are the split's `arbitration` and `serve` parts.

use std::time::Instant;

use crossbeam_channel::{Receiver, Select, Sender};
use relay_core::receive::arbitration::{Arbitration, ArbitrationSummary, DEFAULT_WINDOW};
use relay_core::record::Record;
use relay_core::serve::ServeSummary;
use relay_host::clock::realtime_ns;

use super::serve::datagrams::DatagramFeed;
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
    mut feed: Option<DatagramFeed>,
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
    let naks = feed.as_ref().map(|f| f.naks().clone());
    let nak_index = naks.as_ref().map(|n| select.recv(n));
    let mut open = paths.len();
    while open > 0 {
        // Messages ready together share a datagram; once nothing more is ready, it goes.
        if let Some(f) = &mut feed {
            if paths.iter().all(|(_, p)| p.is_empty()) {
                f.flush(Instant::now());
            }
        }
        let heartbeat = feed.as_ref().and_then(DatagramFeed::poll_timeout);
        let op = match heartbeat {
            Some(at) => match select.select_deadline(at) {
                Ok(op) => op,
                Err(_) => {
                    if let Some(f) = &mut feed {
                        f.handle_timeout(Instant::now());
                    }
                    continue;
                }
            },
            None => select.select(),
        };
        let index = op.index();
        if Some(index) == control_index {
            match (op.recv(controls.as_ref().expect("selected")), &mut endpoint) {
                (Ok(control), Some(e)) => e.apply(control),
                _ => select.remove(index),
            }
            continue;
        }
        if Some(index) == nak_index {
            match (op.recv(naks.as_ref().expect("selected")), &mut feed) {
                (Ok(nak), Some(f)) => f.nak(nak, Instant::now()),
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
        if let Some(payload) = record.payload.take() {
            if let Some(f) = &mut feed {
                f.message(
                    &payload,
                    record.event_time_micros,
                    record.frankfurt_ns(),
                    Instant::now(),
                );
            }
            if let Some(e) = &mut endpoint {
                e.serve(&payload);
            }
            record.served_ns = Some(realtime_ns());
        }
        if records.send(record).is_err() {
            break; // the recorder failed; its error is reported when it is joined
        }
    }
    let mut errors = Vec::new();
    let forms: Vec<(&str, bool)> = names
        .iter()
        .zip(&wrapped)
        .filter_map(|(name, w)| w.map(|w| (*name, w)))
        .collect();
    if let Some(((a, wa), (b, _))) = forms
        .first()
        .and_then(|first| forms.iter().find(|o| o.1 != first.1).map(|o| (*first, *o)))
    {
        let (a_form, b_form) = if wa {
            ("in the combined-stream wrapper", "do not")
        } else {
            ("without the combined-stream wrapper", "come in it")
        };
        errors.push(format!(
            "the {a} path's messages come {a_form} and the {b} path's {b_form}: the same event \
             cannot be matched across them, so each came twice; give every path the same URL \
             form (/stream?streams=... or /ws/...)"
        ));
    }
    Delivered {
        arbitration: arbiter.map(|mut a| {
            a.finish();
            a.summary()
        }),
        serve: (endpoint.is_some() || feed.is_some()).then(|| ServeSummary {
            ws: endpoint.map(Endpoint::finish),
            udp: feed.map(DatagramFeed::finish),
        }),
        errors,
    }
}
