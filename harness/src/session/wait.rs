//! Deadline waits: predicates and the run's live counters in, "done at t" or "gave up" out.
//! Never a bare sleep: every wait polls a condition against a deadline and the Ctrl-C flag.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::host::proctree::TreeTracker;
use crate::measure::verify::{self, CompareOptions};
use crate::probe::ProbeLive;
use crate::util::clock::Clock;

const POLL: Duration = Duration::from_millis(20);
/// The syncer is idle once its tree used less than this CPU over `IDLE_WINDOW` and spawned
/// nothing (a status file rewritten every second costs far less).
const IDLE_CPU_NS: u64 = 20_000_000;
const IDLE_WINDOW: Duration = Duration::from_secs(1);

/// Why a syncer under test never got ready; the run is failed with this as its reason.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("interrupted")]
    Interrupted,
    #[error("exited before it was ready ({status}): {log_tail}; see {}", log.display())]
    Exited {
        status: ExitStatus,
        log_tail: String,
        log: PathBuf,
    },
    #[error("not ready after {timeout:?} (waited for {readiness}); see {}", log.display())]
    NoSign {
        timeout: Duration,
        /// The sign waited for, as `Readiness` debug-prints it.
        readiness: String,
        log: PathBuf,
    },
    #[error("not ready after {timeout:?}: the replica never equalled the pre-storm tree ({diff})")]
    NeverEqual { timeout: Duration, diff: String },
}

/// Polls `pred` until it returns true (Ok(true)), the timeout passes (Ok(false)), it
/// fails (Err), or Ctrl-C (Err).
pub fn until(
    timeout: Duration,
    stop: &AtomicBool,
    mut pred: impl FnMut() -> Result<bool, ReadyError>,
) -> Result<bool, ReadyError> {
    let deadline = Instant::now() + timeout;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(ReadyError::Interrupted);
        }
        if pred()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until the probe has seen every expected path and a full compare finds the trees
/// equal; returns ns from `storm_end` to the start of that compare. A probe still missing
/// paths after a quiet second does not block the compare (it may have missed an event).
#[allow(clippy::too_many_arguments)]
pub fn converge(
    clock: &Clock,
    storm_end: u64,
    limit: Duration,
    live: &ProbeLive,
    src: &Path,
    replica: &Path,
    opts: CompareOptions,
    stop: &AtomicBool,
) -> Option<u64> {
    let deadline = Instant::now() + limit;
    let mut last_remaining = usize::MAX;
    let mut last_change = Instant::now();
    // Deletions of paths the replica never had get no event: after a quiet spell compare
    // anyway, spending at most about a third of the time in compares on big trees.
    let mut quiet = POLL * 5;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let remaining = live.remaining.load(Ordering::Acquire);
        if remaining != last_remaining {
            last_remaining = remaining;
            last_change = Instant::now();
        }
        if remaining == 0 || last_change.elapsed() >= quiet {
            let t = clock.now_ns();
            let started = Instant::now();
            if verify::compare(src, replica, opts).is_equal() {
                return Some(t.saturating_sub(storm_end));
            }
            quiet = (started.elapsed() * 2).max(POLL * 5);
            last_change = Instant::now();
        } else {
            std::thread::sleep(POLL);
        }
    }
    None
}

/// Waits until the syncer's process tree goes idle; returns ns from `storm_end` to the start
/// of the idle window, or None when it stayed busy until `storm_end + limit`.
pub fn idle(
    clock: &Clock,
    storm_end: u64,
    limit: Duration,
    tracker: &mut TreeTracker,
    stop: &AtomicBool,
) -> Option<u64> {
    let deadline_ns = storm_end + limit.as_nanos() as u64;
    let first = tracker.sample();
    let (mut since, mut cpu0, mut seen0) = (clock.now_ns(), first.cpu_ns, first.seen);
    while clock.now_ns() < deadline_ns && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let now = clock.now_ns();
        let s = tracker.sample();
        if s.live == 0 {
            return Some(now.saturating_sub(storm_end));
        }
        if s.cpu_ns.saturating_sub(cpu0) > IDLE_CPU_NS || s.seen != seen0 {
            (since, cpu0, seen0) = (now, s.cpu_ns, s.seen);
        } else if now - since >= IDLE_WINDOW.as_nanos() as u64 {
            return Some(since.saturating_sub(storm_end));
        }
    }
    None
}
