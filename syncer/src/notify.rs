//! systemd's service notifications (sd_notify(3), `Type=notify` units) without libsystemd:
//! newline-separated `KEY=VALUE` datagrams to the socket named in `$NOTIFY_SOCKET` (a path,
//! or `@name` for an abstract socket). Without that variable every call does nothing.
//!
//! What the syncer says: `READY=1` once the initial sync is applied; `EXTEND_TIMEOUT_USEC`
//! each second while a long initial sync still makes progress (so `TimeoutStartSec=` bounds a
//! stuck start, not a big tree); `WATCHDOG=1` only while no target has had work pending
//! without any progress for the whole `WatchdogSec=` (`Liveness`); `STATUS=` lines with the
//! backlog; `STOPPING=1` on the way out. rsync children never see the variables
//! (`rsync_run::spawn` removes them): a child that wrote to the socket would speak for us.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::stats::{Stats, TargetStats};

/// The variables a child process must not inherit.
pub const ENV_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// `WatchdogSec=` of the unit, when it is meant for this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` / `$WATCHDOG_PID`.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = path.as_bytes();
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name),
                None => SocketAddr::from_pathname(&path),
            };
            let socket = UnixDatagram::unbound();
            match (addr, socket) {
                (Ok(addr), Ok(socket)) => Some((socket, addr)),
                (Err(err), _) | (_, Err(err)) => {
                    crate::warn!("NOTIFY_SOCKET={path:?} cannot be used ({err}); systemd gets no notifications");
                    None
                }
            }
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    /// How often the housekeeper must look: at least twice per watchdog period.
    pub fn tick(&self) -> Duration {
        self.watchdog.map_or(Duration::from_secs(1), |w| {
            (w / 2).min(Duration::from_secs(1))
        })
    }

    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.socket
            && let Err(err) = socket.send_to_addr(message.as_bytes(), addr)
        {
            crate::debug!("cannot notify systemd ({err}): {message:?}");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// The start may take `more` from now (sent while the initial sync makes progress).
    pub fn extend_start(&self, more: Duration) {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", more.as_micros()));
    }

    pub fn alive(&self) {
        if self.watchdog.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }
}

/// Whether every target makes progress: one that has paths pending and whose counters
/// (batches, errors, retries, bytes and files written) have not moved for `stuck_after` is
/// stuck (a hung write, a wedged mount). Failing and retrying is progress: the syncer works.
pub struct Liveness {
    last: Vec<(u64, Instant)>,
}

fn progress(t: &TargetStats) -> u64 {
    [
        &t.batches,
        &t.errors,
        &t.retries,
        &t.bytes_copied,
        &t.bytes_sent,
        &t.ops.copy,
        &t.ops.delete,
        &t.files_sent,
    ]
    .iter()
    .map(|c| c.load(Relaxed))
    .fold(0u64, u64::wrapping_add)
}

impl Liveness {
    pub fn new(stats: &Stats) -> Self {
        let now = Instant::now();
        Self {
            last: stats.targets.iter().map(|t| (progress(t), now)).collect(),
        }
    }

    /// The names of the targets stuck for longer than `stuck_after`.
    pub fn stuck(&mut self, stats: &Stats, stuck_after: Duration) -> Vec<String> {
        let now = Instant::now();
        let mut stuck = Vec::new();
        for (t, (seen, since)) in stats.targets.iter().zip(self.last.iter_mut()) {
            let pending = t.backlog.load(Relaxed) + t.in_flight.load(Relaxed);
            let count = progress(t);
            if pending == 0 || count != *seen {
                *seen = count;
                *since = now;
            } else if now.duration_since(*since) > stuck_after {
                stuck.push(t.name.clone());
            }
        }
        stuck
    }
}

/// What the housekeeper tells systemd each tick.
pub struct Reporter {
    notifier: std::sync::Arc<Notifier>,
    liveness: Liveness,
    last_status: String,
    warned: bool,
}

/// A target without progress this long is stuck when the unit has no watchdog.
const STUCK_WITHOUT_WATCHDOG: Duration = Duration::from_secs(60);
/// How far each tick of a progressing initial sync moves the start timeout.
const START_EXTENSION: Duration = Duration::from_secs(10);

impl Reporter {
    pub fn new(notifier: std::sync::Arc<Notifier>, stats: &Stats) -> Self {
        Self {
            notifier,
            liveness: Liveness::new(stats),
            last_status: String::new(),
            warned: false,
        }
    }

    pub fn tick(&mut self, stats: &Stats) {
        let stuck_after = self.notifier.watchdog().unwrap_or(STUCK_WITHOUT_WATCHDOG);
        let stuck = self.liveness.stuck(stats, stuck_after);
        let ready = stats.ready_ns.load(Relaxed) > 0;
        let pending: u64 = stats
            .targets
            .iter()
            .map(|t| t.backlog.load(Relaxed) + t.in_flight.load(Relaxed))
            .sum();
        let status = match (ready, pending) {
            (false, _) => format!("initial sync: {pending} paths pending"),
            (true, 0) => "idle: every target has caught up".to_string(),
            (true, n) => format!("replicating: {n} paths pending"),
        };
        if status != self.last_status {
            self.notifier.status(&status);
            self.last_status = status;
        }
        if !stuck.is_empty() {
            if !self.warned {
                self.warned = true;
                crate::warn!(
                    "no progress for {} s with work pending: {}; systemd's watchdog is no longer told the syncer is alive",
                    stuck_after.as_secs(),
                    stuck.join(", ")
                );
            }
            return;
        }
        self.warned = false;
        if !ready {
            self.notifier.extend_start(START_EXTENSION);
        }
        self.notifier.alive();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_with_work_and_no_progress_is_stuck() {
        let stats = Stats::new(vec!["/a".into(), "/b".into()]);
        let mut live = Liveness::new(&stats);
        stats.targets[0].backlog.store(5, Relaxed);
        stats.targets[1].backlog.store(5, Relaxed);
        std::thread::sleep(Duration::from_millis(30));
        stats.targets[1].batches.fetch_add(1, Relaxed);
        assert_eq!(live.stuck(&stats, Duration::from_millis(10)), ["/a"]);
        stats.targets[0].retries.fetch_add(1, Relaxed);
        assert!(
            live.stuck(&stats, Duration::from_millis(10)).is_empty(),
            "retrying is progress"
        );
        stats.targets[0].backlog.store(0, Relaxed);
        std::thread::sleep(Duration::from_millis(30));
        let stuck = live.stuck(&stats, Duration::from_millis(10));
        assert_eq!(stuck, ["/b"], "nothing pending is never stuck");
    }
}
