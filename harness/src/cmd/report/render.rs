//! Loaded inputs and the machine's current facts in; report.md's text and the list of
//! charts to draw out. Each table row and each plot names the file its numbers come from
//! (a path relative to report.md); a section whose input is absent is one line naming the
//! command that produces it.

use crate::util::fmt::thousands;
use std::fmt::Write;
use std::path::Path;

use super::inputs::{Inputs, RunFolder};
use super::plots::Chart;
use super::recommendations::recommendations;
use super::{Machine, charts};
use crate::capacity::recommend as rec;
use crate::capacity::records::TuneReport;
use crate::cli::ReportArgs;
use crate::export::table::Table;

pub struct Rendered {
    pub markdown: String,
    /// (file name inside the output folder, chart)
    pub charts: Vec<(String, Chart)>,
}

pub(super) type Rel<'a> = &'a dyn Fn(&Path) -> String;

pub(super) fn ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

/// Milliseconds as a person states a setting: "1000", "2.5".
pub(super) fn ms_setting(ns: u64) -> String {
    let v = ns as f64 / 1e6;
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

pub(super) fn link(rel: Rel, p: &Path) -> String {
    let r = rel(p);
    format!("[{r}]({r})")
}

/// A file-name-safe form of a folder or scenario name.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) fn kib(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// The SLO in force and where it comes from.
pub(super) fn slo(inputs: &Inputs, args: &ReportArgs) -> (u64, String) {
    if let Some(ms) = args.slo_ms {
        return ((ms * 1e6) as u64, "from --slo-ms".into());
    }
    match inputs.sweeps.first() {
        Some(s) if s.data.slo_p99_ns > 0 => (
            s.data.slo_p99_ns,
            format!("from {}'s scenario", s.path.display()),
        ),
        _ => (
            1_000_000_000,
            "the default: no --slo-ms, no sweep.json".into(),
        ),
    }
}

fn runs_section(
    inputs: &Inputs,
    rel: Rel,
    charts_out: &mut Vec<(String, Chart)>,
    out: &mut String,
) {
    out.push_str("## Latency per syncer\n\n");
    if inputs.runs.is_empty() {
        out.push_str("No results folder among the inputs: `harness run SCENARIO` writes one.\n\n");
        return;
    }
    for f in &inputs.runs {
        let _ = writeln!(
            out,
            "### {} ({})\n\n{} on {} ({}, kernel {}); from {}.\n",
            f.scenario,
            rel(&f.dir),
            f.scenario,
            f.host,
            f.cpu,
            f.kernel,
            link(rel, &f.run_json)
        );
        out.push_str(&runs_table(f, rel).render());
        out.push('\n');
        run_charts(f, rel, charts_out, out);
    }
}

/// One row per run of a results folder, its calibration first.
fn runs_table(f: &RunFolder, rel: Rel) -> Table {
    let mut table = Table::new([
        "run",
        "result",
        "ops",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "lost",
        "floor ratio",
        "distribution",
    ])
    .spaced_empty_cells();
    for e in f.calibration.iter().chain(&f.runs) {
        table.row([
            e.label(),
            e.outcome.to_string(),
            e.storm_ops.to_string(),
            format!("{:.0}", e.ops_per_s),
            ms(e.p50_ns),
            ms(e.p99_ns),
            ms(e.max_ns),
            e.lost.to_string(),
            e.floor_ratio
                .map_or_else(|| "—".into(), |x| format!("{x:.2}")),
            e.hgrm
                .as_ref()
                .map_or_else(|| "—".into(), |h| link(rel, &h.path)),
        ]);
    }
    table
}

/// A results folder's plots: latency by percentile, then latency and ops/s over time.
fn run_charts(f: &RunFolder, rel: Rel, charts_out: &mut Vec<(String, Chart)>, out: &mut String) {
    let name = f
        .dir
        .file_name()
        .map_or_else(|| f.scenario.clone(), |n| n.to_string_lossy().into_owned());
    let add = |kind: &str,
               chart: Option<Chart>,
               alt: &str,
               out: &mut String,
               all: &mut Vec<(String, Chart)>| {
        if let Some(c) = chart {
            let file = format!("{kind}-{}.svg", slug(&name));
            let _ = writeln!(out, "![{alt}]({file})\n");
            all.push((file, c));
        }
    };
    add(
        "percentiles",
        charts::percentiles(f, rel),
        "latency by percentile",
        out,
        charts_out,
    );
    let tl = charts::timeline_latency(f, rel);
    if tl.is_none() {
        out.push_str("No -timeline.csv in this folder (written by `harness run` since timelines were added): run the scenario again for latency and ops/s over time.\n\n");
    }
    add(
        "timeline-latency",
        tl,
        "latency during the storm",
        out,
        charts_out,
    );
    add(
        "timeline-ops",
        charts::timeline_ops(f, rel),
        "ops/s over the storm",
        out,
        charts_out,
    );
}

fn sweep_section(
    inputs: &Inputs,
    args: &ReportArgs,
    rel: Rel,
    charts_out: &mut Vec<(String, Chart)>,
    out: &mut String,
) {
    out.push_str("## Latency vs offered rate\n\n");
    if inputs.sweeps.is_empty() {
        out.push_str("No sweep.json among the inputs: `harness sweep SCENARIO` writes one.\n\n");
        return;
    }
    let (slo_ns, _) = slo(inputs, args);
    for (i, s) in inputs.sweeps.iter().enumerate() {
        let _ = writeln!(
            out,
            "### {} (from {})\n",
            s.data.scenario,
            link(rel, &s.path)
        );
        let mut table = Table::new([
            "syncer",
            "offered ops/s",
            "achieved ops/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "lost",
            "run",
        ])
        .spaced_empty_cells();
        for c in &s.data.curves {
            for p in &c.points {
                table.row([
                    c.sut.clone(),
                    format!("{:.0}", p.offered_rate),
                    format!("{:.0}", p.achieved_ops_s),
                    ms(p.p50_ns),
                    ms(p.p99_ns),
                    ms(p.p999_ns),
                    p.lost.to_string(),
                    p.run_dir.clone(),
                ]);
            }
        }
        out.push_str(&table.render());
        out.push('\n');
        for c in &s.data.curves {
            let _ = writeln!(
                out,
                "- {}: knee at {}; sustainable at the SLO ({} ms): {}",
                c.sut,
                c.knee_rate
                    .map_or_else(|| "none found".into(), |k| format!("{k:.0} ops/s offered")),
                ms_setting(slo_ns),
                rec::sustainable_at(&c.points, slo_ns).map_or_else(
                    || "none".into(),
                    |p| format!("{:.0} ops/s", p.achieved_ops_s)
                )
            );
        }
        let file = format!("sweep-{}-{i}.svg", slug(&s.data.scenario));
        let _ = writeln!(out, "\n![p99 vs offered rate]({file})\n");
        charts_out.push((file, charts::sweep(s, slo_ns, rel)));
    }
}

fn tune_section(
    inputs: &Inputs,
    rel: Rel,
    charts_out: &mut Vec<(String, Chart)>,
    out: &mut String,
) {
    out.push_str("## Queue size vs overflow\n\n");
    if inputs.tunes.is_empty() {
        out.push_str("No tune.json among the inputs: `harness tune SCENARIO` writes one.\n\n");
        return;
    }
    for (i, t) in inputs.tunes.iter().enumerate() {
        let _ = writeln!(
            out,
            "### {} with {} (from {})\n",
            t.data.scenario,
            t.data.sut,
            link(rel, &t.path)
        );
        out.push_str(&tune_cells(&t.data).render());
        if !t.data.stall_checks.is_empty() {
            out.push_str("\nStall checks (the syncer SIGSTOPped mid-storm for factor x the predicted stall):\n\n");
            out.push_str(&stall_checks(&t.data).render());
        }
        let file = format!("tune-{}-{i}.svg", slug(&t.data.scenario));
        let _ = writeln!(out, "\n![overflows vs queue size]({file})\n");
        charts_out.push((file, charts::tune(t, rel)));
    }
}

/// One row per cell of the queue x rate grid.
fn tune_cells(t: &TuneReport) -> Table {
    let mut table = Table::new([
        "queue",
        "offered ops/s",
        "achieved ops/s",
        "events/op",
        "overflows",
        "reconciles",
        "p50 ms",
        "p99 ms",
        "lost",
        "run",
    ])
    .spaced_empty_cells();
    for c in &t.cells {
        table.row([
            c.queue.to_string(),
            format!("{:.0}", c.rate),
            format!("{:.0}", c.achieved_ops_s),
            format!("{:.2}", c.events_per_op),
            c.overflows.to_string(),
            c.reconciles.map_or_else(|| "—".into(), |r| r.to_string()),
            ms(c.p50_ns),
            ms(c.p99_ns),
            c.lost.to_string(),
            c.run_dir.clone(),
        ]);
    }
    table
}

fn stall_checks(t: &TuneReport) -> Table {
    let mut table = Table::new([
        "queue",
        "ops/s",
        "predicted stall ms",
        "factor",
        "paused ms",
        "overflowed",
        "as predicted",
        "run",
    ])
    .spaced_empty_cells();
    for s in &t.stall_checks {
        table.row([
            s.queue.to_string(),
            format!("{:.0}", s.rate),
            ms(s.predicted_stall_ns),
            s.factor.to_string(),
            ms(s.paused_ns),
            s.overflowed.to_string(),
            (if s.as_predicted { "yes" } else { "**no**" }).to_string(),
            s.run_dir.clone(),
        ]);
    }
    table
}

fn watchcost_section(inputs: &Inputs, rel: Rel, out: &mut String) {
    out.push_str("## Kernel memory per watch\n\n");
    if inputs.watchcosts.is_empty() {
        out.push_str("No watchcost.json among the inputs: `harness watchcost` writes one.\n\n");
        return;
    }
    let mut table = Table::new([
        "mark",
        "objects held",
        "directories",
        "pinned",
        "bytes per directory",
        "samples (bytes)",
        "method",
        "from",
    ])
    .spaced_empty_cells();
    for w in &inputs.watchcosts {
        for (kind, c) in [
            ("inotify watches", &w.data.inotify),
            ("fanotify filesystem mark", &w.data.fanotify),
        ] {
            let Some(c) = c else { continue };
            let samples: Vec<String> = c.samples_bytes.iter().map(i64::to_string).collect();
            table.row([
                kind.to_string(),
                thousands(c.objects),
                thousands(c.directories),
                kib(c.pinned_bytes),
                format!("{:.0}", c.bytes_per_directory),
                samples.join(", "),
                c.method.clone(),
                link(rel, &w.path),
            ]);
        }
    }
    out.push_str(&table.render());
    out.push('\n');
}

fn history_section(
    inputs: &Inputs,
    rel: Rel,
    charts_out: &mut Vec<(String, Chart)>,
    out: &mut String,
) {
    out.push_str("## History\n\n");
    if inputs.histories.is_empty() {
        out.push_str("No history.csv among the inputs: `harness ci --record` appends to results/history.csv.\n\n");
        return;
    }
    for (i, h) in inputs.histories.iter().enumerate() {
        let mut scenarios: Vec<&str> = h.data.iter().map(|r| r.scenario.as_str()).collect();
        scenarios.sort();
        scenarios.dedup();
        let _ = writeln!(
            out,
            "{} rows from {}; floor ratio = (storm + convergence) / a plain copy in the same run, comparable across machines.\n",
            h.data.len(),
            link(rel, &h.path)
        );
        for s in scenarios {
            let [ratio, p99] = charts::history(h, s, rel);
            let base = format!("history-{}-{i}", slug(s));
            let _ = writeln!(
                out,
                "![{s} floor ratio]({base}-floor-ratio.svg)\n![{s} p99]({base}-p99.svg)\n"
            );
            charts_out.push((format!("{base}-floor-ratio.svg"), ratio));
            charts_out.push((format!("{base}-p99.svg"), p99));
        }
    }
}

/// `command`: the command line that made the report, quoted at its top.
pub fn render(
    inputs: &Inputs,
    args: &ReportArgs,
    command: &str,
    m: &Machine,
    rel: Rel,
) -> Rendered {
    let mut out = String::new();
    let mut charts_out = Vec::new();
    let _ = writeln!(
        out,
        "# Capacity planning report\n\nMade on {} ({}) with `{}`. Every number names the file it comes from (paths relative to this report); machine facts marked \"/proc\" were read when the report was made. Plots are SVG files beside this report.\n",
        m.host, m.date, command
    );
    recommendations(inputs, args, m, rel, &mut out);
    runs_section(inputs, rel, &mut charts_out, &mut out);
    sweep_section(inputs, args, rel, &mut charts_out, &mut out);
    tune_section(inputs, rel, &mut charts_out, &mut out);
    watchcost_section(inputs, rel, &mut out);
    history_section(inputs, rel, &mut charts_out, &mut out);
    Rendered {
        markdown: out,
        charts: charts_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_format_for_people() {
        assert_eq!(thousands(192_536), "192,536");
        assert_eq!(thousands(999), "999");
        assert_eq!(kib(2048), "2.0 KiB");
        assert_eq!(kib(64 << 20), "64.0 MiB");
        assert_eq!(slug("2026-11-25-vm seq/200"), "2026-11-25-vm_seq_200");
    }
}
