//! File-system calls with the resolution rules the syncer's safety depends on: source paths are
//! opened beneath the source root without following any symlink (openat2(2) with
//! RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, Linux 5.6+), and file clones use FICLONE.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use super::errno::{check, to_io};

/// Opens `rel` beneath `root` with `flags`, refusing `..` escapes, absolute paths and every
/// symlink on the way, including the last component (ELOOP). An empty `rel` opens `root`.
pub fn open_beneath(root: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(Mode::empty())
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    loop {
        match openat2(root, rel, how) {
            // openat2 returns EAGAIN when a concurrent rename raced the walk: try again.
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map_err(to_io),
        }
    }
}

/// Opens the directory `rel` beneath `root` for reading entries and `*at` calls.
pub fn open_dir_beneath(root: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    open_beneath(root, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
}

/// FICLONE: share the source's extents (btrfs, xfs with reflink). EOPNOTSUPP/EXDEV/EINVAL mean
/// "not here": the caller falls back to copy_file_range.
pub fn clone_file(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: FICLONE takes the source fd as its integer argument; both fds are borrowed and
    // stay open for the call.
    check(unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) })?;
    Ok(())
}

/// copy_file_range of up to `len` bytes from the current offsets; returns bytes copied (0 at
/// EOF). EXDEV/EOPNOTSUPP/EINVAL mean the caller must fall back to read/write.
pub fn copy_range(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    loop {
        match nix::fcntl::copy_file_range(src.as_fd(), None, dst.as_fd(), None, len) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map_err(to_io),
        }
    }
}
