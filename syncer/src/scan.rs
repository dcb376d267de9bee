//! The reconcile walk: a source subtree and the replica's copy of it in, the paths that differ
//! out. Parallel (rayon, one task per directory), read-only: it only marks paths; the applier
//! does the writing.
//!
//! Quick checks are for reconciles only, and ctime guards them: type, size, mtime (ns), mode
//! (and owner as root) must match, and a file whose source ctime is at or after
//! `changed_since_ns` is re-copied anyway, because a same-size rewrite can keep size and mtime.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::entry::{Kind, Meta, is_ancestor_gone, list_dir, split, stat_at};
use crate::source::SourceTree;
use crate::sys::fs::open_dir_beneath;
use crate::target::Found;

pub struct Compare<'a> {
    source: &'a SourceTree,
    target_root: BorrowedFd<'a>,
    changed_since_ns: Option<i128>,
    compare_owner: bool,
    progress: &'a AtomicU64,
    dirty: Mutex<Vec<PathBuf>>,
    vanished: Mutex<Vec<PathBuf>>,
    first_error: Mutex<Option<io::Error>>,
}

fn same_content_meta(src: &Meta, dst: &Meta, compare_owner: bool) -> bool {
    let owner_ok = !compare_owner || (src.uid, src.gid) == (dst.uid, dst.gid);
    src.kind == dst.kind
        && owner_ok
        && match src.kind {
            Kind::File => src.size == dst.size && src.mtime == dst.mtime && src.mode == dst.mode,
            Kind::Dir | Kind::Fifo => src.mode == dst.mode,
            Kind::Symlink => src.size == dst.size,
            Kind::Other => true,
        }
}

impl<'a> Compare<'a> {
    pub fn new(
        source: &'a SourceTree,
        target_root: BorrowedFd<'a>,
        changed_since_ns: Option<i128>,
        compare_owner: bool,
        progress: &'a AtomicU64,
    ) -> Self {
        Self {
            source,
            target_root,
            changed_since_ns,
            compare_owner,
            progress,
            dirty: Mutex::new(Vec::new()),
            vanished: Mutex::new(Vec::new()),
            first_error: Mutex::new(None),
        }
    }

