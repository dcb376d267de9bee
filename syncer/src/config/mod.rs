//! The validated settings: the command line (`crate::cli`) or a config file (`file`) in, a
//! `Config` the pipeline can trust out, or a usage error that says what to give instead.
//! `reload` tells what a changed config file may change in a running syncer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::BackendConfig;
use crate::cli::Args;
use crate::error::Error;
use crate::exclude::Excludes;
use crate::queue::pending::Timing;
use crate::replica::TargetOptions;
use crate::replica::rsync::RsyncOptions;
use crate::replica::rsync_url::{RsyncUrl, looks_like_rsync};

pub mod file;
pub mod reload;

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

/// One replica and its options.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub spec: TargetSpec,
    pub options: TargetOptions,
    /// The global patterns and this target's own.
    pub excludes: Excludes,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub targets: Vec<TargetConfig>,
    pub backend: BackendConfig,
    /// The global excludes: paths no target gets, not watched.
    pub excludes: Excludes,
    pub once: bool,
    pub status: Option<PathBuf>,
    /// `--metrics`: where the Prometheus endpoint listens.
    pub metrics: Option<String>,
    pub strict: bool,
    /// Skip the start-up delete guard once (`--allow-source-change`).
    pub allow_source_change: bool,
    pub state_dir: PathBuf,
    pub timing: Timing,
    pub rescan_interval: Duration,
    pub max_links: usize,
    pub log_level: u8,
    /// `--config`: the file this came from, read again on SIGHUP.
    pub file: Option<PathBuf>,
}

impl Config {
    /// The names of the targets, as logs and the status file give them.
    pub fn target_names(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.spec.name()).collect()
    }
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

/// SOURCE, checked and made canonical.
pub(crate) fn source_dir(given: &Path) -> Result<PathBuf, String> {
    let source = given.canonicalize().map_err(|err| {
        format!(
            "SOURCE {}: {err}; give an existing directory",
            given.display()
        )
    })?;
    if !source.is_dir() {
        return Err(format!("SOURCE {} is not a directory", given.display()));
    }
    Ok(source)
}

/// One TARGET as given (a local directory or an rsync daemon module), checked against SOURCE.
pub(crate) fn target_spec(text: &str, source: &Path) -> Result<TargetSpec, String> {
    if looks_like_rsync(text) {
        RsyncUrl::parse(text).map(TargetSpec::Rsync)
    } else {
        validate_local_target(Path::new(text), source)
    }
}

/// The checkpoint directory: given or the default, outside SOURCE and every local TARGET.
fn state_dir(
    given: Option<&Path>,
    source: &Path,
    targets: &[TargetSpec],
) -> Result<PathBuf, String> {
    let dir = match given {
        Some(dir) => canonical_maybe_missing(dir)?,
        None => crate::state::default_dir(),
    };
    let inside_target = targets.iter().any(|t| match t {
        TargetSpec::Local(path) => dir.starts_with(path),
        TargetSpec::Rsync(_) => false,
    });
    if dir.starts_with(source) || inside_target {
        return Err(format!(
            "the state directory {} must be outside SOURCE and TARGET",
            dir.display()
        ));
    }
    Ok(dir)
}

/// Checks the settings that hold for any target, whichever way they were given.
pub(crate) fn check_target_options(options: &TargetOptions) -> Result<(), String> {
    if options.rsync.streams == 0 || options.rsync.timeout_secs == 0 {
        return Err("streams and rsync-timeout must be at least 1".into());
    }
    if options.jobs == 0 {
        return Err("jobs must be at least 1".into());
    }
    Ok(())
}

