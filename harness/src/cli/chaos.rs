//! `harness chaos` arguments as clap parses them, and the backend and target kinds a chaos
//! case runs (named on the command line and in scenarios/chaos.toml's `[matrix]`).

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// `harness chaos` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// The storm's settings (op mix, pauses, counts); scenarios/chaos.toml by default.
    pub scenario: Option<PathBuf>,
    /// Seeds 1..=N.
    #[arg(long, conflicts_with = "seed_range")]
    pub seeds: Option<u64>,
    /// Seeds A..B (B excluded), so long campaigns can be split, resumed and merged.
    #[arg(long, value_parser = parse_range)]
    pub seed_range: Option<(u64, u64)>,
    /// Live operations per seed.
    #[arg(long)]
    pub ops: Option<usize>,
    /// Operations that build the tree before the syncer starts.
    #[arg(long)]
    pub setup_ops: Option<usize>,
    /// Mean pause between operations, microseconds (bursts have none).
    #[arg(long)]
    pub pause_us: Option<u32>,
    /// Comma-separated: inotify, fanotify.
    #[arg(long, value_delimiter = ',')]
    pub backend: Vec<Backend>,
    /// Comma-separated: local (a directory), rsync (a real rsync daemon on loopback).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<Target>,
    /// Cases run at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Seconds after the last operation within which the replica must equal SOURCE.
    #[arg(long)]
    pub converge_s: Option<f64>,
    /// Results folder: runs.csv (appended as cases finish), summary.md, chaos.json,
    /// failures/.
    #[arg(long, default_value = "target/chaos")]
    pub out: PathBuf,
    /// Skip the cases runs.csv in --out already holds (resume a campaign).
    #[arg(long)]
    pub resume: bool,
    /// Where trees live while cases run (default /dev/shm, else the temp dir).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Shrink each failing case to a short op log (delta debugging) in failures/.
    #[arg(long)]
    pub shrink: bool,
    /// Most cases run while shrinking one failure.
    #[arg(long, default_value_t = 120)]
    pub shrink_trials: u32,
    /// Runs of each shrink candidate (it fails if any run fails): >1 for flaky failures.
    #[arg(long, default_value_t = 1)]
    pub shrink_tries: u32,
    /// Replay this op log (e.g. failures/*/minimal.ops) instead of generating seeds.
    #[arg(long, conflicts_with_all = ["seeds", "seed_range"])]
    pub replay: Option<PathBuf>,
    /// Print the op log of --seeds/--seed-range's first seed and exit (nothing is run).
    #[arg(long)]
    pub print_ops: bool,
    /// Extra arguments for the syncer, e.g. "--batch-delay 50".
    #[arg(long, allow_hyphen_values = true)]
    pub syncer_args: Option<String>,
    /// Only regenerate summary.md from the runs.csv of these folders (merge campaigns).
    #[arg(long, num_args = 1..)]
    pub merge: Vec<PathBuf>,
}

/// A `--seed-range` clap refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{0:?}: write the range as A..B, e.g. 1..201")]
    NoDots(String),
    #[error("bad range start {0:?}")]
    BadStart(String),
    #[error("bad range end {0:?}")]
    BadEnd(String),
    #[error("empty range {0:?}: the end must be above the start")]
    Empty(String),
}

pub(crate) fn parse_range(s: &str) -> Result<(u64, u64), RangeError> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| RangeError::NoDots(s.into()))?;
    let a: u64 = a.parse().map_err(|_| RangeError::BadStart(a.into()))?;
    let b: u64 = b.parse().map_err(|_| RangeError::BadEnd(b.into()))?;
    if b <= a {
        return Err(RangeError::Empty(s.into()));
    }
    Ok((a, b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Inotify,
    Fanotify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Local,
    Rsync,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Inotify => "inotify",
            Backend::Fanotify => "fanotify",
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Local => "local",
            Target::Rsync => "rsync",
        })
    }
}

/// A backend or target name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownName {
    #[error("unknown backend {0:?}: use inotify or fanotify")]
    Backend(String),
    #[error("unknown target {0:?}: use local (a directory) or rsync (a real rsync daemon)")]
    Target(String),
}

impl std::str::FromStr for Backend {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "inotify" => Ok(Backend::Inotify),
            "fanotify" => Ok(Backend::Fanotify),
            _ => Err(UnknownName::Backend(s.into())),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "local" => Ok(Target::Local),
            "rsync" => Ok(Target::Rsync),
            _ => Err(UnknownName::Target(s.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bad_ones_say_how() {
        assert_eq!(parse_range("1..201"), Ok((1, 201)));
        assert!(parse_range("5").unwrap_err().to_string().contains("A..B"));
        assert!(
            parse_range("9..3")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }
}
