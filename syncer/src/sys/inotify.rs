//! inotify: create the instance, add and remove watches, and the hot read into a caller's
//! reused buffer (nix's reader uses a 4 KiB buffer and allocates per event: too slow here).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::errno::{ReadOutcome, check, read_result};

pub use libc::{
    IN_ATTRIB, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_DONT_FOLLOW,
    IN_EXCL_UNLINK, IN_IGNORED, IN_ISDIR, IN_MODIFY, IN_MOVE_SELF, IN_MOVED_FROM, IN_MOVED_TO,
    IN_ONLYDIR, IN_Q_OVERFLOW, IN_UNMOUNT,
};

/// The mask every directory of the source tree is watched with (see inotify(7)).
/// IN_EXCL_UNLINK: no events for files already unlinked but still open (temp files).
pub const WATCH_MASK: u32 = IN_CREATE
    | IN_CLOSE_WRITE
    | IN_MODIFY
    | IN_ATTRIB
    | IN_DELETE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
    | IN_EXCL_UNLINK;

/// One inotify instance (non-blocking, close-on-exec).
pub struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    /// `inotify_init1(IN_NONBLOCK | IN_CLOEXEC)`. The queue size (`max_queued_events`) is fixed
    /// now: a later sysctl change does not affect this instance.
    pub fn new() -> io::Result<Self> {
        // SAFETY: inotify_init1 takes only flags and returns a new fd or -1.
        let raw = check(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })?;
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    /// `inotify_add_watch`; returns the watch descriptor. ENOSPC means `max_user_watches`.
    pub fn add_watch(&self, path: &Path, mask: u32) -> io::Result<i32> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: the fd is a live inotify instance and c_path a NUL-terminated string that
        // outlives the call.
        check(unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c_path.as_ptr(), mask) })
    }

    /// `inotify_rm_watch`; the kernel queues IN_IGNORED for the watch afterwards.
    pub fn rm_watch(&self, wd: i32) -> io::Result<()> {
        // SAFETY: plain integer arguments on a live inotify fd.
        check(unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) })?;
        Ok(())
    }

    /// One non-blocking `read(2)` of whole event records into `buf`.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<ReadOutcome> {
        read_into(self.fd.as_fd(), buf)
    }
}

impl AsFd for Inotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `read(2)` on a notification fd into `buf`, without allocating.
pub fn read_into(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<ReadOutcome> {
    // SAFETY: `buf` is a valid writable region of `buf.len()` bytes for the duration of the
    // call, and `fd` is borrowed, so it stays open.
    let ret = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    read_result(ret)
}
