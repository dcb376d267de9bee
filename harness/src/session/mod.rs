//! One measured run: a scenario, its plan and one syncer under test in, a `RunResult` (and
//! its latency histogram) out. Fresh source and replica, daemon if needed, probe, knobs,
//! syncer, storm, convergence, idle, stop, verify, floor. Every resource is a guard.

pub mod finish;
pub mod result;
pub mod wait;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::host::kernel::KnobGuard;
use crate::host::proctree::TreeTracker;
use crate::measure::verify::{self, CompareOptions};
use crate::probe::{self, ProbeInstance, ProbeLive};
use crate::scenario::{ReplicaFs, Scenario, SutKind, SutSpec, TargetKind, WorkdirFs};
use crate::session::result::{Outcome, RunResult};
use crate::storm::generator::{self, PhaseRun};
use crate::storm::phases::{Storm, run_storm};
use crate::storm::plan::Plan;
use crate::sut::daemon::RsyncDaemon;
use crate::sut::{self, Launch, Readiness, SutEnv, SutProcess};
use crate::util::clock::Clock;
use wait::ReadyError;

pub struct Ctx<'a> {
    pub scenario: &'a Scenario,
    pub plan: &'a Plan,
    pub workdir: &'a Path,
    pub repo_root: &'a Path,
    pub stop: &'a AtomicBool,
    pub keep: bool,
    /// Draws the storm's bars under a caller's own bar (tune's grid bar); None: plain bars.
    pub bars: Option<&'a indicatif::MultiProgress>,
}

/// Directories of one run, removed on drop unless kept.
struct RunDirs {
    base: PathBuf,
    replica_base: Option<PathBuf>,
    keep: bool,
}

impl Drop for RunDirs {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for dir in [Some(&self.base), self.replica_base.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                eprintln!(
                    "harness: could not remove {} ({e}); remove it by hand",
                    dir.display()
                );
            }
        }
    }
}

fn fresh(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)
}