    /// Walks `subtree` (a directory or any path) and returns what differs.
    pub fn run(self, subtree: &Path) -> io::Result<Found> {
        // The subtree's own entry is always checked by the applier.
        self.push(subtree.to_path_buf());
        let target_present = match split(subtree) {
            None => true,
            Some((parent, name)) => {
                let src = self
                    .source
                    .open_dir(parent)
                    .and_then(|d| stat_at(d.as_fd(), name));
                match src {
                    Ok(Some(meta)) if meta.kind == Kind::Dir => {}
                    // Not a directory (or gone): checking the entry itself is all there is.
                    Ok(_) => return Ok(self.into_dirty()),
                    Err(err) if is_ancestor_gone(&err) => return Ok(self.into_dirty()),
                    Err(err) => return Err(err),
                }
                open_dir_beneath(self.target_root, subtree).is_ok()
            }
        };
        rayon::scope(|scope| self.walk(scope, subtree.to_path_buf(), target_present));
        if let Some(err) = self
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(err);
        }
        Ok(self.into_dirty())
    }

    fn into_dirty(self) -> Found {
        Found {
            dirty: self.dirty.into_inner().unwrap_or_else(|e| e.into_inner()),
            rescan: self
                .vanished
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn push(&self, path: PathBuf) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path);
    }

    fn fail(&self, err: io::Error) {
        let mut slot = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(err);
    }

    fn changed_since(&self, meta: &Meta) -> bool {
        self.changed_since_ns
            .is_some_and(|t| meta.kind == Kind::File && meta.ctime_ns() >= t)
    }

    fn symlinks_differ(&self, sdir: &OwnedFd, tdir: &OwnedFd, name: &OsString) -> bool {
        let src = nix::fcntl::readlinkat(sdir.as_fd(), name.as_os_str());
        let dst = nix::fcntl::readlinkat(tdir.as_fd(), name.as_os_str());
        !matches!((src, dst), (Ok(a), Ok(b)) if a == b)
    }

    /// Compares the directory `rel`; `target_present` false means every entry below is dirty.
    fn walk<'s>(&'s self, scope: &rayon::Scope<'s>, rel: PathBuf, target_present: bool) {
        let sdir = match self.source.open_dir(&rel) {
            Ok(fd) => fd,
            // Renamed or deleted since its parent was listed: compare it again under the name
            // it has by then (the caller re-keys through renames), or find it gone.
            Err(err) if is_ancestor_gone(&err) => {
                self.vanished
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(rel);
                return;
            }
            Err(err) => return self.fail(err),
        };
        let entries = match list_dir(&sdir) {
            Ok(entries) => entries,
            Err(err) => return self.fail(err),
        };
        let tdir = if target_present {
            open_dir_beneath(self.target_root, &rel).ok()
        } else {
            None
        };
        let mut seen = HashSet::with_capacity(entries.len());
        for (name, _) in entries {
            let child = rel.join(&name);
            if self.source.excludes.is_excluded(&child) {
                seen.insert(name);
                continue;
            }
            self.progress.fetch_add(1, Relaxed);
            let src = match stat_at(sdir.as_fd(), &name) {
                Ok(Some(meta)) => meta,
                Ok(None) => continue,
                Err(err) => return self.fail(err),
            };
            let dst = tdir
                .as_ref()
                .and_then(|t| stat_at(t.as_fd(), &name).ok().flatten());
            let differs = match (&dst, &tdir) {
                (Some(dst), Some(t)) => {
                    !same_content_meta(&src, dst, self.compare_owner)
                        || self.changed_since(&src)
                        || (src.kind == Kind::Symlink && self.symlinks_differ(&sdir, t, &name))
                }
                _ => true,
            };
            if differs {
                self.push(child.clone());
            }
            if src.kind == Kind::Dir {
                let present = dst.is_some_and(|d| d.kind == Kind::Dir);
                scope.spawn(move |scope| self.walk(scope, child, present));
            }
            seen.insert(name);
        }
        // Entries only in the replica (including temp files left by a crash) are extra.
        if let Some(tdir) = tdir {
            match list_dir(&tdir) {
                Ok(names) => {
                    for (name, _) in names {
                        if !seen.contains(&name) {
                            let child = rel.join(&name);
                            if !self.source.excludes.is_excluded(&child) {
                                self.push(child);
                            }
                        }
                    }
                }
                Err(err) => self.fail(err),
            }
        }
    }
}

/// Regular files below `subtree` whose source ctime is at or after `since_ns`: the files a
/// reconcile by size and mtime alone could miss. A parallel walk of the source only.
pub fn changed_files(
    source: &SourceTree,
    subtree: &Path,
    since_ns: i128,
) -> io::Result<Vec<PathBuf>> {
    let found = Mutex::new(Vec::new());
    let failure = Mutex::new(None);
    rayon::scope(|scope| {
        changed_walk(
            scope,
            source,
            subtree.to_path_buf(),
            since_ns,
            &found,
            &failure,
        )
    });
    if let Some(err) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(err);
    }
    Ok(found.into_inner().unwrap_or_else(|e| e.into_inner()))
}

fn changed_walk<'s>(
    scope: &rayon::Scope<'s>,
    source: &'s SourceTree,
    rel: PathBuf,
    since_ns: i128,
    found: &'s Mutex<Vec<PathBuf>>,
    failure: &'s Mutex<Option<io::Error>>,
) {
    let dir = match source.open_dir(&rel) {
        Ok(dir) => dir,
        Err(err) if is_ancestor_gone(&err) => return,
        Err(err) => {
            failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(err);
            return;
        }
    };
    let Ok(entries) = list_dir(&dir) else { return };
    for (name, _) in entries {
        let child = rel.join(&name);
        if source.excludes.is_excluded(&child) {
            continue;
        }
        match stat_at(dir.as_fd(), &name) {
            Ok(Some(meta)) if meta.kind == Kind::Dir => {
                scope.spawn(move |scope| {
                    changed_walk(scope, source, child, since_ns, found, failure)
                });
            }
            Ok(Some(meta)) if meta.kind == Kind::File && meta.ctime_ns() >= since_ns => {
                found.lock().unwrap_or_else(|e| e.into_inner()).push(child);
            }
            _ => {}
        }
    }
}
