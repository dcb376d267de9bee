//! A chaos campaign: a `ChaosConfig` in, every (seed, backend, target) case run several at
//! once, a results folder out: runs.csv (one row appended per finished case, so a crash or a
//! Ctrl-C keeps what ran and `--resume` goes on from there), failures/<case>/ (op log,
//! shrunk op log, syncer log, differences, the replay command) and summary.md.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use super::case::{self, Backend, CaseOutcome, CaseSpec, Target};
use super::config::ChaosConfig;
use super::error::ChaosError;
use super::generate::generate;
use super::op::{Op, OpLog};
use super::report::{self, Row};
use super::shrink::shrink;
use crate::measure::verify::shown_bytes;

/// One case of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CaseId {
    pub seed: u64,
    pub backend: Backend,
    pub target: Target,
}

impl CaseId {
    pub fn name(&self) -> String {
        format!("seed-{}-{}-{}", self.seed, self.backend, self.target)
    }
}

/// Paths and binaries a campaign needs.
pub struct CampaignEnv<'a> {
    pub syncer: &'a Path,
    pub out: &'a Path,
    pub workdir: &'a Path,
    pub repo_root: &'a Path,
    pub shrink: Option<u32>,
    /// Runs of each shrink candidate; it counts as failing if any run fails (timing-
    /// dependent failures shrink only with several).
    pub shrink_tries: u32,
    pub resume: bool,
}

/// The op log of `seed`, generated in a scratch folder under `workdir`.
pub fn op_log(config: &ChaosConfig, seed: u64, workdir: &Path) -> Result<OpLog, ChaosError> {
    let scratch = tempfile::Builder::new()
        .prefix("chaos-gen-")
        .tempdir_in(workdir)
        .map_err(ChaosError::io("make a scratch folder in", workdir))?;
    let mut log = generate(
        seed,
        config.setup_ops,
        config.ops,
        &config.mix,
        scratch.path(),
    )
    .map_err(|source| ChaosError::Generate { seed, source })?;
    super::fault::place(&mut log, &config.faults, seed);
    Ok(log)
}

/// The command that replays one case.
pub fn replay_command(config: &ChaosConfig, id: CaseId, scenario: &str) -> String {
    format!(
        "harness chaos {scenario} --seed-range {}..{} --ops {} --setup-ops {} --pause-us {} --backend {} --target {}",
        id.seed,
        id.seed + 1,
        config.ops,
        config.setup_ops,
        config.mix.pause.mean_us,
        id.backend,
        id.target
    )
}

fn case_spec(config: &ChaosConfig, env: &CampaignEnv, id: CaseId, dir: PathBuf) -> CaseSpec {
    CaseSpec {
        syncer: env.syncer.to_path_buf(),
        backend: id.backend,
        target: id.target,
        dir,
        converge: config.converge,
        syncer_args: config.syncer_args.clone(),
    }
}

