//! `relay compare`, `relay plan` and `relay report`: read the files, run the analysis
//! ([`relay_core::compare`], [`relay_core::plan`], [`relay_report`]), print or write it.

use anyhow::Context;
use relay_core::compare::{Comparison, Figures};

use crate::cli::analyse::{CompareArgs, Format, PlanArgs, ReportArgs};

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn figures(path: &std::path::Path, target: Option<&str>) -> anyhow::Result<Figures> {
    let text = String::from_utf8(read(path)?)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    Figures::from_json(&text, target)
        .with_context(|| format!("{} is not a receiver or probe summary", path.display()))
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let target = args.target.as_deref();
    let (direct, overlay) = (
        figures(&args.direct, target.or(args.direct_target.as_deref()))?,
        figures(&args.overlay, target.or(args.overlay_target.as_deref()))?,
    );
    if direct.setup_type == "aws-backbone" || overlay.setup_type == "baseline" {
        eprintln!(
            "relay compare: note: the first file is taken as the direct path and the second as \
             the overlay; these are {:?} and {:?}",
            direct.setup_type, overlay.setup_type
        );
    }
    let comparison = Comparison::of(direct, overlay);
    match args.format {
        Format::Table => print!("{}", comparison.table()),
        Format::Json => print_json(&comparison)?,
    }
    Ok(())
}

pub fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let mut input = relay_core::plan::Input::default();
    for path in &args.rtt {
        relay_core::plan::parse_csv(&read(path)?, &mut input)
            .with_context(|| format!("reading RTT samples from {}", path.display()))?;
    }
    let relays = (!args.relays.is_empty()).then_some(args.relays.as_slice());
    let mut plan = relay_core::plan::plan(&input.samples, relays).context("planning relays")?;
    plan.rows_without_rtt = input.rows_without_rtt;
    match args.format {
        Format::Table => print!("{}", plan.table(args.top)),
        Format::Json => print_json(&plan)?,
    }
    Ok(())
}

pub fn report(args: ReportArgs) -> anyhow::Result<()> {
    let path = relay_report::write(&args.dir)?;
    println!("{}", path.display());
    Ok(())
}
