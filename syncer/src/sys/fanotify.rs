//! fanotify: init a group, add a filesystem mark, read into a caller's reused buffer, and turn
//! directory file handles into fds and paths (name_to_handle_at / open_by_handle_at).
//!
//! nix lacks the FID reporting flags, so this uses libc directly (libc 0.2.191 has every FAN_*
//! constant and struct needed here; only FAN_EVENT_METADATA_LEN is defined below).

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libc::{c_int, c_uint};

use super::errno::{ReadOutcome, check};
use super::inotify::read_into;

pub use libc::{
    FAN_ATTRIB, FAN_CLASS_NOTIF, FAN_CLOEXEC, FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE,
    FAN_DELETE_SELF, FAN_MARK_ADD, FAN_MARK_FILESYSTEM, FAN_MODIFY, FAN_MOVE_SELF, FAN_MOVED_FROM,
    FAN_MOVED_TO, FAN_NONBLOCK, FAN_ONDIR, FAN_Q_OVERFLOW, FAN_RENAME, FAN_REPORT_DFID_NAME,
    FAN_REPORT_DFID_NAME_TARGET, FAN_UNLIMITED_QUEUE, MAX_HANDLE_SZ,
};

/// `FAN_EVENT_METADATA_LEN` = sizeof(struct fanotify_event_metadata) (uapi/linux/fanotify.h);
/// libc 0.2.191 does not export it.
pub const FAN_EVENT_METADATA_LEN: usize = 24;

/// The backend's preferred group: notification only, non-blocking, and every event carries the
/// parent directory's handle plus the entry name (FAN_REPORT_DFID_NAME, Linux 5.9+).
pub const PREFERRED_INIT_FLAGS: c_uint =
    FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME;

/// Optional extras on top of [`PREFERRED_INIT_FLAGS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitOptions {
    /// Also report the target's own handle (FAN_REPORT_DFID_NAME_TARGET, Linux 5.17+).
    /// FAN_REPORT_TARGET_FID needs FAN_REPORT_FID too (fanotify_init(2): EINVAL otherwise); the
    /// libc constant already includes it.
    pub target_fid: bool,
    /// FAN_UNLIMITED_QUEUE (needs CAP_SYS_ADMIN): no overflow, but the queue is unaccounted
    /// kernel memory that grows as long as the reader lags behind a storm.
    pub unlimited_queue: bool,
}

impl InitOptions {
    /// The `fanotify_init` flags for these options.
    pub fn flags(self) -> c_uint {
        let mut flags = PREFERRED_INIT_FLAGS;
        if self.target_fid {
            flags |= FAN_REPORT_DFID_NAME_TARGET;
        }
        if self.unlimited_queue {
            flags |= FAN_UNLIMITED_QUEUE;
        }
        flags
    }
}

