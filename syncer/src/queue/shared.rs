//! One target's dirty set behind a lock, shared by the reader (which marks), reconciles
//! (which mark what they find) and the target's appliers (which take batches).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::pending::{Pending, Timing};
use crate::change::{COMPARE_WHOLE, Change, Mark, Rename};
use crate::control::Control;
use crate::exclude::ExcludeSet;

/// Longest sleep of an applier with nothing due, so a stop is noticed even without a wakeup.
pub const IDLE_TICK: Duration = Duration::from_millis(500);

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
    /// The target's excludes: the global ones (the backend already leaves those out) and
    /// its own, which only this queue can drop.
    excludes: Arc<ExcludeSet>,
    /// Whether changes are checked against `excludes` on the way in: when the target has
    /// patterns of its own, or a reload changed any (the backend still watches directories
    /// excluded since).
    filtering: AtomicBool,
}

impl TargetQueue {
    pub fn new(timing: Timing, excludes: Arc<ExcludeSet>, filtering: bool) -> Self {
        Self {
            pending: Mutex::new(Pending::new(timing)),
            work: Condvar::new(),
            idle: Condvar::new(),
            caught_up_unix_ns: AtomicU64::new(0),
            compared_unix_ns: AtomicU64::new(0),
            excludes,
            filtering: AtomicBool::new(filtering),
        }
    }

    /// From now on every change is checked against the target's excludes (after a reload).
    pub fn filter_from_now(&self) {
        self.filtering.store(true, Relaxed);
    }

    /// A change as this target sees it: none where its excludes cover the path. A rename
    /// with one side excluded is the other side settled by state (gone, or there now).
    fn admit(&self, change: Change) -> Option<Change> {
        if !self.filtering.load(Relaxed) {
            return Some(change);
        }
        let covered = |path: &std::path::Path| self.excludes.covers(path);
        match change {
            Change::Mark(path, mark) => (!covered(&path)).then_some(Change::Mark(path, mark)),
            Change::Rename(Rename { from, to, is_dir }) => {
                let settle = |path| {
                    let mark = if is_dir { COMPARE_WHOLE } else { Mark::Changed };
                    Some(Change::Mark(path, mark))
                };
                match (covered(&from), covered(&to)) {
                    (false, false) => Some(Change::Rename(Rename { from, to, is_dir })),
                    (false, true) => settle(from),
                    (true, false) => settle(to),
                    (true, true) => None,
                }
            }
            barrier @ Change::Barrier(_) => Some(barrier),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps until work is marked or `wait` is over.
    pub fn wait_for_work<'a>(
        &self,
        pending: MutexGuard<'a, Pending>,
        wait: Duration,
    ) -> MutexGuard<'a, Pending> {
        self.work
            .wait_timeout(pending, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// Lets anyone waiting for idleness check again.
    pub fn notify_idle(&self) {
        self.idle.notify_all();
    }

    /// Adds changes; the caller clones them for every target but the last, which takes the
    /// reader's own copies (no allocation per event for a single target).
    pub fn push(&self, changes: impl IntoIterator<Item = Change>, now_ns: u64) {
        let mut pending = self.lock();
        for change in changes.into_iter().filter_map(|c| self.admit(c)) {
            match change {
                Change::Mark(path, mark) => pending.mark(path, mark, now_ns),
                Change::Rename(rename) => pending.rename(rename, now_ns),
                Change::Barrier(cookie) => pending.add_barrier(cookie, now_ns),
            }
        }
        drop(pending);
        self.work.notify_one();
    }

    /// Marks one path (a reconcile request).
    pub fn mark(&self, path: PathBuf, mark: Mark, now_ns: u64) {
        if self.filtering.load(Relaxed) && self.excludes.covers(&path) {
            return;
        }
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
