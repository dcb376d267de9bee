//! summary.md for `harness tune` and `harness sweep`: the planning records in, markdown
//! readable at a glance out (a queue x rate grid, the recommendations, then the detail).

use std::fmt::Write;

use crate::capacity::records::{MachineFacts, SweepCurve, SweepReport, TuneReport};
use crate::export::table::Table;

fn ms(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e6)
}

fn opt_s(ns: Option<u64>) -> String {
    ns.map_or_else(|| "—".into(), |n| format!("{:.2}", n as f64 / 1e9))
}

fn stall(ns: u64) -> String {
    if ns == u64::MAX {
        "∞".into()
    } else if ns >= 10_000_000_000 {
        format!("{:.0} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000_000 {
        format!("{:.2} s", ns as f64 / 1e9)
    } else {
        format!("{:.0} ms", ns as f64 / 1e6)
    }
}

fn machine(out: &mut String, m: &MachineFacts) {
    let _ = writeln!(
        out,
        "Measured {} on {} ({}, {} memory, kernel {}), work dir {}, revision {}.\n\nCommand: `{}`\n",
        m.measured_at, m.host, m.cpu, m.memory, m.kernel, m.filesystem, m.git_revision, m.command
    );
}

fn distinct(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// The tune summary: one section per syncer. `notes` go first (backend pin, event source).
pub fn tune(reports: &[TuneReport], notes: &[String]) -> String {
    let Some(first) = reports.first() else {
        return "# harness tune\n\nNothing was measured.\n".into();
    };
    let mut out = format!("# harness tune: {}\n\n", first.scenario);
    machine(&mut out, &first.machine);
    for n in notes {
        let _ = writeln!(out, "- {n}");
    }
    out.push('\n');
    for r in reports {
        tune_section(&mut out, r);
    }
    out
}

/// A markdown table: a row per queue, a column per rate, `cell` in each.
fn grid(out: &mut String, queues: &[f64], rates: &[f64], cell: impl Fn(f64, f64) -> String) {
    let header = std::iter::once("max_queued_events".to_string())
        .chain(rates.iter().map(|rate| format!("{rate} ops/s")));
    let mut table = Table::new(header).spaced_empty_cells();
    for &q in queues {
        table.row(std::iter::once(q.to_string()).chain(rates.iter().map(|&rate| cell(q, rate))));
    }
    out.push_str(&table.render());
}

fn tune_section(out: &mut String, r: &TuneReport) {
    let _ = writeln!(out, "## {}\n", r.sut);
    let rates = distinct(r.cells.iter().map(|c| c.rate));
    let queues = distinct(r.cells.iter().map(|c| c.queue as f64));
    overflow_grid(out, r, &queues, &rates);
    smallest_queues(out, r);
    stall_budgets(out, r, &queues, &rates);
    stall_checks(out, r);
    every_cell(out, r);
}

/// Overflows / p99 / lost per queue and rate.
fn overflow_grid(out: &mut String, r: &TuneReport, queues: &[f64], rates: &[f64]) {
    out.push_str(
        "Each cell: overflows (the syncer's self-report) / p99 ms / lost files. **bold** = overflowed.\n\n",
    );
    grid(out, queues, rates, |q, rate| {
        match r
            .cells
            .iter()
            .find(|c| c.queue as f64 == q && c.rate == rate)
        {
            Some(c) if c.overflows > 0 => {
                format!("**{}** / {} / {}", c.overflows, ms(c.p99_ns), c.lost)
            }
            Some(c) => format!("0 / {} / {}", ms(c.p99_ns), c.lost),
            None => "—".into(),
        }
    });
}

fn smallest_queues(out: &mut String, r: &TuneReport) {
    out.push_str(
        "\n**Smallest queue with no overflow** (it and every larger queue ran clean):\n\n",
    );
    let mut table = Table::new(["rate ops/s", "smallest max_queued_events"]).spaced_empty_cells();
    for s in &r.smallest_queue {
        let q = s
            .smallest_queue
            .map_or_else(|| "none in the grid".into(), |q| q.to_string());
        table.row([s.rate.to_string(), q]);
    }
    out.push_str(&table.render());
}

fn stall_budgets(out: &mut String, r: &TuneReport, queues: &[f64], rates: &[f64]) {
    out.push_str("\n**Stall budget**: how long the syncer may stop reading before its queue overflows (queue / (rate x events per op)).\n\n");
    grid(out, queues, rates, |q, rate| {
        r.stall_budgets
            .iter()
            .find(|b| b.queue as f64 == q && b.rate == rate)
            .map_or_else(|| "—".into(), |b| stall(b.tolerated_stall_ns))
    });
}

fn stall_checks(out: &mut String, r: &TuneReport) {
    if r.stall_checks.is_empty() {
        return;
    }
    out.push_str("\n**Stall checks** (syncer SIGSTOPped mid-storm while the storm goes on):\n\n");
    let mut table = Table::new([
        "queue",
        "rate ops/s",
        "predicted stall",
        "factor",
        "paused",
        "overflowed",
        "as predicted",
        "run",
    ])
    .spaced_empty_cells();
    for c in &r.stall_checks {
        table.row([
            c.queue.to_string(),
            c.rate.to_string(),
            stall(c.predicted_stall_ns),
            format!("{}x", c.factor),
            stall(c.paused_ns),
            (if c.overflowed { "yes" } else { "no" }).to_string(),
            (if c.as_predicted { "yes" } else { "**NO**" }).to_string(),
            c.run_dir.clone(),
        ]);
    }
    out.push_str(&table.render());
}

fn every_cell(out: &mut String, r: &TuneReport) {
    out.push_str("\n<details><summary>Every cell</summary>\n\n");
    let mut table = Table::new([
        "queue",
        "rate",
        "achieved ops/s",
        "events/op",
        "overflows (self)",
        "reconciles (self)",
        "p50 ms",
        "p99 ms",
        "converge s",
        "CPU s",
        "lost",
        "run",
    ])
    .spaced_empty_cells();
    for c in &r.cells {
        table.row([
            c.queue.to_string(),
            c.rate.to_string(),
            format!("{:.0}", c.achieved_ops_s),
            format!("{:.2}", c.events_per_op),
            c.overflows.to_string(),
            c.reconciles.map_or_else(|| "—".into(), |n| n.to_string()),
            ms(c.p50_ns),
            ms(c.p99_ns),
            opt_s(c.converge_ns),
            format!("{:.2}", c.cpu_ns as f64 / 1e9),
            c.lost.to_string(),
            c.run_dir.clone(),
        ]);
    }
    out.push_str(&table.render());
    out.push_str("\n</details>\n\n");
}

/// The sweep summary: per syncer its sustainable ops/s and knee, then its curve.
pub fn sweep(r: &SweepReport, notes: &[String]) -> String {
    let mut out = format!("# harness sweep: {}\n\n", r.scenario);
    machine(&mut out, &r.machine);
    for n in notes {
        let _ = writeln!(out, "- {n}");
    }
    let _ = writeln!(
        out,
        "\nSLO: p99 ≤ {} ms with nothing lost.\n",
        ms(r.slo_p99_ns)
    );
    let mut table = Table::new([
        "syncer",
        "sustainable ops/s",
        "knee (offered ops/s)",
        "points",
    ])
    .spaced_empty_cells();
    for c in &r.curves {
        table.row([
            c.sut.clone(),
            c.sustainable_ops_s
                .map_or_else(|| "none met the SLO".into(), |x| format!("{x:.0}")),
            c.knee_rate
                .map_or_else(|| "none".into(), |x| format!("{x}")),
            c.points.len().to_string(),
        ]);
    }
    out.push_str(&table.render());
    for c in &r.curves {
        let _ = writeln!(out, "\n## {}\n", c.sut);
        out.push_str(&curve(c, r.slo_p99_ns).render());
    }
    out
}

/// One syncer's sweep points, the knee marked.
fn curve(c: &SweepCurve, slo_p99_ns: u64) -> Table {
    let mut table = Table::new([
        "offered ops/s",
        "achieved ops/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "converge s",
        "lost",
        "SLO",
        "run",
    ])
    .spaced_empty_cells();
    for p in &c.points {
        let knee = if c.knee_rate == Some(p.offered_rate) {
            " (knee)"
        } else {
            ""
        };
        let slo = if crate::cmd::tune::knee::meets(p, slo_p99_ns) {
            "met"
        } else {
            "**missed**"
        };
        table.row([
            format!("{}{knee}", p.offered_rate),
            format!("{:.0}", p.achieved_ops_s),
            ms(p.p50_ns),
            ms(p.p99_ns),
            ms(p.p999_ns),
            opt_s(p.converge_ns),
            p.lost.to_string(),
            slo.to_string(),
            p.run_dir.clone(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::records::{QueueForRate, StallBudget, SweepPoint, TuneCell};

    #[test]
    fn the_tune_grid_marks_overflows_and_names_the_smallest_queue() {
        let cell = |queue, rate, overflows| TuneCell {
            queue,
            rate,
            overflows,
            p99_ns: 2_500_000,
            run_dir: format!("q{queue}-r{rate}"),
            ..TuneCell::default()
        };
        let r = TuneReport {
            scenario: "tune-queue".into(),
            sut: "syncer".into(),
            cells: vec![
                cell(256, 500.0, 0),
                cell(256, 8000.0, 12),
                cell(4096, 8000.0, 0),
            ],
            smallest_queue: vec![QueueForRate {
                rate: 8000.0,
                smallest_queue: Some(4096),
            }],
            stall_budgets: vec![StallBudget {
                queue: 4096,
                rate: 8000.0,
                events_per_s: 24000.0,
                tolerated_stall_ns: 170_666_666,
            }],
            ..TuneReport::default()
        };
        let md = tune(&[r], &["pinned".into()]);
        assert!(
            md.contains("| 256 | 0 / 2.5 / 0 | **12** / 2.5 / 0 |"),
            "{md}"
        );
        assert!(md.contains("| 4096 | — | 0 / 2.5 / 0 |"), "{md}");
        assert!(md.contains("| 8000 | 4096 |"), "{md}");
        assert!(md.contains("| 4096 | — | 171 ms |"), "{md}");
        assert!(md.contains("- pinned"), "{md}");
    }

    #[test]
    fn the_sweep_table_marks_the_knee_and_missed_points() {
        let p = |rate: f64, p99_ms: u64| SweepPoint {
            offered_rate: rate,
            achieved_ops_s: rate,
            p99_ns: p99_ms * 1_000_000,
            converge_ns: Some(1),
            ..SweepPoint::default()
        };
        let r = SweepReport {
            scenario: "tune-queue".into(),
            slo_p99_ns: 50_000_000,
            curves: vec![SweepCurve {
                sut: "syncer".into(),
                points: vec![p(1000.0, 2), p(4000.0, 3), p(16000.0, 400)],
                knee_rate: Some(4000.0),
                sustainable_ops_s: Some(4000.0),
            }],
            ..SweepReport::default()
        };
        let md = sweep(&r, &[]);
        assert!(md.contains("| syncer | 4000 | 4000 | 3 |"), "{md}");
        assert!(md.contains("| 4000 (knee) |"), "{md}");
        assert!(md.contains("| **missed** |"), "{md}");
    }
}
