//! Each subcommand's arguments as clap parses them, the very structs the commands in cmd/
//! take, plus the few values derived from them (defaults that depend on the date, host or
//! environment). Field docs are the --help text and the man pages (docs/).

use std::path::PathBuf;

use clap::Args;

/// The command line as typed, recorded in every results README.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    pub scenario: PathBuf,
    /// Only this syncer (label or kind); repeatable; selects syncers that are off by default.
    #[arg(long = "sut")]
    pub suts: Vec<String>,
    /// Repeats per syncer (overrides the scenario's `repeats`).
    #[arg(long)]
    pub repeat: Option<u32>,
    /// Results root; a folder <date>-<host>-<scenario> is written inside.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Where sources and replicas live (default: a new temp dir).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Keep the work dir afterwards.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Baseline runs.
    pub a: PathBuf,
    /// Candidate runs.
    pub b: PathBuf,
    /// Which syncer's runs to compare (its label in the results).
    #[arg(long, default_value = "syncer")]
    pub sut: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CiArgs {
    /// Baseline revision (default: the merge base with main, or HEAD~1 on main).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Comma-separated scenario files (default: scenarios/ci-*.toml).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<PathBuf>,
    /// A/B pairs per scenario (at least 3; from 6 the rank test decides timing metrics).
    #[arg(long, default_value_t = 6)]
    pub pairs: u32,
    /// Where runs, report.md and report.json go (runs/ inside is replaced).
    #[arg(long, default_value = "target/ci-gate")]
    pub out: PathBuf,
    /// Append every run's floor ratio and latency to results/history.csv.
    #[arg(long)]
    pub record: bool,
    /// Which syncer entry of the scenarios to run.
    #[arg(long, default_value = "syncer")]
    pub sut: String,
    /// Testing: the baseline's syncer binary (nothing is built for it).
    #[arg(long)]
    pub baseline_bin: Option<PathBuf>,
    /// Testing: the candidate's syncer binary (default: build this tree's).
    #[arg(long)]
    pub candidate_bin: Option<PathBuf>,
    /// Testing: extra syncer arguments for the candidate only, e.g. "--batch-delay 2000"
    /// to check that the gate catches an injected regression.
    #[arg(long, allow_hyphen_values = true)]
    pub candidate_args: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where report.md and the plots go.
    #[arg(long, default_value = "results/capacity-report")]
    pub out: PathBuf,
    /// p99 objective for "sustainable ops/s" (default: the sweep's, else 1000 ms).
    #[arg(long)]
    pub slo_ms: Option<f64>,
    /// How long the syncer may stop reading events; sizes max_queued_events.
    #[arg(long, default_value_t = 1000.0)]
    pub stall_budget_ms: f64,
}

#[derive(Debug, Clone, Args)]
pub struct WatchcostArgs {
    /// Directories to watch.
    #[arg(long, default_value_t = 100_000)]
    pub dirs: u64,
    /// Held/released rounds per mechanism (median and spread are reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Folder for watchcost.json and README.md (default results/<date>-<host>-watchcost).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the directories are made; its filesystem decides what a watch pins (default:
    /// the temp dir, ext4 here, where a watch keeps an otherwise reclaimable inode).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct LimitsArgs {
    #[arg(long)]
    pub tree: PathBuf,
    /// Storm rate, file operations per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long the syncer may stop reading without an overflow, ms.
    #[arg(long, default_value_t = 1000)]
    pub stall_ms: u64,
    /// Queued events per file operation.
    #[arg(long, default_value_t = crate::capacity::recommend::DEFAULT_EVENTS_PER_OP)]
    pub events_per_op: f64,
    /// watchcost.json (default: the newest results/*/watchcost.json).
    #[arg(long)]
    pub cost: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct TuneArgs {
    pub scenario: PathBuf,
    /// max_queued_events values, comma-separated (default 256,1024,4096,16384,65536).
    #[arg(long = "queue", value_delimiter = ',')]
    pub queues: Vec<u64>,
    /// Offered storm rates in ops/s, comma-separated (default 500,2000,8000,32000).
    #[arg(long = "rate", value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// Only this syncer (label or kind); repeatable. Our syncer is pinned to --backend inotify.
    #[arg(long = "sut")]
    pub suts: Vec<String>,
    /// Results root; a folder <date>-<host>-tune-<scenario> is written inside.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Where sources live during the runs (default /dev/shm, else the temp dir).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Skip the SIGSTOP checks of the predicted stall budget.
    #[arg(long)]
    pub no_stall_check: bool,
    /// The queue of the cell to stall-check (with --stall-rate; default: the clean cell
    /// whose predicted stall is nearest 1 s).
    #[arg(long)]
    pub stall_queue: Option<u64>,
    /// The rate of the cell to stall-check (with --stall-queue).
    #[arg(long)]
    pub stall_rate: Option<f64>,
}

#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    pub scenario: PathBuf,
    /// Offered rates in ops/s, comma-separated (default 1000 to 48000).
    #[arg(long = "rate", value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// Only this syncer (label or kind); repeatable.
    #[arg(long = "sut")]
    pub suts: Vec<String>,
    /// The p99 objective in ms (default: the scenario's [slo] p99_ms).
    #[arg(long)]
    pub slo_ms: Option<f64>,
    /// Results root; a folder <date>-<host>-sweep-<scenario> is written inside.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Where sources live during the runs (default /dev/shm, else the temp dir).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[arg(default_value = "scenarios")]
    pub dir: PathBuf,
}

impl CiArgs {
    /// `--candidate-args` split into words (none when not given).
    pub fn candidate_extra(&self) -> Vec<String> {
        self.candidate_args
            .as_deref()
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    }
}

impl WatchcostArgs {
    /// `--out`, else results/<date>-<host>-watchcost.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "results/{}-{}-watchcost",
                crate::util::fmt::today(),
                crate::host::env::hostname()
            ))
        })
    }

    /// `--dir`, else the temp dir.
    pub fn parent(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}
