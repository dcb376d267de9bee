//! The harness's errors as main sees them: every stage's own error (scenario, session, gate,
//! each command's) converted into one of four kinds, and the exit code of each kind decided
//! in main.rs from that kind alone. The message is always the stage error's own text: it says
//! what failed and what to do about it. This file imports nothing from the crate, so every
//! folder may convert into it.

use std::error::Error as StdError;

/// A stage error, boxed: its Display is the message main prints.
pub type Cause = Box<dyn StdError + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or a bad scenario/config file: the message says what to give instead.
    #[error("{0}")]
    Usage(Cause),
    /// Something a run needs is missing or could not be started (a binary, a daemon, a
    /// sysctl, root, a work dir); the message says how to provide it.
    #[error("{0}")]
    Setup(Cause),
    /// Reading or writing the harness's own files (results, reports, inputs) failed.
    #[error("{0}")]
    Io(Cause),
    /// Ctrl-C stopped the command; the message says where the partial results are.
    #[error("{0}")]
    Interrupted(Cause),
}

impl Error {
    pub fn usage(e: impl Into<Cause>) -> Error {
        Error::Usage(e.into())
    }

    pub fn setup(e: impl Into<Cause>) -> Error {
        Error::Setup(e.into())
    }

    pub fn io(e: impl Into<Cause>) -> Error {
        Error::Io(e.into())
    }

    pub fn interrupted(e: impl Into<Cause>) -> Error {
        Error::Interrupted(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_stage_error_text() {
        let e = Error::usage(std::io::Error::other("--jobs 0: give at least 1"));
        assert_eq!(e.to_string(), "--jobs 0: give at least 1");
        assert!(matches!(e, Error::Usage(_)));
    }
}
