//! One target's queue and its applier thread: `Change`s in (from the reader and reconciles),
//! batches applied to the target out. An idle applier takes the dirty set at once; a busy one
//! lets the next batch grow (adaptive batching). Transient failures back off exponentially.
//! Subtree compares (rescans) run here too, so what they find is re-keyed through renames
//! that arrive meanwhile (see `pending`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::backend::Change;
use crate::control::Control;
use crate::pending::Batch;
use crate::pending::{Mark, Pending, RescanJob, Timing};
use crate::stats::{TargetStats, unix_ns};
use crate::target::{Found, Outcome, Target, Trouble};

/// Longest sleep of an applier with nothing due, so a stop is noticed even without a wakeup.
const IDLE_TICK: Duration = Duration::from_millis(500);
const BACKOFF_FIRST_NS: u64 = 100_000_000;
/// Paths marked per lock hold when a reconcile reports what it found.
const MARK_CHUNK: usize = 4096;
const BACKOFF_MAX_NS: u64 = 10_000_000_000;
/// Rounds in a row a path may come back for an immediate retry (the source changed under
/// a run) before its retry is slowed, reported, and widened to a compare of its parent:
/// a retry that can never succeed must neither spin nor stay silent.
const AGAIN_LIMIT: u32 = 4;

pub struct TargetQueue {
    pending: Mutex<Pending>,
    work: Condvar,
    idle: Condvar,
    /// Wall-clock ns of the last moment this target had caught up (0: never this run).
    pub caught_up_unix_ns: AtomicU64,
    /// Wall-clock ns when the last completed whole-tree compare started: every change before
    /// it was found by that compare, so the next one's ctime guard can start there. Kept in
    /// memory only (its findings may not be applied yet, unlike the checkpoint's).
    pub compared_unix_ns: AtomicU64,
}

