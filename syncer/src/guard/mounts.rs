//! Notices SOURCE going away while nothing changes in it: after `umount -l` the syncer still
//! reads the detached tree through its open descriptor and gets no events, so only the mount
//! table tells. The kernel flags `/proc/self/mountinfo` (POLLPRI) on every mount or unmount;
//! the check also runs once a second, for changes poll cannot see (a directory renamed away).

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::control::Control;
use crate::guard::{SourceGuard, SourceLost};

const CHECK_EVERY_MS: u16 = 1000;

/// Starts the watch; `on_lost` runs once if SOURCE is lost, and the watch ends.
pub fn spawn_watch(
    guard: Arc<SourceGuard>,
    control: Arc<Control>,
    on_lost: impl FnOnce(SourceLost) + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    // Opened before the thread starts, so a kernel without it is a setup error.
    let mut mountinfo = File::open("/proc/self/mountinfo")?;
    std::thread::Builder::new()
        .name("source-guard".into())
        .spawn(move || {
            let mut table = Vec::new();
            while !control.stopping() {
                if let Err(lost) = guard.check() {
                    on_lost(lost);
                    return;
                }
                // Reading the table to its end re-arms the flag for the next change.
                table.clear();
                if mountinfo
                    .rewind()
                    .and_then(|()| mountinfo.read_to_end(&mut table))
                    .is_err()
                {
                    // The once-a-second check alone still runs.
                    std::thread::sleep(std::time::Duration::from_millis(CHECK_EVERY_MS.into()));
                    continue;
                }
                let mut fds = [PollFd::new(mountinfo.as_fd(), PollFlags::POLLPRI)];
                // EINTR or a timeout: check again either way.
                let _ = poll(&mut fds, PollTimeout::from(CHECK_EVERY_MS));
            }
        })
}
