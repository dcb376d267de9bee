//! The syncer's errors before it runs and while it sets up, and the exit code of each kind,
//! decided here and nowhere else. Failures once it runs (a target gone, a full disk) are not
//! errors of this kind: they are logged, retried or reconciled, and a fatal one stops the
//! pipeline with exit code 1 (`Control::fail`), or 3 when SOURCE went away while running
//! (`Control::halt`). A signal is a requested stop: exit 0.

use std::io;
use std::path::PathBuf;

use crate::guard::SourceLost;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line cannot work as given; the message says what to give instead.
    #[error("{0}")]
    Usage(String),
    /// Something the syncer needs could not be set up; `hint` says what to do about it.
    #[error("{what}; {hint}")]
    Setup { what: String, hint: String },
    /// I/O on a path failed (`action` is a verb phrase: "open SOURCE").
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// `syncer verify` could not compare (a tree unreadable, a daemon unreachable).
    #[error("{0}")]
    NotCompared(String),
    /// SOURCE is not the tree the replicas were made from: starting would delete from them.
    #[error("{0}")]
    SourceLost(#[from] SourceLost),
}

/// Exit code of a clean stop (`--once` done, or SIGINT/SIGTERM after draining).
pub const EXIT_OK: i32 = 0;
/// Exit code of a runtime failure, and of every setup error.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of bad usage.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of the delete guard: SOURCE was unmounted, replaced, deleted or found empty,
/// so nothing was deleted. A restart would meet the same SOURCE: a systemd unit lists it in
/// `RestartPreventExitStatus=`.
pub const EXIT_GUARD: i32 = 3;

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::NotCompared(_) => EXIT_USAGE,
            Error::Setup { .. } | Error::Io { .. } => EXIT_FAILURE,
            Error::SourceLost(_) => EXIT_GUARD,
        }
    }

    /// A thread the pipeline needs could not be started.
    pub fn thread(name: &str, err: io::Error) -> Error {
        Error::Setup {
            what: format!("cannot start the {name} thread: {err}"),
            hint: "the process limit (ulimit -u) or memory is exhausted".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_the_rest_exit_1() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        let io = Error::Io {
            action: "open SOURCE",
            path: "/nope".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(io.exit_code(), 1);
        assert!(io.to_string().starts_with("cannot open SOURCE /nope: "));
        let setup = Error::thread("reader", io::Error::from(io::ErrorKind::OutOfMemory));
        assert_eq!(setup.exit_code(), 1);
        assert!(setup.to_string().contains("; the process limit"));
        let lost = Error::from(SourceLost::Deleted {
            path: "/src".into(),
        });
        assert_eq!(lost.exit_code(), EXIT_GUARD);
    }
}
