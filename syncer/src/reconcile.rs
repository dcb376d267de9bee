//! Reconciles: requests (overflow, rename fallback, watch-limit coverage) in, every target's
//! dirty set filled with what differs out. Runs on its own thread so events keep flowing; the
//! initial sync uses the same `reconcile_into` from the main thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::apply::TargetQueue;
use crate::backend::Backend;
use crate::control::Control;
use crate::stats::Stats;
use crate::target::Target;

/// One request for the reconciler thread.
#[derive(Debug, Clone)]
pub struct Request {
    pub subtree: PathBuf,
    /// Walk the source for missing watches first (after an overflow).
    pub recapture: bool,
    /// Re-copy files changed (ctime) since the target last caught up, minus the margin.
    pub ctime_guard: bool,
}

/// A reconcile longer than this logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Compares `subtree` for every target and marks what differs. `changed_since` gives, per
/// target, the ctime (ns since the epoch) from which files are re-copied regardless.
pub fn reconcile_into(
    subtree: &Path,
    targets: &[(Arc<dyn Target>, Arc<TargetQueue>)],
    changed_since: &dyn Fn(&TargetQueue) -> Option<i128>,
    control: &Control,
    stats: &Stats,
) -> usize {
    stats.reconciles.fetch_add(1, Relaxed);
    let mut total = 0;
    for (target, queue) in targets {
        let progress = AtomicU64::new(0);
        let started = Instant::now();
        let since = changed_since(queue);
        let result = std::thread::scope(|scope| {
            let walker = scope.spawn(|| target.reconcile(subtree, since, &progress));
            let mut next_report = started + PROGRESS_EVERY;
            while !walker.is_finished() {
                std::thread::sleep(Duration::from_millis(50));
                if Instant::now() >= next_report {
                    crate::info!(
                        "reconcile of {}: {} entries compared",
                        target.name(),
                        progress.load(Relaxed)
                    );
                    next_report += PROGRESS_EVERY;
                }
            }
            walker.join()
        });
        match result {
            Ok(Ok(dirty)) => {
                total += dirty.len();
                crate::debug!(
                    "reconcile of {} {:?}: {} entries compared, {} differ, {:.3} s",
                    target.name(),
                    subtree,
                    progress.load(Relaxed),
                    dirty.len(),
                    started.elapsed().as_secs_f64()
                );
                queue.mark_all(dirty, control.now_ns());
            }
            Ok(Err(err)) => {
                stats.errors.fetch_add(1, Relaxed);
                crate::error!("reconcile of {} {:?} failed: {err}", target.name(), subtree);
            }
            Err(_) => crate::error!("reconcile of {} {:?} panicked", target.name(), subtree),
        }
    }
    total
}

/// Drops requests covered by another (a subtree below another one's subtree).
fn coalesce(mut requests: Vec<Request>) -> Vec<Request> {
    requests.sort_by(|a, b| a.subtree.cmp(&b.subtree));
    let mut kept: Vec<Request> = Vec::new();
    for request in requests {
        match kept.last_mut() {
            Some(last) if request.subtree.starts_with(&last.subtree) => {
                last.recapture |= request.recapture;
                last.ctime_guard |= request.ctime_guard;
            }
            _ => kept.push(request),
        }
    }
    kept
}

pub struct Reconciler {
    pub requests: Receiver<Request>,
    pub backend: Option<Arc<dyn Backend>>,
    pub targets: Vec<(Arc<dyn Target>, Arc<TargetQueue>)>,
    pub control: Arc<Control>,
    pub stats: Arc<Stats>,
    /// While the backend is degraded (watch limit), a full reconcile runs this often.
    pub rescan_interval: Duration,
}

impl Reconciler {
    pub fn run(self) {
        loop {
            let degraded = self.backend.as_ref().is_some_and(|b| b.degraded());
            let timeout = if degraded {
                self.rescan_interval
            } else {
                Duration::from_secs(1)
            };
            let first = match self.requests.recv_timeout(timeout) {
                Ok(request) => request,
                Err(RecvTimeoutError::Timeout) if degraded && !self.control.stopping() => {
                    crate::info!("periodic reconcile: part of the tree is not watched");
                    self.control.reconciling.fetch_add(1, SeqCst);
                    Request {
                        subtree: PathBuf::new(),
                        recapture: true,
                        ctime_guard: true,
                    }
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            batch.extend(self.requests.try_iter());
            let count = batch.len();
            if !self.control.stopping() {
                for request in coalesce(batch) {
                    self.serve(&request);
                }
            }
            self.control.reconciling.fetch_sub(count, SeqCst);
        }
    }

    fn serve(&self, request: &Request) {
        if request.recapture {
            if let Some(backend) = &self.backend {
                if let Err(err) = backend.capture(&request.subtree) {
                    crate::error!("re-watching {:?} failed: {err}", request.subtree);
                }
            }
        }
        let guard = request.ctime_guard;
        let since = |queue: &TargetQueue| {
            guard.then(|| {
                i128::from(queue.caught_up_unix_ns.load(Relaxed))
                    - crate::state::CHECKPOINT_MARGIN_NS
            })
        };
        reconcile_into(
            &request.subtree,
            &self.targets,
            &since,
            &self.control,
            &self.stats,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> Request {
        Request {
            subtree: PathBuf::from(path),
            recapture: false,
            ctime_guard: false,
        }
    }

    #[test]
    fn nested_requests_collapse_into_the_outer_one() {
        let mut inner = req("a/b");
        inner.recapture = true;
        let kept = coalesce(vec![inner, req("a"), req("c"), req("a b")]);
        let paths: Vec<_> = kept.iter().map(|r| r.subtree.clone()).collect();
        assert_eq!(
            paths,
            vec![PathBuf::from("a"), PathBuf::from("a b"), PathBuf::from("c")]
        );
        assert!(kept[0].recapture);
        assert_eq!(coalesce(vec![req("x"), req("")]).len(), 1);
    }
}
