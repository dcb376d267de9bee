//! Replica targets behind one small trait: a `Batch` in, an `Outcome` out. The local directory
//! target lives in `local`; the rsync daemon target slots in beside it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use crate::queue::pending::{Batch, RescanJob};
use crate::replica::rsync::RsyncOptions;
use crate::scan::Found;
use crate::stats::TargetStats;

pub mod backup;
pub mod bandwidth;
pub mod local;
mod local_ops;
pub mod rsync;
mod rsync_leftovers;
mod rsync_links;
mod rsync_plan;
pub mod rsync_run;
pub mod rsync_url;

/// What each target can set for itself (in a config file's `[[target]]` table; on the
/// command line every target gets the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetOptions {
    /// This target's own patterns, on top of the global ones.
    pub exclude: Vec<String>,
    /// `--bwlimit`: bytes per second (also in `rsync`, which splits it over its streams).
    pub bwlimit: Option<u64>,
    /// `--max-delete`: entries per minute.
    pub max_delete: Option<u64>,
    pub fsync: bool,
    /// Copy threads (local targets).
    pub jobs: usize,
    /// `--backup-dir`: relative to the replica root (`backup`).
    pub backup_dir: Option<PathBuf>,
    /// `--backup-keep`: days a backup folder is kept.
    pub backup_keep: Option<u64>,
    pub rsync: RsyncOptions,
}

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
    /// Subtree compares that failed with a transient error: retried with backoff.
    pub failed_rescans: Vec<RescanJob>,
    /// An error retrying cannot fix (bad credentials, unknown module): the syncer exits 1.
    pub fatal: Option<String>,
    /// `--max-delete` stopped a delete (the message says so): the syncer stops, exit 3.
    pub refused: Option<String>,
    /// Paths left alone because a source ancestor was gone: it may have been renamed after
    /// the event was read, and the rename, read later, says where they went.
    pub vanished: Vec<PathBuf>,
    /// Directories the target could not enter (EACCES, in the source or the replica): what
    /// failed below them is compared when they are marked next (see `Pending::denied`).
    pub denied: Vec<PathBuf>,
}

/// Why a target could not do something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// Worth retrying later (disk full, daemon down, a directory vanished mid-walk).
    Transient(String),
    /// Retrying cannot fix it (bad credentials, unknown module).
    Fatal(String),
    /// `--max-delete` stopped a delete: the syncer stops, exit 3.
    Refused(String),
}

impl Outcome {
    pub fn merge(&mut self, other: Outcome) {
        self.retry.extend(other.retry);
        self.rescan.extend(other.rescan);
        self.backoff |= other.backoff;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.failed_rescans.extend(other.failed_rescans);
        if self.fatal.is_none() {
            self.fatal = other.fatal;
        }
        if self.refused.is_none() {
            self.refused = other.refused;
        }
        self.vanished.extend(other.vanished);
        self.denied.extend(other.denied);
    }
}

/// A replica kept equal to the source.
pub trait Target: Send + Sync {
    /// Human-readable name for logs and stats.
    fn name(&self) -> &str;

    /// How many appliers may work on this target at once, each on its own batch of paths
    /// (rsync targets overlap runs: the next batch starts while one is in flight).
    fn appliers(&self) -> usize {
        1
    }

    /// Least time between the starts of two batches while busy (an idle applier still starts
    /// at once). rsync targets pace their runs so a storm makes a few large runs, not many
    /// tiny ones.
    fn min_batch_interval(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Whether the replica holds any entry at all. Asked at start when SOURCE is empty but an
    /// earlier sync was recorded: syncing then would delete everything (`guard`).
    fn holds_entries(&self) -> io::Result<bool>;

    /// Puts changed options in force (a reload, SIGHUP with `--config`): only those that
    /// `config::reload` lets change while running (bandwidth, delete cap, per-run rsync
    /// options); the next batch uses them.
    fn reconfigure(&self, options: &TargetOptions);

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
    ) -> Result<Found, Trouble>;
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
