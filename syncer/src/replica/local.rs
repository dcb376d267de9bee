//! The local directory target: a `Batch` in, the replica directory made equal to the source for
//! every path of it out. Renames first, then structure in sorted order (parents before
//! children: deletes, directories, symlinks), then file contents in parallel chunks.
//!
//! Hard links: a batch file with more than one name is written with all its names under
//! SOURCE (`links::resolve`), batch or not, as one replica inode. Other names outside SOURCE
//! or in excluded subtrees are not replicated, so such a file is a plain copy.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::backup::Backup;
use super::local_ops::{Copied, Ops};
use super::{Outcome, Target, TargetOptions, Trouble, is_transient};
use crate::change::Rename;
use crate::entry::{
    Kind, Meta, first_denied, is_ancestor_gone, is_denied, split, stat_at, stat_fd,
};
use crate::exclude::ExcludeSet;
use crate::guard::{DeleteBudget, DeleteRefused};
use crate::links::resolve::{self, Group};
use crate::queue::pending::{Batch, RescanJob};
use crate::scan::Compare;
use crate::scan::Found;
use crate::source::SourceTree;
use crate::stats::TargetStats;
use crate::sys::fs::open_dir_beneath;

/// Files per parallel chunk: each chunk opens its two parent directories once.
const CHUNK: usize = 256;
/// Open directory fds kept per side during the structural pass.
const DIR_CACHE: usize = 64;

pub struct LocalTarget {
    name: String,
    source: Arc<SourceTree>,
    /// The global excludes and the target's own (a reload replaces them).
    excludes: Arc<ExcludeSet>,
    root: OwnedFd,
    ops: Ops,
    pool: rayon::ThreadPool,
    /// Source paths already reported as unreadable (each is reported once).
    reported: Mutex<HashSet<PathBuf>>,
    /// Directories this batch had to create as missing parents: their contents may be
    /// incomplete, so they are compared afterwards.
    rebuilt: Mutex<Vec<PathBuf>>,
}

/// What the structural pass decided for one path.
enum Step {
    Done,
    File(Meta),
    Dir(Meta),
    /// An ancestor is gone from the source (or no directory): compare it whole later.
    Compare(PathBuf),
}

/// A small cache of open directories, keyed by relative path.
struct DirCache(HashMap<PathBuf, Arc<OwnedFd>>);

impl DirCache {
    fn get(
        &mut self,
        rel: &Path,
        open: impl FnOnce() -> io::Result<OwnedFd>,
    ) -> io::Result<Arc<OwnedFd>> {
        if let Some(fd) = self.0.get(rel) {
            return Ok(fd.clone());
        }
        if self.0.len() >= DIR_CACHE {
            self.0.clear();
        }
        let fd = Arc::new(open()?);
        self.0.insert(rel.to_path_buf(), fd.clone());
        Ok(fd)
    }
}

impl LocalTarget {
    pub fn open(
        source: Arc<SourceTree>,
        excludes: Arc<ExcludeSet>,
        abs: &Path,
        options: &TargetOptions,
        budget: Arc<DeleteBudget>,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(abs)?;
        let root = nix::fcntl::open(
            abs,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(crate::sys::errno::to_io)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.jobs.max(1))
            .thread_name(|i| format!("apply-{i}"))
            .start_handler(|_| crate::sys::sched::become_worker())
            .build()
            .map_err(io::Error::other)?;
        let name = abs.display().to_string();
        let mut ops = Ops::new(options.fsync, budget, name.clone());
        ops.bandwidth.set_rate(options.bwlimit);
        if let Some(dir) = &options.backup_dir {
            ops.backup = Some(Backup::new(root.as_fd(), dir.clone(), options.backup_keep)?);
        }
        Ok(Self {
            ops,
            name,
            source,
            excludes,
            root,
            pool,
            reported: Mutex::new(HashSet::new()),
            rebuilt: Mutex::new(Vec::new()),
        })
    }

