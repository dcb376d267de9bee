//! epoll plus an eventfd: the reader thread sleeps here until the notification fd is readable,
//! a deadline passes, or another thread asks it to stop.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::errno::to_io;

/// Token of the notification fd in epoll events.
const TOKEN_SOURCE: u64 = 1;
/// Token of the shutdown eventfd.
const TOKEN_WAKE: u64 = 2;

/// What woke the reader.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Wakeup {
    pub readable: bool,
    pub woken: bool,
}

/// An epoll instance watching one notification fd and one wake eventfd.
pub struct Poller {
    epoll: Epoll,
    wake: EventFd,
}

/// A handle other threads use to wake the poller (for shutdown).
pub struct Waker(OwnedFd);

impl Poller {
    pub fn new(source: BorrowedFd<'_>) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(to_io)?;
        let wake =
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(to_io)?;
        epoll
            .add(source, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SOURCE))
            .map_err(to_io)?;
        epoll
            .add(
                wake.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_WAKE),
            )
            .map_err(to_io)?;
        Ok(Self { epoll, wake })
    }

    /// Waits until the source is readable, the waker fires, or `timeout` passes (None: forever).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Wakeup> {
        let mut events = [EpollEvent::empty(); 2];
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(d) => {
                let ms = d.as_millis().clamp(0, i32::MAX as u128 - 1) as u32;
                // Round up so a 0.4 ms deadline does not turn into a busy loop of 0 ms waits.
                let ms = if ms == 0 && !d.is_zero() { 1 } else { ms };
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE)
            }
        };
        let n = match self.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(to_io(e)),
        };
        let mut wakeup = Wakeup::default();
        for event in &events[..n] {
            match event.data() {
                TOKEN_SOURCE => wakeup.readable = true,
                TOKEN_WAKE => wakeup.woken = true,
                _ => {}
            }
        }
        Ok(wakeup)
    }

    /// A waker for another thread: a duplicate of the eventfd, so it owns what it uses.
    pub fn waker(&self) -> io::Result<Waker> {
        Ok(Waker(self.wake.as_fd().try_clone_to_owned()?))
    }

    /// Clears the wake counter so the next wait sleeps again.
    pub fn clear_wake(&self) {
        // EAGAIN here only means the counter was already zero.
        let _ = self.wake.read();
    }
}

impl Waker {
    pub fn wake(&self) -> io::Result<()> {
        nix::unistd::write(&self.0, &1u64.to_ne_bytes())
            .map(|_| ())
            .map_err(to_io)
    }
}
