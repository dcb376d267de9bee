//! Event backends behind one trait: kernel events in, `Change`s out through a `Sink`.
//! inotify (a watch per directory) lives in `inotify`, fanotify (one filesystem mark) in
//! `fanotify`; `open` chooses between them.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::source::SourceTree;
use crate::stats::Stats;
use crate::sys::fanotify::{Capabilities, probe};

use crate::change::Change;
use crate::error::Error;

use clap::ValueEnum;

pub mod fanotify;
mod fanotify_translate;
pub mod handles;
pub mod inotify;
pub mod watch;

/// The environment variable of a test hook: set to 1, a queue overflow is counted and logged
/// but not reconciled, so changes it lost stay lost. The harness's fault tests set it to show
/// that a syncer mishandling an overflow fails them; nothing else should.
pub const IGNORE_OVERFLOW_ENV: &str = "SYNCER_TEST_IGNORE_OVERFLOW";

/// Whether an overflow is reconciled (always, unless the test hook above is set).
fn overflow_reconciled() -> bool {
    static IGNORED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    !*IGNORED.get_or_init(|| std::env::var_os(IGNORE_OVERFLOW_ENV).is_some_and(|v| v == "1"))
}

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

/// Pause of a reader after a wakeup that found events. At 30k events/s it turns ~2 events
/// per read into ~30 and costs at most this much latency for events that arrive during a
/// burst; the first event after a quiet period is still read at once.
pub const COALESCE: std::time::Duration = std::time::Duration::from_millis(1);

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

/// Set (to anything but "" or "0") to make fanotify look unavailable: tests force the
/// fallback path with it, and an admin can rule fanotify out without changing the command.
pub const DISABLE_ENV: &str = "SYNCER_FANOTIFY_DISABLE";

/// Whether fanotify can serve SOURCE; else the reason, in words.
fn fanotify_usable(source: &SourceTree) -> Result<Capabilities, String> {
    if std::env::var_os(DISABLE_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        return Err(format!("disabled by {DISABLE_ENV}"));
    }
    let caps =
        probe(&source.abs).map_err(|u| format!("{} ({} failed: {})", u.reason, u.step, u.error))?;
    if !caps.open_by_handle {
        return Err(
            "open_by_handle_at is not permitted (needs CAP_DAC_READ_SEARCH): directory handles could not be resolved".into(),
        );
    }
    Ok(caps)
}

fn open_fanotify(
    caps: Capabilities,
    config: BackendConfig,
    source: &Arc<SourceTree>,
    stats: &Arc<Stats>,
) -> io::Result<Arc<dyn Backend>> {
    let backend = fanotify::FanotifyBackend::new(
        source.clone(),
        stats.clone(),
        caps,
        config.unlimited_queue,
    )?;
    Ok(Arc::new(backend))
}

fn open_inotify(source: &Arc<SourceTree>, stats: &Arc<Stats>) -> Result<Arc<dyn Backend>, Error> {
    let backend = inotify::InotifyBackend::new(source.clone(), stats.clone()).map_err(|err| {
        Error::Setup {
            what: format!("cannot create an inotify instance: {err}"),
            hint: "if fs.inotify.max_user_instances is exhausted: sysctl -w fs.inotify.max_user_instances=512".into(),
        }
    })?;
    Ok(Arc::new(backend))
}

/// Opens the backend `config` asks for, logging which one and why. `auto` prefers fanotify
/// (one mark for the whole filesystem) and falls back to inotify, never failing because of
/// fanotify; `--backend fanotify` fails with the reason instead.
pub fn open(
    config: BackendConfig,
    source: &Arc<SourceTree>,
    stats: &Arc<Stats>,
) -> Result<Arc<dyn Backend>, Error> {
    let fanotify_failed = |why: String| Error::Setup {
        what: format!(
            "--backend fanotify: fanotify cannot serve {}: {why}",
            source.abs.display()
        ),
        hint: "use --backend inotify or auto".into(),
    };
    let (backend, reason) = match config.choice {
        BackendChoice::Inotify => (open_inotify(source, stats)?, "requested".to_string()),
        BackendChoice::Fanotify => {
            let caps = fanotify_usable(source).map_err(fanotify_failed)?;
            let backend = open_fanotify(caps, config, source, stats)
                .map_err(|err| fanotify_failed(format!("cannot set up fanotify: {err}")))?;
            (backend, describe(caps, "requested"))
        }
        BackendChoice::Auto => match fanotify_usable(source) {
            Ok(caps) => match open_fanotify(caps, config, source, stats) {
                Ok(backend) => (
                    backend,
                    describe(caps, "auto: filesystem mark and file handles work here"),
                ),
                Err(err) => (
                    open_inotify(source, stats)?,
                    format!("auto: fanotify unavailable: cannot set up fanotify: {err}"),
                ),
            },
            Err(why) => (
                open_inotify(source, stats)?,
                format!("auto: fanotify unavailable: {why}"),
            ),
        },
    };
    stats.set_backend(backend.name());
    crate::info!("backend: {} ({reason})", backend.name());
    Ok(backend)
}

/// The log detail for a fanotify choice: why, and which optional features are in use.
fn describe(caps: Capabilities, why: &str) -> String {
    let renames = if caps.rename {
        "FAN_RENAME"
    } else {
        "MOVED_FROM/MOVED_TO pairing (kernel before 5.17)"
    };
    let fid = if caps.target_fid {
        "target FID"
    } else {
        "no target FID"
    };
    format!("{why}; {renames}, {fid}")
}
