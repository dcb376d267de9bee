//! Replica targets behind one small trait: a `Batch` in, an `Outcome` out. The local directory
//! target lives in `local`; the rsync daemon target slots in beside it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use crate::pending::Batch;
use crate::stats::TargetStats;

pub mod local;
mod local_ops;

/// What a batch left to do.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Paths that failed with a transient error (disk full, I/O): retried with backoff.
    pub retry: Vec<PathBuf>,
    /// Subtrees to compare again (a rename that could not be applied, a missing parent).
    pub rescan: Vec<PathBuf>,
    /// A transient failure that should slow the next attempt (e.g. ENOSPC).
    pub backoff: bool,
    /// The first transient error, for the log line that announces a failing streak.
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn merge(&mut self, other: Outcome) {
        self.retry.extend(other.retry);
        self.rescan.extend(other.rescan);
        self.backoff |= other.backoff;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// A replica kept equal to the source.
pub trait Target: Send + Sync {
    /// Human-readable name for logs and stats.
    fn name(&self) -> &str;

    /// Makes every path of the batch in the replica equal to the source as it is now.
    fn apply(&self, batch: &Batch, stats: &TargetStats) -> Outcome;

    /// Compares `subtree` of the source and the replica and returns the paths that differ
    /// (type, size, mtime in ns, mode, symlink target, entries missing or extra), plus files
    /// whose source ctime is at or after `changed_since_ns` (ns since the epoch).
    fn reconcile(
        &self,
        subtree: &Path,
        changed_since_ns: Option<i128>,
        progress: &AtomicU64,
    ) -> io::Result<Vec<PathBuf>>;
}

/// Errors worth retrying later rather than reporting as permanent.
pub fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ENOSPC
                | libc::EDQUOT
                | libc::EIO
                | libc::ENOMEM
                | libc::EMFILE
                | libc::ENFILE
                | libc::EAGAIN
                | libc::EBUSY
                | libc::ETXTBSY
                | libc::EROFS
        )
    )
}
