//! The lab's ground truth: what the delay lines injected per stretch of each path against what
//! the receivers measured there, from the receivers' CSV rows (exact, at µs resolution).

use std::path::Path;

use anyhow::{bail, Context, Result};
use relay_core::record::csv;
use relay_core::stats::{exact, ComponentSummary};

use super::delay_line::LinkReport;
use super::COMPONENT_TOLERANCE_US;

/// Exact per-message latencies from a receiver's CSV (the JSON summary's percentiles come from a
/// histogram whose buckets are ~65 µs wide at 100 ms: too coarse for a 50 µs check).
#[derive(Default)]
pub struct CsvLatencies {
    /// Exchange event time E -> receiver, ns.
    end_to_end: Vec<i64>,
    /// Relay send -> receiver, ns.
    backbone: Vec<i64>,
    /// E -> relay receive, ns.
    exchange_to_relay: Vec<i64>,
    /// The receiver's latency split (aws-backbone), ns: relay read -> send, relay send -> first
    /// stamp on the receiving host, that stamp -> recv returned, recv returned -> accounted.
    relay_dwell: Vec<i64>,
    network: Vec<i64>,
    kernel: Vec<i64>,
    application: Vec<i64>,
}

impl CsvLatencies {
    pub fn read(path: &Path) -> Result<CsvLatencies> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut lines = text.lines();
        if lines.next() != Some(csv::header().as_str()) {
            bail!(
                "{} does not start with the receiver's CSV header",
                path.display()
            );
        }
        let column = |name: &str| {
            csv::column(name).with_context(|| format!("the receiver's CSV has no column {name}"))
        };
        let (e, tokyo, frankfurt, e2e, sent) = (
            column("binance_time")?,
            column("tokyo_time")?,
            column("frankfurt_time")?,
            column("end_to_end_latency_ms")?,
            column("relay_send_time")?,
        );
        let (dwell, network, kernel, application) = (
            column("relay_dwell_us")?,
            column("network_us")?,
            column("kernel_us")?,
            column("application_us")?,
        );
        let mut out = CsvLatencies::default();
        for line in lines {
            let cells: Vec<&str> = line.split(',').collect();
            let int = |i: usize| cells.get(i).and_then(|c| c.parse::<i64>().ok());
            let ms_as_ns = |i: usize| {
                cells
                    .get(i)
                    .and_then(|c| c.parse::<f64>().ok())
                    .map(|ms| (ms * 1e6).round() as i64)
            };
            if let Some(ns) = ms_as_ns(e2e) {
                out.end_to_end.push(ns);
            }
            if let (Some(rx), Some(tx)) = (int(frankfurt), int(sent)) {
                out.backbone.push(rx - tx);
            }
            if let (Some(at_relay), Some(event)) = (int(tokyo), ms_as_ns(e)) {
                out.exchange_to_relay.push(at_relay - event);
            }
            let us_as_ns = |i: usize| {
                cells
                    .get(i)
                    .and_then(|c| c.parse::<f64>().ok())
                    .map(|us| (us * 1e3).round() as i64)
            };
            for (column, samples) in [
                (dwell, &mut out.relay_dwell),
                (network, &mut out.network),
                (kernel, &mut out.kernel),
                (application, &mut out.application),
            ] {
                samples.extend(us_as_ns(column));
            }
        }
        Ok(out)
    }
}

/// One row of the ground-truth table: what the delay lines injected on a stretch of a path and
/// what the receivers measured over it (p50s). The eBPF receive stamps will add rows here that
/// split the measured side into network, kernel and application.
pub struct Segment {
    pub path: &'static str,
    pub what: &'static str,
    /// Planned hold p50 of the delay line(s) on this stretch, µs.
    pub injected_us: Option<f64>,
    /// Actual hold p50 (planned + the delay line's timing error), µs.
    pub achieved_us: Option<f64>,
    pub measured_us: Option<f64>,
    pub samples: u64,
    pub check: Option<Check>,
}

/// A pass/fail comparison of measured against what the link achieved.
pub struct Check {
    pub difference_us: f64,
    pub tolerance_us: f64,
    pub passed: bool,
}

pub fn ground_truth(
    links: &[LinkReport],
    backbone: &CsvLatencies,
    baseline: &CsvLatencies,
    floor: &ComponentSummary,
) -> Vec<Segment> {
    // The direction of a link that carries the experiment's data.
    let hold = |link: &str, from: &str| {
        links
            .iter()
            .find(|l| l.name == link)
            .and_then(|l| l.from(from))
            .filter(|d| d.injected.count > 0)
            .map(|d| (d.injected.p50_us, d.achieved.p50_us))
    };
    let exchange_link = hold("exchange-link", "exchange");
    let backbone_link = hold("backbone", "tokyo");
    let internet = hold("internet", "exchange");
    let both = exchange_link
        .zip(backbone_link)
        .map(|(a, b)| (a.0 + b.0, a.1 + b.1));
    let measured = |samples: &[i64]| match exact(&mut samples.to_vec()) {
        Some(figures) => (Some(figures.p50_us), figures.count),
        None => (None, 0),
    };
    let segment = |path, what, link: Option<(f64, f64)>, samples: &[i64]| {
        let (measured_us, samples) = measured(samples);
        Segment {
            path,
            what,
            injected_us: link.map(|l| l.0),
            achieved_us: link.map(|l| l.1),
            measured_us,
            samples,
            check: None,
        }
    };
    // Each component of the receiver's split against what the lab put there: the backbone's
    // delay in `network`, nothing anywhere else. Compared with the achieved hold, so the check is
    // about the measuring chain, not the delay line's own timing error (the link table has that).
    let none_injected = Some((0.0, 0.0));
    let component = |what, link: Option<(f64, f64)>, samples: &[i64]| {
        let mut row = segment("aws-backbone", what, link, samples);
        row.check = row.measured_us.zip(row.achieved_us).map(|(m, a)| Check {
            difference_us: m - a,
            tolerance_us: COMPONENT_TOLERANCE_US,
            passed: (m - a).abs() <= COMPONENT_TOLERANCE_US,
        });
        row
    };
    vec![
        segment(
            "aws-backbone",
            "exchange E -> relay receive (exchange link)",
            exchange_link,
            &backbone.exchange_to_relay,
        ),
        segment(
            "aws-backbone",
            "relay send -> receiver (backbone link)",
            backbone_link,
            &backbone.backbone,
        ),
        component(
            "  split: relay dwell (read -> send)",
            none_injected,
            &backbone.relay_dwell,
        ),
        component(
            "  split: network (send -> first rx stamp)",
            backbone_link,
            &backbone.network,
        ),
        component(
            "  split: kernel (stamp -> recv returned)",
            none_injected,
            &backbone.kernel,
        ),
        component(
            "  split: application (recv -> accounted)",
            none_injected,
            &backbone.application,
        ),
        segment(
            "aws-backbone",
            "exchange E -> receiver (both links)",
            both,
            &backbone.end_to_end,
        ),
        segment(
            "baseline",
            "exchange E -> receiver (internet link)",
            internet,
            &baseline.end_to_end,
        ),
        Segment {
            path: "frankfurt",
            what: "receive floor (no link): send -> recv",
            injected_us: Some(0.0),
            achieved_us: Some(0.0),
            measured_us: (floor.count > 0).then_some(floor.p50_us),
            samples: floor.count,
            check: None,
        },
    ]
}
