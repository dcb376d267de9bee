//! The record of one syncer run (and of the calibration run): what run.rs measured, in the
//! shape the exporters write. Durations are integer nanoseconds, units in the field names.

use serde::Serialize;

use crate::measure::latency::LatencyStats;
use crate::measure::verify::TreeDiff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub sut: String,
    pub kind: String,
    pub repeat: u32,
    pub outcome: Outcome,
    /// The scenario marks this syncer as known to fail: a failure does not fail the exit code.
    pub expect_fail: bool,
    /// Why it failed or was skipped (empty when it passed).
    pub reasons: Vec<String>,
    /// Options that matter when comparing (rsync flags, delays, our syncer's args).
    pub flags: String,
    pub ready_ns: u64,
    pub storm_ns: u64,
    /// Time the syncer was SIGSTOPped (phases with `pause_sut`), within `storm_ns`.
    pub paused_ns: u64,
    pub storm_ops: u64,
    pub ops_per_s: f64,
    pub op_errors: u64,
    pub gen_lag_max_ns: u64,
    pub gen_lag_mean_ns: u64,
    /// From each path's final op completing to the probe seeing it.
    pub latency: LatencyStats,
    /// From each path's planned time (open loop; only with a rate).
    pub latency_planned: Option<LatencyStats>,
    pub samples_unseen: u64,
    pub unseen_examples: Vec<String>,
    pub samples_by_scan: u64,
    pub deletes_coalesced: u64,
    /// The probe's event source: `fanotify` (filesystem mark) or `inotify`.
    pub probe: String,
    pub probe_events: u64,
    pub probe_overflows: u64,
    /// From the end of the storm to a full tree compare that found the replica equal.
    pub converge_ns: Option<u64>,
    /// From the end of the storm until the syncer's tree used no CPU and spawned nothing
    /// for the idle window (bounded by timeouts.idle_s).
    pub idle_ns: Option<u64>,
    pub cpu_ns: u64,
    pub daemon_cpu_ns: u64,
    pub peak_rss_kib: u64,
    pub main_rss_kib: u64,
    pub processes_seen: u64,
    pub daemon_connections: u64,
    /// Overflows the syncer reported (status file or log): a self-report.
    pub self_overflows: Option<u64>,
    /// Our syncer's final status JSON, labelled as its own report.
    pub self_report: Option<serde_json::Value>,
    /// The syncer's tree's /proc/PID/io just before it was stopped (measured from outside).
    pub io: crate::host::procio::ProcIo,
    pub diff: TreeDiff,
    pub floor_ns: u64,
    /// (storm + convergence) / floor copy time.
    pub floor_ratio: Option<f64>,
    /// rsync daemon targets: R, the median time of a one-file `--files-from` run to the same
    /// daemon (TCP_NODELAY on the client), measured right after this run.
    pub one_file_run_ns: Option<u64>,
    pub exit_status: String,
    /// The storm in time bins (written as `<sut>-r<N>-timeline.csv`, not into run.json).
    #[serde(skip)]
    pub timeline: Vec<crate::capacity::records::TimelineBin>,
    /// Start-up, the syncer's own report (status file): from its start until changes were
    /// being captured (all watches added, or the one fanotify mark).
    pub capture_ns: Option<u64>,
    /// Start-up, self-reported: from capturing to the initial reconcile applied (ready).
    pub reconcile_ns: Option<u64>,
    /// Scenarios with `measure_kmem`: slab bytes after drop_caches with the syncer running
    /// (after the storm), after it stopped, and the difference: what it pinned.
    pub kmem_running_bytes: Option<u64>,
    pub kmem_stopped_bytes: Option<u64>,
    pub kmem_pinned_bytes: Option<i64>,
    /// The same difference from /proc/slabinfo totals (sum of num_objs x objsize).
    pub kmem_pinned_slabinfo_bytes: Option<i64>,
}

impl RunResult {
    /// Failed, and not a failure the scenario expects: what makes `harness run` exit 1.
    pub fn counts_as_failure(&self) -> bool {
        self.outcome == Outcome::Failed && !self.expect_fail
    }

    pub fn skipped(sut: String, kind: String, repeat: u32, reason: String) -> Self {
        Self {
            sut,
            kind,
            repeat,
            outcome: Outcome::Skipped,
            expect_fail: false,
            reasons: vec![reason],
            flags: String::new(),
            ready_ns: 0,
            storm_ns: 0,
            paused_ns: 0,
            storm_ops: 0,
            ops_per_s: 0.0,
            op_errors: 0,
            gen_lag_max_ns: 0,
            gen_lag_mean_ns: 0,
            latency: LatencyStats::default(),
            latency_planned: None,
            samples_unseen: 0,
            unseen_examples: Vec::new(),
            samples_by_scan: 0,
            deletes_coalesced: 0,
            probe: String::new(),
            probe_events: 0,
            probe_overflows: 0,
            converge_ns: None,
            idle_ns: None,
            cpu_ns: 0,
            daemon_cpu_ns: 0,
            peak_rss_kib: 0,
            main_rss_kib: 0,
            processes_seen: 0,
            daemon_connections: 0,
            self_overflows: None,
            self_report: None,
            io: crate::host::procio::ProcIo::default(),
            diff: TreeDiff::default(),
            floor_ns: 0,
            floor_ratio: None,
            one_file_run_ns: None,
            exit_status: String::new(),
            timeline: Vec::new(),
            capture_ns: None,
            reconcile_ns: None,
            kmem_running_bytes: None,
            kmem_stopped_bytes: None,
            kmem_pinned_bytes: None,
            kmem_pinned_slabinfo_bytes: None,
        }
    }
}
