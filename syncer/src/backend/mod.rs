//! Event backends behind one trait: kernel events in, `Change`s out through a `Sink`.
//! inotify lives in `inotify`; fanotify slots in beside it.

use std::io;
use std::path::{Path, PathBuf};

use crate::pending::{Mark, Rename};

pub mod inotify;

/// One translated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Mark(PathBuf, Mark),
    Rename(Rename),
}

/// Where a backend delivers what it saw.
pub trait Sink: Sync {
    /// Delivers a batch of changes (one per read buffer, so locks are taken once per read).
    fn push(&self, changes: &mut Vec<Change>);
    /// Asks for a reconcile of `subtree` (after an overflow: the root, with `recapture` so
    /// missed directories get their watches).
    fn rescan(&self, subtree: PathBuf, recapture: bool);
}

/// What a capture walk found.
#[derive(Debug, Default, Clone, Copy)]
pub struct CaptureReport {
    /// Directories seen below the subtree (including it).
    pub dirs: u64,
    /// Directories that could not be watched (watch limit).
    pub unwatched: u64,
}

/// A source of file-change events for the whole source tree.
pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;

    /// Starts capturing changes below `subtree` (inotify: a watch per directory, added before
    /// the directory is listed). Safe to call again: existing watches are kept.
    fn capture(&self, subtree: &Path) -> io::Result<CaptureReport>;

    /// The read loop: runs on its own thread until `stop` is called.
    fn run(&self, sink: &dyn Sink) -> io::Result<()>;

    /// Makes `run` return soon (from any thread).
    fn stop(&self);

    /// True while part of the tree is not covered by events (e.g. watch limit reached), so
    /// periodic reconciles must cover it.
    fn degraded(&self) -> bool;
}
