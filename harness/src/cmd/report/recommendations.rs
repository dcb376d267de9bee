//! The recommendations of report.md: loaded inputs and the machine's current facts in; the
//! table of what to set and why (watches, kernel memory, queue size, throughput at the SLO),
//! the inputs it lacked and the sysctl.d lines out.

use crate::util::fmt::thousands;
use std::fmt::Write;

use super::inputs::{Inputs, RunEntry, RunFolder};
use super::render::{Rel, kib, link, ms, ms_setting, slo};
use super::{Machine, charts};
use crate::capacity::recommend as rec;
use crate::cli::ReportArgs;
use crate::export::table::Table;

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

/// What the recommendations gather: table rows, sysctl.d lines, inputs it lacked.
#[derive(Default)]
struct Advice {
    rows: Vec<Row>,
    conf: Vec<String>,
    missing: Vec<&'static str>,
}

pub(super) fn recommendations(
    inputs: &Inputs,
    args: &ReportArgs,
    m: &Machine,
    rel: Rel,
    out: &mut String,
) {
    let mut a = Advice::default();
    watches(&mut a, inputs, m, rel);
    queue(&mut a, inputs, args, m, rel);
    measured_queues(&mut a, inputs, rel);
    let (slo_ns, slo_from) = slo(inputs, args);
    sustainable(&mut a, inputs, slo_ns, rel);
    let _ = writeln!(
        out,
        "## Recommendations\n\nSLO p99 {} ms ({slo_from}); stall budget {} ms (--stall-budget-ms).\n",
        ms_setting(slo_ns),
        args.stall_budget_ms
    );
    write_rows(out, &a);
    write_conf(out, &a.conf, m);
}

/// Watches: the biggest measured tree, the watches in use, the limit, their kernel memory.
fn watches(a: &mut Advice, inputs: &Inputs, m: &Machine, rel: Rel) {
    let proc_note = format!("read from /proc on {} when this report was made", m.host);
    let tree = inputs
        .runs
        .iter()
        .filter_map(|f| Some((f, f.tree_dirs.as_ref()?)))
        .max_by_key(|(_, t)| t.count);
    let Some((f, t)) = tree else {
        a.missing
            .push("watches needed: a results folder of `harness run` (its run.json has tree_dirs)");
        return;
    };
    let needed = rec::watches_needed(t.count, m.watches_in_use);
    a.rows.push(Row {
        what: format!("Directories of the measured tree ({})", f.scenario),
        value: thousands(t.count),
        how: t.source.clone(),
        from: link(rel, &f.run_json),
    });
    a.rows.push(Row {
        what: "Inotify watches already in use by this user".into(),
        value: thousands(m.watches_in_use),
        how: format!(
            "`inotify wd:` lines of /proc/*/fdinfo, held by {} process(es); {proc_note}",
            m.watch_holders
        ),
        from: "/proc/*/fdinfo".into(),
    });
    a.rows.push(Row {
        what: "**Watches needed**".into(),
        value: format!("**{}**", thousands(needed)),
        how: "one per directory + those in use (the limit counts per user)".into(),
        from: "the two rows above".into(),
    });
    if let Some(cur) = m.max_user_watches {
        let set = rec::max_user_watches(needed, cur);
        a.rows.push(Row {
            what: "fs.inotify.max_user_watches: now → recommended".into(),
            value: format!("{} → **{}**", thousands(cur), thousands(set)),
            how: "needed x 1.25 headroom, rounded up to 1024, never below the current value".into(),
            from: "/proc/sys/fs/inotify/max_user_watches".into(),
        });
        a.conf.push(format!(
            "# {} directories + {} watches in use = {} needed; x 1.25 headroom",
            t.count, m.watches_in_use, needed
        ));
        a.conf.push(format!("fs.inotify.max_user_watches = {set}"));
    }
    watch_memory(a, inputs, needed, rel);
}

