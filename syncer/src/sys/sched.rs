//! Thread priority: worker threads (appliers, copy pools, walkers) run at a lower priority
//! than the event reader, so under CPU contention the reader keeps draining the kernel queue
//! and the queue does not overflow while copies wait.

use std::io;

use super::errno::check;

/// Nice value for worker threads (the reader keeps the process default).
pub const WORKER_NICE: i32 = 2;

/// Sets the calling thread's nice value (Linux applies setpriority(PRIO_PROCESS, tid) to
/// one thread). Raising nice never needs privileges.
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: plain integer arguments; `tid` is this thread's id.
    check(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) })?;
    Ok(())
}

/// Lowers the calling worker thread's priority; a failure only costs fairness, so it is
/// reported at debug level and otherwise ignored.
pub fn become_worker() {
    if let Err(err) = set_thread_nice(WORKER_NICE) {
        crate::debug!("cannot lower a worker thread's priority: {err}");
    }
}
