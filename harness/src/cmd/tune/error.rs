//! Why `harness tune` or `harness sweep` stopped: a grid, SLO or syncer that cannot be
//! measured as asked (usage), a work dir or run that cannot be set up, results that cannot be
//! written, or Ctrl-C (the text says where the points measured so far are).

use std::io;
use std::path::PathBuf;

use crate::scenario::{ScenarioError, UnknownSut};

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    UnknownSut(#[from] UnknownSut),
    #[error(
        "`{label}` runs with --backend {backend}: tune sizes inotify's queue (max_queued_events); fanotify's is fixed at 16384 events. Use --backend inotify in its args"
    )]
    NotInotify { label: String, backend: String },
    #[error("the grid needs at least one --queue and one --rate")]
    EmptyGrid,
    #[error(
        "--queue {0}: max_queued_events must be between 1 and {max} (the kernel keeps it in an int)",
        max = i32::MAX
    )]
    QueueRange(u64),
    #[error("--rate {0}: rates are ops/s above 0 (open loop; 0 would mean as fast as possible)")]
    RateRange(f64),
    #[error("give both --stall-queue and --stall-rate, or neither")]
    HalfStallCell,
    #[error("no syncer selected: every [[sut]] is disabled; pass --sut NAME")]
    NoSut,
    #[error(
        "{}: no latency objective: add `[slo] p99_ms = ...` to the scenario or pass --slo-ms",
        .0.display()
    )]
    NoSlo(PathBuf),
    #[error("--slo-ms {0}: give milliseconds above 0")]
    SloRange(f64),
    #[error("{scenario}: key `{key}` after the override: {why}")]
    Override {
        scenario: String,
        key: String,
        why: String,
    },
    #[error("the scenario has no [[phase]] to pause the syncer in")]
    NoPhaseToPause,
    #[error(
        "the stall check repeats the first phase of {0}: it must be a `mix` or `sequence = [\"create\"]` phase (use --no-stall-check)"
    )]
    StallPhase(String),
    #[error("stall storm: key `{key}`: {why}")]
    StallStorm { key: String, why: String },
    #[error(
        "no clean cell (no overflow, nothing lost) predicts a stall within 20x of 1 s; pass --stall-queue and --stall-rate to check one"
    )]
    NoCleanCell,
    #[error("every cell overflowed, so events per op are unknown and no stall can be predicted")]
    NoEventsPerOp,
    #[error(
        "cannot create the work dir {} ({source}): pass --workdir",
        path.display()
    )]
    WorkDir { path: PathBuf, source: io::Error },
    /// `action` says what was done to `path`: "write", "create the results dir".
    #[error("cannot {action} {} ({source})", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A histogram of one point could not be written.
    #[error("{0}")]
    Export(io::Error),
    #[error("interrupted: sysctls restored; the {what} measured so far are in {}", root.display())]
    Interrupted { what: &'static str, root: PathBuf },
}

impl TuneError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| TuneError::Io {
            action,
            path,
            source,
        }
    }
}

impl From<TuneError> for crate::Error {
    fn from(e: TuneError) -> Self {
        use TuneError::*;
        match e {
            Scenario(e) => e.into(),
            UnknownSut(e) => e.into(),
            WorkDir { .. } | NoCleanCell | NoEventsPerOp => crate::Error::setup(e),
            Io { .. } | Json(_) | Export(_) => crate::Error::io(e),
            Interrupted { .. } => crate::Error::interrupted(e),
            _ => crate::Error::usage(e),
        }
    }
}