/// A target's excludes: the global ones, its own, and its backup directory.
pub(crate) fn target_excludes(
    global: &Excludes,
    options: &TargetOptions,
) -> Result<Excludes, String> {
    let mut own = options.exclude.clone();
    if let Some(dir) = &options.backup_dir {
        own.push(crate::replica::backup::exclude_pattern(dir));
    }
    global.with(&own)
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn log_level(quiet: bool, verbose: u8) -> u8 {
    if quiet {
        crate::log::ERROR
    } else {
        crate::log::INFO + verbose.min(2)
    }
}

fn ms(v: u64) -> u64 {
    v.saturating_mul(1_000_000)
}

impl Config {
    /// The settings of `syncer [OPTIONS] SOURCE TARGET...` or `syncer --config FILE`;
    /// `matches` tells which options were given, which `--config` allows only a few of.
    pub fn from_cli(args: Args, matches: &clap::ArgMatches) -> Result<Config, Error> {
        let Some(path) = args.config.clone() else {
            return Config::from_args(args);
        };
        // The run's own arguments (the matches also hold clap's group ids).
        let command = <Args as clap::CommandFactory>::command();
        let given = command
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .find(|id| {
                matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
                    && !file::BESIDE_CONFIG.contains(id)
            });
        if let Some(id) = given {
            let key = id.replace('_', "-");
            return Err(usage(format!(
                "--{key} cannot be given with --config: write {key} = ... in {} (in a \
                 [[target]] table for an option of one target) and leave it off the command line",
                path.display()
            )));
        }
        file::load(
            &path,
            file::CommandLine {
                once: args.once,
                allow_source_change: args.allow_source_change,
                verbose: args.verbose,
                quiet: args.quiet,
            },
        )
    }

    /// Checks everything that can be checked before starting.
    pub fn from_args(args: Args) -> Result<Config, Error> {
        let given = args
            .source
            .ok_or_else(|| usage("give SOURCE and at least one TARGET, or --config FILE"))?;
        let source = source_dir(&given).map_err(usage)?;
        let mut specs = Vec::new();
        for target in &args.targets {
            let spec = target_spec(&target.to_string_lossy(), &source).map_err(usage)?;
            if specs.contains(&spec) {
                return Err(usage(format!("TARGET {} is given twice", target.display())));
            }
            specs.push(spec);
        }
        let state_dir = state_dir(args.state_dir.as_deref(), &source, &specs)
            .map_err(|e| usage(format!("--state-dir: {e}")))?;
        if let Some(file) = &args.password_file {
            check_password_file(file).map_err(|e| usage(format!("--password-file {e}")))?;
        }
        let excludes = Excludes::new(&args.exclude).map_err(Error::Usage)?;
        if args.max_batch == 0 {
            return Err(usage("--max-batch must be at least 1"));
        }
        let bwlimit = args
            .bwlimit
            .as_deref()
            .map(crate::replica::bandwidth::parse_rate)
            .transpose()
            .map_err(|e| usage(format!("--bwlimit {e}")))?;
        if let Some(dir) = &args.backup_dir {
            crate::replica::backup::check_dir(dir)
                .map_err(|e| usage(format!("--backup-dir {e}")))?;
        }
        let options = TargetOptions {
            exclude: Vec::new(),
            bwlimit,
            max_delete: args.max_delete,
            fsync: args.fsync,
            jobs: args.jobs.unwrap_or_else(default_jobs),
            backup_dir: args.backup_dir,
            backup_keep: args.backup_keep,
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
        };
        check_target_options(&options).map_err(|e| usage(format!("--{e}")))?;
        let target_excludes = target_excludes(&excludes, &options).map_err(Error::Usage)?;
        Ok(Config {
            targets: specs
                .into_iter()
                .map(|spec| TargetConfig {
                    spec,
                    options: options.clone(),
                    excludes: target_excludes.clone(),
                })
                .collect(),
            source,
            backend: BackendConfig {
                choice: args.backend,
                unlimited_queue: args.fanotify_unlimited_queue,
            },
            excludes,
            once: args.once,
            status: args.status,
            metrics: args.metrics,
            strict: args.strict,
            allow_source_change: args.allow_source_change,
            state_dir,
            timing: Timing {
                quiet_ns: ms(args.modify_quiet),
                max_age_ns: ms(args.modify_max_age),
                batch_delay_ns: ms(args.batch_delay),
                max_batch: args.max_batch,
            },
            rescan_interval: Duration::from_secs(args.rescan_interval.max(1)),
            max_links: args.max_links,
            log_level: log_level(args.quiet, args.verbose),
            file: None,
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
pub(crate) fn check_password_file(file: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).map_err(|err| format!("{}: {err}", file.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o006 != 0 {
        return Err(format!(
            "{} is readable by other users (mode {mode:03o}); rsync refuses such a file: run chmod 600 {}",
            file.display(),
            file.display()
        ));
    }
    Ok(())
}
