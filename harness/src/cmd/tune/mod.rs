//! `harness tune`: a scenario and a grid (max_queued_events values x storm rates) in; every
//! cell run once per syncer, then SIGSTOP checks of the predicted stall budget; out a results
//! folder `<date>-<host>-tune-<scenario>/` with summary.md and, per syncer, `<sut>/tune.json`
//! beside each cell's own results folder. Written after every cell, so Ctrl-C keeps what was
//! measured; sysctls are restored by each run's KnobGuard, also on Ctrl-C.

pub mod cell;
pub mod error;
pub mod grid;
pub mod knee;
pub mod stall;
pub mod summary;
pub mod sweep;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use indicatif::{ProgressBar, ProgressStyle};

use crate::capacity::records::{MachineFacts, StallBudget, TuneReport};
use crate::cli::TuneArgs;
use crate::scenario::{Scenario, SutKind, SutSpec};
pub use error::TuneError;

/// What the stall checks aim for: long enough to dwarf scheduler noise (a few ms here),
/// short enough that 1.25x of it stays a storm of seconds.
const STALL_TARGET_NS: u64 = 1_000_000_000;

/// Our syncer tuned by `max_queued_events` must read inotify: as root its `auto` backend is
/// fanotify, whose queue is fixed at 16384 events (or unlimited with
/// --fanotify-unlimited-queue), so the knob would change nothing. Adds `--backend inotify`
/// when no backend is given; refuses another one.
pub fn pin_inotify(spec: &SutSpec) -> Result<SutSpec, TuneError> {
    let mut spec = spec.clone();
    if spec.kind != SutKind::Syncer {
        return Ok(spec);
    }
    let mut backend = None;
    for (i, a) in spec.args.iter().enumerate() {
        if a == "--backend" {
            backend = spec.args.get(i + 1).cloned();
        } else if let Some(v) = a.strip_prefix("--backend=") {
            backend = Some(v.to_string());
        }
    }
    match backend.as_deref() {
        None => {
            spec.args.extend(["--backend".into(), "inotify".into()]);
            Ok(spec)
        }
        Some("inotify") => Ok(spec),
        Some(other) => Err(TuneError::NotInotify {
            label: spec.label(),
            backend: other.to_string(),
        }),
    }
}

/// Checks the grid lists: positive, finite, at least one each.
pub fn check_grid(queues: &[u64], rates: &[f64]) -> Result<(), TuneError> {
    if queues.is_empty() || rates.is_empty() {
        return Err(TuneError::EmptyGrid);
    }
    if let Some(&q) = queues.iter().find(|&&q| q == 0 || q > i32::MAX as u64) {
        return Err(TuneError::QueueRange(q));
    }
    if let Some(&r) = rates.iter().find(|r| !r.is_finite() || **r <= 0.0) {
        return Err(TuneError::RateRange(r));
    }
    Ok(())
}

fn sorted<T: PartialOrd + Copy>(given: &[T], default: &[T]) -> Vec<T> {
    let mut v = if given.is_empty() {
        default.to_vec()
    } else {
        given.to_vec()
    };
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.dedup_by(|a, b| a == b);
    v
}

pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), TuneError> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").map_err(TuneError::io("write", path))
}

