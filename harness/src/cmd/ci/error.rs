//! Why `harness ci` could not give a verdict: a missing scenario set or binary (usage), git
//! or cargo failing (setup; a baseline that cannot be resolved or built is a SKIP instead),
//! a `harness run` child that failed, files that could not be written, or Ctrl-C.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use crate::gate::GateError;
use crate::scenario::ScenarioError;

#[derive(Debug, thiserror::Error)]
pub enum CiError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error("no ci-*.toml in {}: pass --scenarios", .0.display())]
    NoScenarios(PathBuf),
    #[error("{} is not valid TOML ({source})", path.display())]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("no syncer binary at {} ({source})", path.display())]
    NoBinary { path: PathBuf, source: io::Error },
    /// `action` says what was done to `path` ("create", "clear", "append to"); `hint`, when
    /// not empty, what to pass instead.
    #[error("cannot {action} {} ({source}){}", path.display(), hint_suffix(hint))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
    /// Writing the report or resolving --out: the OS error says which.
    #[error("{0}")]
    Write(io::Error),
    #[error("cannot find the harness binary ({0})")]
    NoHarness(io::Error),
    #[error("cannot start `harness run` ({0})")]
    StartRun(io::Error),
    #[error("`harness run {}` for {side} failed ({status}); see {}", scenario.display(), log.display())]
    RunFailed {
        scenario: PathBuf,
        side: &'static str,
        status: ExitStatus,
        log: PathBuf,
    },
    #[error("cannot run git ({0}): install git")]
    NoGit(io::Error),
    #[error("`git {args}` failed: {stderr}")]
    Git { args: String, stderr: String },
    #[error("no commit `{rev}` ({source})")]
    NoCommit { rev: String, source: Box<CiError> },
    #[error("cannot run cargo ({0}): is the Rust toolchain on PATH?")]
    NoCargo(io::Error),
    #[error("`cargo build --release -p syncer` in {} failed: {stderr_tail}", dir.display())]
    Build { dir: PathBuf, stderr_tail: String },
    #[error("cannot copy {} to {} ({source})", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(": {hint}")
    }
}

impl CiError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        Self::io_hint(action, path, "")
    }

    pub fn io_hint(
        action: &'static str,
        path: impl Into<PathBuf>,
        hint: &'static str,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| CiError::Io {
            action,
            path,
            source,
            hint,
        }
    }
}

impl From<CiError> for crate::Error {
    fn from(e: CiError) -> Self {
        use CiError::*;
        match e {
            Scenario(e) => e.into(),
            Gate(e) => e.into(),
            NoScenarios(_) | Toml { .. } | NoBinary { .. } => crate::Error::usage(e),
            Io { .. } | Write(_) | Copy { .. } => crate::Error::io(e),
            Interrupted => crate::Error::interrupted(e),
            _ => crate::Error::setup(e),
        }
    }
}
