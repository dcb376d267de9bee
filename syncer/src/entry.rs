//! Directory entries of either tree: `(dir fd, name)` in, `Meta` or a listing out. Every lookup
//! is one component relative to an open directory and never follows a symlink.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{SFlag, fstatat};

use crate::sys::errno::to_io;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    /// Sockets and device nodes: not replicated (reported once).
    Other,
}

/// The metadata the replica must reproduce, plus ctime for the reconcile's guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits (07777).
    pub mode: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub uid: u32,
    pub gid: u32,
    /// Device and inode number: names of one file (hard links) share them.
    pub dev: u64,
    pub ino: u64,
    /// Names the inode has (hard links), anywhere on its filesystem.
    pub nlink: u64,
}

impl Meta {
    pub fn from_stat(st: &libc::stat) -> Self {
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let kind = match fmt {
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            SFlag::S_IFIFO => Kind::Fifo,
            _ => Kind::Other,
        };
        Self {
            kind,
            mode: st.st_mode & 0o7777,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
            uid: st.st_uid,
            gid: st.st_gid,
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
        }
    }

    /// A regular file with more than one name (hard links).
    pub fn is_multi_link(&self) -> bool {
        self.kind == Kind::File && self.nlink > 1
    }

    /// ctime in ns since the epoch.
    pub fn ctime_ns(&self) -> i128 {
        i128::from(self.ctime.0) * 1_000_000_000 + i128::from(self.ctime.1)
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; Ok(None) when the entry does not exist.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Meta>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Meta::from_stat(&st))),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(err) => Err(to_io(err)),
    }
}

/// Metadata of an open file.
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    nix::sys::stat::fstat(fd)
        .map(|st| Meta::from_stat(&st))
        .map_err(to_io)
}

/// The names in an open directory (without `.` and `..`) and their type when getdents knows it.
pub fn list_dir(dir: &OwnedFd) -> io::Result<Vec<(OsString, Option<Kind>)>> {
    read_entries(dir, |name, kind, _| (name, kind))
}

/// The names in an open directory with their inode numbers (`d_ino`, no stat) and their type
/// when getdents knows it: what a search for the other names of an inode reads.
pub fn list_inodes(dir: &OwnedFd) -> io::Result<Vec<(OsString, Option<Kind>, u64)>> {
    read_entries(dir, |name, kind, ino| (name, kind, ino))
}

/// Reads every entry but `.` and `..` of an open directory as `row(name, type, d_ino)`.
fn read_entries<T>(
    dir: &OwnedFd,
    row: impl Fn(OsString, Option<Kind>, u64) -> T,
) -> io::Result<Vec<T>> {
    // Dir takes ownership and rewinds, so give it a duplicate of the caller's fd.
    let dup = dir.as_fd().try_clone_to_owned()?;
    let mut stream = nix::dir::Dir::from_fd(dup).map_err(to_io)?;
    let mut rows = Vec::new();
    for entry in stream.iter() {
        let entry = entry.map_err(to_io)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let kind = entry.file_type().map(kind_of);
        rows.push(row(
            OsStr::from_bytes(name).to_os_string(),
            kind,
            entry.ino(),
        ));
    }
    Ok(rows)
}

fn kind_of(t: nix::dir::Type) -> Kind {
    match t {
        nix::dir::Type::File => Kind::File,
        nix::dir::Type::Directory => Kind::Dir,
        nix::dir::Type::Symlink => Kind::Symlink,
        nix::dir::Type::Fifo => Kind::Fifo,
        _ => Kind::Other,
    }
}

/// Splits a relative path into its parent and last component ("" has no name).
pub fn split(rel: &Path) -> Option<(&Path, &OsStr)> {
    Some((rel.parent()?, rel.file_name()?))
}

/// A permission error (EACCES): the entry is not for this syncer to read now (only a syncer
/// that is no root meets this).
pub fn is_denied(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EACCES)
}

/// The highest directory of `dir` (itself included) that `open` refuses with EACCES, walking
/// down from the top.
pub fn first_denied(dir: &Path, open: impl Fn(&Path) -> io::Result<()>) -> Option<PathBuf> {
    let mut at = PathBuf::new();
    for part in dir.components() {
        at.push(part);
        if matches!(open(&at), Err(e) if is_denied(&e)) {
            return Some(at);
        }
    }
    None
}

/// True for errors meaning "an ancestor of this path is gone or no longer a directory": the
/// ancestor's own event settles it, so the path is skipped.
pub fn is_ancestor_gone(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV)
    )
}
