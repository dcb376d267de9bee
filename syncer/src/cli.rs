//! Command line: arguments in, a validated `Config` out (or a message and exit code 2).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

use crate::exclude::Excludes;
use crate::pending::Timing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The best backend this system allows (inotify for now).
    Auto,
    /// One inotify watch per directory.
    Inotify,
}

/// Keeps TARGET identical to SOURCE in real time, from kernel file events.
#[derive(Debug, Parser)]
#[command(name = "syncer", version, about, long_about = None)]
pub struct Args {
    /// Directory to replicate.
    pub source: PathBuf,
    /// Replica directory (created if missing). Must not be inside SOURCE, nor SOURCE inside it.
    pub target: PathBuf,
    /// Event backend.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Glob of paths (relative to SOURCE) not to replicate; repeatable. `*` stays within one
    /// component, `**` crosses them, a leading `/` anchors at SOURCE, a pattern without `/`
    /// matches names at any depth. Excluded directories are not watched.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Make TARGET equal to SOURCE once, then exit 0.
    #[arg(long)]
    pub once: bool,
    /// Write JSON stats to FILE every second and at exit (atomically replaced).
    #[arg(long, value_name = "FILE")]
    pub status: Option<PathBuf>,
    /// fsync each file before it is renamed into place and its directory after: survives a
    /// power loss, at a large cost in throughput. Off by default.
    #[arg(long)]
    pub fsync: bool,
    /// Exit non-zero when the inotify watch limit is hit, instead of covering the unwatched
    /// part by periodic reconciles.
    #[arg(long)]
    pub strict: bool,
    /// Directory of the checkpoint file [default: $SYNCER_STATE_DIR, /var/lib/syncer as root,
    /// else $XDG_STATE_HOME/syncer]. Must be outside SOURCE and TARGET.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Threads that copy file contents per target [default: number of CPUs].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Tuning: hold each batch until its oldest change is this old (ms). 0 applies at once
    /// when idle and lets batches grow only while busy.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub batch_delay: u64,
    /// Tuning: most paths per batch.
    #[arg(long, value_name = "N", default_value_t = 16_384)]
    pub max_batch: usize,
    /// A file written but not closed is copied after this quiet period (ms)...
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub modify_quiet: u64,
    /// ...or once it has been dirty this long (ms), whatever the writes.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub modify_max_age: u64,
    /// Seconds between full reconciles while part of the tree is not watched (watch limit).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub rescan_interval: u64,
    /// More log output (-v: debug).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub target: PathBuf,
    pub backend: BackendChoice,
    pub excludes: Excludes,
    pub once: bool,
    pub status: Option<PathBuf>,
    pub fsync: bool,
    pub strict: bool,
    pub state_dir: PathBuf,
    pub jobs: usize,
    pub timing: Timing,
    pub rescan_interval: Duration,
    pub log_level: u8,
}

/// The canonical form of a path that may not exist yet (its parent must).
fn canonical_maybe_missing(path: &Path) -> Result<PathBuf, String> {
    if let Ok(canon) = path.canonicalize() {
        return Ok(canon);
    }
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a usable directory name", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().map_err(|err| {
        format!(
            "{}: its parent directory {} cannot be used: {err}",
            path.display(),
            parent.display()
        )
    })?;
    Ok(parent.join(name))
}

impl Args {
    /// Checks everything that can be checked before starting; the error is the message.
    pub fn validate(self) -> Result<Config, String> {
        let source = self.source.canonicalize().map_err(|err| {
            format!(
                "SOURCE {}: {err}; give an existing directory",
                self.source.display()
            )
        })?;
        if !source.is_dir() {
            return Err(format!(
                "SOURCE {} is not a directory",
                self.source.display()
            ));
        }
        if self.target.to_string_lossy().contains("::")
            || self.target.to_string_lossy().starts_with("rsync://")
        {
            return Err(format!(
                "TARGET {}: rsync daemon targets are not supported by this build yet; give a local directory",
                self.target.display()
            ));
        }
        let target = canonical_maybe_missing(&self.target)?;
        if target.exists() && !target.is_dir() {
            return Err(format!(
                "TARGET {} exists and is not a directory",
                self.target.display()
            ));
        }
        if target == source {
            return Err(format!(
                "TARGET {} is the same directory as SOURCE",
                self.target.display()
            ));
        }
        if target.starts_with(&source) {
            return Err(format!(
                "TARGET {} is inside SOURCE {}: the replica would replicate itself; choose a target outside the source",
                target.display(),
                source.display()
            ));
        }
        if source.starts_with(&target) {
            return Err(format!(
                "SOURCE {} is inside TARGET {}: replicating would delete the source; choose a target outside it",
                source.display(),
                target.display()
            ));
        }
        let state_dir = match self.state_dir {
            Some(dir) => canonical_maybe_missing(&dir)?,
            None => crate::state::default_dir(),
        };
        if state_dir.starts_with(&source) || state_dir.starts_with(&target) {
            return Err(format!(
                "--state-dir {} must be outside SOURCE and TARGET",
                state_dir.display()
            ));
        }
        let excludes = Excludes::new(&self.exclude)?;
        let jobs = self
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        if jobs == 0 || self.max_batch == 0 {
            return Err("--jobs and --max-batch must be at least 1".into());
        }
        let ms = |v: u64| v.saturating_mul(1_000_000);
        Ok(Config {
            source,
            target,
            backend: self.backend,
            excludes,
            once: self.once,
            status: self.status,
            fsync: self.fsync,
            strict: self.strict,
            state_dir,
            jobs,
            timing: Timing {
                quiet_ns: ms(self.modify_quiet),
                max_age_ns: ms(self.modify_max_age),
                batch_delay_ns: ms(self.batch_delay),
                max_batch: self.max_batch,
            },
            rescan_interval: Duration::from_secs(self.rescan_interval.max(1)),
            log_level: if self.quiet {
                crate::log::ERROR
            } else {
                crate::log::INFO + self.verbose.min(1)
            },
        })
    }
}
