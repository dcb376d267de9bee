//! `harness sweep`: a scenario, rates and an SLO in; per syncer the open-loop rate stepped up
//! (every phase's `rate`) until p99 misses the SLO twice in a row, like fio's latency_target;
//! out `<date>-<host>-sweep-<scenario>/` with sweep.json (the latency-vs-rate curve, its
//! knee, the sustainable ops/s), summary.md and each point's own results folder.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::capacity::records::{SweepCurve, SweepPoint, SweepReport};
use crate::cli::SweepArgs;
use crate::cmd::tune::{TuneError, cell, grid, knee, summary};
use crate::scenario::{Scenario, SutSpec};

/// Offered rates, creates/s: from an everyday 1,000 past the ceilings measured here (our
/// syncer replicated 25,000-30,000 files/s; the generator alone made about 55,000), in
/// steps of at most 1.5x near the ceiling so the knee is placed within one step.
pub const DEFAULT_RATES: [f64; 10] = [
    1000.0, 2000.0, 4000.0, 8000.0, 12000.0, 16000.0, 24000.0, 32000.0, 40000.0, 48000.0,
];

pub fn sweep(args: &SweepArgs, stop: &AtomicBool) -> Result<bool, TuneError> {
    let base = crate::scenario::load(&args.scenario)?;
    let slo_ms = slo_ms(args, &base)?;
    let slo_ns = (slo_ms * 1e6) as u64;
    let rates = rates(args)?;
    let specs: Vec<_> = crate::scenario::selected(&base.suts, &args.suts)?
        .into_iter()
        .cloned()
        .collect();
    if specs.is_empty() {
        return Err(TuneError::NoSut);
    }
    let command_line = crate::cli::command_line();
    let bench = cell::Bench::new(
        args.workdir.as_deref(),
        &args.scenario,
        command_line.clone(),
        stop,
    )?;
    let root = crate::cmd::tune::results_root(&args.out, "sweep", &base)?;
    let mut report = SweepReport {
        scenario: base.name.clone(),
        machine: crate::capacity::facts::machine_facts(
            &bench.workdir,
            &bench.repo_root,
            &command_line,
        ),
        slo_p99_ns: slo_ns,
        curves: Vec::new(),
    };
    let notes = notes(&base);
    let bar = crate::cmd::tune::grid_bar(&bench, (specs.len() * rates.len()) as u64, "rate sweep");
    for spec in &specs {
        let label = spec.label();
        report.curves.push(SweepCurve {
            sut: label.clone(),
            ..SweepCurve::default()
        });
        let mut stepped = 0;
        for &rate in &rates {
            if bench.stopped() {
                return Err(TuneError::Interrupted {
                    what: "points",
                    root: root.clone(),
                });
            }
            bar.set_message(format!("{label}: {rate} ops/s"));
            let p = point(&bench, &base, spec, rate, slo_ms, &root)?;
            log_point(&bench, &label, &p, slo_ns);
            let curve = report.curves.last_mut().expect("pushed above");
            let go_on = add_point(curve, p, slo_ns);
            crate::cmd::tune::write_json(&root.join("sweep.json"), &report)?;
            std::fs::write(root.join("summary.md"), summary::sweep(&report, &notes))
                .map_err(TuneError::io("write", "summary.md"))?;
            bar.inc(1);
            stepped += 1;
            if !go_on {
                break;
            }
        }
        // Rates skipped after the ceiling still count as done for the bar.
        bar.inc((rates.len() - stepped) as u64);
    }
    bar.finish_with_message("done");
    println!("{}", summary::sweep(&report, &notes));
    eprintln!("harness: results in {}", root.display());
    Ok(true)
}

/// The SLO's p99 in ms: --slo-ms, else the scenario's; finite and positive.
fn slo_ms(args: &SweepArgs, base: &Scenario) -> Result<f64, TuneError> {
    let slo_ms = args
        .slo_ms
        .or(base.slo.p99_ms)
        .ok_or_else(|| TuneError::NoSlo(args.scenario.clone()))?;
    if !slo_ms.is_finite() || slo_ms <= 0.0 {
        return Err(TuneError::SloRange(slo_ms));
    }
    Ok(slo_ms)
}

/// The offered rates, ascending and distinct: --rates, else `DEFAULT_RATES`.
fn rates(args: &SweepArgs) -> Result<Vec<f64>, TuneError> {
    let mut rates = if args.rates.is_empty() {
        DEFAULT_RATES.to_vec()
    } else {
        args.rates.clone()
    };
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    crate::cmd::tune::check_grid(&[1], &rates)?;
    Ok(rates)
}

/// The lines summary.md opens with: what a point changes and how it is judged.
fn notes(base: &Scenario) -> Vec<String> {
    vec![
        format!("Every phase's `rate` is overridden per point (open loop); the scenario's [kernel] knobs apply as written (max_queued_events = {}).", base.kernel.max_queued_events.map_or("unchanged".into(), |q| q.to_string())),
        "p99 is from each path's final op to the probe seeing it in the replica; the achieved rate shows whether the generator kept the offered schedule.".into(),
        "Stepping stops after two points in a row miss the SLO. Sustainable = the highest achieved ops/s of a point within the SLO with nothing lost; knee = Kneedle on log-log p99 vs offered rate.".into(),
    ]
}

/// One point: the scenario at `rate` run under `spec` into its own folder under `root`;
/// interrupted if Ctrl-C cut it short.
fn point(
    bench: &cell::Bench,
    base: &Scenario,
    spec: &SutSpec,
    rate: f64,
    slo_ms: f64,
    root: &Path,
) -> Result<SweepPoint, TuneError> {
    let label = spec.label();
    let mut s = cell::variant(base, None, rate)?;
    s.slo.p99_ms = Some(slo_ms);
    let run_dir = format!("{label}/rate-{rate}");
    let r = bench.run(&s, spec, &root.join(&run_dir))?;
    if bench.stopped() {
        // A point cut short is in its own folder, marked so, but not in sweep.json.
        return Err(TuneError::Interrupted {
            what: "points",
            root: root.to_path_buf(),
        });
    }
    Ok(SweepPoint {
        offered_rate: rate,
        achieved_ops_s: r.ops_per_s,
        p50_ns: r.latency.p50_ns,
        p99_ns: r.latency.p99_ns,
        p999_ns: r.latency.p999_ns,
        converge_ns: r.converge_ns,
        lost: grid::lost(&r),
        run_dir,
    })
}

fn log_point(bench: &cell::Bench, label: &str, p: &SweepPoint, slo_ns: u64) {
    bench.bars.suspend(|| {
        eprintln!(
            "harness: {label} at {} ops/s: achieved {:.0}, p99 {:.1} ms ({}), {} lost",
            p.offered_rate,
            p.achieved_ops_s,
            p.p99_ns as f64 / 1e6,
            if knee::meets(p, slo_ns) {
                "within the SLO"
            } else {
                "SLO missed"
            },
            p.lost
        )
    });
}

/// Adds `p` to the curve and places its knee and sustainable rate again; returns whether
/// to step on.
fn add_point(curve: &mut SweepCurve, p: SweepPoint, slo_ns: u64) -> bool {
    curve.points.push(p);
    let pts: Vec<(f64, u64)> = curve
        .points
        .iter()
        .map(|p| (p.offered_rate, p.p99_ns))
        .collect();
    curve.knee_rate = knee::knee(&pts);
    curve.sustainable_ops_s = knee::sustainable(&curve.points, slo_ns);
    knee::keep_stepping(&curve.points, slo_ns)
}