/// The events the backend marks a filesystem for. `rename` selects FAN_RENAME (one event with
/// the old and the new directory + name, Linux 5.17+) instead of FAN_MOVED_FROM | FAN_MOVED_TO.
/// FAN_ONDIR: also report events on directories. FAN_EVENT_ON_CHILD is meaningless on a
/// filesystem mark (fanotify_mark(2)), so it is left out.
pub fn event_mask(rename: bool) -> u64 {
    let moves = if rename {
        FAN_RENAME
    } else {
        FAN_MOVED_FROM | FAN_MOVED_TO
    };
    FAN_CREATE
        | FAN_DELETE
        | moves
        | FAN_CLOSE_WRITE
        | FAN_MODIFY
        | FAN_ATTRIB
        | FAN_DELETE_SELF
        | FAN_MOVE_SELF
        | FAN_ONDIR
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// One fanotify group.
pub struct Fanotify {
    fd: OwnedFd,
}

impl Fanotify {
    /// `fanotify_init(flags, O_RDONLY | O_CLOEXEC)`. The event fd flags only matter for groups
    /// that report open fds; in FID mode events carry FAN_NOFD.
    pub fn init(flags: c_uint) -> io::Result<Self> {
        let event_f_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as c_uint;
        // SAFETY: fanotify_init takes two integer flag words and returns a new fd or -1.
        let raw = check(unsafe { libc::fanotify_init(flags, event_f_flags) })?;
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    /// [`PREFERRED_INIT_FLAGS`] plus the chosen options.
    pub fn init_preferred(options: InitOptions) -> io::Result<Self> {
        Self::init(options.flags())
    }

    /// `fanotify_mark(fd, flags, mask, AT_FDCWD, path)`.
    pub fn mark(&self, flags: c_uint, mask: u64, path: &Path) -> io::Result<()> {
        let c_path = c_path(path)?;
        // SAFETY: the fd is a live fanotify group and c_path a NUL-terminated string that
        // outlives the call.
        check(unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                flags,
                mask,
                libc::AT_FDCWD,
                c_path.as_ptr(),
            )
        })?;
        Ok(())
    }

    /// Marks the whole filesystem holding `path` (FAN_MARK_FILESYSTEM, Linux 4.20+). A mount
    /// mark would reject create/delete/move events with EINVAL.
    pub fn mark_filesystem(&self, path: &Path, mask: u64) -> io::Result<()> {
        self.mark(FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, path)
    }

    /// Marks the filesystem with `event_mask(true)`; on EINVAL (kernel before 5.17 has no
    /// FAN_RENAME) retries with `event_mask(false)`. Returns the mask in effect.
    pub fn mark_filesystem_probing_rename(&self, path: &Path) -> io::Result<u64> {
        let with_rename = event_mask(true);
        match self.mark_filesystem(path, with_rename) {
            Ok(()) => Ok(with_rename),
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                let without = event_mask(false);
                self.mark_filesystem(path, without)?;
                Ok(without)
            }
            Err(err) => Err(err),
        }
    }

    /// One non-blocking `read(2)` of whole events into `buf`. The kernel returns EINVAL when
    /// `buf` cannot hold even one event; 64 KiB or more is advised.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<ReadOutcome> {
        read_into(self.fd.as_fd(), buf)
    }
}

