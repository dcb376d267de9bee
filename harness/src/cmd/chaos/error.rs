//! Why `harness chaos` could not run a campaign or a case: bad settings (usage), a syncer or
//! daemon that would not start or stop as it must (setup; inside a case these become the
//! case's `problem`), files that could not be read or written (I/O), or Ctrl-C.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::mix::AllWeightsZero;
use super::op::ParseError;
use crate::cli::chaos::UnknownName;
use crate::host::cargo_target::BinaryError;

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("{}: {source}", path.display())]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{}: [matrix] {what} is empty", path.display())]
    EmptyMatrix { path: PathBuf, what: &'static str },
    #[error("{}: {source}", path.display())]
    Matrix { path: PathBuf, source: UnknownName },
    #[error("{}: [pause] burst_chance must be within 0..1", path.display())]
    BurstChance { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Mix {
        path: PathBuf,
        source: AllWeightsZero,
    },
    #[error("convergence limit {0} s: give a number of seconds above 0")]
    Converge(f64),
    #[error("--jobs 0: give at least 1")]
    NoJobs,
    #[error("{}: {source}", path.display())]
    OpLog { path: PathBuf, source: ParseError },
    /// `action` names what was done to `path`: "create", "make a work dir in", "start".
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A file named by its role: "write summary.md", "create the syncer log".
    #[error("cannot {what}: {source}")]
    File {
        what: &'static str,
        source: io::Error,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    CsvFile {
        action: &'static str,
        path: PathBuf,
        source: csv::Error,
    },
    #[error("{}: {source}", path.display())]
    CsvRow { path: PathBuf, source: csv::Error },
    #[error("{0}")]
    CsvWrite(#[from] csv::Error),
    #[error("generating seed {seed}: {source}")]
    Generate { seed: u64, source: io::Error },
    #[error("{0}")]
    Syncer(#[from] BinaryError),
    #[error("cannot start the rsync daemon: {0}")]
    Daemon(io::Error),
    #[error("the syncer exited with {0} before it was ready")]
    ExitedEarly(ExitStatus),
    #[error("the syncer was not ready within {0:?}")]
    NotReady(Duration),
    #[error("the syncer exited with {0} after SIGTERM")]
    BadExit(ExitStatus),
    #[error("the syncer did not exit within {0:?} of SIGTERM")]
    NoExit(Duration),
    #[error("the syncer panicked: {0}")]
    Panicked(String),
    #[error("cannot send {signal} to the syncer: {source}")]
    Signal {
        signal: &'static str,
        source: io::Error,
    },
    #[error("{path}: {source}", path = path.display())]
    Fault {
        path: PathBuf,
        source: super::fault::FaultError,
    },
    #[error(
        "source-perm faults need an unprivileged syncer, and --backend fanotify needs root: run them with --backend inotify"
    )]
    UnprivilegedFanotify,
    #[error(
        "the unprivileged syncer ({user}) cannot enter {}: give --workdir a folder every user may enter (chmod o+x on it and its parents)", dir.display()
    )]
    Unreachable { user: &'static str, dir: PathBuf },
    #[error(
        "no user {0} on this machine: the unprivileged syncer of source-perm cases runs as it (add it with useradd)"
    )]
    NoUser(&'static str),
    /// Ctrl-C; the text says how to go on.
    #[error("{0}")]
    Interrupted(&'static str),
}

impl ChaosError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ChaosError::Io {
            action,
            path,
            source,
        }
    }

    pub fn file(what: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| ChaosError::File { what, source }
    }
}

impl From<ChaosError> for crate::Error {
    fn from(e: ChaosError) -> Self {
        use ChaosError::*;
        match e {
            Toml { .. }
            | EmptyMatrix { .. }
            | Matrix { .. }
            | BurstChance { .. }
            | Mix { .. }
            | Converge(_)
            | NoJobs
            | OpLog { .. }
            | Fault { .. } => crate::Error::usage(e),
            Io { .. } | File { .. } | CsvFile { .. } | CsvRow { .. } | CsvWrite(_) => {
                crate::Error::io(e)
            }
            Interrupted(_) => crate::Error::interrupted(e),
            _ => crate::Error::setup(e),
        }
    }
}
