//! Process-wide control shared by every thread: the monotonic clock pending sets run on, the
//! stop flag, and the count of reconciles requested but not finished (no checkpoint is taken
//! while one is outstanding).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

pub struct Control {
    started: Instant,
    stopping: AtomicBool,
    /// Reconciles requested or running; starts at 1 for the initial sync.
    pub reconciling: AtomicUsize,
    /// How long a stopping syncer keeps applying what is pending.
    pub drain_limit: Duration,
    stop_requested_at: std::sync::Mutex<Option<Instant>>,
    stopped: std::sync::Condvar,
    /// Exit code decided by whoever requested the stop (0 unless something failed).
    pub exit_code: std::sync::atomic::AtomicI32,
    /// A stop without the drain: nothing pending may be applied any more.
    halted: AtomicBool,
}

impl Control {
    pub fn new(drain_limit: Duration) -> Self {
        Self {
            started: Instant::now(),
            stopping: AtomicBool::new(false),
            reconciling: AtomicUsize::new(1),
            drain_limit,
            stop_requested_at: std::sync::Mutex::new(None),
            stopped: std::sync::Condvar::new(),
            exit_code: std::sync::atomic::AtomicI32::new(0),
            halted: AtomicBool::new(false),
        }
    }

    /// Monotonic ns since start: the time base of every pending set.
    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    pub fn request_stop(&self) {
        self.stopping.store(true, SeqCst);
        let mut at = self
            .stop_requested_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        at.get_or_insert_with(Instant::now);
        self.stopped.notify_all();
    }

    /// Stops with a non-zero exit code.
    pub fn fail(&self, code: i32) {
        self.exit_code.store(code, SeqCst);
        self.request_stop();
    }

    /// Stops at once with `code`, applying nothing more: for when applying what is pending
    /// could do harm (SOURCE went away, so its pending deletes would wipe the replica).
    /// True for the first caller only, so the reason is reported once.
    pub fn halt(&self, code: i32) -> bool {
        let first = !self.halted.swap(true, SeqCst);
        if first {
            self.fail(code);
        }
        first
    }

    pub fn halted(&self) -> bool {
        self.halted.load(SeqCst)
    }

    /// Blocks until a stop is requested.
    pub fn wait_stop(&self) {
        let mut at = self
            .stop_requested_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while at.is_none() {
            at = self.stopped.wait(at).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(SeqCst)
    }

    /// True once a stop was requested more than `drain_limit` ago, or at once after a halt.
    pub fn drain_expired(&self) -> bool {
        if self.halted() {
            return true;
        }
        let at = self
            .stop_requested_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        at.is_some_and(|t| t.elapsed() >= self.drain_limit)
    }

    pub fn reconciling(&self) -> bool {
        self.reconciling.load(SeqCst) > 0
    }
}
