//! The validated settings: the command line (`crate::cli`) in, a `Config` the pipeline can
//! trust out, or a usage error that says what to give instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::BackendConfig;
use crate::cli::Args;
use crate::error::Error;
use crate::exclude::Excludes;
use crate::queue::pending::Timing;
use crate::replica::rsync::RsyncOptions;
use crate::replica::rsync_url::{RsyncUrl, looks_like_rsync};

fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
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
    /// `--metrics`: where the Prometheus endpoint listens.
    pub metrics: Option<String>,
    /// `--bwlimit`: bytes per second per target.
    pub bwlimit: Option<u64>,
    pub fsync: bool,
    pub strict: bool,
    /// Skip the start-up delete guard once (`--allow-source-change`).
    pub allow_source_change: bool,
    /// `--max-delete`: entries per target per minute.
    pub max_delete: Option<u64>,
    pub state_dir: PathBuf,
    pub jobs: usize,
    pub timing: Timing,
    pub rescan_interval: Duration,
    pub max_links: usize,
    pub log_level: u8,
    pub rsync: RsyncOptions,
}

/// The canonical form of a path that may not exist yet (its parent must).
fn canonical_maybe_missing(path: &Path) -> Result<PathBuf, Error> {
    if let Ok(canon) = path.canonicalize() {
        return Ok(canon);
    }
    let name = path
        .file_name()
        .ok_or_else(|| usage(format!("{}: not a usable directory name", path.display())))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().map_err(|err| {
        usage(format!(
            "{}: its parent directory {} cannot be used: {err}",
            path.display(),
            parent.display()
        ))
    })?;
    Ok(parent.join(name))
}

impl Config {
    /// Checks everything that can be checked before starting.
    pub fn from_args(args: Args) -> Result<Config, Error> {
        let given = args
            .source
            .ok_or_else(|| usage("give SOURCE and at least one TARGET"))?;
        let source = given.canonicalize().map_err(|err| {
            usage(format!(
                "SOURCE {}: {err}; give an existing directory",
                given.display()
            ))
        })?;
        if !source.is_dir() {
            return Err(usage(format!(
                "SOURCE {} is not a directory",
                given.display()
            )));
        }
        let mut targets = Vec::new();
        for target in &args.targets {
            let text = target.to_string_lossy();
            let spec = if looks_like_rsync(&text) {
                TargetSpec::Rsync(RsyncUrl::parse(&text).map_err(Error::Usage)?)
            } else {
                validate_local_target(target, &source)?
            };
            if targets.contains(&spec) {
                return Err(usage(format!("TARGET {} is given twice", target.display())));
            }
            targets.push(spec);
        }
        let state_dir = match args.state_dir {
            Some(dir) => canonical_maybe_missing(&dir)?,
            None => crate::state::default_dir(),
        };
        let inside_target = targets.iter().any(|t| match t {
            TargetSpec::Local(path) => state_dir.starts_with(path),
            TargetSpec::Rsync(_) => false,
        });
        if let Some(file) = &args.password_file {
            check_password_file(file)?;
        }
        if args.streams == 0 || args.rsync_timeout == 0 {
            return Err(usage("--streams and --rsync-timeout must be at least 1"));
        }
        if state_dir.starts_with(&source) || inside_target {
            return Err(usage(format!(
                "--state-dir {} must be outside SOURCE and TARGET",
                state_dir.display()
            )));
        }
        let excludes = Excludes::new(&args.exclude).map_err(Error::Usage)?;
        let jobs = args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        if jobs == 0 || args.max_batch == 0 {
            return Err(usage("--jobs and --max-batch must be at least 1"));
        }
        let bwlimit = args
            .bwlimit
            .as_deref()
            .map(crate::replica::bandwidth::parse_rate)
            .transpose()
            .map_err(Error::Usage)?;
        let ms = |v: u64| v.saturating_mul(1_000_000);
        Ok(Config {
            source,
            targets,
            backend: BackendConfig {
                choice: args.backend,
                unlimited_queue: args.fanotify_unlimited_queue,
            },
            excludes,
            once: args.once,
            status: args.status,
            metrics: args.metrics,
            bwlimit,
            fsync: args.fsync,
            strict: args.strict,
            allow_source_change: args.allow_source_change,
            max_delete: args.max_delete,
            state_dir,
            jobs,
            timing: Timing {
                quiet_ns: ms(args.modify_quiet),
                max_age_ns: ms(args.modify_max_age),
                batch_delay_ns: ms(args.batch_delay),
                max_batch: args.max_batch,
            },
            rescan_interval: Duration::from_secs(args.rescan_interval.max(1)),
            max_links: args.max_links,
            rsync: RsyncOptions {
                password_file: args.password_file,
                compress: args.compress,
                inplace: args.inplace,
                timeout_secs: args.rsync_timeout,
                streams: args.streams,
                warm_clients: args.warm_clients,
                run_interval: Duration::from_millis(args.run_interval),
                bwlimit,
            },
            log_level: if args.quiet {
                crate::log::ERROR
            } else {
                crate::log::INFO + args.verbose.min(1)
            },
        })
    }
}

/// Checks one local TARGET against SOURCE.
fn validate_local_target(target: &Path, source: &Path) -> Result<TargetSpec, Error> {
    let text = target.to_string_lossy();
    let canonical = canonical_maybe_missing(target)?;
    if canonical.exists() && !canonical.is_dir() {
        return Err(usage(format!(
            "TARGET {text} exists and is not a directory"
        )));
    }
    if canonical == source {
        return Err(usage(format!(
            "TARGET {text} is the same directory as SOURCE"
        )));
    }
    if canonical.starts_with(source) {
        return Err(usage(format!(
            "TARGET {} is inside SOURCE {}: the replica would replicate itself; choose a target outside the source",
            canonical.display(),
            source.display()
        )));
    }
    if source.starts_with(&canonical) {
        return Err(usage(format!(
            "SOURCE {} is inside TARGET {}: replicating would delete the source; choose a target outside it",
            source.display(),
            canonical.display()
        )));
    }
    Ok(TargetSpec::Local(canonical))
}

/// rsync refuses a password file that other users can read; say so before it does.
fn check_password_file(file: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file)
        .map_err(|err| usage(format!("--password-file {}: {err}", file.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o006 != 0 {
        return Err(usage(format!(
            "--password-file {} is readable by other users (mode {mode:03o}); rsync refuses such a file: run chmod 600 {}",
            file.display(),
            file.display()
        )));
    }
    Ok(())
}