/// Runs one syncer (None: the calibration run, generator writing straight into the replica).
pub fn run_one(
    ctx: &Ctx,
    spec: Option<&SutSpec>,
    repeat: u32,
) -> std::io::Result<(RunResult, Histogram<u64>)> {
    let s = ctx.scenario;
    let label = spec.map_or("calibration".to_string(), SutSpec::label);
    let kind = spec.map_or("calibration".to_string(), |x| {
        format!("{:?}", x.kind).to_lowercase()
    });
    let base = ctx.workdir.join(format!("{label}-r{repeat}"));
    fresh(&base)?;
    let replica_base = (s.replica_fs == ReplicaFs::Tmpfs).then(|| {
        PathBuf::from(format!(
            "/dev/shm/harness-{}-{label}-r{repeat}",
            std::process::id()
        ))
    });
    let _dirs = RunDirs {
        base: base.clone(),
        replica_base: replica_base.clone(),
        keep: ctx.keep,
    };
    // Declared after `_dirs` and before the replica's mount: unmounted after the replica's
    // (whose image lives in it) and before the run's dirs are removed.
    let _workdir_mount = if s.workdir_fs == WorkdirFs::LoopExt4 {
        Some(crate::host::loopfs::LoopMount::create(
            &ctx.workdir.join(format!("{label}-r{repeat}.img")),
            &base,
            s.workdir_mib,
            ctx.keep,
        )?)
    } else {
        None
    };
    let replica = replica_base.clone().unwrap_or_else(|| base.join("replica"));
    fresh(&replica)?;
    // Declared after `_dirs`, so it is unmounted before the run's dirs are removed.
    let _loop_mount = if s.replica_fs == ReplicaFs::LoopExt4 {
        Some(crate::host::loopfs::LoopMount::create(
            &base.join("replica.img"),
            &replica,
            s.replica_mib,
            ctx.keep,
        )?)
    } else {
        None
    };
    let src = if spec.is_none() {
        replica.clone()
    } else {
        base.join("src")
    };
    let floor_dir = base.join("floor");
    std::fs::create_dir_all(&src)?;
    std::fs::create_dir_all(&floor_dir)?;
    let clock = Clock::new();
    generator::build_tree(&src, ctx.plan, 2, &clock)?;

    let needs_daemon =
        spec.is_some_and(|x| s.target == TargetKind::RsyncDaemon || x.kind == SutKind::SeedScript);
    let mut daemon = if needs_daemon {
        Some(RsyncDaemon::start(
            &base.join("daemon"),
            &replica,
            &floor_dir,
        )?)
    } else {
        None
    };
    let munged = daemon.is_some();

    // The probe's instance exists before the knobs change, so its queue keeps the default.
    let instance = ProbeInstance::new(&replica)?;
    let probe_kind = instance.kind();
    let knobs = if spec.is_some() {
        KnobGuard::apply(&s.kernel)?
    } else {
        KnobGuard::default()
    };
    let expected_sysctls = crate::host::kernel::snapshot();
    let live = Arc::new(ProbeLive::default());
    let mut result = RunResult::skipped(label.clone(), kind, repeat, String::new());
    result.reasons.clear();
    result.expect_fail = spec.is_some_and(|x| x.expect_fail);
    result.outcome = Outcome::Passed;
    let (tx, rx) = std::sync::mpsc::channel();
    let hist = std::thread::scope(|scope| -> std::io::Result<Histogram<u64>> {
        let probe_live = Arc::clone(&live);
        let (root, expect) = (replica.clone(), &ctx.plan.expect);
        let probe =
            scope.spawn(move || probe::run(instance, &root, expect, clock, probe_live, munged, tx));
        let drift_live = Arc::clone(&live);
        let drift = scope
            .spawn(move || crate::host::kernel::watch_drift(&expected_sysctls, &drift_live.stop));
        // Err means the probe thread failed early; its error is reported when joined.
        let _ = rx.recv_timeout(Duration::from_secs(600));
        let env = SutEnv {
            src: &src,
            replica: &replica,
            dir: &base.join("sut"),
            daemon: daemon.as_ref(),
            repo_root: ctx.repo_root,
        };
        let outcome = drive(ctx, spec, &env, &clock, &live, &mut result);
        live.stop.store(true, Ordering::Release);
        let report = probe
            .join()
            .map_err(|_| std::io::Error::other("the probe thread panicked"))??;
        let drifted = drift.join().unwrap_or_default();
        if !drifted.is_empty() {
            // Not the syncer's fault, but its figures are disturbed: the run cannot pass.
            result.reasons.push(format!(
                "another process changed the inotify sysctls during the run: {}; run again on a quiet machine",
                drifted.join(", ")
            ));
        }
        let (runs, mut sut_proc, mut tracker) = outcome?;
        let lat = crate::measure::latency::latency(ctx.plan, &runs, &report);
        result.latency = crate::measure::latency::stats(&lat.from_done);
        result.latency_planned = lat.from_plan.as_ref().map(crate::measure::latency::stats);
        result.timeline = crate::measure::latency::timeline(ctx.plan, &runs, &report);
        result.samples_unseen = lat.unseen;
        result.unseen_examples = lat.unseen_examples;
        result.samples_by_scan = lat.by_scan;
        result.deletes_coalesced = lat.absent_never_seen;
        result.probe_events = report.events;
        result.probe = probe_kind.to_string();
        result.probe_overflows = report.overflows;
        let running = (s.measure_kmem && sut_proc.is_some()).then(crate::host::kmem::settled);
        if let Some(p) = sut_proc.as_mut() {
            crate::session::finish::finish_sut(p, &mut tracker, daemon.as_mut(), &mut result);
        }
        if let Some(running) = running {
            crate::session::finish::kmem_pinned(running, &mut result);
        }
        crate::session::finish::startup_times(&mut result);
        drop(knobs);
        result.diff = verify::compare(
            &src,
            &replica,
            CompareOptions {
                munged_links_ok: munged,
                ..CompareOptions::default()
            },
        );
        if spec.is_some() {
            crate::session::finish::floor(&src, &floor_dir, daemon.as_ref(), &mut result);
        }
        crate::session::finish::judge(s, spec.is_none(), &mut result);
        if result.outcome == Outcome::Skipped && spec.is_some_and(|x| sut::must_run(x.kind)) {
            result.outcome = Outcome::Failed;
            let why = result.reasons.join("; ");
            result.reasons = vec![format!("not run: {why}")];
        }
        Ok(lat.from_done)
    })?;
    if let Some(d) = daemon.as_mut() {
        d.stop();
    }
    Ok((result, hist))
}

type Driven = (Vec<PhaseRun>, Option<SutProcess>, TreeTracker);

