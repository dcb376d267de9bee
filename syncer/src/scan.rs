//! The reconcile walk: a source subtree and the replica's copy of it in, the paths that differ
//! out. Parallel (rayon, one task per directory), read-only: it only marks paths; the applier
//! does the writing.
//!
//! Quick checks are for reconciles only, and ctime guards them: type, size, mtime (ns), mode
//! (and owner as root) must match, and a file whose source ctime is at or after
//! `changed_since_ns` is re-copied anyway, because a same-size rewrite can keep size and mtime.
//!
//! Hard links: every multi-link file a walk meets goes into the link index (a walk of the
//! whole tree also counts the links outside SOURCE), and the replica's link structure is
//! compared: names of one source inode must be names of one replica inode and the reverse,
//! else all of them are marked (the applier then writes them as one).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::entry::{Kind, Meta, is_ancestor_gone, is_denied, list_dir, split, stat_at};
use crate::exclude::Excludes;
use crate::links::Ino;
use crate::source::SourceTree;
use crate::sys::fs::open_dir_beneath;

/// What a reconcile walk found.
#[derive(Debug, Default)]
pub struct Found {
    /// Paths whose replica differs (or whose source changed since the guard).
    pub dirty: Vec<PathBuf>,
    /// Directories that vanished during the walk (renamed or deleted): compare them again
    /// under whatever name they have by then.
    pub rescan: Vec<PathBuf>,
    /// Directories the walk could not enter (EACCES in the source or the replica), left as
    /// they are: compared when they are marked next (`Pending::denied`), so one unreadable
    /// folder neither fails the whole compare nor loses what lies below it.
    pub denied: Vec<PathBuf>,
}

pub struct Compare<'a> {
    source: &'a SourceTree,
    /// The target's excludes (the global ones and its own), as they were when it started.
    excludes: Arc<Excludes>,
    target_root: BorrowedFd<'a>,
    changed_since_ns: Option<i128>,
    compare_owner: bool,
    progress: &'a AtomicU64,
    dirty: Mutex<Vec<PathBuf>>,
    vanished: Mutex<Vec<PathBuf>>,
    denied: Mutex<Vec<PathBuf>>,
    first_error: Mutex<Option<io::Error>>,
    /// Files with more than one name on either side.
    linked: Mutex<Vec<LinkSeen>>,
}

/// A file a walk met with more than one name in the source or the replica.
#[derive(Debug)]
struct LinkSeen {
    path: PathBuf,
    src: Ino,
    nlink: u64,
    /// The replica's regular file there, if any.
    dst: Option<(Ino, u64)>,
}

/// Names of multi-link source files by inode, for the index: (highest link count seen, names).
fn by_source_inode(seen: &[LinkSeen]) -> HashMap<Ino, (u64, Vec<PathBuf>)> {
    let mut found: HashMap<Ino, (u64, Vec<PathBuf>)> = HashMap::new();
    for s in seen.iter().filter(|s| s.nlink > 1) {
        let entry = found.entry(s.src).or_default();
        entry.0 = entry.0.max(s.nlink);
        entry.1.push(s.path.clone());
    }
    found
}

/// The names whose replica link structure differs from the source's: names of one source
/// inode on several replica inodes, or one replica inode holding names of several source
/// inodes (all of either set are returned).
fn link_structure_differs(seen: &[LinkSeen]) -> Vec<PathBuf> {
    let mut by_src: HashMap<Ino, Vec<&LinkSeen>> = HashMap::new();
    let mut by_dst: HashMap<Ino, Vec<&LinkSeen>> = HashMap::new();
    for s in seen {
        if s.nlink > 1 {
            by_src.entry(s.src).or_default().push(s);
        }
        if let Some((dst, dst_links)) = s.dst
            && dst_links > 1
        {
            by_dst.entry(dst).or_default().push(s);
        }
    }
    let mut differ = Vec::new();
    for names in by_src.values() {
        let replicas: HashSet<Ino> = names.iter().filter_map(|s| s.dst.map(|d| d.0)).collect();
        if replicas.len() > 1 {
            differ.extend(names.iter().map(|s| s.path.clone()));
        }
    }
    for names in by_dst.values() {
        let sources: HashSet<Ino> = names.iter().map(|s| s.src).collect();
        if sources.len() > 1 {
            differ.extend(names.iter().map(|s| s.path.clone()));
        }
    }
    differ
}

fn same_content_meta(src: &Meta, dst: &Meta, compare_owner: bool) -> bool {
    let owner_ok = !compare_owner || (src.uid, src.gid) == (dst.uid, dst.gid);
    src.kind == dst.kind
        && owner_ok
        && match src.kind {
            Kind::File => src.size == dst.size && src.mtime == dst.mtime && src.mode == dst.mode,
            Kind::Dir => src.mode == dst.mode,
            Kind::Fifo => src.mode == dst.mode && src.mtime == dst.mtime,
            // The target's length; the text itself is compared by `symlinks_differ`.
            Kind::Symlink => src.size == dst.size && src.mtime == dst.mtime,
            Kind::Other => true,
        }
}

