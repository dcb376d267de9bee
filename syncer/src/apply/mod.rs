//! One target's applier thread: batches taken from its queue (`crate::queue::shared`) and
//! applied to the target. An idle applier takes the dirty set at once; a busy one
//! lets the next batch grow (adaptive batching). Transient failures back off exponentially.
//! Subtree compares (rescans) run here too, so what they find is re-keyed through renames
//! that arrive meanwhile (see `pending`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use crate::barrier::registry::Barriers;
use crate::change::Mark;
use crate::control::Control;
use crate::error::{EXIT_FAILURE, EXIT_GUARD};
use crate::guard::{SourceGuard, SourceLost};
use crate::queue::pending::{Batch, Pending, RescanJob};
use crate::queue::shared::{IDLE_TICK, TargetQueue};
use crate::replica::{Outcome, Target, Trouble};
use crate::scan::Found;
use crate::stats::{TargetStats, unix_ns};

mod backoff;
mod escalate;
use backoff::Backoff;
use escalate::escalate_repeated_again;

/// Paths marked per lock hold when a reconcile reports what it found.
const MARK_CHUNK: usize = 4096;

pub struct Applier {
    pub queue: Arc<TargetQueue>,
    pub target: Arc<dyn Target>,
    pub control: Arc<Control>,
    pub stats_index: usize,
    pub stats: Arc<crate::stats::Stats>,
    /// Checked before every batch: no batch runs once SOURCE went away.
    pub guard: Arc<SourceGuard>,
    /// Where passed sync barriers are acknowledged (this target is number `stats_index`).
    pub barriers: Arc<Barriers>,
}

/// Stops the syncer without applying anything more, once, however many threads saw it.
pub fn halt_for_lost_source(control: &Control, lost: &SourceLost) {
    if control.halt(EXIT_GUARD) {
        crate::error!("{lost}");
    }
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
    fn next_batch(&self, paced_until_ns: u64) -> Option<Batch> {
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
                pending = queue.wait_for_work(pending, wait);
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
            self.acknowledge_barriers(&mut pending);
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
                queue.notify_idle();
            }
            let wait = pending.next_due_ns(now).map_or(IDLE_TICK, |due| {
                Duration::from_nanos(due - now).min(IDLE_TICK)
            });
            pending = queue.wait_for_work(pending, wait);
        }
    }

    /// Acknowledges the sync barriers this target has passed; none while a reconcile is
    /// requested or running (it may still find changes made before them).
    fn acknowledge_barriers(&self, pending: &mut Pending) {
        if !pending.has_barriers() || self.control.reconciling() {
            return;
        }
        let passed = pending.passed_barriers();
        if !passed.is_empty() {
            self.barriers.passed(self.stats_index, passed);
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
                Err(Trouble::Refused(why)) => {
                    outcome.refused.get_or_insert(why);
                    outcome.failed_rescans.push(job.clone());
                }
            }
        }
        found
    }

    /// The delay before failed work is tried again (backoff.rs), and whether this batch
    /// ended a spell of failures. While a path is `escalated`, a batch that went through (the
    /// widened compare, say) keeps the spell going: the path has not recovered.
    fn backoff(
        &self,
        batch: &Batch,
        outcome: &Outcome,
        spell: &mut Backoff,
        escalated: bool,
    ) -> (u64, bool) {
        if !outcome.backoff && escalated {
            return (0, false);
        }
        if !outcome.backoff {
            // A batch without held-back work proves nothing while failing (on a read-only
            // replica one that changes nothing goes through): it neither ends the spell nor
            // lets held-back work go, which would only fail again.
            let recovered = if batch.retries {
                spell.succeeded()
            } else {
                None
            };
            if let Some(failures) = recovered {
                crate::info!(
                    "{}: recovered after {failures} failed attempts",
                    self.target.name()
                );
            }
            self.target_stats()
                .last_success_unix_ns
                .store(unix_ns(SystemTime::now()), Relaxed);
            return (0, recovered.is_some());
        }
        let retry = spell.failed(self.control.now_ns());
        if retry.report {
            crate::warn!(
                "{}: {} paths not applied ({}); retrying with backoff (now {} ms)",
                self.target.name(),
                outcome.retry.len() + outcome.failed_rescans.len(),
                outcome.first_error.as_deref().unwrap_or("transient error"),
                retry.delay_ns / 1_000_000
            );
        }
        (retry.delay_ns, false)
    }

    /// The applier thread's body.
    pub fn run(self) {
        crate::sys::sched::become_worker();
        let mut spell = Backoff::default();
        let mut again = HashMap::new();
        let pace = self.target.min_batch_interval().as_nanos() as u64;
        let mut paced_until_ns = 0;
        while let Some(batch) = self.next_batch(paced_until_ns) {
            paced_until_ns = self.control.now_ns() + pace;
            // Between this check and the batch's deletes lies only the time the batch takes
            // to start; the mount watch covers SOURCE going away while nothing is applied.
            if let Err(lost) = self.guard.check() {
                halt_for_lost_source(&self.control, &lost);
                break;
            }
            let stats = self.target_stats();
            stats.batches.fetch_add(1, Relaxed);
            let mut outcome = self.target.apply(&batch, stats);
            let found = self.run_rescans(&batch, &mut outcome);
            if let Some(why) = outcome.fatal.take() {
                crate::error!("{why}");
                self.control.fail(EXIT_FAILURE);
            }
            // What was refused stays pending (a restart with a higher cap applies it).
            if let Some(why) = outcome.refused.take()
                && self.control.halt(EXIT_GUARD)
            {
                crate::error!("{why}");
            }
            let escalated = escalate_repeated_again(&batch.paths, &mut outcome, &mut again);
            let (delay, recovered) = self.backoff(&batch, &outcome, &mut spell, escalated);
            let now = self.control.now_ns();
            for (changed_since_ns, result) in found {
                // In chunks, so the reader never waits long for the lock when a reconcile
                // found a whole tree (the batch stays in flight, so its rename-log position stays
                // valid).
                for chunk in result.dirty.chunks(MARK_CHUNK) {
                    self.queue
                        .lock()
                        .mark_since(chunk.to_vec(), Mark::Changed, &batch, now);
                }
                let mark = Mark::Rescan { changed_since_ns };
                let mut pending = self.queue.lock();
                pending.mark_since(result.rescan, mark, &batch, now);
                pending.denied(&batch, result.denied, now);
            }
            let mut pending = self.queue.lock();
            if recovered {
                // The target works again: what earlier failures held back goes now, not at
                // the end of its backoff.
                pending.release_deferred(now);
            }
            let rescan = Mark::Rescan {
                changed_since_ns: None,
            };
            pending.mark_since(outcome.rescan, rescan, &batch, now);
            for job in outcome.failed_rescans {
                let mark = Mark::Rescan {
                    changed_since_ns: job.changed_since_ns,
                };
                let path = pending.mark_since(vec![job.subtree], mark, &batch, now);
                pending.defer(&path[0], now + delay);
            }
            pending.vanished(&batch, outcome.vanished, now);
            pending.denied(&batch, outcome.denied, now);
            pending.finish(&batch, outcome.retry, now, now + delay);
            self.acknowledge_barriers(&mut pending);
            self.publish(&pending);
            drop(pending);
            // Another applier of this target may wait for this batch (a barrier, or paths it
            // held).
            self.queue.wake();
        }
        // Let anyone waiting for idleness re-check (we are done).
        self.queue.notify_idle();
    }
}