/// The grid bar: one tick per run (cells and stall checks), with the ETA.
pub fn grid_bar(bench: &cell::Bench, len: u64, what: &str) -> ProgressBar {
    let bar = bench.bars.add(ProgressBar::new(len));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} runs, eta {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// The results folder `<out>/<date>-<host>-<kind>-<scenario>`.
pub fn results_root(out: &Path, kind: &str, s: &Scenario) -> Result<PathBuf, TuneError> {
    let root = out.join(format!(
        "{}-{}-{kind}-{}",
        crate::util::fmt::today(),
        crate::host::env::hostname(),
        s.name
    ));
    std::fs::create_dir_all(&root).map_err(TuneError::io("create the results dir", &root))?;
    Ok(root)
}

pub fn tune(args: &TuneArgs, stop: &AtomicBool) -> Result<bool, TuneError> {
    let base = crate::scenario::load(&args.scenario)?;
    let queues = sorted(&args.queues, &grid::DEFAULT_QUEUES);
    let rates = sorted(&args.rates, &grid::DEFAULT_RATES);
    check_grid(&queues, &rates)?;
    let specs = crate::scenario::selected(&base.suts, &args.suts)?
        .into_iter()
        .map(pin_inotify)
        .collect::<Result<Vec<_>, _>>()?;
    if specs.is_empty() {
        return Err(TuneError::NoSut);
    }
    let stall_cell = match (args.stall_queue, args.stall_rate) {
        (Some(q), Some(r)) => {
            check_grid(&[q], &[r])?;
            Some((q, r))
        }
        (None, None) => None,
        _ => return Err(TuneError::HalfStallCell),
    };
    let command_line = crate::cli::command_line();
    let bench = cell::Bench::new(
        args.workdir.as_deref(),
        &args.scenario,
        command_line.clone(),
        stop,
    )?;
    let root = results_root(&args.out, "tune", &base)?;
    let machine =
        crate::capacity::facts::machine_facts(&bench.workdir, &bench.repo_root, &command_line);
    let checked = |s: &SutSpec| !args.no_stall_check && s.kind == SutKind::Syncer;
    let runs = specs.len() * queues.len() * rates.len()
        + specs.iter().filter(|s| checked(s)).count() * stall::FACTORS.len();
    let mut grid = Grid {
        bench: &bench,
        base: &base,
        queues,
        rates,
        root: root.clone(),
        bar: grid_bar(&bench, runs as u64, "tune grid"),
        notes: notes(&specs),
        reports: Vec::new(),
    };
    let mut all_as_predicted = true;
    for spec in &specs {
        let mut report = grid.cells(spec, &machine)?;
        if checked(spec) {
            all_as_predicted &= grid.stall_checks(spec, &mut report, stall_cell)?;
        }
        grid.reports.push(report);
    }
    grid.bar.finish_with_message("done");
    println!("{}", summary::tune(&grid.reports, &grid.notes));
    eprintln!("harness: results in {}", root.display());
    Ok(all_as_predicted)
}

/// One tune's state: what every syncer's grid shares, and the finished syncers' reports.
struct Grid<'a> {
    bench: &'a cell::Bench<'a>,
    base: &'a Scenario,
    queues: Vec<u64>,
    rates: Vec<f64>,
    root: PathBuf,
    bar: ProgressBar,
    notes: Vec<String>,
    reports: Vec<TuneReport>,
}

impl Grid<'_> {
    fn say(&self, line: String) {
        self.bench.bars.suspend(|| eprintln!("harness: {line}"));
    }

    /// Every cell of the grid against `spec`, tune.json rewritten after each.
    fn cells(&self, spec: &SutSpec, machine: &MachineFacts) -> Result<TuneReport, TuneError> {
        let label = spec.label();
        let dir = self.root.join(&label);
        let mut report = TuneReport {
            scenario: self.base.name.clone(),
            sut: label.clone(),
            machine: machine.clone(),
            ..TuneReport::default()
        };
        for &rate in &self.rates {
            for &queue in &self.queues {
                if self.bench.stopped() {
                    return Err(interrupted(&self.root));
                }
                self.bar
                    .set_message(format!("{label}: queue {queue}, {rate} ops/s"));
                let s = cell::variant(self.base, Some(queue), rate)?;
                let run_dir = format!("q{queue}-r{rate}");
                let r = self.bench.run(&s, spec, &dir.join(&run_dir))?;
                if self.bench.stopped() {
                    // A cell cut short is in its own folder, marked so, but not in tune.json.
                    return Err(interrupted(&self.root));
                }
                let c = grid::cell_record(queue, rate, &r, run_dir);
                self.say(format!(
                    "{label} queue {queue:>6} rate {rate:>7}: {} overflows (self-report), p99 {:.1} ms, {} lost, {:.0} ops/s achieved",
                    c.overflows,
                    c.p99_ns as f64 / 1e6,
                    c.lost,
                    c.achieved_ops_s
                ));
                report.cells.push(c);
                report.smallest_queue = grid::smallest_queues(&report.cells);
                report.stall_budgets = grid::stall_budgets(&report.cells);
                self.save(&report)?;
                self.bar.inc(1);
            }
        }
        Ok(report)
    }

    /// The SIGSTOP checks of one predicted stall; false when one was not as predicted. No
    /// checkable cell is a note in the summary, not an error: the grid stands on its own.
    fn stall_checks(
        &mut self,
        spec: &SutSpec,
        report: &mut TuneReport,
        chosen: Option<(u64, f64)>,
    ) -> Result<bool, TuneError> {
        let label = spec.label();
        let budget = match chosen {
            Some((q, r)) => chosen_budget(report, q, r),
            None => grid::pick_stall_check(&report.stall_budgets, &report.cells, STALL_TARGET_NS)
                .cloned()
                .ok_or(TuneError::NoCleanCell),
        };
        let budget = match budget {
            Ok(b) => b,
            Err(why) => {
                let why = format!("`{label}`: no stall check: {why}.");
                self.say(why.clone());
                self.bar.inc(stall::FACTORS.len() as u64);
                self.notes.push(why);
                self.save(report)?;
                return Ok(true);
            }
        };
        self.bar.set_message(format!(
            "{label}: stall check at queue {}, {} ops/s",
            budget.queue, budget.rate
        ));
        let dir = self.root.join(&label);
        let checks = stall::run_checks(self.bench, self.base, spec, &budget, &dir, |c| {
            self.bar.inc(1);
            self.say(format!(
                "{label} stall check {}x of {:.0} ms: paused {:.0} ms, overflowed: {}, as predicted: {}",
                c.factor,
                c.predicted_stall_ns as f64 / 1e6,
                c.paused_ns as f64 / 1e6,
                c.overflowed,
                c.as_predicted
            ));
        })?;
        if self.bench.stopped() {
            return Err(interrupted(&self.root));
        }
        let ok = checks.iter().all(|c| c.as_predicted);
        report.stall_checks = checks;
        self.save(report)?;
        Ok(ok)
    }

    /// Writes `<sut>/tune.json` and the root summary.md (finished syncers plus this one).
    fn save(&self, report: &TuneReport) -> Result<(), TuneError> {
        let dir = self.root.join(&report.sut);
        write_json(&dir.join("tune.json"), report)?;
        let mut all = self.reports.clone();
        all.push(report.clone());
        std::fs::write(
            self.root.join("summary.md"),
            summary::tune(&all, &self.notes),
        )
        .map_err(TuneError::io("write", "summary.md"))
    }
}

