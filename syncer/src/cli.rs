//! Command line: arguments in, a validated `Config` out (or a message and exit code 2).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

use crate::exclude::Excludes;
use crate::queue::pending::Timing;
use crate::replica::rsync::RsyncOptions;
use crate::replica::rsync_url::{RsyncUrl, looks_like_rsync};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// fanotify when it works for SOURCE's filesystem (root, fsid, file handles), else inotify.
    Auto,
    /// One inotify watch per directory.
    Inotify,
    /// One fanotify mark for SOURCE's whole filesystem (Linux 5.9+, root); exit 1 if unusable.
    Fanotify,
}

/// The backend choice and its options, as `backend::open` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    pub choice: BackendChoice,
    /// FAN_UNLIMITED_QUEUE: see `--fanotify-unlimited-queue`.
    pub unlimited_queue: bool,
}

/// Keeps TARGET identical to SOURCE in real time, from kernel file events.
#[derive(Debug, Parser)]
#[command(name = "syncer", version, about, long_about = None)]
pub struct Args {
    /// Directory to replicate.
    pub source: PathBuf,
    /// Replicas: local directories (created if missing; not inside SOURCE, nor SOURCE inside
    /// them) or rsync daemon modules, `rsync://[USER@]HOST[:PORT]/MODULE[/PATH]` or
    /// `[USER@]HOST::MODULE[/PATH]`. Several targets are kept in sync at once, each with its
    /// own backlog, so a slow or dead one never delays the others.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<PathBuf>,
    /// Event backend.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// fanotify only: no queue limit (FAN_UNLIMITED_QUEUE), so no overflow and no reconcile.
    /// RISK: the queue is kernel memory that grows without bound while the reader lags behind
    /// a storm (on the order of 100-200 bytes per event: 10 million queued events pin 1-2 GiB), and it
    /// is not charged to any limit. Use only where a storm is bounded and memory is ample.
    #[arg(long)]
    pub fanotify_unlimited_queue: bool,
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
    /// rsync targets: file holding the daemon password (mode 600, as rsync demands).
    /// Default: the RSYNC_PASSWORD environment variable.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// rsync targets: compress data in transit (worth it on slow links, not on loopback).
    #[arg(long)]
    pub compress: bool,
    /// rsync targets: the daemon writes changed files in place (rsync --inplace) instead of
    /// into a temporary file renamed over the old one: fewer syscalls and no directory lock
    /// per rename, but a reader of the replica can see a file half written, and a run cut
    /// short leaves it so until the retry. Off by default: only new files in big batches are
    /// written in place (their old replica copy, if any, is obsolete).
    #[arg(long)]
    pub inplace: bool,
    /// rsync targets: parallel rsync runs per batch (the daemon forks per connection, so
    /// streams use more of its cores).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub streams: usize,
    /// rsync targets: clients kept connected and authenticated ahead of need, so a batch
    /// skips the connection handshake (each is one daemon connection, used or not).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub warm_clients: usize,
    /// rsync targets: least time between the starts of two runs while changes keep coming
    /// (an idle syncer starts at once). Bounds the runs of a storm to 20 per second.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub run_interval: u64,
    /// rsync targets: I/O timeout of each run in seconds (rsync --timeout); a run silent
    /// this long plus 5 s is killed and retried.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub rsync_timeout: u64,
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
    /// Seconds between full reconciles while part of the tree is not watched (watch limit)
    /// or the hard-link index is full (--max-links).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub rescan_interval: u64,
    /// Most names of multi-link files (hard links) the link index holds, about 120 bytes
    /// each. Past it further links are replicated as separate files and their other names
    /// are kept current by periodic reconciles.
    #[arg(long, value_name = "N", default_value_t = crate::links::DEFAULT_CAP)]
    pub max_links: usize,
    /// More log output (-v: debug).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// One validated replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// A local directory (absolute, canonical).
    Local(PathBuf),
    /// An rsync daemon module.
    Rsync(RsyncUrl),
}

impl TargetSpec {
    /// The name used in logs, stats and the checkpoint file's key.
    pub fn name(&self) -> String {
        match self {
            TargetSpec::Local(path) => path.display().to_string(),
            TargetSpec::Rsync(url) => url.to_string(),
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub targets: Vec<TargetSpec>,
    pub backend: BackendConfig,
    pub excludes: Excludes,
    pub once: bool,
    pub status: Option<PathBuf>,
    pub fsync: bool,
    pub strict: bool,
    pub state_dir: PathBuf,
    pub jobs: usize,
    pub timing: Timing,
    pub rescan_interval: Duration,
    pub max_links: usize,
    pub log_level: u8,
    pub rsync: RsyncOptions,
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
        let mut targets = Vec::new();
        for target in &self.targets {
            let text = target.to_string_lossy();
            let spec = if looks_like_rsync(&text) {
                TargetSpec::Rsync(RsyncUrl::parse(&text)?)
            } else {
                validate_local_target(target, &source)?
            };
            if targets.contains(&spec) {
                return Err(format!("TARGET {} is given twice", target.display()));
            }
            targets.push(spec);
        }
        let state_dir = match self.state_dir {
            Some(dir) => canonical_maybe_missing(&dir)?,
            None => crate::state::default_dir(),
        };
        let inside_target = targets.iter().any(|t| match t {
            TargetSpec::Local(path) => state_dir.starts_with(path),
            TargetSpec::Rsync(_) => false,
        });
        if let Some(file) = &self.password_file {
            check_password_file(file)?;
        }
        if self.streams == 0 || self.rsync_timeout == 0 {
            return Err("--streams and --rsync-timeout must be at least 1".into());
        }
        if state_dir.starts_with(&source) || inside_target {
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
            targets,
            backend: BackendConfig {
                choice: self.backend,
                unlimited_queue: self.fanotify_unlimited_queue,
            },
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
            max_links: self.max_links,
            rsync: RsyncOptions {
                password_file: self.password_file,
                compress: self.compress,
                inplace: self.inplace,
                timeout_secs: self.rsync_timeout,
                streams: self.streams,
                warm_clients: self.warm_clients,
                run_interval: Duration::from_millis(self.run_interval),
            },
            log_level: if self.quiet {
                crate::log::ERROR
            } else {
                crate::log::INFO + self.verbose.min(1)
            },
        })
    }
}

/// Checks one local TARGET against SOURCE.
fn validate_local_target(target: &Path, source: &Path) -> Result<TargetSpec, String> {
    let text = target.to_string_lossy();
    let canonical = canonical_maybe_missing(target)?;
    if canonical.exists() && !canonical.is_dir() {
        return Err(format!("TARGET {text} exists and is not a directory"));
    }
    if canonical == source {
        return Err(format!("TARGET {text} is the same directory as SOURCE"));
    }
    if canonical.starts_with(source) {
        return Err(format!(
            "TARGET {} is inside SOURCE {}: the replica would replicate itself; choose a target outside the source",
            canonical.display(),
            source.display()
        ));
    }
    if source.starts_with(&canonical) {
        return Err(format!(
            "SOURCE {} is inside TARGET {}: replicating would delete the source; choose a target outside it",
            source.display(),
            canonical.display()
        ));
    }
    Ok(TargetSpec::Local(canonical))
}

/// rsync refuses a password file that other users can read; say so before it does.
fn check_password_file(file: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file)
        .map_err(|err| format!("--password-file {}: {err}", file.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o006 != 0 {
        return Err(format!(
            "--password-file {} is readable by other users (mode {mode:03o}); rsync refuses such a file: run chmod 600 {}",
            file.display(),
            file.display()
        ));
    }
    Ok(())
}
