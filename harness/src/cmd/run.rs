//! `harness run`: a scenario file and CLI options in, every syncer run one after another on
//! the same planned storm, results written after each run, and an exit code out (non-zero
//! when verification or an SLO failed).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::cli::RunArgs;
use crate::export::{ResultsDir, RunInfo};
use crate::scenario::{self, Scenario, ScenarioError, SutSpec, UnknownSut};
use crate::session::result::{Outcome, RunResult};
use crate::session::{self, Ctx};
use crate::storm::plan::Plan;

/// Why `harness run` stopped before its verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    UnknownSut(#[from] UnknownSut),
    #[error("cannot create the work dir {} ({source})", path.display())]
    WorkDir { path: PathBuf, source: io::Error },
    #[error("cannot create a temp dir ({0}); pass --workdir")]
    TempDir(io::Error),
    #[error("cannot create the results dir under {} ({source})", path.display())]
    ResultsDir { path: PathBuf, source: io::Error },
    #[error("calibration run failed: {0}")]
    Calibration(io::Error),
    /// A histogram or timeline of one run could not be written.
    #[error("{0}")]
    Export(io::Error),
    #[error("cannot write results: {0}")]
    Results(io::Error),
    #[error("interrupted: results so far are in the results folder")]
    Interrupted,
}

impl From<RunError> for crate::Error {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Scenario(e) => e.into(),
            RunError::UnknownSut(e) => e.into(),
            RunError::WorkDir { .. } | RunError::TempDir(_) | RunError::Calibration(_) => {
                crate::Error::setup(e)
            }
            RunError::ResultsDir { .. } | RunError::Export(_) | RunError::Results(_) => {
                crate::Error::io(e)
            }
            RunError::Interrupted => crate::Error::interrupted(e),
        }
    }
}

pub fn run(args: &RunArgs, stop: &AtomicBool) -> Result<bool, RunError> {
    let s = scenario::load(&args.scenario)?;
    let suts = scenario::selected(&s.suts, &args.suts)?;
    let repeats = args.repeat.unwrap_or(s.repeats).max(1);
    eprintln!("harness: planning {} (seed {})", s.name, s.seed);
    let plan = crate::storm::plan::plan(&s);
    let root = crate::host::env::repo_root();
    let (mut temp_dir, workdir) = work_dir(args)?;
    let info = run_info(args, &s, &plan, &root, &workdir);
    let results =
        ResultsDir::create(&args.out, &info, &s).map_err(|source| RunError::ResultsDir {
            path: args.out.clone(),
            source,
        })?;
    let ctx = Ctx {
        scenario: &s,
        plan: &plan,
        workdir: &workdir,
        repo_root: &root,
        stop,
        keep: args.keep,
        bars: None,
    };
    let calibration = calibrate(&ctx, &results)?;
    let mut runs: Vec<RunResult> = Vec::new();
    for repeat in 1..=repeats {
        for spec in &suts {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(RunError::Interrupted);
            }
            runs.push(run_sut(&ctx, &results, spec, repeat, repeats)?);
            results
                .write_all(&info, &s, calibration.as_ref(), &runs)
                .map_err(RunError::Results)?;
        }
    }
    results
        .write_all(&info, &s, calibration.as_ref(), &runs)
        .map_err(RunError::Results)?;
    clean_up(args, &mut temp_dir, &workdir);
    println!(
        "{}",
        std::fs::read_to_string(results.path.join("summary.md")).unwrap_or_default()
    );
    eprintln!("harness: results in {}", results.path.display());
    let (passed, line) = verdict(&runs);
    // Last, on stdout after everything else: `harness run ... | tail -1` says why it failed.
    println!("{line}");
    Ok(passed)
}

/// The work dir: `harness-<pid>` under --workdir, else a temp dir. The `TempDir` deletes
/// it when dropped, unless --keep keeps it.
fn work_dir(args: &RunArgs) -> Result<(Option<tempfile::TempDir>, PathBuf), RunError> {
    match &args.workdir {
        Some(dir) => {
            let w = dir.join(format!("harness-{}", std::process::id()));
            std::fs::create_dir_all(&w).map_err(|source| RunError::WorkDir {
                path: w.clone(),
                source,
            })?;
            Ok((None, w))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("harness-")
                .tempdir()
                .map_err(RunError::TempDir)?;
            let p = t.path().to_path_buf();
            Ok((Some(t), p))
        }
    }
}

/// The facts of this run for the results README and run.json.
fn run_info(args: &RunArgs, s: &Scenario, plan: &Plan, root: &Path, workdir: &Path) -> RunInfo {
    RunInfo {
        command: crate::cli::command_line(),
        scenario_file: args.scenario.display().to_string(),
        git_revision: crate::host::env::git_revision(root),
        kernel: crate::host::env::kernel(),
        cpu: crate::host::env::cpu(),
        memory: crate::host::env::memory(),
        workdir_fs: match s.workdir_fs {
            scenario::WorkdirFs::Shared => crate::host::env::filesystem(workdir),
            scenario::WorkdirFs::LoopExt4 => format!(
                "each run on a fresh ext4 without journal, a loop-mounted {} MiB image in {}",
                s.workdir_mib,
                crate::host::env::filesystem(workdir)
            ),
        },
        replica_fs: match s.replica_fs {
            scenario::ReplicaFs::Same => "same as the run's source".into(),
            scenario::ReplicaFs::Tmpfs => crate::host::env::filesystem(Path::new("/dev/shm")),
            scenario::ReplicaFs::LoopExt4 => format!(
                "ext4 without journal on a loop-mounted {} MiB image in the work dir",
                s.replica_mib
            ),
        },
        sysctls: crate::host::kernel::snapshot(),
        tools: crate::host::env::tool_versions(),
        date: crate::util::fmt::today(),
        host: crate::host::env::hostname(),
        storm_ops: plan.storm_ops(),
        tree_dirs: plan.dirs.len() as u64,
    }
}

