//! The reconciler thread: requests (queue overflow, periodic cover of unwatched directories)
//! in; missing watches added, then a subtree compare (with the ctime guard) queued for every
//! target out. The compares themselves run on each target's applier.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::backend::Backend;
use crate::change::Mark;
use crate::control::Control;
use crate::queue::shared::TargetQueue;
use crate::source::SourceTree;
use crate::state::CHECKPOINT_MARGIN_NS;

/// One request for the reconciler thread.
#[derive(Debug, Clone)]
pub struct Request {
    pub subtree: PathBuf,
    /// Walk the source for missing watches first (after an overflow).
    pub recapture: bool,
    /// Re-copy files changed (ctime) since the target last caught up, minus the margin.
    pub ctime_guard: bool,
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

/// The rescan mark for a queue: with the guard, files changed since it last caught up or
/// since the last whole-tree compare started (minus the margin) are re-copied even when size
/// and mtime match.
pub fn rescan_mark(queue: &TargetQueue, ctime_guard: bool) -> Mark {
    let caught_up = i128::from(
        queue
            .caught_up_unix_ns
            .load(Relaxed)
            .max(queue.compared_unix_ns.load(Relaxed)),
    );
    Mark::Rescan {
        changed_since_ns: ctime_guard.then(|| caught_up - CHECKPOINT_MARGIN_NS),
    }
}

pub struct Reconciler {
    /// Its hard-link index, when full, also asks for periodic reconciles.
    pub source: Arc<SourceTree>,
    pub requests: Receiver<Request>,
    pub backend: Option<Arc<dyn Backend>>,
    pub queues: Vec<Arc<TargetQueue>>,
    pub control: Arc<Control>,
    /// While the backend is degraded (watch limit) or the link index is full, a full
    /// reconcile runs this often.
    pub rescan_interval: Duration,
}

impl Reconciler {
    pub fn run(self) {
        crate::sys::sched::become_worker();
        loop {
            let unwatched = self.backend.as_ref().is_some_and(|b| b.degraded());
            // Links past the index's cap: a change through one name is not carried to the
            // others, so periodic compares bring them back in line.
            let links_unindexed = self.backend.is_some() && self.source.links.full();
            let degraded = unwatched || links_unindexed;
            let timeout = if degraded {
                self.rescan_interval
            } else {
                Duration::from_secs(1)
            };
            let first = match self.requests.recv_timeout(timeout) {
                Ok(request) => request,
                Err(RecvTimeoutError::Timeout) if degraded && !self.control.stopping() => {
                    if unwatched {
                        crate::info!("periodic reconcile: part of the tree is not watched");
                    } else {
                        crate::info!("periodic reconcile: the hard-link index is full");
                    }
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
        for queue in &self.queues {
            let mark = rescan_mark(queue, request.ctime_guard);
            queue.mark(request.subtree.clone(), mark, self.control.now_ns());
        }
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
