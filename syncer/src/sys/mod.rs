//! The kernel boundary: every system call wrapper and every line of `unsafe` in the syncer.
//!
//! Callers get `OwnedFd`/`BorrowedFd` and `io::Result`, never bare integers or errno globals.
#![allow(unsafe_code)]

pub mod epoll;
pub mod errno;
pub mod fanotify;
pub mod fs;
pub mod inotify;
pub mod sched;
