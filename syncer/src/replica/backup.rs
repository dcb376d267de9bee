//! `--backup-dir DIR`: what a replica would lose is kept instead. A replica entry the syncer
//! deletes or replaces (new content renamed over it, a rename over it) is moved to
//! `DIR/STAMP/its/path` inside the replica, STAMP being the batch's UTC second
//! (`2026-12-04T01-10-33Z`), so one folder holds what one batch took away. DIR is excluded
//! for its target, so the syncer's own deletes and compares never touch it. `--backup-keep
//! DAYS` removes STAMP folders older than that (checked at most every ten minutes).
//!
//! Local targets move entries (a rename: no copy, no extra link, so the replica's link
//! structure stays the source's); rsync targets pass `--backup --backup-dir` to the daemon,
//! with one folder per run (`STAMP.PID.N`), since rsync replaces what a folder holds.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::entry::{Kind, list_dir, stat_at};
use crate::sys::errno::to_io;
use crate::sys::fs::open_dir_beneath;

/// How often the retention is checked.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The STAMP folder name of a moment: fixed width, so names sort as times do.
pub fn stamp(at: SystemTime) -> String {
    let text = crate::log::timestamp(at);
    // 2026-12-04T01:10:33.123Z -> 2026-12-04T01-10-33Z
    format!("{}Z", text[..19].replace(':', "-"))
}

/// Checks a `--backup-dir` value: a relative path of plain names, usable as an anchored
/// exclude pattern.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let text = dir.to_string_lossy();
    let plain = dir.components().all(|c| matches!(c, Component::Normal(_)));
    if dir.as_os_str().is_empty() || !plain {
        return Err(format!(
            "{text:?}: give a path relative to the replica's root, without `..` (e.g. .syncer-backup)"
        ));
    }
    if text.contains(['*', '?', '[', ']', '{', '}', '\\']) {
        return Err(format!(
            "{text:?}: no glob characters in the backup directory's name"
        ));
    }
    Ok(())
}

/// The anchored exclude pattern that keeps a target's backup directory out of its syncing.
pub fn exclude_pattern(dir: &Path) -> String {
    format!("/{}", dir.display())
}

pub struct Backup {
    /// DIR, relative to the replica root.
    dir: PathBuf,
    /// The replica root (a duplicate of the target's descriptor).
    root: OwnedFd,
    keep: Option<Duration>,
    /// The STAMP of the batch being applied.
    current: Mutex<String>,
    last_prune: Mutex<Option<Instant>>,
}

impl Backup {
    pub fn new(root: BorrowedFd<'_>, dir: PathBuf, keep_days: Option<u64>) -> io::Result<Self> {
        Ok(Self {
            dir,
            root: root.try_clone_to_owned()?,
            keep: keep_days.map(|d| Duration::from_secs(d * 86_400)),
            current: Mutex::new(stamp(SystemTime::now())),
            last_prune: Mutex::new(None),
        })
    }

    /// A batch starts: what it takes away goes into a folder of this second; old folders
    /// past the retention are removed now and then.
    pub fn begin_batch(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = stamp(SystemTime::now());
        let due = {
            let mut last = self.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due && let Some(keep) = self.keep {
            if let Err(err) = self.prune(SystemTime::now() - keep) {
                crate::warn!(
                    "--backup-keep: cannot remove old backups in {:?}: {err}",
                    self.dir
                );
            }
        }
    }

    /// Moves `name` in the replica directory `dir` to DIR/STAMP/<dir's path>/`as_name`. A
    /// name backed up twice within one second gets `.~1~`, `.~2~`... appended.
    pub fn stash(&self, dir: BorrowedFd<'_>, name: &OsStr, as_name: &OsStr) -> io::Result<()> {
        let within = self.replica_path(dir)?;
        let stamp = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let folder = self.dir.join(&stamp).join(&within);
        let parent = self.make_dirs(&folder)?;
        let mut target = as_name.to_os_string();
        for n in 1..=1000 {
            match renameat2(
                dir,
                name,
                parent.as_fd(),
                target.as_os_str(),
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EEXIST) => {
                    target = as_name.to_os_string();
                    target.push(format!(".~{n}~"));
                }
                Err(err) => return Err(to_io(err)),
            }
        }
        Err(io::Error::other(format!(
            "{folder:?}: 1000 backups of {as_name:?} in one second"
        )))
    }

