//! One point of a tune grid or a rate sweep: the base scenario with a queue size and a rate
//! in, that variant run once against one syncer (the same session as `harness run`), its
//! results folder written (README.md, summary.md, runs.csv, run.json, .hgrm), its
//! `RunResult` out. `Bench` owns what the points share: the work dir, the bars, the Ctrl-C flag.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::MultiProgress;

use super::TuneError;
use crate::export::{ResultsDir, RunInfo};
use crate::scenario::{ReplicaFs, Scenario, SutSpec};
use crate::session::result::{Outcome, RunResult};
use crate::session::{self, Ctx};

/// The scenario with `fs.inotify.max_queued_events` = `queue` (when given) and every phase's
/// open-loop `rate` = `rate`. A phase with `duration_ms` then plans rate x duration ops; one
/// with `ops` keeps its count (and lasts ops / rate).
pub fn variant(base: &Scenario, queue: Option<u64>, rate: f64) -> Result<Scenario, TuneError> {
    let mut s = base.clone();
    if let Some(q) = queue {
        s.kernel.max_queued_events = Some(q);
    }
    for phase in &mut s.phases {
        phase.rate = rate;
    }
    s.repeats = 1;
    s.calibrate = false;
    let what = match queue {
        Some(q) => format!("max_queued_events = {q}, rate = {rate} ops/s"),
        None => format!("rate = {rate} ops/s"),
    };
    s.description = format!("{} (this point: {what})", s.description.trim());
    crate::scenario::check::validate(&s).map_err(|(key, why)| TuneError::Override {
        scenario: s.name.clone(),
        key,
        why,
    })?;
    Ok(s)
}

/// What the points of one tune or sweep share; the work dir is removed on drop.
pub struct Bench<'a> {
    pub repo_root: PathBuf,
    pub workdir: PathBuf,
    pub stop: &'a AtomicBool,
    pub bars: MultiProgress,
    command: String,
    scenario_file: String,
    tools: Vec<(String, String)>,
}

impl<'a> Bench<'a> {
    /// `workdir_root`: where the sources live (default /dev/shm when present: a storm of tens
    /// of thousands of files, created and deleted per point, is cheap on tmpfs and slow on
    /// the journal-less ext4 here, whose mass deletes slow later creates).
    pub fn new(
        workdir_root: Option<&Path>,
        scenario_file: &Path,
        command: String,
        stop: &'a AtomicBool,
    ) -> Result<Self, TuneError> {
        let root = match workdir_root {
            Some(d) => d.to_path_buf(),
            None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        };
        let workdir = root.join(format!("harness-tune-{}", std::process::id()));
        std::fs::create_dir_all(&workdir).map_err(|source| TuneError::WorkDir {
            path: workdir.clone(),
            source,
        })?;
        Ok(Self {
            repo_root: crate::host::env::repo_root(),
            workdir,
            stop,
            bars: MultiProgress::new(),
            command,
            scenario_file: scenario_file.display().to_string(),
            tools: crate::host::env::tool_versions(),
        })
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn info(&self, s: &Scenario, storm_ops: u64, tree_dirs: u64) -> RunInfo {
        RunInfo {
            command: self.command.clone(),
            scenario_file: self.scenario_file.clone(),
            git_revision: crate::host::env::git_revision(&self.repo_root),
            kernel: crate::host::env::kernel(),
            cpu: crate::host::env::cpu(),
            memory: crate::host::env::memory(),
            workdir_fs: crate::host::env::filesystem(&self.workdir),
            replica_fs: match s.replica_fs {
                ReplicaFs::Same => "same as the work dir".into(),
                ReplicaFs::Tmpfs => crate::host::env::filesystem(Path::new("/dev/shm")),
                ReplicaFs::LoopExt4 => format!(
                    "ext4 without journal on a loop-mounted {} MiB image in the work dir",
                    s.replica_mib
                ),
            },
            sysctls: crate::host::kernel::snapshot(),
            tools: self.tools.clone(),
            date: crate::util::fmt::today(),
            host: crate::host::env::hostname(),
            storm_ops,
            tree_dirs,
        }
    }

    /// Runs `s` once against `spec`; writes its results folder at `dir`. A run that could not
    /// be set up is a failed result with the reason, so the grid goes on.
    pub fn run(&self, s: &Scenario, spec: &SutSpec, dir: &Path) -> Result<RunResult, TuneError> {
        let plan = crate::storm::plan::plan(s);
        let info = self.info(s, plan.storm_ops(), plan.dirs.len() as u64);
        std::fs::create_dir_all(dir).map_err(TuneError::io("create", dir))?;
        let results = ResultsDir {
            path: dir.to_path_buf(),
        };
        let ctx = Ctx {
            scenario: s,
            plan: &plan,
            workdir: &self.workdir,
            repo_root: &self.repo_root,
            stop: self.stop,
            keep: false,
            bars: Some(&self.bars),
        };
        let mut r = match session::run_one(&ctx, Some(spec), 1) {
            Ok((r, h)) => {
                if r.outcome != Outcome::Skipped {
                    results.write_hgrm(&r, &h).map_err(TuneError::Export)?;
                }
                r
            }
            Err(e) => {
                let mut r = RunResult::skipped(
                    spec.label(),
                    format!("{:?}", spec.kind).to_lowercase(),
                    1,
                    format!("run error: {e}"),
                );
                r.outcome = Outcome::Failed;
                r
            }
        };
        if self.stopped() {
            r.outcome = Outcome::Failed;
            r.reasons.insert(
                0,
                "interrupted (Ctrl-C): the figures below are partial".into(),
            );
        }
        results
            .write_all(&info, s, None, std::slice::from_ref(&r))
            .map_err(TuneError::io("write results in", dir))?;
        Ok(r)
    }
}

impl Drop for Bench<'_> {
    fn drop(&mut self) {
        // Only the harness-tune-<pid> folder made above; each run's own dirs are gone already.
        if let Err(e) = std::fs::remove_dir_all(&self.workdir) {
            eprintln!(
                "harness: could not remove {} ({e}); remove it by hand",
                self.workdir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_overrides_the_queue_and_every_phase_rate() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tune-queue.toml"),
        )
        .expect("tune-queue.toml");
        let base = crate::scenario::parse(&text, "tune-queue.toml").expect("valid");
        let v = variant(&base, Some(256), 8000.0).expect("valid variant");
        assert_eq!(v.kernel.max_queued_events, Some(256));
        assert!(v.phases.iter().all(|p| p.rate == 8000.0));
        // duration_ms phases scale with the rate: 8000 ops/s for the phase's duration.
        let plan = crate::storm::plan::plan(&v);
        let ms = base.phases[0].duration_ms;
        assert_eq!(plan.storm_ops(), 8000 * ms / 1000);
        let v = variant(&base, None, 500.0).expect("valid variant");
        assert_eq!(v.kernel.max_queued_events, base.kernel.max_queued_events);
    }
}