    /// Opens the replica directory `rel`, creating missing ancestors that are directories in
    /// the source, and replacing what stands in their place in the replica (a file, a
    /// symlink). Errors with ENOENT when the source has no such directory any more.
    fn ensure_target_dir(&self, rel: &Path, stats: &TargetStats) -> io::Result<OwnedFd> {
        match open_dir_beneath(self.root.as_fd(), rel) {
            // ENOTDIR, ELOOP: an ancestor in the replica is no directory, where the source has
            // one (a rename that failed left the old file under the name, say). Taken for a
            // gone source ancestor, the batch's files below were dropped as vanished.
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) => {}
            other => return other,
        }
        let (parent, name) =
            split(rel).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let tparent = self.ensure_target_dir(parent, stats)?;
        let sparent = self.source.open_dir(parent)?;
        match stat_at(sparent.as_fd(), name)? {
            Some(meta) if meta.kind == Kind::Dir => {
                if self.ops.ensure_dir(tparent.as_fd(), name, &meta, stats)? {
                    self.rebuilt
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(rel.to_path_buf());
                }
                open_dir_beneath(self.root.as_fd(), rel)
            }
            _ => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    /// The source's entry at `rel` now: None when gone (or its parent is).
    fn source_kind(&self, rel: &Path) -> Option<Kind> {
        let (parent, name) = split(rel)?;
        let dir = self.source.open_dir(parent).ok()?;
        stat_at(dir.as_fd(), name).ok().flatten().map(|m| m.kind)
    }

    /// Whether the replica has an entry at `rel`.
    fn replica_has(&self, rel: &Path) -> bool {
        split(rel).is_some_and(|(parent, name)| {
            open_dir_beneath(self.root.as_fd(), parent)
                .is_ok_and(|dir| stat_at(dir.as_fd(), name).is_ok_and(|m| m.is_some()))
        })
    }

    /// The highest directory above `rel` that this syncer cannot enter, in the source or in
    /// the replica (whose copy took the source's mode while the source had it), or else its
    /// parent when the replica's copy of it takes no writes from this syncer.
    fn blocking_dir(&self, rel: &Path) -> Option<PathBuf> {
        let parent = rel.parent()?;
        // Refused on either side: the source's refusal first, as the walk always looked.
        let open = |at: &Path| match self.source.open_dir(at) {
            Err(err) if is_denied(&err) => Err(err),
            _ => open_dir_beneath(self.root.as_fd(), at).map(drop),
        };
        if let Some(dir) = first_denied(parent, open) {
            return Some(dir);
        }
        // A replica directory whose copied mode denies its owner writes (0555): a syncer that
        // is no root can add nothing to it until the source's mode changes.
        let unwritable = !self.ops.as_root
            && split(rel).is_some_and(|(parent, _)| {
                open_dir_beneath(self.root.as_fd(), parent)
                    .ok()
                    .and_then(|dir| stat_fd(dir.as_fd()).ok())
                    .is_some_and(|meta| meta.mode & 0o200 == 0)
            });
        unwritable.then(|| parent.to_path_buf())
    }

    /// Whether the source's entry at `rel` opens for reading now (or is gone: a retry
    /// settles that too).
    fn source_opens(&self, rel: &Path) -> bool {
        let Some((parent, name)) = split(rel) else {
            return true;
        };
        let Ok(dir) = self.source.open_dir(parent) else {
            return false;
        };
        match nix::fcntl::openat(
            dir.as_fd(),
            name,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(_) => true,
            Err(err) => err != nix::errno::Errno::EACCES && err != nix::errno::Errno::EPERM,
        }
    }

    /// Whether the replica has a directory at `rel` where the source has none (gone, or
    /// another kind now).
    fn replica_dir_source_lacks(&self, rel: &Path) -> bool {
        let replica_dir = split(rel).is_some_and(|(parent, name)| {
            open_dir_beneath(self.root.as_fd(), parent).is_ok_and(|dir| {
                stat_at(dir.as_fd(), name).is_ok_and(|m| m.is_some_and(|m| m.kind == Kind::Dir))
            })
        });
        replica_dir && self.source_kind(rel) != Some(Kind::Dir)
    }

    /// Settles `rel` by its state in this batch; a directory (or a renamed one's name) is
    /// compared whole, as the replica's copy there may belong to another directory object.
    fn settle(&self, rel: &Path, is_dir: bool, outcome: &mut Outcome, extra: &mut Vec<PathBuf>) {
        extra.push(rel.to_path_buf());
        if is_dir || self.source_kind(rel) == Some(Kind::Dir) {
            outcome.rescan.push(rel.to_path_buf());
        }
    }

    /// Swaps the replica's `from` and `to` (renameat2 RENAME_EXCHANGE) when it has both,
    /// then settles both names by state either way: the same pair of renames also comes from
    /// `mv a b; mv b a`, which swaps nothing, and the source may have moved on since.
    fn apply_exchange(
        &self,
        pair: &Rename,
        stats: &TargetStats,
        outcome: &mut Outcome,
        extra: &mut Vec<PathBuf>,
    ) {
        let swapped = || -> io::Result<()> {
            let (a_parent, a_name) =
                split(&pair.from).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            let (b_parent, b_name) =
                split(&pair.to).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            let a_dir = open_dir_beneath(self.root.as_fd(), a_parent)?;
            let b_dir = open_dir_beneath(self.root.as_fd(), b_parent)?;
            nix::fcntl::renameat2(
                a_dir.as_fd(),
                a_name,
                b_dir.as_fd(),
                b_name,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(crate::sys::errno::to_io)
        };
        match swapped() {
            Ok(()) => {
                stats.ops.rename.fetch_add(1, Relaxed);
            }
            Err(err) => crate::debug!(
                "exchange {:?} <-> {:?} not applied ({err}); both settled by state",
                pair.from,
                pair.to
            ),
        }
        // `is_dir` is the kind of what moved to `to`; the other side is looked up.
        self.settle(&pair.from, false, outcome, extra);
        self.settle(&pair.to, pair.is_dir, outcome, extra);
    }

    fn apply_rename(
        &self,
        rename: &Rename,
        stats: &TargetStats,
        outcome: &mut Outcome,
        extra: &mut Vec<PathBuf>,
    ) {
        // The old name exists again in the source: an exchange (RENAME_EXCHANGE is reported as
        // two renames, a -> b and b -> a: applied as such, one entry would be lost), or a name
        // reused at once (`mv current old && mkdir current`). Replacing the replica's `to`
        // could then destroy the only copy of what now stands at `from`, so both names are
        // settled by state; with nothing at `to` the rename loses nothing and still saves
        // the copy, and the new `from` is settled after it.
        if self.source_kind(&rename.from).is_some() {
            if self.replica_has(&rename.to) {
                crate::debug!(
                    "rename {:?} -> {:?}: both names exist in the source; settled by state",
                    rename.from,
                    rename.to
                );
                self.settle(&rename.from, rename.is_dir, outcome, extra);
                self.settle(&rename.to, rename.is_dir, outcome, extra);
                return;
            }
            self.settle(&rename.from, rename.is_dir, outcome, extra);
        }
        let attempt = || -> io::Result<bool> {
            let (from_parent, from_name) =
                split(&rename.from).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            let (to_parent, to_name) =
                split(&rename.to).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            let from_dir = open_dir_beneath(self.root.as_fd(), from_parent)?;
            let to_dir = self.ensure_target_dir(to_parent, stats)?;
            self.ops.set_aside(to_dir.as_fd(), to_name)?;
            match nix::fcntl::renameat(from_dir.as_fd(), from_name, to_dir.as_fd(), to_name) {
                Ok(()) => Ok(false),
                Err(
                    nix::errno::Errno::ENOTEMPTY
                    | nix::errno::Errno::EEXIST
                    | nix::errno::Errno::EISDIR
                    | nix::errno::Errno::ENOTDIR,
                ) => {
                    self.ops.remove_tree(to_dir.as_fd(), to_name, stats)?;
                    nix::fcntl::renameat(from_dir.as_fd(), from_name, to_dir.as_fd(), to_name)
                        .map_err(crate::sys::errno::to_io)?;
                    Ok(true)
                }
                Err(err) => Err(crate::sys::errno::to_io(err)),
            }
        };
        match attempt() {
            Ok(replaced) => {
                stats.ops.rename.fetch_add(1, Relaxed);
                // The source's rename(2) cannot have replaced a non-empty directory, or a
                // file with a directory or back: what stood at `to` in the replica was put
                // there from the future (a fanotify handle resolved to its present name before
                // this rename was read), and it was just removed. Compare the new subtree.
                if replaced {
                    self.settle(&rename.to, rename.is_dir, outcome, extra);
                }
            }
            Err(err) => {
                // Fallback: settle the old name by its state and compare the new subtree.
                crate::debug!(
                    "rename {:?} -> {:?} not applied ({err}); falling back to copy",
                    rename.from,
                    rename.to
                );
                extra.push(rename.from.clone());
                if rename.is_dir {
                    outcome.rescan.push(rename.to.clone());
                } else {
                    extra.push(rename.to.clone());
                }
                // The replica has no directory where the stream says the entry was: the two
                // disagree about that directory (a fanotify handle resolved to its present
                // name, after a rename the stream reports later), so whatever now stands
                // there is compared whole once this batch's renames are applied.
                if let Some((parent, _)) = split(&rename.from)
                    && !parent.as_os_str().is_empty()
                    && open_dir_beneath(self.root.as_fd(), parent).is_err()
                {
                    outcome.rescan.push(parent.to_path_buf());
                }
            }
        }
    }

    fn apply_root(&self, stats: &TargetStats) -> io::Result<Step> {
        let meta = stat_fd(self.source.root.as_fd())?;
        let current = stat_fd(self.root.as_fd())?;
        if current.mode != meta.mode {
            nix::sys::stat::fchmod(
                self.root.as_fd(),
                nix::sys::stat::Mode::from_bits_truncate(meta.mode),
            )
            .map_err(crate::sys::errno::to_io)?;
            stats.ops.meta.fetch_add(1, Relaxed);
        }
        Ok(Step::Done)
    }

    /// The highest ancestor in `dir` (itself included) that is no directory in the source.
    fn topmost_gone(&self, dir: &Path) -> PathBuf {
        let mut at = PathBuf::new();
        for part in dir.components() {
            at.push(part);
            if self.source.open_dir(&at).is_err() {
                return at;
            }
        }
        dir.to_path_buf()
    }

    /// Structural pass for one path: deletes, directories, symlinks, FIFOs; files are deferred.
    fn apply_structure(
        &self,
        rel: &Path,
        sources: &mut DirCache,
        targets: &mut DirCache,
        stats: &TargetStats,
    ) -> io::Result<Step> {
        let Some((parent, name)) = split(rel) else {
            return self.apply_root(stats);
        };
        let sparent = match sources.get(parent, || self.source.open_dir(parent)) {
            Ok(fd) => fd,
            // Its directory is gone now, but may be back (`rm -rf d; mkdir d`) by the time its
            // own mark is applied, and a mark on a directory only compares its metadata:
            // the replica's copy of what stood below it is compared whole later instead.
            Err(err) if is_ancestor_gone(&err) => {
                return Ok(Step::Compare(self.topmost_gone(parent)));
            }
            Err(err) => return Err(err),
        };
        let Some(meta) = stat_at(sparent.as_fd(), name)? else {
            self.source.links.forget(rel);
            // Gone in the source: gone in the replica (a missing replica parent is fine too).
            return match open_dir_beneath(self.root.as_fd(), parent) {
                Ok(tparent) => self
                    .ops
                    .remove_tree(tparent.as_fd(), name, stats)
                    .map(|()| Step::Done),
                Err(err) if is_ancestor_gone(&err) => Ok(Step::Done),
                Err(err) => Err(err),
            };
        };
        if meta.kind == Kind::File {
            return Ok(Step::File(meta));
        }
        let tparent = targets.get(parent, || self.ensure_target_dir(parent, stats))?;
        match meta.kind {
            Kind::Dir => {
                self.ops.ensure_dir(tparent.as_fd(), name, &meta, stats)?;
                Ok(Step::Dir(meta))
            }
            Kind::Symlink => self
                .ops
                .copy_symlink(sparent.as_fd(), tparent.as_fd(), name, &meta, stats)
                .map(|()| Step::Done),
            Kind::Fifo => self
                .ops
                .copy_fifo(tparent.as_fd(), name, &meta, stats)
                .map(|()| Step::Done),
            Kind::Other | Kind::File => {
                self.report_once(rel, "is a socket or device node: not replicated");
                Ok(Step::Done)
            }
        }
    }

    /// The source directory `rel` and its replica (made if missing).
    fn open_dirs(&self, rel: &Path, stats: &TargetStats) -> io::Result<(OwnedFd, OwnedFd)> {
        Ok((
            self.source.open_dir(rel)?,
            self.ensure_target_dir(rel, stats)?,
        ))
    }

    /// Copies one chunk of files that share a parent directory.
    fn copy_chunk(&self, parent: &Path, names: &[&OsStr], stats: &TargetStats) -> Outcome {
        let mut outcome = Outcome::default();
        let dirs = self.open_dirs(parent, stats);
        let (sdir, tdir) = match dirs {
            Ok(pair) => pair,
            Err(err) if is_ancestor_gone(&err) => {
                outcome.vanished = names.iter().map(|name| parent.join(name)).collect();
                return outcome;
            }
            Err(err) => {
                for name in names {
                    self.record_error(&parent.join(name), &err, &mut outcome, stats);
                }
                return outcome;
            }
        };
        for name in names {
            match self.ops.copy_file(sdir.as_fd(), tdir.as_fd(), name, stats) {
                Ok(Copied::Bytes(_) | Copied::Gone) => {}
                // No longer a regular file: check it again by its current state.
                Ok(Copied::NotAFile | Copied::Rewritten) => outcome.retry.push(parent.join(name)),
                Err(err) => self.record_error(&parent.join(name), &err, &mut outcome, stats),
            }
        }
        if self.ops.fsync {
            if let Err(err) = nix::unistd::fsync(tdir.as_fd()) {
                self.record_error(parent, &crate::sys::errno::to_io(err), &mut outcome, stats);
            }
        }
        outcome
    }

    fn copy_files(&self, files: &[&Path], stats: &TargetStats) -> Outcome {
        let mut chunks: Vec<(&Path, Vec<&OsStr>)> = Vec::new();
        for rel in files {
            let Some((parent, name)) = split(rel) else {
                continue;
            };
            match chunks.last_mut() {
                Some((p, names)) if *p == parent && names.len() < CHUNK => names.push(name),
                _ => chunks.push((parent, vec![name])),
            }
        }
        self.pool.install(|| {
            chunks
                .par_iter()
                .map(|(parent, names)| self.copy_chunk(parent, names, stats))
                .reduce(Outcome::default, |mut a, b| {
                    a.merge(b);
                    a
                })
        })
    }

    /// Splits the batch's files into plain ones and link groups: every name under SOURCE of
    /// each multi-link file among them, in the batch or not.
    fn split_link_groups<'p>(&self, files: &[(&'p Path, Meta)]) -> (Vec<&'p Path>, Vec<Group>) {
        let stated: Vec<(PathBuf, Meta)> =
            files.iter().map(|(p, m)| (p.to_path_buf(), *m)).collect();
        let groups: Vec<Group> = resolve::groups(&self.source, &stated)
            .into_iter()
            .map(|g| self.without_excluded(g))
            .filter(|g| g.names.len() > 1)
            .collect();
        let grouped: HashSet<&Path> = groups
            .iter()
            .flat_map(|g| g.names.iter().map(PathBuf::as_path))
            .collect();
        let plain = files
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !grouped.contains(p))
            .collect();
        (plain, groups)
    }

    /// The other names of linked files whose marked name is gone or another file now (see
    /// `resolve::orphaned`), where the replica's copies differ from the source (size, mtime,
    /// mode, owner) or are not one inode: a change made through the gone name, or the link
    /// structure, is brought to them. A name unlinked alone costs them a stat each.
    fn orphaned_groups(
        &self,
        held: &[(PathBuf, crate::links::Ino)],
        files: &[(&Path, Meta)],
        groups: &[Group],
    ) -> Vec<Group> {
        if held.is_empty() {
            return Vec::new();
        }
        let handled: HashSet<crate::links::Ino> = files
            .iter()
            .map(|(_, m)| (m.dev, m.ino))
            .chain(groups.iter().map(|g| g.ino))
            .collect();
        let in_batch: HashSet<&Path> = files.iter().map(|(p, _)| *p).collect();
        resolve::orphaned(&self.source, held, &handled)
            .into_iter()
            .map(|g| self.without_excluded(g))
            .filter(|g| !g.names.is_empty())
            .filter(|g| !g.names.iter().any(|n| in_batch.contains(n.as_path())))
            .filter(|g| self.replica_differs(g))
            .collect()
    }

    /// The group without the names this target excludes (the source index holds every name
    /// the global excludes leave; a target's own patterns may drop more of them).
    fn without_excluded(&self, mut group: Group) -> Group {
        group.names.retain(|name| !self.excludes.covers(name));
        group
    }

    /// Whether the replica's copies of a group's names differ from the source's file, or are
    /// not all one inode.
    fn replica_differs(&self, group: &Group) -> bool {
        let mut inodes = HashSet::new();
        for name in &group.names {
            let Some(src) = resolve::stat_source(&self.source, name) else {
                return true;
            };
            let dst = split(name).and_then(|(parent, file)| {
                let dir = open_dir_beneath(self.root.as_fd(), parent).ok()?;
                stat_at(dir.as_fd(), file).ok().flatten()
            });
            let Some(dst) = dst else {
                return true;
            };
            let owner_differs = self.ops.as_root && (src.uid, src.gid) != (dst.uid, dst.gid);
            if dst.kind != Kind::File
                || (dst.size, dst.mtime, dst.mode) != (src.size, src.mtime, src.mode)
                || owner_differs
            {
                return true;
            }
            inodes.insert((dst.dev, dst.ino));
        }
        inodes.len() > 1
    }

    /// Writes one link group as one replica inode: the first name is copied through a temp
    /// file and a rename, then each other name is linked to that new inode under a temp name
    /// renamed over it. Every step is a rename, so a reader of the replica finds under each
    /// name a whole file: the old one until that name's rename, the new one after. For that
    /// moment the names disagree (some old, some new); none is ever half written, and the
    /// old inode is never written at all, so a replica name the source has unlinked (its
    /// delete still to come) keeps its old content.
    fn copy_group(&self, group: &Group, stats: &TargetStats) -> Outcome {
        let mut outcome = Outcome::default();
        // The replica directory, name and inode of the copy the other names link to.
        let mut lead: Option<(OwnedFd, &OsStr, (u64, u64))> = None;
        for rel in &group.names {
            let Some((parent, name)) = split(rel) else {
                continue;
            };
            let dirs = self.open_dirs(parent, stats);
            let (sdir, tdir) = match dirs {
                Ok(pair) => pair,
                Err(err) if is_ancestor_gone(&err) => {
                    outcome.vanished.push(rel.clone());
                    continue;
                }
                Err(err) => {
                    self.record_error(rel, &err, &mut outcome, stats);
                    continue;
                }
            };
            if let Some((ldir, lname, lino)) = &lead {
                let already = stat_at(tdir.as_fd(), name)
                    .ok()
                    .flatten()
                    .is_some_and(|m| (m.dev, m.ino) == *lino);
                let linked = already
                    || match self
                        .ops
                        .link_over(ldir.as_fd(), lname, tdir.as_fd(), name, stats)
                    {
                        Ok(()) => true,
                        // The replica cannot link there (another filesystem below the
                        // replica root, too many links, no hard links at all): a copy of
                        // its own keeps at least the content right.
                        Err(err) if cannot_link(&err) => {
                            crate::debug!("{}: {rel:?} not linked ({err}); copied", self.name);
                            false
                        }
                        Err(err) => {
                            self.record_error(rel, &err, &mut outcome, stats);
                            continue;
                        }
                    };
                if linked {
                    self.fsync_dir(&tdir, rel, &mut outcome, stats);
                    continue;
                }
            }
            match self.ops.copy_file(sdir.as_fd(), tdir.as_fd(), name, stats) {
                Ok(Copied::Bytes(_)) => {
                    self.fsync_dir(&tdir, rel, &mut outcome, stats);
                    if lead.is_none()
                        && let Ok(Some(meta)) = stat_at(tdir.as_fd(), name)
                    {
                        lead = Some((tdir, name, (meta.dev, meta.ino)));
                    }
                }
                Ok(Copied::Gone) => {}
                Ok(Copied::NotAFile | Copied::Rewritten) => outcome.retry.push(rel.clone()),
                Err(err) => self.record_error(rel, &err, &mut outcome, stats),
            }
        }
        outcome
    }

    fn fsync_dir(&self, dir: &OwnedFd, rel: &Path, outcome: &mut Outcome, stats: &TargetStats) {
        if self.ops.fsync
            && let Err(err) = nix::unistd::fsync(dir.as_fd())
        {
            self.record_error(rel, &crate::sys::errno::to_io(err), outcome, stats);
        }
    }

    fn copy_groups(&self, groups: &[Group], stats: &TargetStats) -> Outcome {
        if groups.is_empty() {
            return Outcome::default();
        }
        self.pool.install(|| {
            groups
                .par_iter()
                .map(|group| self.copy_group(group, stats))
                .reduce(Outcome::default, |mut a, b| {
                    a.merge(b);
                    a
                })
        })
    }

    fn report_once(&self, rel: &Path, what: &str) {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if reported.len() < 100_000 && reported.insert(rel.to_path_buf()) {
            crate::warn!("{}: {:?} {what}", self.name, rel);
        }
    }

    fn record_error(
        &self,
        rel: &Path,
        err: &io::Error,
        outcome: &mut Outcome,
        stats: &TargetStats,
    ) {
        stats.errors.fetch_add(1, Relaxed);
        if let Some(refused) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<DeleteRefused>())
        {
            // Kept pending: a restart with a higher cap applies it.
            outcome.retry.push(rel.to_path_buf());
            outcome.refused.get_or_insert_with(|| refused.to_string());
        } else if is_transient(err) {
            if self.replica_dir_source_lacks(rel) {
                // A directory whose removal (or replacement) failed. By its retry the source
                // may hold a new directory under that name, and a plain mark on a directory
                // compares only its metadata: the retry compares it whole, or the old
                // directory's entries stay in the new one.
                outcome.failed_rescans.push(RescanJob {
                    subtree: rel.to_path_buf(),
                    changed_since_ns: None,
                });
            } else {
                outcome.retry.push(rel.to_path_buf());
            }
            outcome.backoff = true;
            outcome
                .first_error
                .get_or_insert_with(|| format!("{:?}: {err}", rel));
            stats.retries.fetch_add(1, Relaxed);
        } else if matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
            // Permission problems wait for the next event on the path (a chmod sends one), or,
            // below a directory that cannot be entered, for that directory's: no event comes
            // for the path itself when the directory's permissions come back. If nothing
            // blocks it any more (they came back while the batch ran), it goes again now.
            match self.blocking_dir(rel) {
                Some(dir) => outcome.denied.push(dir),
                None if self.source_opens(rel) => outcome.retry.push(rel.to_path_buf()),
                None => {}
            }
            self.report_once(rel, &format!("cannot be replicated: {err} (fix the permissions; it is retried on its next change)"));
        } else if is_ancestor_gone(err) {
            outcome.retry.push(rel.to_path_buf());
        } else {
            self.report_once(rel, &format!("failed: {err}"));
        }
    }
}