fn interrupted(root: &Path) -> TuneError {
    TuneError::Interrupted {
        what: "cells",
        root: root.to_path_buf(),
    }
}

/// The budget for a cell named on the command line (it need not be in the grid: its events
/// per op then come from the grid's clean cells).
fn chosen_budget(report: &TuneReport, queue: u64, rate: f64) -> Result<StallBudget, TuneError> {
    let epo = grid::events_per_op_at(&report.cells, rate).ok_or(TuneError::NoEventsPerOp)?;
    Ok(StallBudget {
        queue,
        rate,
        events_per_s: rate * epo,
        tolerated_stall_ns: grid::tolerated_stall_ns(queue, rate * epo),
    })
}

fn notes(specs: &[SutSpec]) -> Vec<String> {
    let mut notes = Vec::new();
    for s in specs.iter().filter(|s| s.kind == SutKind::Syncer) {
        notes.push(format!(
            "`{}` runs pinned to the inotify backend (`{}`): max_queued_events sizes inotify's queue; fanotify's queue is fixed at 16384 events unless --fanotify-unlimited-queue.",
            s.label(),
            s.args.join(" ")
        ));
    }
    for s in specs
        .iter()
        .filter(|s| matches!(s.kind, SutKind::SeedScript | SutKind::Command))
    {
        notes.push(format!(
            "`{}` reports no overflows (the classic script's inotifywait output feeds its loop; a command has no status file): its overflow column is 0 for want of a report, not a measurement, so its smallest queue and stall checks mean nothing; its latency and lost files do.",
            s.label()
        ));
    }
    notes.push("Overflows are each syncer's own report (our syncer's status file `overflows`, lsyncd's log): the probe cannot see another instance's queue overflow. Reconciles include the start-up sync.".into());
    notes.push("Events per op: our syncer's own count of the events it read (its status file `events`) per storm op, measured in cells without an overflow; syncers without a status file fall back to the probe's replica-side events per op, a proxy.".into());
    notes.push("Lost = missing + stale + extra entries after convergence; p50/p99 are from each path's final op to the probe seeing it in the replica.".into());
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(args: &[&str]) -> SutSpec {
        let text = format!(
            "name = \"x\"\n[[phase]]\nops = 1\nmix = {{ create = 1 }}\n[[sut]]\nkind = \"syncer\"\nargs = {:?}\n",
            args
        );
        crate::scenario::parse(&text, "x.toml").expect("valid").suts[0].clone()
    }

    #[test]
    fn our_syncer_is_pinned_to_inotify() {
        assert_eq!(
            pin_inotify(&spec(&[])).expect("pinned").args,
            ["--backend", "inotify"]
        );
        let kept = pin_inotify(&spec(&["--backend=inotify"])).expect("kept");
        assert_eq!(kept.args, ["--backend=inotify"]);
        let e = pin_inotify(&spec(&["--backend", "fanotify"])).expect_err("refused");
        assert!(e.to_string().contains("16384"), "{e}");
    }

    #[test]
    fn bad_grids_are_refused_with_the_value() {
        assert!(check_grid(&[256], &[1000.0]).is_ok());
        assert!(
            check_grid(&[0], &[1000.0])
                .expect_err("0")
                .to_string()
                .contains("--queue 0")
        );
        assert!(
            check_grid(&[256], &[-5.0])
                .expect_err("neg")
                .to_string()
                .contains("--rate -5")
        );
        assert!(check_grid(&[], &[1.0]).is_err());
        assert_eq!(sorted(&[4096, 256, 4096], &[1]), vec![256, 4096]);
        assert_eq!(sorted::<u64>(&[], &[9, 3]), vec![3, 9]);
    }
}
