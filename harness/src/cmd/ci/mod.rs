//! `harness ci`: a baseline revision and the CI scenario set in, the baseline's and the
//! candidate's syncer measured interleaved (A B B A A B ..., each run a `harness run` child of
//! this binary, so both sides get the same harness), a comparison report (markdown + JSON)
//! and a pass / regression / skipped outcome out.

pub mod baseline;
pub mod error;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::CiArgs;
use crate::gate::{self, RunRecord, render};
pub use error::CiError;

pub enum CiOutcome {
    Passed,
    Regressed,
    /// The baseline could not be built or found: why.
    Skipped(String),
}

fn default_scenarios(root: &Path) -> Result<Vec<PathBuf>, CiError> {
    let dir = root.join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(CiError::io_hint("read", &dir, "pass --scenarios"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ci-") && n.ends_with(".toml"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CiError::NoScenarios(dir));
    }
    Ok(files)
}

/// The scenario with `extra` appended to every `syncer` entry's args, written under `dir`.
fn with_candidate_args(scenario: &Path, extra: &[String], dir: &Path) -> Result<PathBuf, CiError> {
    let text = std::fs::read_to_string(scenario).map_err(CiError::io("read", scenario))?;
    let mut doc: toml::Table = text.parse().map_err(|source| CiError::Toml {
        path: scenario.to_path_buf(),
        source,
    })?;
    for sut in doc
        .get_mut("sut")
        .and_then(toml::Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(t) = sut.as_table_mut() else {
            continue;
        };
        if t.get("kind").and_then(toml::Value::as_str) != Some("syncer") {
            continue;
        }
        let args = t
            .entry("args")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let Some(a) = args.as_array_mut() {
            a.extend(extra.iter().map(|x| toml::Value::String(x.clone())));
        }
    }
    let stem = scenario.file_stem().unwrap_or_default().to_string_lossy();
    let out = dir.join(format!("{stem}-candidate.toml"));
    std::fs::write(&out, doc.to_string()).map_err(CiError::io("write", &out))?;
    Ok(out)
}

struct Side<'a> {
    name: &'static str,
    bin: &'a Path,
    scenario: PathBuf,
}

/// One `harness run` of one side: results under OUT/runs/SCENARIO/SIDE/pN, its log beside.
fn run_once(
    root: &Path,
    a: &CiArgs,
    side: &Side,
    scenario: &str,
    pair: u32,
    work: &Path,
) -> Result<(), CiError> {
    let dir = a.out.join("runs").join(scenario).join(side.name);
    std::fs::create_dir_all(&dir).map_err(CiError::io("create", &dir))?;
    let log = dir.join(format!("p{pair}.log"));
    let exe = std::env::current_exe().map_err(CiError::NoHarness)?;
    let o = Command::new(exe)
        .arg("run")
        .arg(&side.scenario)
        .args(["--sut", &a.sut, "--repeat", "1", "--out"])
        .arg(dir.join(format!("p{pair}")))
        .arg("--workdir")
        .arg(work)
        .env("HARNESS_SYNCER_BIN", side.bin)
        .current_dir(root)
        .output()
        .map_err(CiError::StartRun)?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Best effort: the log only helps a reader; the results folder holds the numbers.
    let _ = std::fs::write(&log, &text);
    match o.status.code() {
        // 1: the run failed verification or an SLO; the report shows it and fails the gate.
        Some(0 | 1) => Ok(()),
        _ => Err(CiError::RunFailed {
            scenario: side.scenario.clone(),
            side: side.name,
            status: o.status,
            log,
        }),
    }
}

/// Each scenario's name and its two sides: A the baseline's syncer on the scenario as
/// written, B the candidate's with the candidate's extra arguments.
type Plan<'a> = Vec<(String, [Side<'a>; 2])>;