/// The calibration run, if the scenario asks for one, its histogram and timeline written.
fn calibrate(ctx: &Ctx, results: &ResultsDir) -> Result<Option<RunResult>, RunError> {
    if !ctx.scenario.calibrate {
        return Ok(None);
    }
    eprintln!("harness: calibration (generator writes straight into the replica)");
    let (r, h) = session::run_one(ctx, None, 1).map_err(RunError::Calibration)?;
    results.write_hgrm(&r, &h).map_err(RunError::Export)?;
    results.write_timeline(&r).map_err(RunError::Export)?;
    Ok(Some(r))
}

/// One syncer's run: its histogram and timeline written; a run error is a failed run, a
/// Ctrl-C during it marks the figures partial.
fn run_sut(
    ctx: &Ctx,
    results: &ResultsDir,
    spec: &SutSpec,
    repeat: u32,
    repeats: u32,
) -> Result<RunResult, RunError> {
    eprintln!("harness: {} (repeat {repeat}/{repeats})", spec.label());
    let mut r = match session::run_one(ctx, Some(spec), repeat) {
        Ok((r, h)) => {
            if r.outcome != Outcome::Skipped {
                results.write_hgrm(&r, &h).map_err(RunError::Export)?;
                results.write_timeline(&r).map_err(RunError::Export)?;
            }
            r
        }
        Err(e) => {
            let mut r = RunResult::skipped(
                spec.label(),
                format!("{:?}", spec.kind).to_lowercase(),
                repeat,
                format!("run error: {e}"),
            );
            r.outcome = Outcome::Failed;
            r
        }
    };
    if ctx.stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Cut short by Ctrl-C: the figures are partial, not the syncer's fault alone.
        r.outcome = Outcome::Failed;
        r.expect_fail = false;
        r.reasons.insert(
            0,
            "interrupted (Ctrl-C): the figures below are partial".into(),
        );
    }
    eprintln!(
        "harness: {} r{repeat}: {:?} {}",
        r.sut,
        r.outcome,
        r.reasons.join("; ")
    );
    Ok(r)
}

/// Keeps the work dir (--keep) or removes the one we made under --workdir; a temp dir
/// not kept removes itself when `temp_dir` drops, at the end of `run`.
fn clean_up(args: &RunArgs, temp_dir: &mut Option<tempfile::TempDir>, workdir: &Path) {
    if args.keep {
        eprintln!("harness: kept the work dir {}", workdir.display());
        if let Some(t) = temp_dir.take() {
            // Its path is `workdir`, printed above.
            let _ = t.keep();
        }
    } else if args.workdir.is_some() {
        // Only the harness-<pid> folder we made; run folders inside were removed already.
        let _ = std::fs::remove_dir_all(workdir);
    }
}

/// Whether the runs pass, and the one line that says so: every run that counts as a failure
/// (our syncer not run, not ready, lost or stale paths, an SLO) with its reasons, or the
/// passes with any skipped baselines and expected failures named.
pub fn verdict(runs: &[RunResult]) -> (bool, String) {
    let name = |r: &RunResult| format!("{} r{}", r.sut, r.repeat);
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| r.counts_as_failure())
        .map(|r| format!("{}: {}", name(r), r.reasons.join("; ")))
        .collect();
    if !failed.is_empty() {
        return (false, format!("harness: FAIL: {}", failed.join(" | ")));
    }
    let mut notes: Vec<String> = Vec::new();
    for r in runs {
        match r.outcome {
            Outcome::Skipped => {
                notes.push(format!("{} skipped: {}", name(r), r.reasons.join("; ")))
            }
            Outcome::Failed => notes.push(format!("{} failed as expected", name(r))),
            Outcome::Passed => {}
        }
    }
    let ran = runs.iter().filter(|r| r.outcome == Outcome::Passed).count();
    let mut line = format!("harness: PASS: {ran} of {} runs passed", runs.len());
    if !notes.is_empty() {
        line.push_str(&format!(" ({})", notes.join("; ")));
    }
    (true, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sut: &str, outcome: Outcome, expect_fail: bool, why: &str) -> RunResult {
        let mut r = RunResult::skipped(sut.into(), "command".into(), 1, why.into());
        r.outcome = outcome;
        r.expect_fail = expect_fail;
        r
    }

    #[test]
    fn the_verdict_names_every_failure_and_tolerates_skipped_baselines() {
        let skipped = run("lsyncd-delay0", Outcome::Skipped, false, "not installed");
        let passed = run("syncer", Outcome::Passed, false, "");
        let expected = run("seed-script", Outcome::Failed, true, "stale");
        let (ok, line) = verdict(&[passed.clone(), skipped.clone(), expected.clone()]);
        assert!(ok, "{line}");
        assert_eq!(
            line,
            "harness: PASS: 1 of 3 runs passed (lsyncd-delay0 r1 skipped: not installed; \
             seed-script r1 failed as expected)"
        );
        let ours = run("syncer", Outcome::Failed, false, "not run: no binary");
        let (ok, line) = verdict(&[skipped, ours, expected]);
        assert!(!ok);
        assert_eq!(line, "harness: FAIL: syncer r1: not run: no binary");
    }
}