/// The operations that touched the differing paths, their parents or children, under any
/// name they had: walking the log backwards, a rename or exchange onto a tracked path adds
/// the name it came from.
pub fn suspects(log: &OpLog, outcome: &CaseOutcome) -> Vec<String> {
    let diff = &outcome.diff;
    let mut names: BTreeSet<String> = diff
        .missing_examples
        .iter()
        .chain(&diff.extra_examples)
        .chain(&diff.mismatched_examples)
        .map(|e| e.split(" (").next().unwrap_or(e).to_string())
        .collect();
    let under = |d: &str, p: &str| d == p || d.starts_with(&format!("{p}/"));
    let rekey = |d: &str, from: &str, to: &str| format!("{to}{}", &d[from.len()..]);
    let mut hits = Vec::new();
    for (i, op) in log.ops.iter().enumerate().rev() {
        let shown: Vec<String> = op.paths().iter().map(|p| shown_bytes(p)).collect();
        if shown
            .iter()
            .any(|p| names.iter().any(|d| under(d, p) || under(p, d)))
        {
            hits.push(i);
        }
        let earlier: Vec<String> = match (op, shown.as_slice()) {
            (Op::Rename { .. }, [from, to]) => names
                .iter()
                .filter(|d| under(d, to))
                .map(|d| rekey(d, to, from))
                .collect(),
            (Op::Exchange { .. }, [a, b]) => names
                .iter()
                .filter_map(|d| {
                    if under(d, a) {
                        Some(rekey(d, a, b))
                    } else if under(d, b) {
                        Some(rekey(d, b, a))
                    } else {
                        None
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        names.extend(earlier);
    }
    hits.reverse();
    hits.into_iter()
        .map(|i| {
            let phase = if i < log.setup { "setup" } else { "live" };
            format!("{i:>4} {phase} {}", log.ops[i])
        })
        .collect()
}

fn write_failure(
    config: &ChaosConfig,
    env: &CampaignEnv,
    id: CaseId,
    log: &OpLog,
    outcome: &CaseOutcome,
    case_dir: &Path,
    scenario: &str,
) -> std::io::Result<PathBuf> {
    let dir = env.out.join("failures").join(id.name());
    fs::create_dir_all(&dir)?;
    let header = format!("{} (seed {}, {} ops)", id.name(), id.seed, log.ops.len());
    fs::write(dir.join("ops.txt"), log.render(&header))?;
    // The syncer's log is the first thing to read; copy it before the case dir goes.
    if let Err(e) = fs::copy(case_dir.join("syncer.log"), dir.join("syncer.log")) {
        fs::write(dir.join("syncer.log"), format!("(no syncer log: {e})\n"))?;
    }
    let mut text = format!(
        "{}\n\nreplay: {}\n   or: harness chaos --replay {}/ops.txt --backend {} --target {}\n\n",
        outcome
            .problem
            .clone()
            .unwrap_or_else(|| format!("not equal {:?} after the storm", config.converge)),
        replay_command(config, id, scenario),
        dir.display(),
        id.backend,
        id.target
    );
    text.push_str(&format!("differences: {}\n\n", outcome.diff.describe()));
    text.push_str("operations on those paths:\n");
    for line in suspects(log, outcome) {
        text.push_str(&line);
        text.push('\n');
    }
    fs::write(dir.join("diff.txt"), text)?;
    Ok(dir)
}

/// How a case failed, so a shrink keeps only candidates that fail the same way: a shrunk
/// log that merely stops the syncer from starting (or trips on the load of a parallel
/// campaign) says nothing about the loss being chased.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// The syncer (or its daemon) did not start.
    StartUp,
    /// The syncer panicked or exited badly, whatever the replica looked like.
    Exit,
    /// The replica still differs from SOURCE, and the syncer exited cleanly.
    Differs,
}

impl FailureKind {
    fn of(outcome: &CaseOutcome) -> Option<FailureKind> {
        // The problem is checked first: a panic that also left the replica different is a
        // panic to chase, and a shrunk log that only differs has lost it.
        match (&outcome.problem, outcome.syncer_started) {
            _ if outcome.passed => None,
            (Some(_), false) => Some(FailureKind::StartUp),
            (Some(_), true) => Some(FailureKind::Exit),
            (None, _) => Some(FailureKind::Differs),
        }
    }
}

fn shrink_failure(
    config: &ChaosConfig,
    env: &CampaignEnv,
    id: CaseId,
    log: &OpLog,
    kind: FailureKind,
    trials: u32,
    dir: &Path,
) -> std::io::Result<String> {
    // A permanent loss shows within a few seconds; the shrink's cases wait less.
    let mut shrink_config = config.clone();
    shrink_config.converge = config.converge.min(std::time::Duration::from_secs(3));
    let mut n = 0u32;
    let mut run_once = |sub: &OpLog| {
        (0..env.shrink_tries.max(1)).any(|_| {
            n += 1;
            let case_dir = env.workdir.join(format!("{}-shrink-{n}", id.name()));
            let spec = case_spec(&shrink_config, env, id, case_dir.clone());
            let outcome = case::run(sub, &spec);
            case::remove_case_dir(&case_dir);
            FailureKind::of(&outcome) == Some(kind)
        })
    };
    let (minimal, spent) = shrink(log, trials, &mut run_once);
    let again = (0..3).filter(|_| run_once(&minimal)).count();
    let header = format!(
        "{}: shrunk from {} to {} ops in {spent} cases; failed {again} of 3 replays",
        id.name(),
        log.ops.len(),
        minimal.ops.len()
    );
    fs::write(dir.join("minimal.ops"), minimal.render(&header))?;
    Ok(header)
}

fn done_cases(out: &Path) -> BTreeSet<(u64, String, String)> {
    report::read_rows(&out.join("runs.csv"))
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.seed, r.backend, r.target))
        .collect()
}

/// Runs the campaign; Ok(true) when every case passed.
pub fn run(
    config: &ChaosConfig,
    env: &CampaignEnv,
    scenario: &str,
    stop: &AtomicBool,
) -> Result<bool, ChaosError> {
    fs::create_dir_all(env.out).map_err(ChaosError::io("create", env.out))?;
    let done = if env.resume {
        done_cases(env.out)
    } else {
        // A fresh campaign: the old rows and failures would be merged into its summary.
        let _ = fs::remove_file(env.out.join("runs.csv"));
        let _ = fs::remove_dir_all(env.out.join("failures"));
        BTreeSet::new()
    };
    let mut cases = Vec::new();
    for seed in config.seeds.0..config.seeds.1 {
        for &backend in &config.backends {
            for &target in &config.targets {
                let id = CaseId {
                    seed,
                    backend,
                    target,
                };
                if !done.contains(&(seed, backend.to_string(), target.to_string())) {
                    cases.push(id);
                }
            }
        }
    }
    let bar = ProgressBar::new(cases.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} cases, {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("0 failed");
    let csv = Mutex::new(report::open_rows(&env.out.join("runs.csv"))?);
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::<String>::new());
    std::thread::scope(|scope| {
        for _ in 0..config.jobs.min(cases.len().max(1)) {
            scope.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&id) = cases.get(i) else { return };
                    let result = run_case(config, env, id, scenario);
                    let mut notes = problems.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok((row, note)) => {
                            if !row.passed {
                                failed.fetch_add(1, Ordering::Relaxed);
                                // A hidden bar (no terminal, as in CI) drops println.
                                if bar.is_hidden() {
                                    eprintln!("{note}");
                                } else {
                                    bar.println(note);
                                }
                            }
                            let mut out = csv.lock().unwrap_or_else(|e| e.into_inner());
                            if let Err(e) = report::append_row(&mut out, &row) {
                                notes.push(format!("cannot append to runs.csv: {e}"));
                            }
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            notes.push(format!("{}: {e}", id.name()));
                        }
                    }
                    bar.set_message(format!("{} failed", failed.load(Ordering::Relaxed)));
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish();
    let problems = problems.into_inner().unwrap_or_else(|e| e.into_inner());
    for p in &problems {
        eprintln!("harness chaos: {p}");
    }
    let rows = report::read_rows(&env.out.join("runs.csv"))?;
    let summary = report::summary(config, &rows, scenario, env.out);
    fs::write(env.out.join("summary.md"), &summary)
        .map_err(ChaosError::file("write summary.md"))?;
    print!("{}", report::short(&rows));
    if stop.load(Ordering::Relaxed) {
        return Err(ChaosError::Interrupted(
            "interrupted: rerun with --resume to finish the campaign",
        ));
    }
    Ok(problems.is_empty() && rows.iter().all(|r| r.passed))
}

/// Runs one case; the row for runs.csv and, for a failure, a line saying where to look.
fn run_case(
    config: &ChaosConfig,
    env: &CampaignEnv,
    id: CaseId,
    scenario: &str,
) -> Result<(Row, String), ChaosError> {
    let log = op_log(config, id.seed, env.workdir)?;
    let case_dir = env.workdir.join(id.name());
    // A leftover of an interrupted earlier run would be merged into this case's trees.
    case::remove_case_dir(&case_dir);
    let spec = case_spec(config, env, id, case_dir.clone());
    let outcome = case::run(&log, &spec);
    let mut note = String::new();
    if !outcome.passed {
        let dir = write_failure(config, env, id, &log, &outcome, &case_dir, scenario)
            .map_err(ChaosError::file("write the failure report"))?;
        note = format!(
            "FAILED {}: {} -> {}/diff.txt\n  replay: {}",
            id.name(),
            outcome
                .problem
                .clone()
                .unwrap_or_else(|| outcome.diff.describe()),
            dir.display(),
            replay_command(config, id, scenario)
        );
        if let Some(trials) = env.shrink {
            let kind = FailureKind::of(&outcome).unwrap_or(FailureKind::Exit);
            match shrink_failure(config, env, id, &log, kind, trials, &dir) {
                Ok(line) => note.push_str(&format!("\n  {line} -> {}/minimal.ops", dir.display())),
                Err(e) => note.push_str(&format!("\n  shrinking failed: {e}")),
            }
        }
    }
    case::remove_case_dir(&case_dir);
    Ok((Row::new(id, config, &log, &outcome), note))
}

/// Runs one op log from a file (a failure's ops.txt or minimal.ops) on each backend and
/// target; Ok(true) when all converged.
pub fn replay(
    config: &ChaosConfig,
    env: &CampaignEnv,
    path: &Path,
    stop: &AtomicBool,
) -> Result<bool, ChaosError> {
    let text = fs::read_to_string(path).map_err(ChaosError::io("read", path))?;
    let log = OpLog::parse(&text).map_err(|source| ChaosError::OpLog {
        path: path.to_path_buf(),
        source,
    })?;
    let mut all = true;
    for &backend in &config.backends {
        for &target in &config.targets {
            if stop.load(Ordering::Relaxed) {
                return Err(ChaosError::Interrupted("interrupted"));
            }
            let id = CaseId {
                seed: 0,
                backend,
                target,
            };
            let dir = env.workdir.join(format!("replay-{backend}-{target}"));
            case::remove_case_dir(&dir);
            let outcome = case::run(&log, &case_spec(config, env, id, dir.clone()));
            let verdict = if outcome.passed {
                "converged"
            } else {
                "FAILED"
            };
            let mut line = format!(
                "{backend}/{target}: {verdict} ({} ops, {} refused)",
                log.ops.len(),
                outcome.op_errors
            );
            if let Some(ms) = outcome.converge_ms {
                line.push_str(&format!(", equal {ms} ms after the storm"));
            } else {
                line.push_str(&format!(
                    ": {}",
                    outcome
                        .problem
                        .clone()
                        .unwrap_or_else(|| outcome.diff.describe())
                ));
                let mut f =
                    fs::File::create(env.out.join(format!("replay-{backend}-{target}.log")))
                        .map_err(ChaosError::file("write the replay log"))?;
                let syncer_log = fs::read_to_string(dir.join("syncer.log")).unwrap_or_default();
                let _ = f.write_all(syncer_log.as_bytes());
                for op in suspects(&log, &outcome) {
                    line.push_str(&format!("\n  {op}"));
                }
            }
            println!("{line}");
            if let (Some(kind), Some(trials)) = (FailureKind::of(&outcome), env.shrink) {
                let shrunk = shrink_failure(config, env, id, &log, kind, trials, env.out)
                    .map_err(ChaosError::file("write minimal.ops"))?;
                println!("  {shrunk} -> {}/minimal.ops", env.out.display());
            }
            all &= outcome.passed;
            case::remove_case_dir(&dir);
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::verify::TreeDiff;

    #[test]
    fn suspects_follow_an_entry_back_through_its_renames() {
        let log = OpLog::parse(
            "# setup 1\nmkdir \"caf\\xc3\\xa9\"\ncreate \"caf\\xc3\\xa9/x\" 1 1\ncreate \"other\" 1 1\nrename \"caf\\xc3\\xa9\" \"f1\"\ntouch \"f1/x\" 1000000000 0\n",
        )
        .unwrap();
        let outcome = CaseOutcome {
            passed: false,
            converge_ms: None,
            op_errors: 0,
            diff: TreeDiff {
                extra: 1,
                extra_examples: vec!["f1/x".into()],
                ..TreeDiff::default()
            },
            problem: None,
            syncer_started: true,
            ..CaseOutcome::default()
        };
        let lines = suspects(&log, &outcome);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].contains("setup mkdir"), "{lines:#?}");
        assert!(lines.iter().all(|l| !l.contains("other")), "{lines:#?}");
    }

    #[test]
    fn a_failure_is_classed_by_its_problem_before_its_replica() {
        let mut outcome = CaseOutcome {
            passed: false,
            converge_ms: None,
            op_errors: 0,
            diff: TreeDiff {
                missing: 1,
                ..TreeDiff::default()
            },
            problem: None,
            syncer_started: true,
            ..CaseOutcome::default()
        };
        assert!(FailureKind::of(&outcome) == Some(FailureKind::Differs));
        outcome.problem = Some("the syncer panicked: ...".into());
        assert!(FailureKind::of(&outcome) == Some(FailureKind::Exit));
        outcome.syncer_started = false;
        assert!(FailureKind::of(&outcome) == Some(FailureKind::StartUp));
        outcome.passed = true;
        assert!(FailureKind::of(&outcome).is_none());
    }
}
