//! The operations of the local target on one entry: `(directory fd, name)` of the source and of
//! the replica in, the replica entry made equal out. Every call is relative to an open replica
//! directory and never follows a symlink; new content appears through a temp name + rename.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{Mode, UtimensatFlags, fchmod, futimens, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::linkat;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, symlinkat, unlinkat};

use super::backup::Backup;
use super::bandwidth::Bandwidth;
use crate::entry::{Kind, Meta, list_dir, stat_at, stat_fd};
use crate::guard::DeleteBudget;
use crate::stats::TargetStats;
use crate::sys::errno::to_io;
use crate::sys::fs::{clone_file, copy_range};

/// Prefix of the temp names content is written under before the final rename. A crash can
/// leave them behind; the start-up reconcile removes them (they are not in the source).
pub const TMP_PREFIX: &str = ".syncer~";

/// Temp names whose removal failed (a replica remounted read-only mid-copy) kept for another
/// try, at most this many; past that they wait for the next start-up reconcile.
const LEFTOVERS_MAX: usize = 10_000;

/// What `copy_file` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The replica's name holds a new copy of these many bytes.
    Bytes(u64),
    /// Gone from the source: gone from the replica too.
    Gone,
    /// No longer a regular file in the source (its event settles it).
    NotAFile,
    /// Rewritten while it was read: the copy could mix two versions, so none was made (its
    /// retry copies the version it finds then).
    Rewritten,
}

pub struct Ops {
    pub fsync: bool,
    /// `--max-delete`: every entry `remove_tree` unlinks is taken from it first.
    budget: Arc<DeleteBudget>,
    /// The target's name, for the refusal message.
    target: String,
    /// Running as root: ownership is replicated too (as `rsync -a` does).
    pub as_root: bool,
    clone_works: AtomicBool,
    tmp_counter: AtomicU64,
    /// `--bwlimit`: bytes copied are spent from it (a clone moves none).
    pub bandwidth: Bandwidth,
    /// `--backup-dir`: what would be deleted or replaced is moved there instead.
    pub backup: Option<Backup>,
    /// Temp names a failed copy could not remove, with their directory (an fd, so a rename of
    /// the directory meanwhile does not lose them): removed by `remove_leftovers`.
    leftovers: Mutex<Vec<(OwnedFd, OsString)>>,
}

fn io_err(err: nix::errno::Errno) -> io::Error {
    to_io(err)
}

fn timespec(t: (i64, i64)) -> TimeSpec {
    TimeSpec::new(t.0, t.1)
}

impl Ops {
    /// The `--max-delete` window every unlink of this target is taken from.
    pub fn budget(&self) -> &DeleteBudget {
        &self.budget
    }

    pub fn new(fsync: bool, budget: Arc<DeleteBudget>, target: String) -> Self {
        Self {
            fsync,
            budget,
            target,
            as_root: nix::unistd::geteuid().is_root(),
            clone_works: AtomicBool::new(true),
            tmp_counter: AtomicU64::new(0),
            bandwidth: Bandwidth::unlimited(),
            backup: None,
            leftovers: Mutex::new(Vec::new()),
        }
    }

