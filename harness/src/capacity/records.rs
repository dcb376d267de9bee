//! Capacity-planning records: what `harness tune` (tune.json), `harness sweep` (sweep.json),
//! `harness watchcost` (watchcost.json) and `harness run` (per-run timeline CSV) write, and
//! what `harness report` and `harness limits` read. One shape shared by writers and readers;
//! durations are integer nanoseconds and sizes bytes, units in the field names.

use serde::{Deserialize, Serialize};

/// Where and when a planning record was measured: every number in a report names its machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineFacts {
    pub host: String,
    pub kernel: String,
    pub cpu: String,
    pub memory: String,
    /// Filesystem of the work dir (type and mount point).
    pub filesystem: String,
    pub git_revision: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub measured_at: String,
    pub command: String,
}

/// tune.json: one scenario over a grid of `max_queued_events` values and storm rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TuneReport {
    pub scenario: String,
    pub sut: String,
    pub machine: MachineFacts,
    pub cells: Vec<TuneCell>,
    /// Per rate: the smallest queue of the grid with no overflow.
    pub smallest_queue: Vec<QueueForRate>,
    /// Per queue and rate: the syncer stall the queue absorbs (queue / event rate).
    pub stall_budgets: Vec<StallBudget>,
    /// The stall predictions checked by pausing the syncer (SIGSTOP) mid-storm.
    pub stall_checks: Vec<StallCheck>,
}

/// One grid cell: one run of the scenario at one queue size and one offered rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TuneCell {
    pub queue: u64,
    /// Offered ops/s (open loop).
    pub rate: f64,
    pub achieved_ops_s: f64,
    /// Kernel events per storm op (turns ops/s into events/s): the syncer's own count of
    /// events read (status `events`: what its queue held) when it reports one, else the
    /// probe's replica-side events per op, a proxy.
    pub events_per_op: f64,
    /// Queue overflows the syncer reported (self-report: only the syncer's own instance can
    /// see its overflow), or the probe's when the syncer has no status file.
    pub overflows: u64,
    /// Full reconciles the syncer reported (self-report); None when it does not report them.
    pub reconciles: Option<u64>,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub converge_ns: Option<u64>,
    pub cpu_ns: u64,
    /// Missing plus stale plus extra entries at the end: anything but 0 is a lost change.
    pub lost: u64,
    /// The run's results folder, relative to the folder holding tune.json.
    pub run_dir: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueForRate {
    pub rate: f64,
    /// None when every queue of the grid overflowed at this rate.
    pub smallest_queue: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StallBudget {
    pub queue: u64,
    pub rate: f64,
    pub events_per_s: f64,
    /// How long the syncer may stop reading before the queue overflows.
    pub tolerated_stall_ns: u64,
}

/// One SIGSTOP check of a predicted stall: paused for `factor` x the prediction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StallCheck {
    pub queue: u64,
    pub rate: f64,
    pub predicted_stall_ns: u64,
    pub factor: f64,
    pub paused_ns: u64,
    pub overflowed: bool,
    /// Overflow expected (factor > 1) and seen, or not expected and not seen.
    pub as_predicted: bool,
    pub run_dir: String,
}

/// sweep.json: offered rate stepped up per syncer until p99 leaves the SLO.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    pub scenario: String,
    pub machine: MachineFacts,
    pub slo_p99_ns: u64,
    pub curves: Vec<SweepCurve>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepCurve {
    pub sut: String,
    pub points: Vec<SweepPoint>,
    /// The offered rate where latency turns up sharply (knee of p99 vs rate), if any.
    pub knee_rate: Option<f64>,
    /// The highest achieved ops/s whose p99 met the SLO with nothing lost.
    pub sustainable_ops_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub offered_rate: f64,
    pub achieved_ops_s: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub converge_ns: Option<u64>,
    pub lost: u64,
    pub run_dir: String,
}

/// watchcost.json: kernel memory pinned per inotify watch and per fanotify filesystem mark,
/// measured as slab totals after `drop_caches` with the watches held versus released.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchCost {
    pub machine: MachineFacts,
    pub inotify: Option<MemoryCost>,
    pub fanotify: Option<MemoryCost>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryCost {
    /// Watches (inotify) or marks (fanotify) held while measuring.
    pub objects: u64,
    /// Directories they cover (for fanotify: the tree under the one filesystem mark).
    pub directories: u64,
    /// Median over the samples of (held - released) slab left after drop_caches, bytes
    /// (/proc/meminfo `Slab`: a pinned inode counts as SReclaimable yet cannot be reclaimed).
    pub pinned_bytes: u64,
    /// pinned_bytes / directories: what planning multiplies by a tree's directory count.
    pub bytes_per_directory: f64,
    /// Each sample's delta, bytes (the spread is the noise).
    pub samples_bytes: Vec<i64>,
    /// The same deltas from /proc/slabinfo (sum of num_objs x objsize over every cache).
    #[serde(default)]
    pub slabinfo_samples_bytes: Vec<i64>,
    /// How it was measured, in a sentence (which counters, how many rounds).
    pub method: String,
}

/// `<sut>-r<N>-timeline.csv` beside each run's .hgrm: the storm in fixed time bins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelineBin {
    /// Bin start, ms since the storm started.
    pub t_ms: u64,
    /// Storm ops completed in the bin.
    pub ops: u64,
    /// Latency samples whose final op completed in the bin.
    pub samples: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}