impl<'a> Compare<'a> {
    pub fn new(
        source: &'a SourceTree,
        excludes: Arc<Excludes>,
        target_root: BorrowedFd<'a>,
        changed_since_ns: Option<i128>,
        compare_owner: bool,
        progress: &'a AtomicU64,
    ) -> Self {
        Self {
            source,
            excludes,
            target_root,
            changed_since_ns,
            compare_owner,
            progress,
            dirty: Mutex::new(Vec::new()),
            vanished: Mutex::new(Vec::new()),
            denied: Mutex::new(Vec::new()),
            first_error: Mutex::new(None),
            linked: Mutex::new(Vec::new()),
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
        self.settle_links(subtree.as_os_str().is_empty());
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

    /// Records the walk's multi-link files in the link index and marks the names whose replica
    /// link structure differs.
    fn settle_links(&self, whole_tree: bool) {
        let seen = std::mem::take(&mut *self.linked.lock().unwrap_or_else(|e| e.into_inner()));
        if seen.is_empty() && !whole_tree {
            return;
        }
        self.source
            .links
            .lock()
            .record_walk(by_source_inode(&seen), whole_tree);
        for path in link_structure_differs(&seen) {
            self.push(path);
        }
    }

    fn into_dirty(self) -> Found {
        Found {
            dirty: self.dirty.into_inner().unwrap_or_else(|e| e.into_inner()),
            rescan: self
                .vanished
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
            denied: self.denied.into_inner().unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn push(&self, path: PathBuf) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path);
    }

    /// A directory the walk could not enter: reported once per walk, left for later.
    fn deny(&self, rel: PathBuf, err: &io::Error) {
        crate::warn!(
            "{:?} cannot be compared: {err} (fix the permissions; it is compared again on its next change)",
            rel
        );
        self.denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rel);
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
            Err(err) if is_denied(&err) => return self.deny(rel, &err),
            Err(err) => return self.fail(err),
        };
        let entries = match list_dir(&sdir) {
            Ok(entries) => entries,
            Err(err) if is_denied(&err) => return self.deny(rel, &err),
            Err(err) => return self.fail(err),
        };
        let tdir = if target_present {
            match open_dir_beneath(self.target_root, &rel) {
                Ok(dir) => Some(dir),
                // The replica's copy took the source's mode 000 while the source had it.
                Err(err) if is_denied(&err) => return self.deny(rel, &err),
                Err(_) => None,
            }
        } else {
            None
        };
        let mut seen = HashSet::with_capacity(entries.len());
        for (name, _) in entries {
            let child = rel.join(&name);
            if self.excludes.is_excluded(&child) {
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
            let dst_file = dst.filter(|d| d.kind == Kind::File);
            if src.is_multi_link() || dst_file.is_some_and(|d| d.nlink > 1) {
                self.linked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(LinkSeen {
                        path: child.clone(),
                        src: (src.dev, src.ino),
                        nlink: if src.kind == Kind::File { src.nlink } else { 1 },
                        dst: dst_file.map(|d| ((d.dev, d.ino), d.nlink)),
                    });
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
                            if !self.excludes.is_excluded(&child) {
                                self.push(child);
                            }
                        }
                    }
                }
                Err(err) if is_denied(&err) => self.deny(rel, &err),
                Err(err) => self.fail(err),
            }
        }
    }
}

/// Regular files below `subtree` whose source ctime is at or after `since_ns` (none without
/// it): the files a reconcile by size and mtime alone could miss. A parallel walk of the
/// source only, which also records its multi-link files in the link index.
pub fn changed_files(
    source: &SourceTree,
    subtree: &Path,
    since_ns: Option<i128>,
) -> io::Result<Vec<PathBuf>> {
    let walk = SourceWalk {
        source,
        since_ns,
        found: Mutex::new(Vec::new()),
        linked: Mutex::new(Vec::new()),
        failure: Mutex::new(None),
    };
    rayon::scope(|scope| walk.dir(scope, subtree.to_path_buf()));
    if let Some(err) = walk.failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(err);
    }
    let linked = walk.linked.into_inner().unwrap_or_else(|e| e.into_inner());
    source
        .links
        .lock()
        .record_walk(by_source_inode(&linked), subtree.as_os_str().is_empty());
    Ok(walk.found.into_inner().unwrap_or_else(|e| e.into_inner()))
}

struct SourceWalk<'a> {
    source: &'a SourceTree,
    since_ns: Option<i128>,
    found: Mutex<Vec<PathBuf>>,
    linked: Mutex<Vec<LinkSeen>>,
    failure: Mutex<Option<io::Error>>,
}

impl SourceWalk<'_> {
    fn dir<'s>(&'s self, scope: &rayon::Scope<'s>, rel: PathBuf) {
        let source = self.source;
        let (found, failure) = (&self.found, &self.failure);
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
                    scope.spawn(move |scope| self.dir(scope, child));
                }
                Ok(Some(meta)) if meta.kind == Kind::File => {
                    if meta.nlink > 1 {
                        self.linked
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(LinkSeen {
                                path: child.clone(),
                                src: (meta.dev, meta.ino),
                                nlink: meta.nlink,
                                dst: None,
                            });
                    }
                    if self.since_ns.is_some_and(|t| meta.ctime_ns() >= t) {
                        found.lock().unwrap_or_else(|e| e.into_inner()).push(child);
                    }
                }
                _ => {}
            }
        }
    }
}
