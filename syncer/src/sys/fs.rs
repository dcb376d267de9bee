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

/// Who an object is, as `statx(2)` says: its mount, inode and link count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectId {
    pub mount_id: u64,
    pub ino: u64,
    pub nlink: u32,
}

/// `statx` of `path` (not following a last symlink), or of `fd` itself when `path` is None.
pub fn object_id(fd: Option<BorrowedFd<'_>>, path: Option<&Path>) -> io::Result<ObjectId> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = match path {
        Some(path) => std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?,
        None => std::ffi::CString::default(),
    };
    let dirfd = fd.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    let flags = if path.is_some() {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        libc::AT_EMPTY_PATH
    };
    let mut buf = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: c_path is NUL-terminated and outlives the call; `buf` is a writable statx
    // struct; a borrowed dirfd stays open for the call.
    check(unsafe {
        libc::statx(
            dirfd,
            c_path.as_ptr(),
            flags,
            libc::STATX_INO | libc::STATX_NLINK | libc::STATX_MNT_ID,
            buf.as_mut_ptr(),
        )
    })?;
    // SAFETY: statx succeeded, so it filled the struct (and it was zeroed before).
    let stx = unsafe { buf.assume_init() };
    Ok(ObjectId {
        mount_id: stx.stx_mnt_id,
        ino: stx.stx_ino,
        nlink: stx.stx_nlink,
    })
}

/// The filesystem id of the filesystem holding `fd` (`statfs(2)` `f_fsid`). For disk
/// filesystems it comes from the volume UUID, so it stays the same across mounts and
/// reboots; tmpfs gets a new one every mount.
pub fn filesystem_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let fsid = nix::sys::statfs::fstatfs(fd)
        .map_err(to_io)?
        .filesystem_id();
    // SAFETY: `fsid_t` is `#[repr(C)] struct { int __val[2]; }` on Linux, 8 bytes with no
    // padding; libc keeps its fields private, so it is read as the two ints it is.
    let [a, b]: [i32; 2] = unsafe { std::mem::transmute(fsid) };
    Ok((u64::from(a as u32) << 32) | u64::from(b as u32))
}

/// Whether the directory `dir` holds any entry besides `.` and `..`.
pub fn has_entries(dir: BorrowedFd<'_>) -> io::Result<bool> {
    let mut listing = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(to_io)?;
    for entry in listing.iter() {
        let name = entry.map_err(to_io)?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            return Ok(true);
        }
    }
    Ok(false)
}