impl TargetQueue {
    pub fn new(timing: Timing) -> Self {
        Self {
            pending: Mutex::new(Pending::new(timing)),
            work: Condvar::new(),
            idle: Condvar::new(),
            caught_up_unix_ns: AtomicU64::new(0),
            compared_unix_ns: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds changes; the caller clones them for every target but the last, which takes the
    /// reader's own copies (no allocation per event for a single target).
    pub fn push(&self, changes: impl IntoIterator<Item = Change>, now_ns: u64) {
        let mut pending = self.lock();
        for change in changes {
            match change {
                Change::Mark(path, mark) => pending.mark(path, mark, now_ns),
                Change::Rename(rename) => pending.rename(rename, now_ns),
            }
        }
        drop(pending);
        self.work.notify_one();
    }

    /// Marks one path (a reconcile request).
    pub fn mark(&self, path: PathBuf, mark: Mark, now_ns: u64) {
        self.lock().mark(path, mark, now_ns);
        self.work.notify_one();
    }

    /// Blocks until nothing is dirty or in flight (or a stop is requested).
    pub fn wait_idle(&self, control: &Control) {
        let mut pending = self.lock();
        while !pending.is_idle() && !control.stopping() {
            pending = self
                .idle
                .wait_timeout(pending, IDLE_TICK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn wake(&self) {
        self.work.notify_all();
    }
}

pub struct Applier {
    pub queue: Arc<TargetQueue>,
    pub target: Arc<dyn Target>,
    pub control: Arc<Control>,
    pub stats_index: usize,
    pub stats: Arc<crate::stats::Stats>,
}

/// A compare walk longer than this logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Runs a target's compare walk, logging progress every 2 s for big trees.
fn walk_with_progress(target: &dyn Target, job: &RescanJob) -> Result<Found, Trouble> {
    let progress = AtomicU64::new(0);
    let started = Instant::now();
    let found = std::thread::scope(|scope| {
        let walker =
            scope.spawn(|| target.reconcile(&job.subtree, job.changed_since_ns, &progress));
        let mut next_report = started + PROGRESS_EVERY;
        while !walker.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
            if Instant::now() >= next_report {
                crate::info!(
                    "reconcile of {} {:?}: {} entries compared",
                    target.name(),
                    job.subtree,
                    progress.load(Relaxed)
                );
                next_report += PROGRESS_EVERY;
            }
        }
        walker
            .join()
            .unwrap_or_else(|_| Err(Trouble::Transient("reconcile walk panicked".into())))
    })?;
    crate::debug!(
        "reconcile of {} {:?}: {} entries compared, {} differ, {:.3} s",
        target.name(),
        job.subtree,
        progress.load(Relaxed),
        found.dirty.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(found)
}

impl Applier {
    fn target_stats(&self) -> &TargetStats {
        &self.stats.targets[self.stats_index]
    }

    /// Waits for the next batch; None when stopping and drained (or out of drain time).
    fn next_batch(&self, paced_until_ns: u64) -> Option<crate::pending::Batch> {
        let queue = &self.queue;
        let mut pending = queue.lock();
        loop {
            let now = self.control.now_ns();
            let stopping = self.control.stopping();
            if stopping && self.control.drain_expired() {
                return None;
            }
            if now < paced_until_ns && !stopping {
                // Busy: let the next batch gather until the target's pace allows a run.
                let wait = Duration::from_nanos(paced_until_ns - now);
                pending = queue
                    .work
                    .wait_timeout(pending, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            // When stopping, deferred paths (quiet periods, backoff) are due at once.
            let horizon = if stopping {
                now + 3_600_000_000_000
            } else {
                now
            };
            if let Some(batch) = pending.take_batch(horizon) {
                self.publish(&pending);
                return Some(batch);
            }
            self.publish(&pending);
            if pending.is_idle() {
                if stopping {
                    return None;
                }
                if !self.control.reconciling() && !self.stats.watch_limit_hit.load(Relaxed) {
                    queue
                        .caught_up_unix_ns
                        .store(unix_ns(SystemTime::now()), Relaxed);
                }
                queue.idle.notify_all();
            }
            let wait = pending.next_due_ns(now).map_or(IDLE_TICK, |due| {
                Duration::from_nanos(due - now).min(IDLE_TICK)
            });
            pending = queue
                .work
                .wait_timeout(pending, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn publish(&self, pending: &Pending) {
        let stats = self.target_stats();
        stats.backlog.store(pending.backlog() as u64, Relaxed);
        stats.in_flight.store(pending.in_flight() as u64, Relaxed);
    }

    /// Compares the batch's subtrees; failed compares come back for a retry with backoff.
    fn run_rescans(&self, batch: &Batch, outcome: &mut Outcome) -> Vec<(Option<i128>, Found)> {
        let mut found = Vec::new();
        for job in &batch.rescans {
            self.stats.reconciles.fetch_add(1, Relaxed);
            let started = unix_ns(SystemTime::now());
            match walk_with_progress(self.target.as_ref(), job) {
                Ok(result) => {
                    if job.subtree.as_os_str().is_empty() && job.changed_since_ns.is_some() {
                        self.queue.compared_unix_ns.fetch_max(started, Relaxed);
                    }
                    found.push((job.changed_since_ns, result));
                }
                Err(Trouble::Transient(why)) => {
                    self.target_stats().errors.fetch_add(1, Relaxed);
                    outcome.backoff = true;
                    outcome.first_error.get_or_insert(why);
                    outcome.failed_rescans.push(job.clone());
                }
                Err(Trouble::Fatal(why)) => {
                    outcome.fatal.get_or_insert(why);
                }
            }
        }
        found
    }

    /// The delay before failed work is tried again: exponential from 0.2 s to 10 s. While
    /// a path is `escalated`, a batch that went through (the widened compare, say) keeps
    /// the count: the path has not recovered.
    fn backoff(&self, outcome: &Outcome, failures: &mut u32, escalated: bool) -> u64 {
        if !outcome.backoff && escalated {
            return 0;
        }
        if !outcome.backoff {
            if *failures > 0 {
                crate::info!(
                    "{}: recovered after {failures} failed attempts",
                    self.target.name()
                );
            }
            *failures = 0;
            self.target_stats()
                .last_success_unix_ns
                .store(unix_ns(SystemTime::now()), Relaxed);
            return 0;
        }
        *failures += 1;
        let delay = BACKOFF_FIRST_NS
            .saturating_mul(1 << (*failures).min(16))
            .min(BACKOFF_MAX_NS);
        if *failures == 1 || (delay == BACKOFF_MAX_NS && *failures % 10 == 0) {
            crate::warn!(
                "{}: {} paths not applied ({}); retrying with backoff (now {} ms)",
                self.target.name(),
                outcome.retry.len() + outcome.failed_rescans.len(),
                outcome.first_error.as_deref().unwrap_or("transient error"),
                delay / 1_000_000
            );
        }
        delay
    }

    /// The applier thread's body.
    pub fn run(self) {
        crate::sys::sched::become_worker();
        let mut failures: u32 = 0;
        let mut again = HashMap::new();
        let pace = self.target.min_batch_interval().as_nanos() as u64;
        let mut paced_until_ns = 0;
        while let Some(batch) = self.next_batch(paced_until_ns) {
            paced_until_ns = self.control.now_ns() + pace;
            let stats = self.target_stats();
            stats.batches.fetch_add(1, Relaxed);
            let mut outcome = self.target.apply(&batch, stats);
            let found = self.run_rescans(&batch, &mut outcome);
            if let Some(why) = outcome.fatal.take() {
                crate::error!("{why}");
                self.control.fail(1);
            }
            let escalated = escalate_repeated_again(&batch.paths, &mut outcome, &mut again);
            let delay = self.backoff(&outcome, &mut failures, escalated);
            let now = self.control.now_ns();
            let seq = batch.rename_seq;
            for (changed_since_ns, result) in found {
                // In chunks, so the reader never waits long for the lock when a reconcile
                // found a whole tree (the batch stays in flight, so `seq` stays valid).
                for chunk in result.dirty.chunks(MARK_CHUNK) {
                    self.queue
                        .lock()
                        .mark_since(chunk.to_vec(), Mark::Changed, seq, now);
                }
                let mark = Mark::Rescan { changed_since_ns };
                self.queue.lock().mark_since(result.rescan, mark, seq, now);
            }
            let mut pending = self.queue.lock();
            let rescan = Mark::Rescan {
                changed_since_ns: None,
            };
            pending.mark_since(outcome.rescan, rescan, seq, now);
            for job in outcome.failed_rescans {
                let mark = Mark::Rescan {
                    changed_since_ns: job.changed_since_ns,
                };
                let path = pending.mark_since(vec![job.subtree], mark, seq, now);
                pending.defer(&path[0], now + delay);
            }
            pending.vanished(&batch, outcome.vanished, now);
            pending.finish(&batch, outcome.retry, now, now + delay);
            self.publish(&pending);
            drop(pending);
            // Another applier of this target may wait for this batch (a barrier, or paths it
            // held).
            self.queue.wake();
        }
        // Let anyone waiting for idleness re-check (we are done).
        self.queue.idle.notify_all();
    }
}

/// A path retried at once round after round is slowed down and widened: its parent
/// directory is compared whole, which settles whatever made the narrow run fail.
/// Counted per path, so a long storm whose rounds each retry different paths (files
/// vanishing under rsync) is not slowed. A path's count ends only when a batch holding it
/// applies it (a batch without it, such as the widened compare, says nothing about it), so
/// a path that keeps failing stays escalated and its backoff keeps growing. Returns
/// whether some path is still escalated, for [`Applier::backoff`].
fn escalate_repeated_again(
    batch: &[PathBuf],
    outcome: &mut Outcome,
    again: &mut HashMap<PathBuf, u32>,
) -> bool {
    if outcome.backoff {
        again.clear();
        return false;
    }
    if !again.is_empty() {
        let retried: HashSet<&Path> = outcome.retry.iter().map(PathBuf::as_path).collect();
        for path in batch {
            if !retried.contains(path.as_path()) {
                again.remove(path);
            }
        }
    }
    let mut stuck = Vec::new();
    let mut most = 0;
    for path in &outcome.retry {
        let count = again.entry(path.clone()).or_insert(0);
        *count = count.saturating_add(1);
        if *count >= AGAIN_LIMIT {
            most = most.max(*count);
            stuck.push(widened(path));
        }
    }
    if stuck.is_empty() {
        return again.values().any(|&count| count >= AGAIN_LIMIT);
    }
    stuck.sort();
    stuck.dedup();
    let why = outcome
        .first_error
        .take()
        .unwrap_or_else(|| "the source changed during each run".into());
    outcome.first_error = Some(format!(
        "failed {most} times in a row: {why}; comparing {} directories whole",
        stuck.len()
    ));
    outcome.rescan.extend(stuck);
    outcome.backoff = true;
    true
}

/// What a stuck path's escalation compares whole: its parent, except for a path at the
/// top, whose parent is the whole tree (a full reconcile for one stuck name).
fn widened(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch that came back as `outcome`: just the paths it retries.
    fn batch_of(outcome: &Outcome) -> Vec<PathBuf> {
        outcome.retry.clone()
    }

    fn again_round(paths: &[&str]) -> Outcome {
        Outcome {
            retry: paths.iter().map(PathBuf::from).collect(),
            first_error: Some("rsync: file has vanished".into()),
            ..Outcome::default()
        }
    }

    #[test]
    fn a_path_retried_at_once_round_after_round_is_widened_and_slowed() {
        let mut again = HashMap::new();
        for _ in 1..AGAIN_LIMIT {
            let mut outcome = again_round(&["d/a", "d/b"]);
            escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
            assert!(!outcome.backoff && outcome.rescan.is_empty());
        }
        let mut outcome = again_round(&["d/a", "d/b"]);
        escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
        assert!(outcome.backoff);
        assert_eq!(outcome.rescan, vec![PathBuf::from("d")]);
        assert!(outcome.first_error.unwrap().contains("times in a row"));
    }

    #[test]
    fn a_path_that_keeps_failing_stays_slowed_until_it_stops() {
        let mut again = HashMap::new();
        for round in 1..3 * AGAIN_LIMIT {
            let mut outcome = again_round(&["d/a"]);
            escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
            assert_eq!(outcome.backoff, round >= AGAIN_LIMIT, "round {round}");
        }
        // The widened compare goes through: d/a is still escalated.
        let mut outcome = Outcome::default();
        assert!(escalate_repeated_again(
            &[PathBuf::from("d")],
            &mut outcome,
            &mut again
        ));
        // A batch holding d/a applies it: its count ends.
        let mut outcome = Outcome::default();
        let batch = [PathBuf::from("d/a")];
        assert!(!escalate_repeated_again(&batch, &mut outcome, &mut again));
        assert!(again.is_empty());
    }

    #[test]
    fn a_stuck_path_at_the_top_is_compared_itself_not_the_whole_tree() {
        let mut again = HashMap::new();
        let mut outcome = Outcome::default();
        for _ in 0..AGAIN_LIMIT {
            outcome = again_round(&["top"]);
            escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
        }
        assert_eq!(outcome.rescan, vec![PathBuf::from("top")]);
    }

    #[test]
    fn rounds_retrying_different_paths_are_not_slowed() {
        let mut again = HashMap::new();
        for round in 0..3 * AGAIN_LIMIT {
            let mut outcome = again_round(&[&format!("f{round}")]);
            escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
            assert!(!outcome.backoff && outcome.rescan.is_empty());
        }
    }

    #[test]
    fn a_round_with_backoff_starts_the_count_again() {
        let mut again = HashMap::new();
        for round in 0..3 * AGAIN_LIMIT {
            let mut outcome = again_round(&["a"]);
            outcome.backoff = round % 2 == 1;
            escalate_repeated_again(&batch_of(&outcome), &mut outcome, &mut again);
            assert!(outcome.rescan.is_empty());
        }
    }
}