pub fn ci(a: &CiArgs, stop: &AtomicBool) -> Result<CiOutcome, CiError> {
    let root = crate::host::env::repo_root();
    let candidate_args = a.candidate_extra();
    let (out, runs_dir) = clear_out(a)?;
    let scenarios = if a.scenarios.is_empty() {
        default_scenarios(&root)?
    } else {
        a.scenarios.clone()
    };
    let (rev, id) = match baseline::resolve(&root, a.baseline.as_deref()) {
        Ok(x) => x,
        Err(why) => return Ok(CiOutcome::Skipped(format!("baseline: {why}"))),
    };
    let candidate_bin = candidate_bin(&root, a, &out)?;
    let baseline_bin = match baseline_bin(&root, a, &out, &rev, &id)? {
        Ok(b) => b,
        Err(skipped) => return Ok(skipped),
    };
    let work = out.join("work");
    std::fs::create_dir_all(&work).map_err(CiError::io("create", &work))?;
    let plan = plan(
        &scenarios,
        &candidate_args,
        &out,
        &baseline_bin,
        &candidate_bin,
    )?;
    measure(&root, a, &plan, &work, stop)?;
    // Best effort: the work dir holds only the children's emptied harness-<pid> folders.
    let _ = std::fs::remove_dir_all(&work);
    let mut all_a = Vec::new();
    let mut all_b = Vec::new();
    for (name, _) in &plan {
        all_a.extend(gate::load(&runs_dir.join(name).join("A"))?);
        all_b.extend(gate::load(&runs_dir.join(name).join("B"))?);
    }
    let mut report = gate::compare(&all_a, &all_b, &a.sut);
    report.a = if id.starts_with(&rev) {
        format!("baseline {id:.12}")
    } else {
        format!("baseline {rev} ({id:.12})")
    };
    report.b = format!(
        "candidate {}{}",
        crate::host::env::git_revision(&root),
        if candidate_args.is_empty() {
            String::new()
        } else {
            format!(" with `{}`", candidate_args.join(" "))
        }
    );
    write_report(&report, &out, &runs_dir)?;
    if a.record {
        record(&root, &id, &mut all_a, &all_b)?;
    }
    Ok(if report.passed {
        CiOutcome::Passed
    } else {
        CiOutcome::Regressed
    })
}

/// Creates OUT and empties OUT/runs of an earlier gate; returns both, OUT made absolute.
fn clear_out(a: &CiArgs) -> Result<(PathBuf, PathBuf), CiError> {
    std::fs::create_dir_all(&a.out).map_err(CiError::io_hint("create", &a.out, "pass --out"))?;
    let out = a.out.canonicalize().map_err(CiError::Write)?;
    let runs_dir = out.join("runs");
    if runs_dir.exists() {
        std::fs::remove_dir_all(&runs_dir).map_err(CiError::io("clear", &runs_dir))?;
    }
    Ok((out, runs_dir))
}

/// A binary given on the command line, absolute: each run's syncer starts in its own
/// directory.
fn given(b: &Path) -> Result<PathBuf, CiError> {
    b.canonicalize().map_err(|source| CiError::NoBinary {
        path: b.to_path_buf(),
        source,
    })
}

/// The candidate's syncer: --candidate-bin, else built from the work tree.
fn candidate_bin(root: &Path, a: &CiArgs, out: &Path) -> Result<PathBuf, CiError> {
    match &a.candidate_bin {
        Some(b) => given(b),
        None => {
            eprintln!("harness ci: building the candidate's syncer");
            baseline::build_candidate(root, out)
        }
    }
}

/// The baseline's syncer: --baseline-bin, else built from `id`; `Ok(Err(skipped))` when
/// it cannot be built.
fn baseline_bin(
    root: &Path,
    a: &CiArgs,
    out: &Path,
    rev: &str,
    id: &str,
) -> Result<Result<PathBuf, CiOutcome>, CiError> {
    if let Some(b) = &a.baseline_bin {
        return given(b).map(Ok);
    }
    eprintln!("harness ci: building the baseline's syncer ({rev} = {id:.12})");
    let t = std::time::Instant::now();
    Ok(match baseline::build(root, id, out) {
        Ok(b) => {
            eprintln!("harness ci: baseline built in {:.0?}", t.elapsed());
            Ok(b)
        }
        Err(why) => Err(CiOutcome::Skipped(format!(
            "baseline {rev} ({id:.12}) cannot be built: {why}"
        ))),
    })
}