/// Starts the syncer, waits until ready, runs the storm, waits for convergence and idle.
fn drive(
    ctx: &Ctx,
    spec: Option<&SutSpec>,
    env: &SutEnv,
    clock: &Clock,
    live: &ProbeLive,
    r: &mut RunResult,
) -> std::io::Result<Driven> {
    let s = ctx.scenario;
    let mut sut_proc = None;
    let mut tracker = TreeTracker::default();
    if let Some(spec) = spec {
        // The classic loop has no initial sync (it rsyncs only on events): like an admin who
        // runs one copy before starting it, the harness seeds its replica with the tree.
        let seeded = spec.kind == SutKind::SeedScript;
        if seeded {
            seed_replica(env.src, env.replica)?;
        }
        match sut::launch(spec, env)? {
            Launch::Skipped(reason) => {
                r.outcome = Outcome::Skipped;
                r.reasons.push(reason);
                return Ok((Vec::new(), None, tracker));
            }
            Launch::Started(p) => {
                tracker = TreeTracker::new(p.pid);
                r.flags = p.flags.clone();
                if seeded {
                    r.flags
                        .push_str("; replica seeded with `cp -a` of the tree first");
                }
                sut_proc = Some(p);
            }
        }
        let p = sut_proc.as_mut().expect("started above");
        let t0 = clock.now_ns();
        match wait_ready(ctx, p, &mut tracker, env, clock) {
            Ok(equal_at) => r.ready_ns = equal_at - t0,
            Err(why) => {
                r.outcome = Outcome::Failed;
                r.reasons.push(why.to_string());
                return Ok((Vec::new(), sut_proc, tracker));
            }
        }
    }
    let storm = Storm {
        plan: ctx.plan,
        storm_s: ctx.scenario.timeouts.storm_s,
        stop: ctx.stop,
        bars: ctx.bars,
    };
    let runs = run_storm(&storm, env.src, clock, sut_proc.as_ref(), &mut tracker);
    let storm_start = runs.first().map_or(0, |x| x.start_ns);
    let storm_end = runs.last().map_or(0, |x| x.end_ns);
    r.storm_ns = storm_end - storm_start;
    r.paused_ns = ctx
        .plan
        .phases
        .iter()
        .zip(&runs)
        .filter(|(p, _)| p.pause_sut)
        .map(|(_, x)| x.end_ns - x.start_ns)
        .sum();
    r.storm_ops = runs
        .iter()
        .map(|x| x.done_ns.iter().filter(|&&t| t > 0).count() as u64)
        .sum();
    r.ops_per_s = r.storm_ops as f64 / (r.storm_ns.max(1) as f64 / 1e9);
    r.op_errors = runs.iter().map(|x| x.errors).sum();
    if let Some(e) = runs.iter().find_map(|x| x.first_error.clone()) {
        r.reasons.push(format!("generator error: {e}"));
    }
    r.gen_lag_max_ns = runs.iter().map(|x| x.lag_max_ns).max().unwrap_or(0);
    r.gen_lag_mean_ns = runs.iter().map(|x| x.lag_sum_ns).sum::<u64>() / r.storm_ops.max(1);
    let converge_limit = spec
        .and_then(|x| x.converge_timeout_s)
        .unwrap_or(s.timeouts.converge_s);
    let opts = CompareOptions {
        munged_links_ok: env.daemon.is_some(),
        ..CompareOptions::default()
    };
    r.converge_ns = wait::converge(
        clock,
        storm_end,
        Duration::from_secs_f64(converge_limit),
        live,
        env.src,
        env.replica,
        opts,
        ctx.stop,
    );
    if sut_proc.is_some() {
        r.idle_ns = wait::idle(
            clock,
            storm_end,
            Duration::from_secs_f64(s.timeouts.idle_s),
            &mut tracker,
            ctx.stop,
        );
    }
    Ok((runs, sut_proc, tracker))
}

/// Copies the pre-storm tree into the replica with `cp -a` (modes and ns mtimes kept).
fn seed_replica(src: &Path, replica: &Path) -> std::io::Result<()> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(src.join("."))
        .arg(replica)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "seeding the replica with `cp -a {}/. {}` failed ({status}): check free space",
            src.display(),
            replica.display()
        )))
    }
}

/// Waits for the syncer's own sign of readiness, then until a full compare finds the
/// replica equal to the pre-storm tree; returns the clock time that compare started.
/// Without the compare a syncer's first copy races the storm: a copy loop that never
/// deletes copied a tree whose deletes had already happened and passed a delete storm.
fn wait_ready(
    ctx: &Ctx,
    p: &mut SutProcess,
    tracker: &mut TreeTracker,
    env: &SutEnv,
    clock: &Clock,
) -> Result<u64, ReadyError> {
    let timeout = Duration::from_secs_f64(ctx.scenario.timeouts.ready_s);
    let deadline = std::time::Instant::now() + timeout;
    let readiness = p.readiness.clone();
    let log = p.log_file.clone();
    let alive = |p: &mut SutProcess| match p.exited() {
        Some(status) => Err(ReadyError::Exited {
            status,
            log_tail: log_tail(&log),
            log: log.clone(),
        }),
        None => Ok(()),
    };
    let signalled = wait::until(timeout, ctx.stop, || {
        alive(p)?;
        tracker.sample();
        Ok(match &readiness {
            Readiness::StatusFile(path) => crate::session::finish::read_status(path)
                .is_some_and(|v| v["ready"] == serde_json::Value::Bool(true)),
            Readiness::Watches(n) => crate::host::watches::held_by(&tracker.live_pids()) >= *n,
        })
    })?;
    if !signalled {
        return Err(ReadyError::NoSign {
            timeout,
            readiness: format!("{readiness:?}"),
            log: log.clone(),
        });
    }
    let opts = CompareOptions {
        munged_links_ok: env.daemon.is_some(),
        ..CompareOptions::default()
    };
    let (mut equal_at, mut last) = (0, None);
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let equal = wait::until(left, ctx.stop, || {
        alive(p)?;
        tracker.sample();
        equal_at = clock.now_ns();
        let diff = verify::compare(env.src, env.replica, opts);
        let done = diff.is_equal();
        last = Some(diff);
        Ok(done)
    })?;
    if !equal {
        return Err(ReadyError::NeverEqual {
            timeout,
            diff: last.map_or_else(|| "not compared".into(), |d| d.describe()),
        });
    }
    Ok(equal_at)
}

/// The last lines of a syncer's log, for error messages.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}
