//! The report's pictures, each an SVG drawn with plotters.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use relay_core::plan::Plan;

use crate::inputs::{rolling_median3, Run};

const SIZE: (u32, u32) = (900, 420);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

type Drawn = anyhow::Result<String>;

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e:?}")
}

/// A chart with f64 axes, as every plot here has.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A line of `points` in `c`, `width` px wide, with its legend entry `label`.
fn labelled_line<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    points: Vec<(f64, f64)>,
    c: RGBColor,
    width: u32,
    label: String,
) -> anyhow::Result<()> {
    chart
        .draw_series(LineSeries::new(points, c.stroke_width(width)))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(width)));
    Ok(())
}

/// The series' legend, boxed, where `position` says.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(position)
        .draw()
        .map_err(err)
}

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Latency CDF of every run with latencies: x the end-to-end latency in ms, y the share of
/// messages at or below it.
pub fn latency_cdf(runs: &[&Run]) -> Drawn {
    let curves: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|r| {
            let points = (0..=200)
                .filter_map(|i| {
                    let q = i as f64 / 200.0;
                    r.latency.quantile_ms(q).map(|ms| (ms, q))
                })
                .collect();
            (r.name.clone(), points)
        })
        .collect();
    let max = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(0.0f64, f64::max)
        .max(0.001);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("End-to-end latency, CDF", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..max * 1.05, 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("latency (ms), exchange E to accounted")
            .y_desc("share of messages")
            .draw()
            .map_err(err)?;
        for (i, (name, points)) in curves.into_iter().enumerate() {
            labelled_line(&mut chart, points, color(i), 2, name)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Mean latency per interval of every run (thin), and seed 002's rolling median of 3 (thick).
pub fn latency_over_time(runs: &[&Run]) -> Drawn {
    let series: Vec<(String, f64, Vec<Option<f64>>)> = runs
        .iter()
        .map(|r| {
            let means: Vec<Option<f64>> = r.intervals.iter().map(|i| i.mean_ms()).collect();
            (r.name.clone(), r.interval_secs, means)
        })
        .collect();
    let t_max = series
        .iter()
        .map(|(_, w, v)| *w * v.len() as f64)
        .fold(1.0f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().flatten().copied())
        .fold(0.001f64, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Latency over time (interval mean; thick: rolling median of 3)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max * 1.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time since the run's first message (s)")
            .y_desc("latency (ms)")
            .draw()
            .map_err(err)?;
        for (i, (name, width, means)) in series.into_iter().enumerate() {
            let c = color(i);
            let at = |k: usize| (k as f64 + 0.5) * width;
            let raw: Vec<(f64, f64)> = means
                .iter()
                .enumerate()
                .filter_map(|(k, m)| Some((at(k), (*m)?)))
                .collect();
            chart
                .draw_series(LineSeries::new(raw, c.mix(0.35).stroke_width(1)))
                .map_err(err)?;
            let smooth = rolling_median3(&means);
            // Broken where the median is absent, as pandas would leave NaN gaps.
            let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (k, m) in smooth.iter().enumerate() {
                match m {
                    Some(v) => segments.last_mut().expect("one segment").push((at(k), *v)),
                    None => segments.push(Vec::new()),
                }
            }
            // The first segment carries the legend entry; the rest are the same line, broken.
            let mut segments = segments.into_iter().filter(|s| !s.is_empty());
            if let Some(first) = segments.next() {
                labelled_line(&mut chart, first, c, 3, name)?;
            }
            for seg in segments {
                chart
                    .draw_series(LineSeries::new(seg, c.stroke_width(3)))
                    .map_err(err)?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Messages missing at arrival (sequence advance past them) and arriving late, per interval,
/// for relayed runs.
pub fn loss_over_time(run: &Run) -> Drawn {
    let w = run.interval_secs;
    let t_max = (w * run.intervals.len() as f64).max(1.0);
    let y_max = run
        .intervals
        .iter()
        .map(|i| i.missing.max(i.late))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: missing and late messages per {w} s", run.name),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max * 1.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time since the run's first message (s)")
            .y_desc("messages")
            .draw()
            .map_err(err)?;
        for (label, pick, c) in [
            (
                "missing at arrival",
                (|i: &crate::inputs::Interval| i.missing) as fn(&_) -> u64,
                color(1),
            ),
            ("arrived late (reordered, recovered)", |i| i.late, color(2)),
        ] {
            let points: Vec<(f64, f64)> = run
                .intervals
                .iter()
                .enumerate()
                .map(|(k, i)| ((k as f64 + 0.5) * w, pick(i) as f64))
                .collect();
            labelled_line(&mut chart, points, c, 2, label.to_string())?;
        }
        legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The latency split as stacked bars, one per run that has one: each component's mean, so a
/// bar is as long as the mean end-to-end latency.
pub fn split_bars(runs: &[&Run]) -> Drawn {
    let parts = |r: &Run| -> Vec<(&'static str, f64)> {
        let s = &r.summary.latency_split;
        [
            ("exchange_to_relay", s.exchange_to_relay),
            ("relay_dwell", s.relay_dwell),
            ("network", s.network),
            ("kernel", s.kernel),
            ("application", s.application),
        ]
        .into_iter()
        .map(|(name, c)| (name, c.map_or(0.0, |c| c.avg_us / 1000.0)))
        .collect()
    };
    let total_max = runs
        .iter()
        .map(|r| parts(r).iter().map(|p| p.1).sum::<f64>())
        .fold(0.001f64, f64::max);
    let height = 140 + 60 * runs.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency split (mean per component)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(160)
            .build_cartesian_2d(0.0..total_max * 1.45, 0.0..runs.len() as f64)
            .map_err(err)?;
        let names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(runs.len().max(1) * 2 + 1)
            .y_label_formatter(&|y| {
                let k = (*y - 0.5).round();
                if (*y - 0.5 - k).abs() < 1e-6 && k >= 0.0 {
                    names.get(k as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("ms")
            .draw()
            .map_err(err)?;
        for (component, c) in [
            "exchange_to_relay",
            "relay_dwell",
            "network",
            "kernel",
            "application",
        ]
        .iter()
        .zip((0..).map(color))
        {
            let rects: Vec<Rectangle<(f64, f64)>> = runs
                .iter()
                .enumerate()
                .filter_map(|(k, r)| {
                    let p = parts(r);
                    let at = p.iter().position(|x| x.0 == *component)?;
                    let from: f64 = p[..at].iter().map(|x| x.1).sum();
                    let y = k as f64;
                    Some(Rectangle::new(
                        [(from, y + 0.2), (from + p[at].1, y + 0.8)],
                        c.filled(),
                    ))
                })
                .collect();
            chart
                .draw_series(rects)
                .map_err(err)?
                .label(*component)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The direct RTT between every pair of nodes (Pingmesh's picture): darker is slower, blank is
/// unmeasured.
pub fn rtt_heatmap(plan: &Plan) -> Drawn {
    let n = plan.nodes.len();
    let index = |name: &str| plan.nodes.iter().position(|x| x == name);
    let max = plan
        .pairs
        .iter()
        .map(|p| p.direct_ms)
        .fold(0.001f64, f64::max);
    let side = (120 + 60 * n as u32).min(900);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (side + 160, side)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Direct RTT between nodes (ms, median)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(120)
            .build_cartesian_2d(0.0..n as f64, 0.0..n as f64)
            .map_err(err)?;
        let names = plan.nodes.clone();
        let label = move |v: &f64| {
            let k = (*v - 0.5).round();
            if (*v - 0.5 - k).abs() < 1e-6 && k >= 0.0 {
                names.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n * 2 + 1)
            .y_labels(n * 2 + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&label)
            .draw()
            .map_err(err)?;
        for p in &plan.pairs {
            let (Some(a), Some(b)) = (index(&p.src), index(&p.dst)) else {
                continue;
            };
            let lightness = 0.92 - 0.62 * (p.direct_ms / max);
            let shade = HSLColor(0.6, 0.7, lightness);
            let ink = if lightness < 0.55 { WHITE } else { BLACK };
            for (x, y) in [(a, b), (b, a)] {
                let (x, y) = (x as f64, y as f64);
                chart
                    .draw_series([Rectangle::new([(x, y), (x + 1.0, y + 1.0)], shade.filled())])
                    .map_err(err)?;
                chart
                    .draw_series([Text::new(
                        format!("{:.1}", p.direct_ms),
                        (x + 0.3, y + 0.55),
                        ("sans-serif", 13).into_font().color(&ink),
                    )])
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Seed 001's Fig. 3: the share of pairs some relay among the top k improves, against k.
pub fn gain_by_relays(plan: &Plan) -> Drawn {
    let k = plan.gain_by_top_relays.len().max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Pairs improved by the top k relays", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5..k as f64 + 0.5, 0.0..100.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("k, relays ranked by the improved pairs they are best for")
            .y_desc("% of pairs improved")
            .draw()
            .map_err(err)?;
        let points: Vec<(f64, f64)> = plan
            .gain_by_top_relays
            .iter()
            .enumerate()
            .map(|(i, g)| (i as f64 + 1.0, g * 100.0))
            .collect();
        let c = color(0);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled())))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
