//! SOURCE's identity (filesystem id, root inode, mount id) and the checks against it: at
//! start, against what the state file recorded at the last sync; while running, the path
//! against the directory the syncer holds open.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::source::SourceTree;
use crate::sys::fs::{ObjectId, filesystem_id, object_id};

/// Which tree SOURCE is. Mount ids are not kept across reboots and remounts, so a later
/// start compares the filesystem id and the root inode only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentity {
    pub fsid: u64,
    pub root_ino: u64,
    pub mount_id: u64,
}

impl SourceIdentity {
    /// The identity of the open directory `fd`.
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let id = object_id(Some(fd), None)?;
        Ok(Self {
            fsid: filesystem_id(fd)?,
            root_ino: id.ino,
            mount_id: id.mount_id,
        })
    }

    /// The same filesystem and the same directory on it.
    pub fn same_tree(&self, other: &SourceIdentity) -> bool {
        self.fsid == other.fsid && self.root_ino == other.root_ino
    }
}

/// What the guard saw: SOURCE is not the tree the replica was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLost {
    /// The path now leads to another mount than the directory the syncer opened.
    Unmounted { path: PathBuf },
    /// The path now leads to another directory on the same mount.
    Replaced { path: PathBuf },
    /// The directory the syncer opened was deleted, or the path is gone.
    Deleted { path: PathBuf },
    /// At start: another filesystem or directory than at the last sync.
    Changed {
        path: PathBuf,
        was: SourceIdentity,
        now: SourceIdentity,
    },
    /// At start: SOURCE is empty while the replica holds what an earlier sync put there.
    Emptied { path: PathBuf, target: String },
}

impl fmt::Display for SourceLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceLost::Unmounted { path } => write!(
                f,
                "SOURCE {} is no longer the mount the syncer started on (unmounted, or another \
                 filesystem mounted over it)",
                path.display()
            )?,
            SourceLost::Replaced { path } => write!(
                f,
                "SOURCE {} is another directory than the one the syncer started on (renamed \
                 away, or deleted and made again)",
                path.display()
            )?,
            SourceLost::Deleted { path } => {
                write!(f, "SOURCE {} was deleted", path.display())?;
            }
            SourceLost::Changed { path, was, now } => write!(
                f,
                "SOURCE {} is not the tree the replicas were made from: filesystem {:016x} root \
                 inode {} at the last sync, filesystem {:016x} root inode {} now (is the \
                 filesystem not mounted, or another one mounted there?)",
                path.display(),
                was.fsid,
                was.root_ino,
                now.fsid,
                now.root_ino
            )?,
            SourceLost::Emptied { path, target } => write!(
                f,
                "SOURCE {} is empty, but {target} holds what an earlier sync of it put there \
                 (is the filesystem not mounted?)",
                path.display()
            )?,
        }
        write!(
            f,
            "; no deletes were applied to any replica. Mount or restore SOURCE and start again; \
             if the change is intended, start once with --allow-source-change"
        )
    }
}

impl std::error::Error for SourceLost {}

/// The running check: the SOURCE path must still lead to the directory the syncer holds.
pub struct SourceGuard {
    source: Arc<SourceTree>,
    started: ObjectId,
}

impl SourceGuard {
    pub fn new(source: Arc<SourceTree>) -> io::Result<Self> {
        let started = object_id(Some(source.root.as_fd()), None)?;
        Ok(Self { source, started })
    }

    fn path(&self) -> &Path {
        &self.source.abs
    }

    /// Two `statx` calls: cheap enough for every batch.
    pub fn check(&self) -> Result<(), SourceLost> {
        let path = || self.path().to_path_buf();
        let held = match object_id(Some(self.source.root.as_fd()), None) {
            Ok(held) => held,
            // Cannot tell (should not happen on an open fd): let the work go on.
            Err(_) => return Ok(()),
        };
        if held.nlink == 0 {
            return Err(SourceLost::Deleted { path: path() });
        }
        match object_id(None, Some(self.path())) {
            Ok(now) if now.mount_id != self.started.mount_id => {
                Err(SourceLost::Unmounted { path: path() })
            }
            Ok(now) if now.ino != self.started.ino => Err(SourceLost::Replaced { path: path() }),
            Ok(_) => Ok(()),
            Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                Err(SourceLost::Deleted { path: path() })
            }
            // EACCES on a parent, say: not evidence that SOURCE went away.
            Err(_) => Ok(()),
        }
    }
}

/// The start-up check of one replica's recorded identity against SOURCE now.
pub fn check_recorded(
    path: &Path,
    recorded: Option<SourceIdentity>,
    now: SourceIdentity,
) -> Result<(), SourceLost> {
    match recorded {
        Some(was) if !was.same_tree(&now) => Err(SourceLost::Changed {
            path: path.to_path_buf(),
            was,
            now,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(fsid: u64, root_ino: u64, mount_id: u64) -> SourceIdentity {
        SourceIdentity {
            fsid,
            root_ino,
            mount_id,
        }
    }

    #[test]
    fn a_remount_of_the_same_filesystem_is_the_same_tree() {
        let path = Path::new("/src");
        assert_eq!(
            check_recorded(path, Some(id(7, 2, 30)), id(7, 2, 41)),
            Ok(())
        );
        assert_eq!(check_recorded(path, None, id(7, 2, 41)), Ok(()));
    }

    #[test]
    fn another_filesystem_or_directory_is_refused_with_what_to_do() {
        let path = Path::new("/src");
        let lost = check_recorded(path, Some(id(7, 2, 30)), id(9, 2, 30)).unwrap_err();
        let message = lost.to_string();
        assert!(message.contains("no deletes were applied"), "{message}");
        assert!(message.contains("--allow-source-change"), "{message}");
        assert!(check_recorded(path, Some(id(7, 2, 30)), id(7, 1234, 30)).is_err());
    }

    #[test]
    fn the_running_check_passes_on_an_open_directory_and_sees_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let tree = SourceTree::open(src.clone(), crate::exclude::Excludes::none(), 16).unwrap();
        let guard = SourceGuard::new(Arc::new(tree)).unwrap();
        assert_eq!(guard.check(), Ok(()));
        std::fs::rename(&src, dir.path().join("old")).unwrap();
        assert!(matches!(guard.check(), Err(SourceLost::Deleted { .. })));
        std::fs::create_dir(&src).unwrap();
        assert!(matches!(guard.check(), Err(SourceLost::Replaced { .. })));
        std::fs::remove_dir(&src).unwrap();
        std::fs::remove_dir(dir.path().join("old")).unwrap();
        assert!(matches!(guard.check(), Err(SourceLost::Deleted { .. })));
    }
}
