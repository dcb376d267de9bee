//! Loaded inputs and the machine's current facts in; report.md's text and the list of
//! charts to draw out. Each table row and each plot names the file its numbers come from
//! (a path relative to report.md); a section whose input is absent is one line naming the
//! command that produces it.

use crate::util::fmt::thousands;
use std::fmt::Write;
use std::path::Path;

use super::inputs::{Inputs, RunEntry, RunFolder};
use super::plots::Chart;
use super::{Machine, charts};
use crate::capacity::recommend as rec;
use crate::cli::ReportArgs;

pub struct Rendered {
    pub markdown: String,
    /// (file name inside the output folder, chart)
    pub charts: Vec<(String, Chart)>,
}

type Rel<'a> = &'a dyn Fn(&Path) -> String;

fn ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

/// Milliseconds as a person states a setting: "1000", "2.5".
fn ms_setting(ns: u64) -> String {
    let v = ns as f64 / 1e6;
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn link(rel: Rel, p: &Path) -> String {
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

fn kib(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// The SLO in force and where it comes from.
fn slo(inputs: &Inputs, args: &ReportArgs) -> (u64, String) {
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

struct Row {
    what: String,
    value: String,
    how: String,
    from: String,
}

/// The busiest moment measured: the busiest window of the stall budget's length in any run's
/// timeline, i.e. the ops a syncer stalled that long at the worst moment finds queued (or, for
/// folders without timelines, the highest storm mean), with the events each op causes.
struct Peak<'a> {
    ops_per_s: f64,
    how: String,
    from: String,
    folder: &'a RunFolder,
    entry: &'a RunEntry,
}

fn peak<'a>(inputs: &'a Inputs, rel: Rel, window_ms: u64) -> Option<Peak<'a>> {
    let mut best: Option<Peak> = None;
    for f in &inputs.runs {
        for e in f.calibration.iter().chain(&f.runs) {
            let cand = match &e.timeline {
                Some(t) => rec::peak_ops_per_s(
                    &t.data,
                    charts::bin_width_ms(e, &t.data),
                    window_ms,
                )
                .map(|(rate, t_ms)| Peak {
                    ops_per_s: rate,
                    how: format!(
                        "busiest {window_ms} ms window (the stall budget; from {:.2} s) of {}",
                        t_ms as f64 / 1000.0,
                        e.label()
                    ),
                    from: link(rel, &t.path),
                    folder: f,
                    entry: e,
                }),
                None => (e.ops_per_s > 0.0).then(|| Peak {
                    ops_per_s: e.ops_per_s,
                    how: format!(
                        "storm mean of {} (no -timeline.csv in this folder: rerun `harness run` for the peak)",
                        e.label()
                    ),
                    from: link(rel, &f.run_json),
                    folder: f,
                    entry: e,
                }),
            };
            if let Some(c) = cand
                && best.as_ref().is_none_or(|b| c.ops_per_s > b.ops_per_s)
            {
                best = Some(c);
            }
        }
    }
    best
}

/// Kernel events per storm op: the calibration run's (the generator writing straight into
/// the watched tree: exactly the source's events), else tune.json's, else the run's own.
fn events_per_op(p: &Peak, inputs: &Inputs, rel: Rel) -> Option<(f64, String, String)> {
    if let Some(c) = &p.folder.calibration
        && c.storm_ops > 0
        && c.probe_events > 0
    {
        return Some((
            c.probe_events as f64 / c.storm_ops as f64,
            format!(
                "calibration run: {} probe events / {} ops (generator writing straight into the watched tree)",
                c.probe_events, c.storm_ops
            ),
            link(rel, &p.folder.run_json),
        ));
    }
    if let Some(t) = inputs.tunes.first() {
        let mut v: Vec<f64> = t
            .data
            .cells
            .iter()
            .map(|c| c.events_per_op)
            .filter(|x| *x > 0.0)
            .collect();
        v.sort_by(f64::total_cmp);
        if let Some(m) = v.get(v.len() / 2) {
            return Some((
                *m,
                format!("median events_per_op of {} tune cells", v.len()),
                link(rel, &t.path),
            ));
        }
    }
    let e = p.entry;
    (e.storm_ops > 0 && e.probe_events > 0).then(|| {
        (
            e.probe_events as f64 / e.storm_ops as f64,
            format!(
                "{}: {} replica events / {} ops (upper bound: includes the syncer's own temp files)",
                e.label(),
                e.probe_events,
                e.storm_ops
            ),
            link(rel, &p.folder.run_json),
        )
    })
}

fn recommendations(inputs: &Inputs, args: &ReportArgs, m: &Machine, rel: Rel, out: &mut String) {
    let mut rows: Vec<Row> = Vec::new();
    let mut conf: Vec<String> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    let proc_note = format!("read from /proc on {} when this report was made", m.host);
    // Watches: the biggest measured tree.
    let tree = inputs
        .runs
        .iter()
        .filter_map(|f| Some((f, f.tree_dirs.as_ref()?)))
        .max_by_key(|(_, t)| t.count);
    if let Some((f, t)) = tree {
        let needed = rec::watches_needed(t.count, m.watches_in_use);
        rows.push(Row {
            what: format!("Directories of the measured tree ({})", f.scenario),
            value: thousands(t.count),
            how: t.source.clone(),
            from: link(rel, &f.run_json),
        });
        rows.push(Row {
            what: "Inotify watches already in use by this user".into(),
            value: thousands(m.watches_in_use),
            how: format!(
                "`inotify wd:` lines of /proc/*/fdinfo, held by {} process(es); {proc_note}",
                m.watch_holders
            ),
            from: "/proc/*/fdinfo".into(),
        });
        rows.push(Row {
            what: "**Watches needed**".into(),
            value: format!("**{}**", thousands(needed)),
            how: "one per directory + those in use (the limit counts per user)".into(),
            from: "the two rows above".into(),
        });
        if let Some(cur) = m.max_user_watches {
            let set = rec::max_user_watches(needed, cur);
            rows.push(Row {
                what: "fs.inotify.max_user_watches: now → recommended".into(),
                value: format!("{} → **{}**", thousands(cur), thousands(set)),
                how: "needed x 1.25 headroom, rounded up to 1024, never below the current value"
                    .into(),
                from: "/proc/sys/fs/inotify/max_user_watches".into(),
            });
            conf.push(format!(
                "# {} directories + {} watches in use = {} needed; x 1.25 headroom",
                t.count, m.watches_in_use, needed
            ));
            conf.push(format!("fs.inotify.max_user_watches = {set}"));
        }
        match inputs
            .watchcosts
            .iter()
            .find_map(|w| Some((w, w.data.inotify.as_ref()?)))
        {
            Some((w, c)) => rows.push(Row {
                what: "**Kernel memory for the watches** (inotify)".into(),
                value: format!(
                    "**{}**",
                    kib(rec::kernel_bytes(needed, c.bytes_per_directory))
                ),
                how: format!(
                    "{} watches x {:.0} bytes per directory (pinned slab, {} samples)",
                    thousands(needed),
                    c.bytes_per_directory,
                    c.samples_bytes.len()
                ),
                from: link(rel, &w.path),
            }),
            None => {
                missing.push("kernel memory per watch: `harness watchcost` writes watchcost.json")
            }
        }
        if let Some((w, c)) = inputs
            .watchcosts
            .iter()
            .find_map(|w| Some((w, w.data.fanotify.as_ref()?)))
        {
            rows.push(Row {
                what: "Kernel memory of one fanotify filesystem mark instead".into(),
                value: kib(c.pinned_bytes),
                how: format!(
                    "pinned slab with the mark held over {} directories (covers the whole filesystem; needs CAP_SYS_ADMIN)",
                    thousands(c.directories)
                ),
                from: link(rel, &w.path),
            });
        }
    } else {
        missing
            .push("watches needed: a results folder of `harness run` (its run.json has tree_dirs)");
    }
    // Queue: peak event rate x stall budget.
    match peak(inputs, rel, args.stall_budget_ms.max(1.0) as u64) {
        Some(p) => {
            rows.push(Row {
                what: format!("Peak storm rate ({})", p.folder.scenario),
                value: format!("{:.0} ops/s", p.ops_per_s),
                how: p.how.clone(),
                from: p.from.clone(),
            });
            if let Some((epo, how, from)) = events_per_op(&p, inputs, rel) {
                let eps = p.ops_per_s * epo;
                let needed = rec::queue_needed(eps, args.stall_budget_ms);
                rows.push(Row {
                    what: "Kernel events per op".into(),
                    value: format!("{epo:.2}"),
                    how,
                    from,
                });
                rows.push(Row {
                    what: "Peak event rate".into(),
                    value: format!("{eps:.0} events/s"),
                    how: "peak ops/s x events per op".into(),
                    from: "the two rows above".into(),
                });
                rows.push(Row {
                    what: "**Queue needed** for the stall budget".into(),
                    value: format!("**{}** events", thousands(needed)),
                    how: format!(
                        "peak event rate x {} ms stall budget (--stall-budget-ms): events queued while the syncer does not read",
                        args.stall_budget_ms
                    ),
                    from: "the row above".into(),
                });
                if let Some(cur) = m.max_queued_events {
                    let set = rec::max_queued_events(needed, cur);
                    rows.push(Row {
                        what: "fs.inotify.max_queued_events: now → recommended".into(),
                        value: format!("{} → **{}**", thousands(cur), thousands(set)),
                        how: format!(
                            "next power of two, never below the current value nor 16384; absorbs a {:.0} ms stall at the peak",
                            rec::tolerated_stall_ms(set, eps)
                        ),
                        from: "/proc/sys/fs/inotify/max_queued_events".into(),
                    });
                    conf.push(format!(
                        "# peak {eps:.0} events/s x {} ms stall budget = {needed} events",
                        args.stall_budget_ms
                    ));
                    conf.push(format!("fs.inotify.max_queued_events = {set}"));
                }
            }
        }
        None => missing.push("queue size: a results folder of `harness run` (its storm rate)"),
    }
    for t in &inputs.tunes {
        for q in &t.data.smallest_queue {
            rows.push(Row {
                what: format!(
                    "Smallest queue without overflow at {:.0} ops/s ({}, {})",
                    q.rate, t.data.scenario, t.data.sut
                ),
                value: q
                    .smallest_queue
                    .map_or_else(|| "none of the grid".into(), thousands),
                how: "measured: the grid's smallest max_queued_events with 0 overflows".into(),
                from: link(rel, &t.path),
            });
        }
    }
    if inputs.tunes.is_empty() {
        missing.push("queue sizes measured per rate: `harness tune SCENARIO` writes tune.json");
    }
    // Throughput at the SLO, per syncer.
    let (slo_ns, slo_from) = slo(inputs, args);
    for s in &inputs.sweeps {
        for c in &s.data.curves {
            let best = rec::sustainable_at(&c.points, slo_ns);
            rows.push(Row {
                what: format!(
                    "**Sustainable ops/s at p99 ≤ {} ms**: {} ({})",
                    ms_setting(slo_ns),
                    c.sut,
                    s.data.scenario
                ),
                value: best.map_or_else(
                    || "**below the sweep's lowest rate**".into(),
                    |p| format!("**{:.0}**", p.achieved_ops_s),
                ),
                how: best.map_or_else(
                    || "no point of the sweep met the SLO with nothing lost".into(),
                    |p| {
                        format!(
                            "highest achieved rate with p99 {} ms and nothing lost (offered {:.0}; run {})",
                            ms(p.p99_ns),
                            p.offered_rate,
                            p.run_dir
                        )
                    },
                ),
                from: link(rel, &s.path),
            });
        }
    }
    if inputs.sweeps.is_empty() {
        missing.push("sustainable ops/s per syncer: `harness sweep SCENARIO` writes sweep.json");
    }
    let _ = writeln!(
        out,
        "## Recommendations\n\nSLO p99 {} ms ({slo_from}); stall budget {} ms (--stall-budget-ms).\n",
        ms_setting(slo_ns),
        args.stall_budget_ms
    );
    if !rows.is_empty() {
        out.push_str("| what | value | how | from |\n|---|---|---|---|\n");
        for r in &rows {
            let _ = writeln!(out, "| {} | {} | {} | {} |", r.what, r.value, r.how, r.from);
        }
        out.push('\n');
    }
    for m in &missing {
        let _ = writeln!(out, "- Not in this report: {m}.");
    }
    if !missing.is_empty() {
        out.push('\n');
    }
    if conf.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### /etc/sysctl.d/90-inotify.conf\n\n```\n# written by `harness report` on {} ({})",
        m.date, m.host
    );
    for l in &conf {
        let _ = writeln!(out, "{l}");
    }
    out.push_str(
        "```\n\nApply with `sysctl --system`, then restart the syncer: an inotify instance keeps the queue size it was created with.\n\n",
    );
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
        let name = f
            .dir
            .file_name()
            .map_or_else(|| f.scenario.clone(), |n| n.to_string_lossy().into_owned());
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
        out.push_str("| run | result | ops | ops/s | p50 ms | p99 ms | max ms | lost | floor ratio | distribution |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for e in f.calibration.iter().chain(&f.runs) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                e.label(),
                e.outcome,
                e.storm_ops,
                e.ops_per_s,
                ms(e.p50_ns),
                ms(e.p99_ns),
                ms(e.max_ns),
                e.lost,
                e.floor_ratio
                    .map_or_else(|| "—".into(), |x| format!("{x:.2}")),
                e.hgrm
                    .as_ref()
                    .map_or_else(|| "—".into(), |h| link(rel, &h.path))
            );
        }
        out.push('\n');
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
        out.push_str("| syncer | offered ops/s | achieved ops/s | p50 ms | p99 ms | p99.9 ms | lost | run |\n|---|---|---|---|---|---|---|---|\n");
        for c in &s.data.curves {
            for p in &c.points {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                    c.sut,
                    p.offered_rate,
                    p.achieved_ops_s,
                    ms(p.p50_ns),
                    ms(p.p99_ns),
                    ms(p.p999_ns),
                    p.lost,
                    p.run_dir
                );
            }
        }
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
        out.push_str("| queue | offered ops/s | achieved ops/s | events/op | overflows | reconciles | p50 ms | p99 ms | lost | run |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for c in &t.data.cells {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} | {} | {} |",
                c.queue,
                c.rate,
                c.achieved_ops_s,
                c.events_per_op,
                c.overflows,
                c.reconciles.map_or_else(|| "—".into(), |r| r.to_string()),
                ms(c.p50_ns),
                ms(c.p99_ns),
                c.lost,
                c.run_dir
            );
        }
        if !t.data.stall_checks.is_empty() {
            out.push_str("\nStall checks (the syncer SIGSTOPped mid-storm for factor x the predicted stall):\n\n| queue | ops/s | predicted stall ms | factor | paused ms | overflowed | as predicted | run |\n|---|---|---|---|---|---|---|---|\n");
            for s in &t.data.stall_checks {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                    s.queue,
                    s.rate,
                    ms(s.predicted_stall_ns),
                    s.factor,
                    ms(s.paused_ns),
                    s.overflowed,
                    if s.as_predicted { "yes" } else { "**no**" },
                    s.run_dir
                );
            }
        }
        let file = format!("tune-{}-{i}.svg", slug(&t.data.scenario));
        let _ = writeln!(out, "\n![overflows vs queue size]({file})\n");
        charts_out.push((file, charts::tune(t, rel)));
    }
}

fn watchcost_section(inputs: &Inputs, rel: Rel, out: &mut String) {
    out.push_str("## Kernel memory per watch\n\n");
    if inputs.watchcosts.is_empty() {
        out.push_str("No watchcost.json among the inputs: `harness watchcost` writes one.\n\n");
        return;
    }
    out.push_str("| mark | objects held | directories | pinned | bytes per directory | samples (bytes) | method | from |\n|---|---|---|---|---|---|---|---|\n");
    for w in &inputs.watchcosts {
        for (kind, c) in [
            ("inotify watches", &w.data.inotify),
            ("fanotify filesystem mark", &w.data.fanotify),
        ] {
            let Some(c) = c else { continue };
            let samples: Vec<String> = c.samples_bytes.iter().map(i64::to_string).collect();
            let _ = writeln!(
                out,
                "| {kind} | {} | {} | {} | {:.0} | {} | {} | {} |",
                thousands(c.objects),
                thousands(c.directories),
                kib(c.pinned_bytes),
                c.bytes_per_directory,
                samples.join(", "),
                c.method,
                link(rel, &w.path)
            );
        }
    }
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