    /// Removes a temp name of ours after a failed copy. When the replica refuses even that
    /// (read-only, I/O error), the name is kept for `remove_leftovers`: a replica must not
    /// keep an entry the source never had until the next restart.
    fn discard_tmp(&self, dir: BorrowedFd<'_>, tmp: &OsStr) {
        match unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(_) => {
                let mut leftovers = self.leftovers.lock().unwrap_or_else(|e| e.into_inner());
                // No fd to spare (EMFILE) or too many kept: the start-up reconcile removes it.
                if leftovers.len() < LEFTOVERS_MAX
                    && let Ok(fd) = dir.try_clone_to_owned()
                {
                    leftovers.push((fd, tmp.to_os_string()));
                }
            }
        }
    }

    /// Tries again to remove the temp names failed copies left; called before each batch.
    /// Those the replica still refuses stay for the next call.
    pub fn remove_leftovers(&self) {
        let mut leftovers = self.leftovers.lock().unwrap_or_else(|e| e.into_inner());
        leftovers.retain(|(dir, tmp)| {
            !matches!(
                unlinkat(dir.as_fd(), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir),
                Ok(()) | Err(nix::errno::Errno::ENOENT)
            )
        });
    }

    fn tmp_name(&self) -> OsString {
        let n = self.tmp_counter.fetch_add(1, Relaxed);
        OsString::from(format!("{TMP_PREFIX}{}.{n}", std::process::id()))
    }

    /// Removes `name` in `dir`, a whole tree if it is a directory. Missing is fine. Each entry
    /// is taken from the delete budget before it goes: past the cap the error carries a
    /// `DeleteRefused` and nothing more is removed.
    pub fn remove_tree(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        stats: &TargetStats,
    ) -> io::Result<()> {
        let Some(meta) = stat_at(dir, name)? else {
            return Ok(());
        };
        if let Some(backup) = self.backup_of(name) {
            // Kept, not deleted: every entry still counts against --max-delete.
            let entries = count_entries(dir, name, &meta)?;
            self.budget
                .take(entries, &self.target)
                .map_err(io::Error::other)?;
            backup.stash(dir, name, name)?;
            stats.ops.delete.fetch_add(entries, Relaxed);
            return Ok(());
        }
        if meta.kind == Kind::Dir {
            if !self.as_root && meta.mode & 0o700 != 0o700 {
                // A copy of a source mode that shuts its owner out (000, or no write): this
                // syncer, no root, could neither list nor empty it. It goes anyway.
                nix::sys::stat::fchmodat(
                    dir,
                    name,
                    Mode::from_bits_truncate(meta.mode | 0o700),
                    nix::sys::stat::FchmodatFlags::NoFollowSymlink,
                )
                .or_else(ignore_enoent)?;
            }
            match openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(sub) => {
                    for (child, _) in list_dir(&sub)? {
                        self.remove_tree(sub.as_fd(), &child, stats)?;
                    }
                }
                Err(nix::errno::Errno::ENOENT) => return Ok(()),
                Err(err) => return Err(io_err(err)),
            }
            self.take_one()?;
            unlinkat(dir, name, UnlinkatFlags::RemoveDir).or_else(ignore_enoent)?;
        } else {
            self.take_one()?;
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).or_else(ignore_enoent)?;
        }
        stats.ops.delete.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The backup, unless `name` is one of the syncer's own temp names (never worth keeping).
    fn backup_of(&self, name: &OsStr) -> Option<&Backup> {
        let temp = name.as_encoded_bytes().starts_with(TMP_PREFIX.as_bytes());
        self.backup.as_ref().filter(|_| !temp)
    }

    /// With `--backup-dir`, moves a non-directory entry at `name` to the backup before
    /// something is renamed over it (a directory in the way is removed, so backed up, by
    /// the caller's `remove_tree`).
    pub fn set_aside(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        if let Some(backup) = self.backup_of(name)
            && stat_at(dir, name)?.is_some_and(|m| m.kind != Kind::Dir)
        {
            backup.stash(dir, name, name)?;
        }
        Ok(())
    }

    fn take_one(&self) -> io::Result<()> {
        self.budget.take(1, &self.target).map_err(io::Error::other)
    }

    /// Renames `tmp` over `name`, first removing a directory that stands in the way.
    fn commit(
        &self,
        dir: BorrowedFd<'_>,
        tmp: &OsStr,
        name: &OsStr,
        stats: &TargetStats,
    ) -> io::Result<()> {
        if let Some(backup) = self.backup_of(name)
            && stat_at(dir, name)?.is_some_and(|m| m.kind != Kind::Dir)
        {
            // Swapped, then the old entry (now under the temp name) moved to the backup: a
            // reader finds the old or the new content under `name`, never nothing.
            nix::fcntl::renameat2(
                dir,
                tmp,
                dir,
                name,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(io_err)?;
            // A copy of what the replica held already (a name marked again after its rename
            // was applied) replaced nothing: no backup of it.
            if same_file_content(dir, tmp, name)? {
                return unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir).map_err(io_err);
            }
            return backup.stash(dir, tmp, name);
        }
        match renameat(dir, tmp, dir, name) {
            Ok(()) => Ok(()),
            Err(
                nix::errno::Errno::EISDIR
                | nix::errno::Errno::ENOTEMPTY
                | nix::errno::Errno::EEXIST,
            ) => {
                self.remove_tree(dir, name, stats)?;
                renameat(dir, tmp, dir, name).map_err(io_err)
            }
            Err(err) => Err(io_err(err)),
        }
    }

    fn set_owner(&self, fd: BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
        if self.as_root {
            fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(io_err)?;
        }
        Ok(())
    }

    /// Copies the regular file `name` from `src_dir` to `dst_dir` through a temp name and a
    /// rename: the replica inode that held the name is never written, so its other names (a
    /// hard link) keep their content.
    pub fn copy_file(
        &self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        stats: &TargetStats,
    ) -> io::Result<Copied> {
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY;
        let src = match openat(src_dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => {
                self.remove_tree(dst_dir, name, stats)?;
                return Ok(Copied::Gone);
            }
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENXIO) => {
                return Ok(Copied::NotAFile);
            }
            Err(err) => return Err(io_err(err)),
        };
        let meta = stat_fd(src.as_fd())?;
        if meta.kind != Kind::File {
            return Ok(Copied::NotAFile);
        }
        let tmp = self.tmp_name();
        let dst = openat(
            dst_dir,
            tmp.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(io_err)?;
        let result = self.fill(&src, &dst, meta.size).and_then(|copied| {
            if rewritten_meanwhile(&meta, &stat_fd(src.as_fd())?) {
                return Ok(None);
            }
            self.set_owner(dst.as_fd(), &meta)?;
            fchmod(dst.as_fd(), Mode::from_bits_truncate(meta.mode)).map_err(io_err)?;
            futimens(dst.as_fd(), &TimeSpec::UTIME_OMIT, &timespec(meta.mtime)).map_err(io_err)?;
            if self.fsync {
                nix::unistd::fsync(dst.as_fd()).map_err(io_err)?;
            }
            drop(dst);
            self.commit(dst_dir, &tmp, name, stats)?;
            Ok(Some(copied))
        });
        match result {
            Ok(None) => {
                self.discard_tmp(dst_dir, &tmp);
                Ok(Copied::Rewritten)
            }
            Ok(Some(copied)) => {
                stats.ops.copy.fetch_add(1, Relaxed);
                stats.bytes_copied.fetch_add(copied, Relaxed);
                Ok(Copied::Bytes(copied))
            }
            Err(err) => {
                // The temp file is ours and useless now.
                self.discard_tmp(dst_dir, &tmp);
                Err(err)
            }
        }
    }

    /// Makes `name` in `dst_dir` another name of the replica file `from_name` in `from_dir`
    /// (a hard link): linked under a temp name, then renamed over `name`, so a reader finds
    /// under `name` the old file or this one, never nothing. The inode that held `name` is
    /// not written.
    pub fn link_over(
        &self,
        from_dir: BorrowedFd<'_>,
        from_name: &OsStr,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        stats: &TargetStats,
    ) -> io::Result<()> {
        let tmp = self.tmp_name();
        linkat(
            from_dir,
            from_name,
            dst_dir,
            tmp.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(io_err)?;
        self.commit(dst_dir, &tmp, name, stats)
            .inspect_err(|_| self.discard_tmp(dst_dir, &tmp))?;
        stats.ops.link.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Content: FICLONE first, then copy_file_range, then read/write. Copies to EOF, not to the
    /// size seen at open, so a file that grew meanwhile is not cut (its event re-copies anyway).
    fn fill(&self, src: &OwnedFd, dst: &OwnedFd, size_hint: u64) -> io::Result<u64> {
        if size_hint == 0 {
            return Ok(0);
        }
        if self.clone_works.load(Relaxed) {
            match clone_file(src.as_fd(), dst.as_fd()) {
                Ok(()) => return Ok(stat_fd(dst.as_fd())?.size),
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::EOPNOTSUPP | libc::EXDEV | libc::EINVAL | libc::ENOTTY)
                    ) =>
                {
                    self.clone_works.store(false, Relaxed);
                }
                Err(err) => return Err(err),
            }
        }
        let mut total = 0u64;
        let chunk = self.bandwidth.limited().map_or(1 << 30, Bandwidth::chunk);
        loop {
            match copy_range(src.as_fd(), dst.as_fd(), chunk) {
                Ok(0) => return Ok(total),
                Ok(n) => {
                    total += n as u64;
                    if let Some(limit) = self.bandwidth.limited() {
                        limit.spend(n as u64);
                    }
                }
                Err(err)
                    if total == 0
                        && matches!(
                            err.raw_os_error(),
                            Some(libc::EXDEV | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS)
                        ) =>
                {
                    return read_write(src, dst, self.bandwidth.limited());
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Makes `name` in `dst_dir` a directory with the source's mode (and owner as root).
    /// Returns true when it had to be created.
    pub fn ensure_dir(
        &self,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
        stats: &TargetStats,
    ) -> io::Result<bool> {
        let existing = stat_at(dst_dir, name)?;
        let created = match existing {
            Some(m) if m.kind == Kind::Dir => false,
            other => {
                if other.is_some() {
                    self.remove_tree(dst_dir, name, stats)?;
                }
                match mkdirat(dst_dir, name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(err) => return Err(io_err(err)),
                }
                stats.ops.mkdir.fetch_add(1, Relaxed);
                true
            }
        };
        let needs_meta = created
            || existing.is_some_and(|m| {
                m.mode != meta.mode || (self.as_root && (m.uid, m.gid) != (meta.uid, meta.gid))
            });
        if needs_meta {
            let mode = Mode::from_bits_truncate(meta.mode);
            let dir = match openat(
                dst_dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(dir) => dir,
                // The replica's copy took a source mode that shuts out its owner too (000), and
                // this syncer is no root: it cannot open what it must chmod back, but it may
                // chmod it by name (without following a symlink, which it was a moment ago
                // not; chown is root's anyway).
                Err(nix::errno::Errno::EACCES) if !self.as_root => {
                    nix::sys::stat::fchmodat(
                        dst_dir,
                        name,
                        mode,
                        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
                    )
                    .map_err(io_err)?;
                    if !created {
                        stats.ops.meta.fetch_add(1, Relaxed);
                    }
                    return Ok(created);
                }
                Err(err) => return Err(io_err(err)),
            };
            self.set_owner(dir.as_fd(), meta)?;
            fchmod(dir.as_fd(), mode).map_err(io_err)?;
            if !created {
                stats.ops.meta.fetch_add(1, Relaxed);
            }
        }
        Ok(created)
    }

    /// Sets a directory's or symlink's mtime without following it.
    pub fn set_mtime(&self, dst_dir: BorrowedFd<'_>, name: &OsStr, meta: &Meta) -> io::Result<()> {
        utimensat(
            dst_dir,
            name,
            &TimeSpec::UTIME_OMIT,
            &timespec(meta.mtime),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(io_err)
    }

    /// Replicates the symlink `name` as a symlink with the same target text (never followed).
    pub fn copy_symlink(
        &self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
        stats: &TargetStats,
    ) -> io::Result<()> {
        let link = match readlinkat(src_dir, name) {
            Ok(link) => link,
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => return Ok(()),
            Err(err) => return Err(io_err(err)),
        };
        if let Some(existing) = stat_at(dst_dir, name)?
            && existing.kind == Kind::Symlink
            && readlinkat(dst_dir, name).ok().as_deref() == Some(link.as_os_str())
        {
            // An lchown of the source link changes nothing else: owner first, since
            // lchown leaves the mtime alone.
            if self.as_root && (existing.uid, existing.gid) != (meta.uid, meta.gid) {
                fchownat(
                    dst_dir,
                    name,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(io_err)?;
                stats.ops.meta.fetch_add(1, Relaxed);
            }
            if existing.mtime != meta.mtime {
                self.set_mtime(dst_dir, name, meta)?;
            }
            return Ok(());
        }
        let tmp = self.tmp_name();
        symlinkat(link.as_os_str(), dst_dir, tmp.as_os_str()).map_err(io_err)?;
        self.place_special(dst_dir, &tmp, name, meta, stats)?;
        stats.ops.symlink.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Gives a symlink or FIFO made under `tmp` its owner (as root) and mtime, then renames
    /// it over `name`.
    fn place_special(
        &self,
        dst_dir: BorrowedFd<'_>,
        tmp: &OsStr,
        name: &OsStr,
        meta: &Meta,
        stats: &TargetStats,
    ) -> io::Result<()> {
        let finish = || -> io::Result<()> {
            if self.as_root {
                fchownat(
                    dst_dir,
                    tmp,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(io_err)?;
            }
            self.set_mtime(dst_dir, tmp, meta)?;
            self.commit(dst_dir, tmp, name, stats)
        };
        finish().inspect_err(|_| self.discard_tmp(dst_dir, tmp))
    }

    /// Replicates a FIFO (named pipe) as a FIFO: mode, owner (as root) and mtime.
    pub fn copy_fifo(
        &self,
        dst_dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
        stats: &TargetStats,
    ) -> io::Result<()> {
        let same = |m: &Meta| {
            m.kind == Kind::Fifo
                && m.mode == meta.mode
                && m.mtime == meta.mtime
                && (!self.as_root || (m.uid, m.gid) == (meta.uid, meta.gid))
        };
        if stat_at(dst_dir, name)?.as_ref().is_some_and(same) {
            return Ok(());
        }
        let tmp = self.tmp_name();
        nix::sys::stat::mknodat(
            dst_dir,
            tmp.as_os_str(),
            nix::sys::stat::SFlag::S_IFIFO,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .map_err(io_err)?;
        nix::sys::stat::fchmodat(
            dst_dir,
            tmp.as_os_str(),
            Mode::from_bits_truncate(meta.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(io_err)
        .inspect_err(|_| self.discard_tmp(dst_dir, &tmp))?;
        self.place_special(dst_dir, &tmp, name, meta, stats)?;
        stats.ops.copy.fetch_add(1, Relaxed);
        Ok(())
    }
}

/// Whether two regular files in `dir` hold the same bytes with the same mode and mtime
/// (read only when size, mode and mtime already agree).
/// Whether a file changed while it was copied in a way that can leave the copy a mix of two
/// versions: written at the same size (a rewrite in place), or cut shorter. A file that only
/// grew (a log being appended to) is taken as copied: what was read is a prefix the file had,
/// and its next event copies the rest; so a rewrite that also grows it can still mix.
fn rewritten_meanwhile(before: &Meta, after: &Meta) -> bool {
    let changed = (after.mtime, after.ctime) != (before.mtime, before.ctime);
    changed && after.size <= before.size
}

fn same_file_content(dir: BorrowedFd<'_>, a: &OsStr, b: &OsStr) -> io::Result<bool> {
    use std::io::Read;
    let (Some(ma), Some(mb)) = (stat_at(dir, a)?, stat_at(dir, b)?) else {
        return Ok(false);
    };
    let meta_same = ma.kind == Kind::File
        && mb.kind == Kind::File
        && (ma.size, ma.mode, ma.mtime, ma.uid, ma.gid)
            == (mb.size, mb.mode, mb.mtime, mb.uid, mb.gid);
    if !meta_same {
        return Ok(false);
    }
    let open = |name: &OsStr| -> io::Result<std::fs::File> {
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        Ok(std::fs::File::from(fd))
    };
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Entries `remove_tree` would unlink for `name`: itself and, for a directory, all below.
fn count_entries(dir: BorrowedFd<'_>, name: &OsStr, meta: &Meta) -> io::Result<u64> {
    if meta.kind != Kind::Dir {
        return Ok(1);
    }
    let sub = match openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(sub) => sub,
        Err(nix::errno::Errno::ENOENT) => return Ok(1),
        Err(err) => return Err(io_err(err)),
    };
    let mut total = 1;
    for (child, _) in list_dir(&sub)? {
        if let Some(child_meta) = stat_at(sub.as_fd(), &child)? {
            total += count_entries(sub.as_fd(), &child, &child_meta)?;
        }
    }
    Ok(total)
}

fn ignore_enoent(err: nix::errno::Errno) -> Result<(), io::Error> {
    if err == nix::errno::Errno::ENOENT {
        Ok(())
    } else {
        Err(io_err(err))
    }
}

/// Plain read/write copy for file systems without copy_file_range between them.
fn read_write(src: &OwnedFd, dst: &OwnedFd, limit: Option<&Bandwidth>) -> io::Result<u64> {
    let mut reader = std::fs::File::from(src.try_clone()?);
    let mut writer = std::fs::File::from(dst.try_clone()?);
    let Some(limit) = limit else {
        return std::io::copy(&mut reader, &mut writer);
    };
    let mut buf = vec![0u8; limit.chunk()];
    let mut total = 0u64;
    loop {
        let n = match std::io::Read::read(&mut reader, &mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        std::io::Write::write_all(&mut writer, &buf[..n])?;
        total += n as u64;
        limit.spend(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn mount(args: &[&str], dir: &std::path::Path) -> bool {
        Command::new("mount")
            .args(args)
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Found by the read-only fault scenario: a copy that failed when the replica went
    /// read-only left its temp file there until the next restart.
    #[test]
    fn a_temp_name_the_replica_refused_to_remove_goes_once_it_takes_writes_again() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: mounting a tmpfs needs root");
            return;
        }
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("replica");
        std::fs::create_dir(&dir).unwrap();
        assert!(mount(&["-t", "tmpfs", "-o", "size=1m", "tmpfs"], &dir));
        let _unmount = scopeguard(&dir);
        let ops = Ops::new(false, Arc::new(DeleteBudget::new(None)), "t".into());
        let tmp = ops.tmp_name();
        std::fs::write(dir.join(&tmp), b"half a copy").unwrap();
        let fd = std::fs::File::open(&dir).unwrap();
        assert!(mount(&["-o", "remount,ro"], &dir));
        ops.discard_tmp(fd.as_fd(), &tmp);
        ops.remove_leftovers();
        assert!(
            dir.join(&tmp).exists(),
            "read-only: still there, still kept"
        );
        assert!(mount(&["-o", "remount,rw"], &dir));
        ops.remove_leftovers();
        assert!(
            !dir.join(&tmp).exists(),
            "removed once the replica takes writes"
        );
    }

    /// Unmounts `dir` when dropped, also when an assertion fails.
    fn scopeguard(dir: &std::path::Path) -> impl Drop + '_ {
        struct Unmount<'a>(&'a std::path::Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg(self.0).status();
            }
        }
        Unmount(dir)
    }
}