impl Target for LocalTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn holds_entries(&self) -> io::Result<bool> {
        crate::sys::fs::has_entries(self.root.as_fd())
    }

    fn reconfigure(&self, options: &TargetOptions) {
        self.ops.bandwidth.set_rate(options.bwlimit);
        self.ops.budget().set_limit(options.max_delete);
    }

    fn apply(&self, batch: &Batch, stats: &TargetStats) -> Outcome {
        if let Some(backup) = &self.ops.backup {
            backup.begin_batch();
        }
        // Failed copies always come back as retries, so their leftover temp names go as soon
        // as the replica takes writes again.
        self.ops.remove_leftovers();
        let mut outcome = Outcome::default();
        let mut extra = Vec::new();
        let mut renames = batch.renames.iter().peekable();
        while let Some(rename) = renames.next() {
            // RENAME_EXCHANGE arrives as a -> b, b -> a: applied one after the other, the
            // first would replace (destroy) the replica's b. Swapped at once instead.
            let exchange = renames
                .next_if(|next| next.from == rename.to && next.to == rename.from)
                .is_some();
            // Paths settled for earlier renames name entries as they were before this one:
            // they move with it (an exchange a<->b then `mv dir_of_b c` settles c/b).
            for path in extra.iter_mut().chain(outcome.rescan.iter_mut()) {
                *path = if exchange {
                    crate::change::swap(path, &rename.from, &rename.to)
                } else {
                    crate::change::rekey(path, &rename.from, &rename.to)
                };
            }
            if exchange {
                self.apply_exchange(rename, stats, &mut outcome, &mut extra);
            } else {
                self.apply_rename(rename, stats, &mut outcome, &mut extra);
            }
        }
        let mut paths: Vec<&Path> = batch
            .paths
            .iter()
            .chain(extra.iter())
            .map(PathBuf::as_path)
            .collect();
        if !extra.is_empty() {
            paths.sort();
            paths.dedup();
        }
        let held = resolve::held(&self.source, paths.iter().copied());
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        let (mut sources, mut targets) = (DirCache(HashMap::new()), DirCache(HashMap::new()));
        for rel in paths {
            if self.excludes.covers(rel) {
                continue;
            }
            match self.apply_structure(rel, &mut sources, &mut targets, stats) {
                Ok(Step::Done) => {}
                Ok(Step::Compare(gone)) => {
                    // Both: the path is marked again if a rename read later moves it (see
                    // `Outcome::vanished`), and what stood below the gone ancestor is compared.
                    outcome.vanished.push(rel.to_path_buf());
                    if !outcome.rescan.contains(&gone) {
                        outcome.rescan.push(gone);
                    }
                }
                Ok(Step::File(meta)) => files.push((rel, meta)),
                Ok(Step::Dir(meta)) => dirs.push((rel, meta)),
                Err(err) => self.record_error(rel, &err, &mut outcome, stats),
            }
        }
        drop((sources, targets));
        let (plain, mut groups) = self.split_link_groups(&files);
        groups.extend(self.orphaned_groups(&held, &files, &groups));
        outcome.merge(self.copy_files(&plain, stats));
        outcome.merge(self.copy_groups(&groups, stats));
        outcome
            .rescan
            .append(&mut self.rebuilt.lock().unwrap_or_else(|e| e.into_inner()));
        // Directory mtimes last, children first: adding entries above changed them.
        for (rel, meta) in dirs.iter().rev() {
            if let Some((parent, name)) = split(rel) {
                let set = open_dir_beneath(self.root.as_fd(), parent)
                    .and_then(|dir| self.ops.set_mtime(dir.as_fd(), name, meta));
                if let Err(err) = set {
                    crate::debug!("{}: mtime of {:?} not set: {err}", self.name, rel);
                }
            }
        }
        outcome
    }

    fn reconcile(
        &self,
        subtree: &Path,
        changed_since_ns: Option<i128>,
        progress: &AtomicU64,
    ) -> Result<Found, Trouble> {
        if let Some(backup) = &self.ops.backup {
            backup.begin_batch();
        }
        let compare = Compare::new(
            &self.source,
            self.excludes.get(),
            self.root.as_fd(),
            changed_since_ns,
            self.ops.as_root,
            progress,
        );
        self.pool.install(|| compare.run(subtree)).map_err(|err| {
            Trouble::Transient(format!("{}: compare of {subtree:?}: {err}", self.name))
        })
    }
}

/// Errors after which a name is copied instead of linked.
fn cannot_link(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EXDEV | libc::EMLINK | libc::EPERM | libc::EOPNOTSUPP)
    )
}
