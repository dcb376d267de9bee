//! The errno helpers: [`check`] turns a libc return of -1 into `io::Error` (every wrapper in
//! `sys/` goes through it instead of its own `ret < 0` test), and [`read_result`] classifies
//! the errors the read loops must handle without allocating (EAGAIN, EINTR).

use std::io;

/// `Ok(ret)` unless the call returned -1, then errno as `io::Error` (read at once, before
/// anything else can overwrite it). Wrap the `unsafe` call itself: `check(unsafe { f() })?`.
pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The outcome of one non-blocking read on a notification fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were read into the buffer.
    Filled(usize),
    /// The queue is empty (EAGAIN): go back to epoll.
    Drained,
}

/// Converts the return value of a `read(2)`-like call. EINTR is reported as `Filled(0)` so the
/// caller simply reads again; `io::Error::last_os_error` does not allocate.
pub fn read_result(ret: isize) -> io::Result<ReadOutcome> {
    if ret >= 0 {
        return Ok(ReadOutcome::Filled(ret as usize));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(ReadOutcome::Drained),
        Some(libc::EINTR) => Ok(ReadOutcome::Filled(0)),
        _ => Err(err),
    }
}

/// nix's `Errno` into `io::Error`, keeping the code.
pub fn to_io(err: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(err as i32)
}