/// The two sides of every scenario (the candidate's scenario rewritten under `out` when
/// it has extra arguments).
fn plan<'a>(
    scenarios: &[PathBuf],
    candidate_args: &[String],
    out: &Path,
    baseline_bin: &'a Path,
    candidate_bin: &'a Path,
) -> Result<Plan<'a>, CiError> {
    let mut plan = Vec::new();
    for s in scenarios {
        let name = crate::scenario::load(s)?.name;
        let b_scenario = if candidate_args.is_empty() {
            s.clone()
        } else {
            with_candidate_args(s, candidate_args, out)?
        };
        let sides = [
            Side {
                name: "A",
                bin: baseline_bin,
                scenario: s.clone(),
            },
            Side {
                name: "B",
                bin: candidate_bin,
                scenario: b_scenario,
            },
        ];
        plan.push((name, sides));
    }
    Ok(plan)
}

/// Every pair of runs of every scenario, the sides interleaved.
fn measure(
    root: &Path,
    a: &CiArgs,
    plan: &Plan,
    work: &Path,
    stop: &AtomicBool,
) -> Result<(), CiError> {
    let pairs = a.pairs.max(3);
    for pair in 1..=pairs {
        for (name, sides) in plan {
            // A B, then B A, ...: whatever the run before leaves behind (a mass delete slows
            // the next creates on ext4, caches warm up) falls on both sides alike.
            let order: [&Side; 2] = if pair % 2 == 1 {
                [&sides[0], &sides[1]]
            } else {
                [&sides[1], &sides[0]]
            };
            for side in order {
                if stop.load(Ordering::Relaxed) {
                    return Err(CiError::Interrupted);
                }
                eprintln!("harness ci: pair {pair}/{pairs} {name} {}", side.name);
                run_once(root, a, side, name, pair, work)?;
            }
        }
    }
    Ok(())
}

/// report.md and report.json into `out`, the markdown on stdout.
fn write_report(report: &gate::Report, out: &Path, runs_dir: &Path) -> Result<(), CiError> {
    let md = render::markdown(report);
    std::fs::write(out.join("report.md"), &md).map_err(CiError::Write)?;
    std::fs::write(out.join("report.json"), render::json(report)).map_err(CiError::Write)?;
    print!("{md}");
    eprintln!(
        "harness ci: report in {} and report.json; runs under {}",
        out.join("report.md").display(),
        runs_dir.display()
    );
    Ok(())
}

/// --record: both sides' runs appended to results/history.csv.
fn record(
    root: &Path,
    id: &str,
    all_a: &mut [RunRecord],
    all_b: &[RunRecord],
) -> Result<(), CiError> {
    let (date, host, cpu) = (
        crate::util::fmt::today(),
        crate::host::env::hostname(),
        crate::host::env::cpu(),
    );
    // The runs' own folders name the harness's checkout (the candidate's); the baseline's
    // syncer was built from `id`.
    for run in all_a.iter_mut() {
        run.revision = format!("{id:.12}");
    }
    let text = crate::gate::history::rows(all_a, "baseline", &date, &host, &cpu)
        + &crate::gate::history::rows(all_b, "candidate", &date, &host, &cpu);
    let path = root.join("results/history.csv");
    crate::gate::history::append(&path, &text).map_err(CiError::io("append to", &path))?;
    eprintln!(
        "harness ci: recorded {} runs in {}",
        all_a.len() + all_b.len(),
        path.display()
    );
    Ok(())
}