impl AsFd for Fanotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A file handle as `name_to_handle_at(2)` returns it, kept on the stack (at most
/// MAX_HANDLE_SZ = 128 bytes, include/linux/exportfs.h).
#[derive(Clone, Copy)]
pub struct FileHandle {
    pub handle_type: i32,
    len: usize,
    bytes: [u8; MAX_HANDLE_SZ as usize],
}

impl FileHandle {
    /// The opaque handle bytes (`f_handle[0..handle_bytes]`).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Debug for FileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileHandle")
            .field("handle_type", &self.handle_type)
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// `struct file_handle` with room for the largest handle (its `f_handle` is a flexible array).
#[repr(C)]
struct RawHandle {
    handle_bytes: c_uint,
    handle_type: c_int,
    f_handle: [u8; MAX_HANDLE_SZ as usize],
}

/// `name_to_handle_at(dirfd, path, flags)`: the handle of `path` and its mount id. No privilege
/// needed. `flags`: 0 (do not follow a final symlink), AT_SYMLINK_FOLLOW, AT_EMPTY_PATH (for
/// `dirfd` itself with an empty path), AT_HANDLE_FID (6.5+). EOPNOTSUPP: the filesystem cannot
/// encode handles.
pub fn name_to_handle_at(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: c_int,
) -> io::Result<(FileHandle, i32)> {
    let c_path = c_path(path)?;
    let mut raw = RawHandle {
        handle_bytes: MAX_HANDLE_SZ as c_uint,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ as usize],
    };
    let mut mount_id: c_int = 0;
    // SAFETY: `raw` is a `struct file_handle` header followed by MAX_HANDLE_SZ writable bytes,
    // as `handle_bytes` tells the kernel; c_path is NUL-terminated; dirfd is borrowed, so open.
    check(unsafe {
        libc::name_to_handle_at(
            dirfd.as_raw_fd(),
            c_path.as_ptr(),
            (&raw mut raw).cast::<libc::file_handle>(),
            &mut mount_id,
            flags,
        )
    })?;
    let handle = FileHandle {
        handle_type: raw.handle_type,
        len: (raw.handle_bytes as usize).min(MAX_HANDLE_SZ as usize),
        bytes: raw.f_handle,
    };
    Ok((handle, mount_id))
}

/// `open_by_handle_at(mount_fd, handle, flags)` (needs CAP_DAC_READ_SEARCH); `flags` is
/// usually `O_PATH`. `mount_fd` is any fd on the same filesystem. The object being gone is
/// ESTALE, which `io::Error::kind()` reports as `StaleNetworkFileHandle`: see [`is_stale`].
pub fn open_by_handle_at(
    mount_fd: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
    flags: c_int,
) -> io::Result<OwnedFd> {
    if handle.len() > MAX_HANDLE_SZ as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut raw = RawHandle {
        handle_bytes: handle.len() as c_uint,
        handle_type,
        f_handle: [0; MAX_HANDLE_SZ as usize],
    };
    raw.f_handle[..handle.len()].copy_from_slice(handle);
    // SAFETY: `raw` is a valid `struct file_handle` whose `handle_bytes` fits its buffer; the
    // kernel only reads it. mount_fd is borrowed, so it stays open for the call.
    let ret = check(unsafe {
        libc::open_by_handle_at(
            mount_fd.as_raw_fd(),
            (&raw mut raw).cast::<libc::file_handle>(),
            flags | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `ret` is a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// True when `err` is ESTALE: the handle's object no longer exists (directory already removed).
pub fn is_stale(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ESTALE)
}

/// The path the kernel knows for `fd`, from the `/proc/self/fd/N` link. A directory already
/// removed (link count 0; the link text would end in " (deleted)") is NotFound.
pub fn fd_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    // fstat works on O_PATH fds since Linux 3.6 (open(2)).
    let st = nix::sys::stat::fstat(fd).map_err(super::errno::to_io)?;
    if st.st_nlink == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "object was removed after its handle was opened",
        ));
    }
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// What [`probe`] found usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// FAN_RENAME accepted (5.17+); else the mask falls back to MOVED_FROM/MOVED_TO.
    pub rename: bool,
    /// FAN_REPORT_DFID_NAME_TARGET accepted (5.17+).
    pub target_fid: bool,
    /// open_by_handle_at works (CAP_DAC_READ_SEARCH): handle-map misses can be resolved.
    pub open_by_handle: bool,
}

/// Why fanotify cannot serve a directory; `Display` is the line `auto` mode logs.
#[derive(Debug)]
pub struct Unsupported {
    /// The call that failed.
    pub step: &'static str,
    pub error: io::Error,
    pub reason: &'static str,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fanotify unusable: {} ({} failed: {})",
            self.reason, self.step, self.error
        )
    }
}

