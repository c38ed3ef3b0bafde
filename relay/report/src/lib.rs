//! `relay report DIR`: one self-contained HTML page (SVG inline, no script, nothing fetched) from
//! a results folder: the comparison with seed 002's verdicts, latency CDFs of every run, latency
//! over time with seed 002's rolling median, missing and late messages over time, the latency
//! split, and from probe-mesh datasets the RTT matrix and seed 001's gain by number of relays.
//! `cargo xtask lab` and `demo` write it into their results folder.

pub mod inputs;
pub mod plots;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use relay_core::compare::Comparison;

use inputs::{Inputs, Run};

/// The page's file name in the folder.
pub const FILE_NAME: &str = "report.html";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn figure(out: &mut String, svg: anyhow::Result<String>, caption: &str) {
    match svg {
        Ok(svg) => {
            let _ = writeln!(
                out,
                "<figure>{svg}<figcaption>{}</figcaption></figure>",
                escape(caption)
            );
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "<p class=\"missing\">{}: {}</p>",
                escape(caption),
                escape(&format!("{e:#}"))
            );
        }
    }
}

/// The page for what `inputs` holds (`title` names the folder).
pub fn render(inputs: &Inputs, title: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>relay report: {t}</title><style>\
         body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
         pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}\
         figure{{margin:2em 0}} figcaption{{color:#555;font-size:90%}}\
         .missing{{color:#a00}}</style></head><body>\n<h1>relay report: {t}</h1>\n",
        t = escape(title)
    );
    let runs: Vec<&Run> = inputs.runs.iter().collect();
    if runs.is_empty() && inputs.rtt.is_none() {
        out.push_str("<p class=\"missing\">No receiver results (a <code>*.json</code> summary beside its CSV) and no RTT dataset in this folder.</p>\n");
    }
    let _ = writeln!(out, "<h2>Runs</h2>\n<ul>");
    for r in &runs {
        let s = &r.summary;
        let _ = writeln!(
            out,
            "<li><b>{}</b> ({}): {} messages, {} lost, {:.0} s{}</li>",
            escape(&r.name),
            escape(&s.setup_type),
            s.sample_count,
            s.events_lost,
            s.duration_secs,
            s.clock_warning
                .as_ref()
                .map_or(String::new(), |w| format!("; clock: {}", escape(w)))
        );
    }
    out.push_str("</ul>\n");
    let direct = runs.iter().find(|r| r.summary.setup_type == "baseline");
    let overlay = runs.iter().find(|r| r.summary.setup_type == "aws-backbone");
    if let (Some(d), Some(o)) = (direct, overlay) {
        let c = Comparison::of_summaries(&d.summary, &o.summary);
        let _ = writeln!(
            out,
            "<h2>Comparison</h2>\n<pre>{}</pre>",
            escape(&c.table())
        );
    }
    let with_latency: Vec<&Run> = runs
        .iter()
        .copied()
        .filter(|r| r.latency.count() > 0)
        .collect();
    if !with_latency.is_empty() {
        out.push_str("<h2>Latency</h2>\n");
        figure(
            &mut out,
            plots::latency_cdf(&with_latency),
            "Share of messages at or below each end-to-end latency (exchange event time E to accounted).",
        );
        figure(
            &mut out,
            plots::latency_over_time(&with_latency),
            "Mean latency per interval (thin) and seed 002's centred rolling median of 3 intervals (thick).",
        );
    }
    let split: Vec<&Run> = runs
        .iter()
        .copied()
        .filter(|r| r.summary.latency_split.network.is_some())
        .collect();
    if !split.is_empty() {
        figure(
            &mut out,
            plots::split_bars(&split),
            "Where the time goes: the mean of each component of the latency split (they add up to the mean end-to-end latency).",
        );
    }
    for r in runs
        .iter()
        .filter(|r| r.summary.setup_type == "aws-backbone")
    {
        out.push_str("<h2>Loss</h2>\n");
        figure(
            &mut out,
            plots::loss_over_time(r),
            &format!(
                "{}: sequences skipped when a later message arrived, and messages that arrived after a later one; {} stayed lost, {} came back by recovery.",
                r.name, r.summary.events_lost, r.summary.recovered
            ),
        );
    }
    if let Some(rtt) = &inputs.rtt {
        out.push_str("<h2>Paths</h2>\n");
        match relay_core::plan::plan(&rtt.samples, None) {
            Ok(plan) => {
                figure(
                    &mut out,
                    plots::rtt_heatmap(&plan),
                    "Median direct RTT of every measured pair (both directions).",
                );
                figure(
                    &mut out,
                    plots::gain_by_relays(&plan),
                    &format!(
                        "{} of {} pairs are improved by a one-hop relay; the line is the share some relay among the top k improves (seed 001, Fig. 3).",
                        plan.improved_pairs,
                        plan.pairs.len()
                    ),
                );
                let _ = writeln!(out, "<pre>{}</pre>", escape(&plan.table(10)));
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "<p class=\"missing\">RTT data: {}</p>",
                    escape(&e.to_string())
                );
            }
        }
    }
    if !inputs.skipped.is_empty() {
        out.push_str("<h2>Not included</h2>\n<ul>\n");
        for s in &inputs.skipped {
            let _ = writeln!(out, "<li>{}</li>", escape(s));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// Reads `dir` and writes its report there; returns the page's path.
pub fn write(dir: &Path) -> anyhow::Result<PathBuf> {
    let inputs = inputs::read(dir)?;
    let title = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let page = render(&inputs, &title);
    let path = dir.join(FILE_NAME);
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests;
