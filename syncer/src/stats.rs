//! Counters shared by all threads (relaxed atomics: totals, not synchronisation) and their JSON
//! snapshot, written atomically to `--status FILE` every second and at exit.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Replica operations, by kind.
#[derive(Debug, Default)]
pub struct OpCounts {
    pub copy: AtomicU64,
    pub delete: AtomicU64,
    pub mkdir: AtomicU64,
    pub symlink: AtomicU64,
    pub rename: AtomicU64,
    pub meta: AtomicU64,
    /// Replica names made another name of an inode just written (hard links).
    pub link: AtomicU64,
}

/// Per-target counters.
#[derive(Debug, Default)]
pub struct TargetStats {
    pub name: String,
    pub ops: OpCounts,
    pub bytes_copied: AtomicU64,
    pub batches: AtomicU64,
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    pub backlog: AtomicU64,
    pub in_flight: AtomicU64,
    pub last_success_unix_ns: AtomicU64,
    /// rsync targets: client runs, files transferred and bytes sent (from `--stats`), and
    /// runs that failed.
    pub rsync_runs: AtomicU64,
    pub files_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub failures: AtomicU64,
}

/// Process-wide counters.
#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    pub started_unix_ns: u64,
    pub backend: Mutex<String>,
    pub events: AtomicU64,
    pub reads: AtomicU64,
    pub bytes_read: AtomicU64,
    pub overflows: AtomicU64,
    pub reconciles: AtomicU64,
    pub errors: AtomicU64,
    pub dirs_watched: AtomicU64,
    pub watch_limit_hit: AtomicBool,
    /// ns from start until changes were being captured (0: not yet).
    pub capture_ns: AtomicU64,
    /// ns from start until the initial sync had been applied (0: not yet).
    pub ready_ns: AtomicU64,
    pub targets: Vec<TargetStats>,
    /// The source, for its hard-link index's counters (`links` in the status file).
    source: OnceLock<Arc<crate::source::SourceTree>>,
}

pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Stats {
    pub fn new(target_names: Vec<String>) -> Self {
        Self {
            started: Instant::now(),
            started_unix_ns: unix_ns(SystemTime::now()),
            backend: Mutex::new(String::new()),
            events: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            reconciles: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dirs_watched: AtomicU64::new(0),
            watch_limit_hit: AtomicBool::new(false),
            capture_ns: AtomicU64::new(0),
            ready_ns: AtomicU64::new(0),
            targets: target_names
                .into_iter()
                .map(|name| TargetStats {
                    name,
                    ..TargetStats::default()
                })
                .collect(),
            source: OnceLock::new(),
        }
    }

    /// Reports the source's hard-link index in the status file from now on.
    pub fn attach_source(&self, source: Arc<crate::source::SourceTree>) {
        let _ = self.source.set(source);
    }

    /// Nanoseconds since start, never 0 (0 means "not yet" in the milestone fields).
    pub fn elapsed_ns(&self) -> u64 {
        (self.started.elapsed().as_nanos() as u64).max(1)
    }

    pub fn set_backend(&self, name: &str) {
        *self.backend.lock().unwrap_or_else(|e| e.into_inner()) = name.to_string();
    }

    fn ops_json(ops: &OpCounts) -> Value {
        json!({
            "copy": ops.copy.load(Relaxed),
            "delete": ops.delete.load(Relaxed),
            "mkdir": ops.mkdir.load(Relaxed),
            "symlink": ops.symlink.load(Relaxed),
            "rename": ops.rename.load(Relaxed),
            "meta": ops.meta.load(Relaxed),
            "link": ops.link.load(Relaxed),
        })
    }

    /// The status document. Top-level `ops`, `bytes_copied`, `backlog` sum over targets.
    pub fn snapshot(&self) -> Value {
        let sum = |f: fn(&TargetStats) -> u64| self.targets.iter().map(f).sum::<u64>();
        let ops = OpCounts::default();
        for t in &self.targets {
            ops.copy.fetch_add(t.ops.copy.load(Relaxed), Relaxed);
            ops.delete.fetch_add(t.ops.delete.load(Relaxed), Relaxed);
            ops.mkdir.fetch_add(t.ops.mkdir.load(Relaxed), Relaxed);
            ops.symlink.fetch_add(t.ops.symlink.load(Relaxed), Relaxed);
            ops.rename.fetch_add(t.ops.rename.load(Relaxed), Relaxed);
            ops.meta.fetch_add(t.ops.meta.load(Relaxed), Relaxed);
            ops.link.fetch_add(t.ops.link.load(Relaxed), Relaxed);
        }
        let capture_ns = self.capture_ns.load(Relaxed);
        let ready_ns = self.ready_ns.load(Relaxed);
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "ops": Self::ops_json(&t.ops),
                    "bytes_copied": t.bytes_copied.load(Relaxed),
                    "batches": t.batches.load(Relaxed),
                    "errors": t.errors.load(Relaxed),
                    "retries": t.retries.load(Relaxed),
                    "backlog": t.backlog.load(Relaxed),
                    "in_flight": t.in_flight.load(Relaxed),
                    "last_success_unix_ns": t.last_success_unix_ns.load(Relaxed),
                    "rsync_runs": t.rsync_runs.load(Relaxed),
                    "files_sent": t.files_sent.load(Relaxed),
                    "bytes_sent": t.bytes_sent.load(Relaxed),
                    "failures": t.failures.load(Relaxed),
                })
            })
            .collect();
        json!({
            "pid": std::process::id(),
            "backend": *self.backend.lock().unwrap_or_else(|e| e.into_inner()),
            "started_unix_ns": self.started_unix_ns,
            "updated_unix_ns": unix_ns(SystemTime::now()),
            "capturing": capture_ns > 0,
            "capture_ns": capture_ns,
            "ready": ready_ns > 0,
            "ready_ns": ready_ns,
            "dirs_watched": self.dirs_watched.load(Relaxed),
            "watch_limit_hit": self.watch_limit_hit.load(Relaxed),
            "events": self.events.load(Relaxed),
            "reads": self.reads.load(Relaxed),
            "bytes_read": self.bytes_read.load(Relaxed),
            "overflows": self.overflows.load(Relaxed),
            "reconciles": self.reconciles.load(Relaxed),
            "errors": self.errors.load(Relaxed) + sum(|t| t.errors.load(Relaxed)),
            "backlog": sum(|t| t.backlog.load(Relaxed)),
            "in_flight": sum(|t| t.in_flight.load(Relaxed)),
            "bytes_copied": sum(|t| t.bytes_copied.load(Relaxed)),
            "rsync_runs": sum(|t| t.rsync_runs.load(Relaxed)),
            "ops": Self::ops_json(&ops),
            "max_rss_kib": max_rss_kib(),
            "links": self.source.get().map_or(Value::Null, |s| s.links.snapshot()),
            "targets": targets,
        })
    }

    /// Writes the snapshot to `path` atomically (temp file in the same directory, then rename),
    /// so a reader never sees half a document.
    pub fn write_status(&self, path: &Path) -> std::io::Result<()> {
        let mut body = serde_json::to_vec_pretty(&self.snapshot())?;
        body.push(b'\n');
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, &body)?;
        std::fs::rename(&tmp, path)
    }
}

/// Peak resident set size of this process, in KiB: VmHWM from /proc/self/status.
/// (getrusage's maxrss is inherited across fork+exec, so it reports the parent's peak when
/// that was larger.)
pub fn max_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums_targets_and_reports_milestones() {
        let stats = Stats::new(vec!["a".into(), "b".into()]);
        stats.targets[0].ops.copy.store(2, Relaxed);
        stats.targets[1].ops.copy.store(3, Relaxed);
        stats.targets[1].backlog.store(7, Relaxed);
        let doc = stats.snapshot();
        assert_eq!(doc["ops"]["copy"], 5);
        assert_eq!(doc["backlog"], 7);
        assert_eq!(doc["ready"], false);
        stats.ready_ns.store(stats.elapsed_ns(), Relaxed);
        assert_eq!(stats.snapshot()["ready"], true);
    }
}