impl std::error::Error for Unsupported {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Explains an errno from one probe step (fanotify_init(2), fanotify_mark(2)).
fn reason(step: &'static str, errno: i32) -> &'static str {
    match (step, errno) {
        (_, libc::EPERM) => "not permitted: filesystem marks need CAP_SYS_ADMIN (run as root)",
        (_, libc::ENOSYS) => "kernel built without fanotify (CONFIG_FANOTIFY)",
        ("fanotify_init", libc::EINVAL) => "kernel lacks FAN_REPORT_DFID_NAME (needs Linux 5.9+)",
        ("fanotify_init", libc::EMFILE) => {
            "too many fanotify groups (raise /proc/sys/fs/fanotify/max_user_groups)"
        }
        (_, libc::ENODEV) => "filesystem has a zero fsid (e.g. FUSE): handles are not unique",
        (_, libc::EOPNOTSUPP) => "filesystem cannot encode file handles",
        (_, libc::EXDEV) => {
            "directory's fsid differs from its filesystem's (btrfs subvolume before Linux 6.8)"
        }
        ("fanotify_mark", libc::EINVAL) => {
            "filesystem does not support these events with a filesystem mark (e.g. /proc, /sys)"
        }
        ("fanotify_mark", libc::ENOSPC) => {
            "too many marks (raise /proc/sys/fs/fanotify/max_user_marks)"
        }
        (_, libc::ENOENT) | (_, libc::ENOTDIR) => "the directory does not exist",
        _ => "unexpected error",
    }
}

/// Tells whether fanotify with FAN_REPORT_DFID_NAME and a filesystem mark works for `dir`,
/// and which optional features do; else why not. Creates and drops its own groups, touches no
/// file. The backend's `auto` mode logs the result and falls back to inotify on `Err`.
pub fn probe(dir: &Path) -> Result<Capabilities, Unsupported> {
    let fail = |step: &'static str, error: io::Error| {
        let errno = error.raw_os_error().unwrap_or(0);
        Unsupported {
            step,
            reason: reason(step, errno),
            error,
        }
    };
    let group = Fanotify::init(PREFERRED_INIT_FLAGS).map_err(|e| fail("fanotify_init", e))?;
    let dir_fd = std::fs::File::open(dir).map_err(|e| fail("open", e))?;
    let (handle, _mount_id) = name_to_handle_at(dir_fd.as_fd(), Path::new(""), libc::AT_EMPTY_PATH)
        .map_err(|e| fail("name_to_handle_at", e))?;
    let mask = group
        .mark_filesystem_probing_rename(dir)
        .map_err(|e| fail("fanotify_mark", e))?;
    let target_fid = Fanotify::init(
        InitOptions {
            target_fid: true,
            unlimited_queue: false,
        }
        .flags(),
    )
    .is_ok();
    let open_by_handle = open_by_handle_at(
        dir_fd.as_fd(),
        handle.handle_type,
        handle.bytes(),
        libc::O_PATH,
    )
    .is_ok();
    Ok(Capabilities {
        rename: mask & FAN_RENAME != 0,
        target_fid,
        open_by_handle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_build_flags() {
        let plain = InitOptions::default().flags();
        assert_eq!(plain, PREFERRED_INIT_FLAGS);
        let target = InitOptions {
            target_fid: true,
            unlimited_queue: true,
        }
        .flags();
        // TARGET_FID must come with FID, or fanotify_init fails with EINVAL.
        assert_ne!(target & libc::FAN_REPORT_FID, 0);
        assert_ne!(target & libc::FAN_REPORT_TARGET_FID, 0);
        assert_ne!(target & FAN_UNLIMITED_QUEUE, 0);
    }

    #[test]
    fn mask_uses_rename_or_moves() {
        assert_ne!(event_mask(true) & FAN_RENAME, 0);
        assert_eq!(event_mask(true) & (FAN_MOVED_FROM | FAN_MOVED_TO), 0);
        assert_eq!(event_mask(false) & FAN_RENAME, 0);
        assert_ne!(event_mask(false) & FAN_ONDIR, 0);
    }

    #[test]
    fn handle_of_a_directory_round_trips_when_permitted() {
        let dir = std::fs::File::open(".").unwrap();
        let (handle, _) = match name_to_handle_at(dir.as_fd(), Path::new(""), libc::AT_EMPTY_PATH) {
            Ok(found) => found,
            Err(err) => {
                eprintln!("skipped: name_to_handle_at: {err}");
                return;
            }
        };
        assert!(!handle.bytes().is_empty());
        match open_by_handle_at(
            dir.as_fd(),
            handle.handle_type,
            handle.bytes(),
            libc::O_PATH,
        ) {
            Ok(fd) => {
                let path = fd_path(fd.as_fd()).unwrap();
                assert_eq!(path, std::fs::canonicalize(".").unwrap());
            }
            Err(err) => eprintln!("skipped open_by_handle_at: {err}"),
        }
    }
}