    /// The path of a replica directory relative to the replica root, from the kernel's
    /// names of both descriptors (the root itself may have been renamed since it was opened).
    fn replica_path(&self, dir: BorrowedFd<'_>) -> io::Result<PathBuf> {
        let name_of = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}"));
        let root = name_of(self.root.as_raw_fd())?;
        let here = name_of(dir.as_raw_fd())?;
        here.strip_prefix(&root)
            .map(Path::to_path_buf)
            .map_err(|_| io::Error::other(format!("{here:?} is not inside the replica {root:?}")))
    }

    /// Opens `rel` beneath the replica root, making missing directories (mode 700: a backup
    /// keeps what the replica held, readable by its owner only until restored).
    fn make_dirs(&self, rel: &Path) -> io::Result<OwnedFd> {
        let mut dir = self.root.try_clone()?;
        for part in rel.components() {
            let name = part.as_os_str();
            match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(err) => return Err(to_io(err)),
            }
            dir = openat(
                dir.as_fd(),
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(to_io)?;
        }
        Ok(dir)
    }

    /// Removes the STAMP folders older than `cutoff`.
    fn prune(&self, cutoff: SystemTime) -> io::Result<()> {
        let oldest_kept = stamp(cutoff);
        let dir = match open_dir_beneath(self.root.as_fd(), &self.dir) {
            Ok(dir) => dir,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(err) => return Err(err),
        };
        for (name, _) in list_dir(&dir)? {
            let text = name.to_string_lossy();
            if is_stamp(&text) && *text < *oldest_kept {
                remove_all(dir.as_fd(), &name)?;
            }
        }
        Ok(())
    }
}

/// Whether a name is a STAMP folder's: the stamp alone (local targets) or followed by
/// `.PID.N` (one folder per rsync run).
pub fn is_stamp(name: &str) -> bool {
    let (stamp, rest) = name.split_at(name.len().min(20));
    stamp.len() == 20
        && stamp.ends_with('Z')
        && stamp.as_bytes().get(10) == Some(&b'T')
        && (rest.is_empty() || rest.starts_with('.'))
}

/// Removes a backup entry and everything below it (backups are not replica entries: the
/// delete budget does not count them).
fn remove_all(dir: BorrowedFd<'_>, name: &OsString) -> io::Result<()> {
    let Some(meta) = stat_at(dir, name)? else {
        return Ok(());
    };
    if meta.kind == Kind::Dir {
        let sub = openat(
            dir,
            name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(to_io)?;
        for (child, _) in list_dir(&sub)? {
            remove_all(sub.as_fd(), &child)?;
        }
        unlinkat(dir, name.as_os_str(), UnlinkatFlags::RemoveDir).map_err(to_io)
    } else {
        unlinkat(dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir).map_err(to_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_sort_as_times_and_are_recognised() {
        let a = stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_810_633));
        let b = stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_810_633 + 86_400));
        assert_eq!(a, "2025-12-04T01-10-33Z");
        assert!(a < b && is_stamp(&a) && !is_stamp("notes.txt"));
        assert!(is_stamp(&format!("{a}.123.4")) && !is_stamp(&format!("{a}x")));
    }

    #[test]
    fn a_backup_dir_must_be_plain_and_relative() {
        assert!(check_dir(Path::new(".syncer-backup/old")).is_ok());
        for bad in ["/abs", "../up", "a/../b", "", "back*"] {
            assert!(check_dir(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn stashed_entries_keep_their_path_and_old_stamps_go() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), "old").unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let backup = Backup::new(root.as_fd(), PathBuf::from(".bk"), Some(1)).unwrap();
        let sub = std::fs::File::open(dir.path().join("a/b")).unwrap();
        backup
            .stash(sub.as_fd(), OsStr::new("f"), OsStr::new("f"))
            .unwrap();
        std::fs::write(dir.path().join("a/b/f"), "newer").unwrap();
        backup
            .stash(sub.as_fd(), OsStr::new("f"), OsStr::new("f"))
            .unwrap();
        let stamp = backup.current.lock().unwrap().clone();
        let kept = dir.path().join(".bk").join(&stamp).join("a/b");
        assert_eq!(std::fs::read_to_string(kept.join("f")).unwrap(), "old");
        assert_eq!(
            std::fs::read_to_string(kept.join("f.~1~")).unwrap(),
            "newer"
        );
        assert!(!dir.path().join("a/b/f").exists());
        std::fs::create_dir_all(dir.path().join(".bk/2000-01-01T00-00-00Z/x")).unwrap();
        backup
            .prune(SystemTime::now() - Duration::from_secs(86_400))
            .unwrap();
        assert!(!dir.path().join(".bk/2000-01-01T00-00-00Z").exists());
        assert!(kept.join("f").exists());
    }
}
