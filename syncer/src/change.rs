//! The vocabulary between the event readers and the dirty sets: what a backend reports
//! (`Change`: a path to settle, or a paired rename) and how a path became dirty (`Mark`).
//! Readers produce it, `queue` consumes it, and the rename arithmetic both sides share
//! (`rekey`) lives beside it, so neither side imports the other.

use std::path::{Path, PathBuf};

/// One translated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Mark(PathBuf, Mark),
    Rename(Rename),
    /// A barrier's cookie was created at SOURCE's root (`crate::barrier`): everything
    /// changed before now is to reach every target before it is acknowledged.
    Barrier(std::ffi::OsString),
}

/// How a path became dirty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Created, closed after writing, deleted, attributes changed: apply as soon as possible.
    Changed,
    /// Written but not closed (IN_MODIFY alone, e.g. a growing log): wait for a quiet period or
    /// a maximum age, so a file is not copied on every write.
    Modified,
    /// A new non-directory entry: whatever the replica holds under its name is obsolete, so
    /// targets may write it in place instead of through a temporary file (`Batch::is_new`).
    /// With `wait_for_close` it waits like `Modified` (inotify: it is about to be written);
    /// without, it is due at once like `Changed` (fanotify reports the create with the close).
    Created { wait_for_close: bool },
    /// Compare the whole subtree with the replica (overflow, a directory that had to be
    /// rebuilt); files with a source ctime at or after `changed_since_ns` count as changed.
    Rescan { changed_since_ns: Option<i128> },
}

/// Compare a whole subtree, without a ctime guard: what the replica holds under that name may
/// belong to another directory object (moved away, replaced, moved in over, exchanged).
pub const COMPARE_WHOLE: Mark = Mark::Rescan {
    changed_since_ns: None,
};

/// A rename paired by the event source (inotify cookie, fanotify FAN_RENAME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub from: PathBuf,
    pub to: PathBuf,
    pub is_dir: bool,
}

/// `path` with its prefix `from` replaced by `to` (unchanged when not under `from`).
pub fn rekey(path: &Path, from: &Path, to: &Path) -> PathBuf {
    match path.strip_prefix(from) {
        Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
        Ok(rest) => to.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// `path` with the prefixes `a` and `b` swapped: where an entry went through an exchange of
/// the two (RENAME_EXCHANGE, reported as `a -> b` then `b -> a`).
pub fn swap(path: &Path, a: &Path, b: &Path) -> PathBuf {
    if path.starts_with(a) {
        rekey(path, a, b)
    } else {
        rekey(path, b, a)
    }
}
