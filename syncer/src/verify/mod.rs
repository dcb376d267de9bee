//! `syncer verify SOURCE TARGET`: a read-only compare of a replica with its source, and with
//! `--repair` a one-shot sync (`syncer --once`) followed by a second compare.
//!
//! Local targets are walked in parallel (`tree`); rsync targets are compared by a dry run of
//! rsync itself (`rsync_dry_run`), which reads the daemon's side the way the daemon sees it.
//! Both produce `Finding`s; `report` prints them. Exit codes: 0 equal, 1 different, 2 not
//! compared (bad arguments, a missing target, an unreachable daemon, an unreadable entry).

mod links;
mod report;
mod rsync_dry_run;
mod tree;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cli::{Args, VerifyArgs};
use crate::config::{Config, TargetSpec};
use crate::error::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Error};
use crate::exclude::Excludes;

/// One way TARGET differs from SOURCE (paths relative to both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// In SOURCE, not in TARGET.
    Missing(PathBuf),
    /// In TARGET, not in SOURCE.
    Extra(PathBuf),
    /// In both, not the same: each item says what, as "SOURCE's != TARGET's".
    Differs(PathBuf, Vec<String>),
    /// Could not be read on one side, so the compare is incomplete.
    Unreadable(PathBuf, String),
}

impl Finding {
    pub fn path(&self) -> &std::path::Path {
        match self {
            Finding::Missing(p) | Finding::Extra(p) => p,
            Finding::Differs(p, _) | Finding::Unreadable(p, _) => p,
        }
    }
}

/// What one compare found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    /// Entries compared (SOURCE's side; None where rsync does not say).
    pub entries: Option<u64>,
    /// File content read on both sides (`--checksum`, local targets).
    pub content_bytes: u64,
    /// Groups of names sharing one inode that were checked (local targets).
    pub link_groups: u64,
    pub took: Duration,
}

impl Outcome {
    fn equal(&self) -> bool {
        self.findings.is_empty()
    }

    fn complete(&self) -> bool {
        !self
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Unreadable(..)))
    }
}

/// What a compare needs besides the two trees.
#[derive(Debug, Clone)]
pub struct Options {
    pub excludes: Excludes,
    /// Compare contents too, not only sizes and mtimes.
    pub checksum: bool,
    /// Compare owners (as root only: a replica made by another user cannot have them).
    pub owners: bool,
    pub password_file: Option<PathBuf>,
}

/// Runs the command; the exit code says equal (0), different (1) or not compared (2).
pub fn run(args: VerifyArgs) -> Result<i32, Error> {
    let run_args = args.run_args()?;
    // The same validation as a sync (SOURCE, TARGET, excludes, password file).
    let config = Config::from_args(run_args)?;
    let target = config.targets[0].spec.clone();
    if let TargetSpec::Local(path) = &target
        && !path.is_dir()
        && !args.repair
    {
        return Err(Error::Usage(format!(
            "TARGET {} does not exist: nothing to compare (make it with syncer SOURCE TARGET --once, or give --repair)",
            path.display()
        )));
    }
    let options = Options {
        excludes: config.targets[0].excludes.clone(),
        checksum: args.checksum,
        owners: nix::unistd::geteuid().is_root(),
        password_file: config.targets[0].options.rsync.password_file.clone(),
    };
    let out = report::Printer::new(args.all);
    let first = compare(&config, &target, &options)?;
    out.outcome(&config.source, &target, &first, &options);
    if !first.complete() {
        return Ok(EXIT_USAGE);
    }
    if first.equal() {
        return Ok(EXIT_OK);
    }
    if !args.repair {
        return Ok(EXIT_FAILURE);
    }
    out.repairing(&target);
    let mut once = config.clone();
    once.once = true;
    let code = crate::pipeline::run(once)?;
    if code != EXIT_OK {
        return Ok(code);
    }
    let second = compare(&config, &target, &options)?;
    out.outcome(&config.source, &target, &second, &options);
    Ok(match (second.complete(), second.equal()) {
        (false, _) => EXIT_USAGE,
        (true, true) => EXIT_OK,
        (true, false) => EXIT_FAILURE,
    })
}

fn compare(config: &Config, target: &TargetSpec, options: &Options) -> Result<Outcome, Error> {
    let started = Instant::now();
    let mut outcome = match target {
        TargetSpec::Local(path) => tree::compare(&config.source, path, options)?,
        TargetSpec::Rsync(url) => rsync_dry_run::compare(&config.source, url, options)?,
    };
    outcome.took = started.elapsed();
    Ok(outcome)
}

impl VerifyArgs {
    /// The sync these arguments describe (`--repair` runs it once).
    fn run_args(&self) -> Result<Args, Error> {
        let mut argv = vec![
            "syncer".into(),
            self.source.clone().into_os_string(),
            self.target.clone().into_os_string(),
        ];
        for pattern in &self.exclude {
            argv.push("--exclude".into());
            argv.push(pattern.into());
        }
        if let Some(file) = &self.password_file {
            argv.push("--password-file".into());
            argv.push(file.clone().into_os_string());
        }
        if let Some(dir) = &self.state_dir {
            argv.push("--state-dir".into());
            argv.push(dir.clone().into_os_string());
        }
        if self.allow_source_change {
            argv.push("--allow-source-change".into());
        }
        if let Some(dir) = &self.backup_dir {
            argv.push("--backup-dir".into());
            argv.push(dir.clone().into_os_string());
        }
        // Only paths and patterns the verify command line held already: a failure here would
        // be a bug in this translation, reported as such rather than as clap's exit.
        <Args as clap::Parser>::try_parse_from(argv)
            .map_err(|err| Error::Usage(format!("cannot describe the sync to verify: {err}")))
    }
}