/// Kernel memory of `needed` inotify watches, and of one fanotify mark instead.
fn watch_memory(a: &mut Advice, inputs: &Inputs, needed: u64, rel: Rel) {
    match inputs
        .watchcosts
        .iter()
        .find_map(|w| Some((w, w.data.inotify.as_ref()?)))
    {
        Some((w, c)) => a.rows.push(Row {
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
        None => a
            .missing
            .push("kernel memory per watch: `harness watchcost` writes watchcost.json"),
    }
    if let Some((w, c)) = inputs
        .watchcosts
        .iter()
        .find_map(|w| Some((w, w.data.fanotify.as_ref()?)))
    {
        a.rows.push(Row {
            what: "Kernel memory of one fanotify filesystem mark instead".into(),
            value: kib(c.pinned_bytes),
            how: format!(
                "pinned slab with the mark held over {} directories (covers the whole filesystem; needs CAP_SYS_ADMIN)",
                thousands(c.directories)
            ),
            from: link(rel, &w.path),
        });
    }
}

/// Queue: peak event rate x stall budget.
fn queue(a: &mut Advice, inputs: &Inputs, args: &ReportArgs, m: &Machine, rel: Rel) {
    let Some(p) = peak(inputs, rel, args.stall_budget_ms.max(1.0) as u64) else {
        a.missing
            .push("queue size: a results folder of `harness run` (its storm rate)");
        return;
    };
    a.rows.push(Row {
        what: format!("Peak storm rate ({})", p.folder.scenario),
        value: format!("{:.0} ops/s", p.ops_per_s),
        how: p.how.clone(),
        from: p.from.clone(),
    });
    let Some((epo, how, from)) = events_per_op(&p, inputs, rel) else {
        return;
    };
    let eps = p.ops_per_s * epo;
    let needed = rec::queue_needed(eps, args.stall_budget_ms);
    a.rows.push(Row {
        what: "Kernel events per op".into(),
        value: format!("{epo:.2}"),
        how,
        from,
    });
    a.rows.push(Row {
        what: "Peak event rate".into(),
        value: format!("{eps:.0} events/s"),
        how: "peak ops/s x events per op".into(),
        from: "the two rows above".into(),
    });
    a.rows.push(Row {
        what: "**Queue needed** for the stall budget".into(),
        value: format!("**{}** events", thousands(needed)),
        how: format!(
            "peak event rate x {} ms stall budget (--stall-budget-ms): events queued while the syncer does not read",
            args.stall_budget_ms
        ),
        from: "the row above".into(),
    });
    let Some(cur) = m.max_queued_events else {
        return;
    };
    let set = rec::max_queued_events(needed, cur);
    a.rows.push(Row {
        what: "fs.inotify.max_queued_events: now → recommended".into(),
        value: format!("{} → **{}**", thousands(cur), thousands(set)),
        how: format!(
            "next power of two, never below the current value nor 16384; absorbs a {:.0} ms stall at the peak",
            rec::tolerated_stall_ms(set, eps)
        ),
        from: "/proc/sys/fs/inotify/max_queued_events".into(),
    });
    a.conf.push(format!(
        "# peak {eps:.0} events/s x {} ms stall budget = {needed} events",
        args.stall_budget_ms
    ));
    a.conf.push(format!("fs.inotify.max_queued_events = {set}"));
}

/// The smallest queue without overflow per rate, as tune.json measured it.
fn measured_queues(a: &mut Advice, inputs: &Inputs, rel: Rel) {
    for t in &inputs.tunes {
        for q in &t.data.smallest_queue {
            a.rows.push(Row {
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
        a.missing
            .push("queue sizes measured per rate: `harness tune SCENARIO` writes tune.json");
    }
}

/// Throughput at the SLO, per syncer.
fn sustainable(a: &mut Advice, inputs: &Inputs, slo_ns: u64, rel: Rel) {
    for s in &inputs.sweeps {
        for c in &s.data.curves {
            let best = rec::sustainable_at(&c.points, slo_ns);
            a.rows.push(Row {
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
        a.missing
            .push("sustainable ops/s per syncer: `harness sweep SCENARIO` writes sweep.json");
    }
}

/// The table of rows, then one line per input the report lacked.
fn write_rows(out: &mut String, a: &Advice) {
    if !a.rows.is_empty() {
        let mut table = Table::new(["what", "value", "how", "from"]).spaced_empty_cells();
        for r in &a.rows {
            table.row([&r.what, &r.value, &r.how, &r.from].map(String::clone));
        }
        out.push_str(&table.render());
        out.push('\n');
    }
    for m in &a.missing {
        let _ = writeln!(out, "- Not in this report: {m}.");
    }
    if !a.missing.is_empty() {
        out.push('\n');
    }
}

/// The sysctl.d file to install, if any limit is recommended.
fn write_conf(out: &mut String, conf: &[String], m: &Machine) {
    if conf.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### /etc/sysctl.d/90-inotify.conf\n\n```\n# written by `harness report` on {} ({})",
        m.date, m.host
    );
    for l in conf {
        let _ = writeln!(out, "{l}");
    }
    out.push_str(
        "```\n\nApply with `sysctl --system`, then restart the syncer: an inotify instance keeps the queue size it was created with.\n\n",
    );
}
