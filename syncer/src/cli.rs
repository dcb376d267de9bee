//! The command line as clap parses it. Validation into a `Config` is `crate::config`'s.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

use crate::backend::BackendChoice;

/// Keeps TARGET identical to SOURCE in real time, from kernel file events.
///
/// `syncer SOURCE TARGET...` replicates; `syncer verify SOURCE TARGET` compares once. (A
/// SOURCE directory named `verify` is given as `./verify`.)
#[derive(Debug, Parser)]
#[command(
    name = "syncer",
    version,
    about,
    long_about = None,
    propagate_version = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Args,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare TARGET with SOURCE once, read-only, and say what differs.
    ///
    /// Compared: names, types, sizes, modes, mtimes (not of directories), owners (as root),
    /// symlink targets and which names share an inode. Exit 0: equal; 1: different; 2: not compared (bad arguments, a
    /// missing target, an unreachable daemon, an unreadable entry). Compare a quiet tree, or
    /// one the running syncer has caught up with: changes in flight are differences.
    Verify(VerifyArgs),
    /// Wait until every change made in SOURCE before this call has reached every replica.
    ///
    /// A sync barrier for scripts (deploy, then wait, then switch traffic): makes a cookie
    /// file at SOURCE's root, which the running syncer sees after every change made before
    /// it, and returns once every target has applied all of those (files still in their
    /// quiet period and batches being retried included). Cookies are never replicated.
    /// Exit 0: passed; 1: timed out (the targets still behind are named); 2: the cookie
    /// could not be made (this user cannot write SOURCE).
    Wait(WaitArgs),
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The directory the running syncer replicates.
    pub source: PathBuf,
    /// Give up after this many seconds (exit 1).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub timeout: f64,
    /// The running syncer's checkpoint directory, where it acknowledges the barrier [default:
    /// as for the syncer].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The replicated directory.
    pub source: PathBuf,
    /// Its replica: a local directory or an rsync daemon module (as for a sync).
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,
    /// Compare file contents too (local: both files read; rsync: rsync --checksum).
    #[arg(long)]
    pub checksum: bool,
    /// Make TARGET equal where it differs (one sync, as `syncer --once`), then compare
    /// again: exit 0 when it is equal then.
    #[arg(long)]
    pub repair: bool,
    /// List every difference, not only the first 20.
    #[arg(long)]
    pub all: bool,
    /// Paths not compared (as for a sync; give the same patterns).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// rsync targets: file holding the daemon password. Default: $RSYNC_PASSWORD.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// --repair: the checkpoint directory (as for a sync).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// --repair: start even though SOURCE is not the tree the replica was made from (as for
    /// a sync).
    #[arg(long)]
    pub allow_source_change: bool,
    /// The target's backup directory (as for a sync): not compared, and --repair keeps what
    /// it replaces or deletes there.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
}

/// The replication's arguments: `syncer SOURCE TARGET... [OPTIONS]`.
#[derive(Debug, Parser)]
#[command(name = "syncer")]
pub struct Args {
    /// Directory to replicate. (An Option only so that `syncer verify ...` and `--config`
    /// parse: clap requires it whenever neither is given.)
    #[arg(required_unless_present = "config")]
    pub source: Option<PathBuf>,
    /// Replicas: local directories (created if missing; not inside SOURCE, nor SOURCE inside
    /// them) or rsync daemon modules, `rsync://[USER@]HOST[:PORT]/MODULE[/PATH]` or
    /// `[USER@]HOST::MODULE[/PATH]`. Several targets are kept in sync at once, each with its
    /// own backlog, so a slow or dead one never delays the others.
    #[arg(required_unless_present = "config", value_name = "TARGET")]
    pub targets: Vec<PathBuf>,
    /// Read SOURCE, the targets and every option from a TOML file instead, with options per
    /// target (own excludes, bandwidth, password file, delete cap, streams); keys are spelled
    /// as the options without the leading dashes. Beside it only --once,
    /// --allow-source-change, -v and -q may be given. SIGHUP reads the file again: excludes
    /// and the per-run options of targets change in place, and the subtrees that became
    /// included are compared; a bad or unsupported change is refused whole and logged.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["source", "targets"])]
    pub config: Option<PathBuf>,
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
    /// Serve the counters at http://ADDR/metrics in the Prometheus text format (per target:
    /// backlog, lag, last success, errors, retries, files and bytes sent; events, overflows,
    /// reconciles, watches, peak RSS). ADDR is HOST:PORT, e.g. 127.0.0.1:9185.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// fsync each file before it is renamed into place and its directory after: survives a
    /// power loss, at a large cost in throughput. Off by default.
    #[arg(long)]
    pub fsync: bool,
    /// rsync targets: file holding the daemon password (mode 600, as rsync demands).
    /// Default: the RSYNC_PASSWORD environment variable.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Most bytes per second written to each target: KiB as rsync takes it, or with K, M or
    /// G (e.g. 500K, 10M). rsync targets split it over their --streams parallel runs (rsync
    /// --bwlimit); local targets share one token bucket across their copies (a clone, which
    /// moves no data, is not counted). Off by default.
    #[arg(long, value_name = "RATE")]
    pub bwlimit: Option<String>,
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
    /// Delete at most N replica entries per target within any 60 s (a directory with 500
    /// entries below it is 501); past that the syncer stops, exit 3, and deletes nothing
    /// more. Off by default. rsync targets then run one stream without warm clients, so the
    /// cap is exact.
    #[arg(long, value_name = "N")]
    pub max_delete: Option<u64>,
    /// Keep what each target would lose: a replica entry deleted or replaced is moved to
    /// DIR/STAMP/its/path inside the replica instead (rsync --backup --backup-dir), STAMP
    /// being the UTC second of the batch. DIR is relative to the replica's root and excluded
    /// from syncing there (a SOURCE entry of that name is not replicated). Off by default.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// With --backup-dir: remove backup folders older than DAYS (checked every ten minutes;
    /// rsync targets too, through the daemon). Default: keep them all.
    #[arg(long, value_name = "DAYS", requires = "backup_dir")]
    pub backup_keep: Option<u64>,
    /// Start even though SOURCE is not the tree the replicas were made from (another
    /// filesystem or directory than at the last sync), or is empty while a replica is not.
    /// Without it the syncer refuses, exit code 3, and deletes nothing. Give it once, after
    /// checking that the change is intended: the new SOURCE is recorded from then on.
    #[arg(long)]
    pub allow_source_change: bool,
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
    /// More log output (-v: debug; -vv: trace, with the paths of every rsync run).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
}
