//! The rsync daemon target: a `Batch` in, `rsync` client runs against the daemon out.
//!
//! Batches, not trees: the batch's paths go to `rsync --files-from` (NUL-separated) with
//! `--ignore-times` (they are known to have changed; size+mtime would skip same-size
//! rewrites) and `--delete-missing-args --force` (deletions ride in the same run). A renamed
//! directory becomes a delete of the old name plus an `-r --delete` run of the new subtree:
//! the rsync protocol has no rename. Reconciles are full `rsync -a --delete` runs.
//!
//! Files created since their last run are written in place (their replica copy, if any, is
//! obsolete), and a directory made mostly of new files goes as `dir/.`, which rsync lists
//! itself faster than it reads our list: see `rsync_plan::ListKind` for what each costs.
//!
//! Hard links: list runs pass `-H`, subtree runs where linked files are known, and every name of
//! a changed multi-link file goes in one run (rsync links only names listed together), the
//! `Linked` run, which never writes in place; names the daemon may hold linked
//! (`rsync_links`) are never written in place either.
//!
//! Only checked paths are listed: each is resolved beneath the source root without following
//! symlinks first, so a directory swapped for a symlink to /etc is never listed. A race is
//! left: an ancestor swapped between that check and rsync's own lstat() is followed by rsync
//! (its sender resolves listed paths from the working directory). The window is one rsync
//! start-up; the daemon side is unaffected.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::rsync_links::DaemonLinks;
use super::rsync_plan::{
    Ancestor, ListKind, Paths, RunPlan, Runs, Settle, WHOLE_DIR_MIN, contents_of,
};
use super::rsync_run::{Failure, RunResult, Started, classify, finish, run, spawn};
use super::rsync_url::RsyncUrl;
use super::{Outcome, Target, TargetOptions, Trouble};
use crate::entry::{Kind, Meta, first_denied, is_ancestor_gone, is_denied, split, stat_at};
use crate::exclude::ExcludeSet;
use crate::guard::{DeleteBudget, DeleteRefused};
use crate::links::resolve;
use crate::queue::pending::Batch;
use crate::scan::Found;
use crate::source::SourceTree;
use crate::stats::TargetStats;

/// An outage longer than this ends with a full reconcile when the daemon is back.
const LONG_OUTAGE: Duration = Duration::from_secs(30);
/// A warm client older than this is not used: the daemon or our --timeout may have closed it.
const WARM_MAX_AGE: Duration = Duration::from_secs(20);
/// A directory that lost at least this many entries in one batch (and at least a quarter of
/// what it holds) is swept instead of listing each deletion: see `plan_deletions`.
const SWEEP_MIN: usize = 32;
/// Bytes of directory size per entry assumed when estimating a directory's entries from
/// st_size (tmpfs counts 20 per entry; ext4 about 16-24 for short names and never shrinks,
/// which errs toward listing).
const DIRENT_BYTES: u64 = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsyncOptions {
    pub password_file: Option<PathBuf>,
    pub compress: bool,
    /// rsync --inplace: no temporary file and rename per file on the daemon.
    pub inplace: bool,
    /// rsync's --timeout (I/O) in seconds; the watchdog kills a run silent this long + 5 s.
    pub timeout_secs: u64,
    /// Parallel rsync runs per batch.
    pub streams: usize,
    /// Clients kept connected ahead of need.
    pub warm_clients: usize,
    /// Least time between two batches' runs while busy.
    pub run_interval: Duration,
    /// `--bwlimit`: bytes per second for the whole target.
    pub bwlimit: Option<u64>,
}

pub struct RsyncTarget {
    name: String,
    url: RsyncUrl,
    source: Arc<SourceTree>,
    /// The global excludes and the target's own (a reload replaces them).
    excludes: Arc<ExcludeSet>,
    /// Read once per run: a reload swaps them between runs.
    options: RwLock<Arc<RsyncOptions>>,
    /// `--backup-dir` (relative to the module's root) and `--backup-keep`.
    backup_dir: Option<PathBuf>,
    backup_keep: Option<u64>,
    last_prune: Mutex<Option<Instant>>,
    /// Runs given a backup folder so far (names each run's folder).
    backup_runs: AtomicU64,
    /// When the current failing streak began.
    down_since: Mutex<Option<Instant>>,
    /// Clients started ahead of need (see `rsync_run::Started`), each for one kind of run.
    warm: Mutex<Vec<WarmClient>>,
    /// Names the daemon may hold linked with another name: never written in place.
    daemon_links: Mutex<DaemonLinks>,
    /// `--max-delete`: what the daemon deleted is spent from it.
    budget: Arc<DeleteBudget>,
    /// Names a failed run carried as anything but a directory: the daemon may still hold an
    /// old directory there, with everything below it. Retried by name only, such a name that
    /// is a directory by then is compared whole, not sent as a bare entry.
    unsettled: Mutex<HashSet<PathBuf>>,
}

/// Most names `unsettled` keeps; past it a whole-tree compare settles them all.
const UNSETTLED_MAX: usize = 65_536;

struct WarmClient {
    kind: ListKind,
    started: Started,
}

/// What the check found for one path.
enum Checked {
    /// Exists beneath the root without symlinked ancestors: list it (its stat, when it could
    /// be taken).
    Present(Kind, Option<Meta>),
    /// Gone from the source: list it, the daemon deletes it.
    Missing,
    /// An ancestor is a symlink or not a directory: never list (its own entry settles it).
    Skip,
    /// This syncer may not enter the source directory named (EACCES; only a syncer that is
    /// no root meets this): nothing below it can be listed now, and its own entry, a bare
    /// directory, settles none of it. Compared whole at its next mark (`Pending::denied`).
    Denied(PathBuf),
}

impl RsyncTarget {
    /// Under `--max-delete` each run's `--max-delete=` is what the window has left when it
    /// starts: a client started ahead, or a second stream running at once, would be given
    /// the same allowance again. So: one stream, no warm clients.
    fn capped(mut options: RsyncOptions, budget: &DeleteBudget) -> RsyncOptions {
        if budget.limit().is_some() {
            options.warm_clients = 0;
            options.streams = 1;
        }
        options
    }

    /// The options in force for the run about to start.
    fn options(&self) -> Arc<RsyncOptions> {
        self.options
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Neither a password file nor RSYNC_PASSWORD: rsync must not stop to ask.
    fn no_password(&self) -> bool {
        self.options().password_file.is_none() && std::env::var_os("RSYNC_PASSWORD").is_none()
    }

    pub fn new(
        url: RsyncUrl,
        source: Arc<SourceTree>,
        excludes: Arc<ExcludeSet>,
        target_options: &TargetOptions,
        budget: Arc<DeleteBudget>,
    ) -> Self {
        let options = Self::capped(target_options.rsync.clone(), &budget);
        super::rsync_leftovers::stop_leftovers(&source.abs, &url.destination(), &url.to_string());
        Self {
            backup_dir: target_options.backup_dir.clone(),
            backup_keep: target_options.backup_keep,
            last_prune: Mutex::new(None),
            backup_runs: AtomicU64::new(0),
            budget,
            name: url.to_string(),
            url,
            excludes,
            options: RwLock::new(Arc::new(options)),
            down_since: Mutex::new(None),
            unsettled: Mutex::new(HashSet::new()),
            warm: Mutex::new(Vec::new()),
            daemon_links: Mutex::new(DaemonLinks::new(source.links.cap())),
            source,
        }
    }

    /// The refusal message local targets give too, with what rsync said logged beside it.
    fn refusal(&self, rsync_said: &str) -> String {
        crate::debug!("{rsync_said}");
        DeleteRefused {
            limit: self.budget.limit().unwrap_or_default(),
            target: self.name.clone(),
        }
        .to_string()
    }

    fn daemon_links(&self) -> std::sync::MutexGuard<'_, DaemonLinks> {
        self.daemon_links.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, rel: &Path) -> Checked {
        let Some((parent, name)) = split(rel) else {
            return Checked::Present(Kind::Dir, None);
        };
        let dir = match self.source.open_dir(parent) {
            Ok(dir) => dir,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Checked::Missing,
            Err(err) if is_denied(&err) => {
                let open = |at: &Path| self.source.open_dir(at).map(drop);
                return Checked::Denied(first_denied(parent, open).unwrap_or(parent.to_path_buf()));
            }
            Err(_) => return Checked::Skip,
        };
        match stat_at(dir.as_fd(), name) {
            Ok(Some(meta)) => Checked::Present(meta.kind, Some(meta)),
            Ok(None) => Checked::Missing,
            Err(err) if is_ancestor_gone(&err) => Checked::Skip,
            Err(_) => Checked::Present(Kind::Other, None),
        }
    }

    /// Options every run shares. The password travels in RSYNC_PASSWORD or the file, never
    /// on the command line or in a log.
    fn common_args(&self) -> Vec<OsString> {
        let options = self.options();
        let mut args: Vec<OsString> = vec![
            "-a".into(),
            "--stats".into(),
            // Loopback runs cost ~185 ms without it (Nagle + delayed ACK), ~55 ms with it.
            "--sockopts=TCP_NODELAY".into(),
            format!("--timeout={}", options.timeout_secs).into(),
            format!("--contimeout={}", options.timeout_secs.min(10)).into(),
            // Quick checks compare mtimes to the nanosecond (receiver rsync >= 3.1.3); by
            // default rsync compares whole seconds and skips same-size rewrites within one.
            "--modify-window=-1".into(),
        ];
        if options.compress {
            args.push("--compress".into());
        }
        if let Some(rate) = options.bwlimit {
            // Up to `streams` runs transfer at once (a warm client is one of them).
            let per_run_kib = (rate / 1024 / options.streams.max(1) as u64).max(1);
            args.push(format!("--bwlimit={per_run_kib}").into());
        }
        // What the window has left: rsync stops deleting there. `--info=del1` makes the
        // "Number of deleted files" count true for a daemon's receiver (without it the
        // client reports 0), at one log line per delete, which the cap bounds.
        if let Some(left) = self.budget.remaining() {
            args.push(format!("--max-delete={left}").into());
            args.push("--info=del1".into());
        }
        if let Some(file) = &options.password_file {
            let mut arg = OsString::from("--password-file=");
            arg.push(file);
            args.push(arg);
        }
        if let Some(dir) = &self.backup_dir {
            // Relative to the destination, which every run names as the module's root (with
            // --relative for subtrees); the target's excludes hold DIR, so --delete spares it.
            // One folder per run: rsync replaces a file already in its backup folder, and a
            // later run in the same second (a re-send with --ignore-times) would overwrite
            // the older content kept there.
            let folder = format!(
                "{}.{}.{}",
                crate::replica::backup::stamp(std::time::SystemTime::now()),
                std::process::id(),
                self.backup_runs.fetch_add(1, Relaxed)
            );
            let mut arg = OsString::from("--backup-dir=");
            arg.push(dir.join(folder));
            args.push("--backup".into());
            args.push(arg);
        }
        args
    }

    /// `--backup-keep`: removes the daemon's backup folders older than the retention, at
    /// most every ten minutes. They are listed (`--list-only`), then named as missing
    /// arguments (`--delete-missing-args`), which the daemon deletes; nothing else is named.
    fn prune_backups(&self) {
        let (Some(dir), Some(days)) = (&self.backup_dir, self.backup_keep) else {
            return;
        };
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(600)) {
                return;
            }
            *last = Some(Instant::now());
        }
        // Named from SOURCE's side: a SOURCE entry of that name would be sent, not deleted.
        if std::fs::symlink_metadata(self.source.abs.join(dir)).is_ok() {
            crate::warn!(
                "{}: --backup-keep skipped: SOURCE has an entry named {dir:?} too",
                self.name
            );
            return;
        }
        let cutoff = crate::replica::backup::stamp(
            std::time::SystemTime::now() - Duration::from_secs(days * 86_400),
        );
        let options = self.options();
        let mut base: Vec<OsString> = vec![
            format!("--timeout={}", options.timeout_secs).into(),
            format!("--contimeout={}", options.timeout_secs.min(10)).into(),
        ];
        if let Some(file) = &options.password_file {
            let mut arg = OsString::from("--password-file=");
            arg.push(file);
            base.push(arg);
        }
        let mut list = base.clone();
        list.push("--list-only".into());
        list.push(format!("{}{}/", self.url.destination(), dir.display()).into());
        let listing = match run(
            &list,
            None,
            &self.source.abs,
            self.stall(),
            self.no_password(),
        ) {
            Ok(result) if result.code == Some(0) => result.stdout,
            // No backup made yet: rsync exits 23 for the missing folder.
            Ok(_) => return,
            Err(err) => {
                crate::warn!(
                    "{}: --backup-keep: cannot list the backups: {err}",
                    self.name
                );
                return;
            }
        };
        let old: Vec<&str> = listing
            .lines()
            .filter_map(|line| line.split_whitespace().last())
            .filter(|name| crate::replica::backup::is_stamp(name) && **name < *cutoff)
            .collect();
        if old.is_empty() {
            return;
        }
        let mut delete = base;
        delete.extend(
            [
                "--from0",
                "--files-from=-",
                "--delete-missing-args",
                "--force",
                "-d",
            ]
            .map(OsString::from),
        );
        delete.push(".".into());
        delete.push(self.url.destination().into());
        let mut input = Vec::new();
        for name in &old {
            input.extend_from_slice(dir.join(name).as_os_str().as_bytes());
            input.push(0);
        }
        match run(
            &delete,
            Some(input),
            &self.source.abs,
            self.stall(),
            self.no_password(),
        ) {
            Ok(result) if result.code == Some(0) => {
                crate::info!(
                    "{}: removed {} backup folders older than {days} days",
                    self.name,
                    old.len()
                );
            }
            Ok(result) => crate::warn!(
                "{}: --backup-keep: rsync exit {:?}: {}",
                self.name,
                result.code,
                result.stderr.trim()
            ),
            Err(err) => crate::warn!("{}: --backup-keep: {err}", self.name),
        }
    }

    fn stall(&self) -> Duration {
        Duration::from_secs(self.options().timeout_secs + 5)
    }

    /// The arguments of a `--files-from` run of `kind` (the list comes NUL-separated on stdin).
    fn list_args(&self, kind: ListKind) -> Vec<OsString> {
        let mut args = self.common_args();
        // Names of one inode listed in one run become names of one inode on the daemon.
        args.push("-H".into());
        let in_place = match kind {
            ListKind::Changed => self.options().inplace,
            ListKind::New => true,
            ListKind::Linked | ListKind::Siblings => false,
        };
        if in_place {
            args.push("--inplace".into());
        }
        args.extend(
            [
                "--relative",
                "--from0",
                "--files-from=-",
                "--delete-missing-args",
                "--force",
            ]
            .map(OsString::from),
        );
        if kind == ListKind::Siblings {
            // Sent only where they differ: most are just the names an unlink left.
        } else if kind == ListKind::New {
            // rsync may read whole directories itself: keep it off the excluded names.
            for pattern in self.excludes.rsync_patterns() {
                args.push(format!("--exclude={pattern}").into());
            }
        } else {
            // Listed paths are known to have changed: no quick check.
            args.push("--ignore-times".into());
        }
        args.push(".".into());
        args.push(self.url.destination().into());
        args
    }

    /// A warm client for `kind` (connected and authenticated, waiting for its list), if a
    /// fresh one is ready; stale or exited ones are dropped (reaped).
    fn take_warm(&self, kind: ListKind) -> Option<Started> {
        let mut pool = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        pool.retain_mut(|c| c.started.spawned.elapsed() < WARM_MAX_AGE && c.started.alive());
        // Oldest first: the one most likely to have finished its handshake.
        let index = pool.iter().position(|c| c.kind == kind)?;
        Some(pool.remove(index).started)
    }

    /// Keeps `--warm-clients` (2) clients of the kind just run for the next batches: a client
    /// needs about one cold run's time (~50 ms here) to get ready, so one would often be taken
    /// before its handshake is done. Clients of the other kind stay until they age out, or
    /// make room when the pool would hold more than twice the number.
    fn refill_warm(&self, kind: ListKind) {
        self.warm_up(kind, self.options().warm_clients);
    }

    /// Starts clients of `kind` until the pool holds `wanted` of them.
    fn warm_up(&self, kind: ListKind, wanted: usize) {
        let mut pool = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        while pool.iter().filter(|c| c.kind == kind).count() < wanted {
            if pool.len() >= 2 * self.options().warm_clients
                && let Some(other) = pool.iter().position(|c| c.kind != kind)
            {
                pool.remove(other);
            }
            match spawn(
                &self.list_args(kind),
                true,
                &self.source.abs,
                self.no_password(),
            ) {
                Ok(started) => pool.push(WarmClient { kind, started }),
                Err(err) => {
                    crate::debug!("{}: cannot start a warm rsync client: {err}", self.name);
                    return;
                }
            }
        }
    }

    /// `rsync --files-from` of `list` (NUL-separated on stdin), on a warm client when one is
    /// ready; then starts the next warm client.
    fn run_list(&self, list: &[PathBuf], kind: ListKind) -> std::io::Result<RunResult> {
        let mut input = Vec::with_capacity(list.len() * 32);
        for path in list {
            input.extend_from_slice(path.as_os_str().as_bytes());
            input.push(0);
        }
        let started = match self.take_warm(kind) {
            Some(started) => started,
            None => spawn(
                &self.list_args(kind),
                true,
                &self.source.abs,
                self.no_password(),
            )?,
        };
        let result = finish(started, Some(input), self.stall());
        // Linked runs are rare: a warm client kept for them would mostly hold a connection.
        if !matches!(kind, ListKind::Linked | ListKind::Siblings) {
            self.refill_warm(kind);
        }
        result
    }

    /// `rsync -a -r --delete` of one subtree ("" is the whole tree); `in_place` writes changed
    /// files in place (`--inplace`, only where the daemon holds no linked name below).
    fn run_subtree(
        &self,
        subtree: &Path,
        ignore_times: bool,
        in_place: bool,
    ) -> std::io::Result<RunResult> {
        let mut args = self.common_args();
        args.extend(["-r", "--delete", "--force"].map(OsString::from));
        if in_place {
            args.push("--inplace".into());
        }
        // -H only where the index knows linked files below, and then with the whole file
        // list built first: with -H and incremental recursion, rsync 3.5.0 hangs when a
        // linked name vanishes during the run, both ends trading keep-alives for good, so
        // neither --timeout nor the watchdog ends it (measured here: 6 of 13 runs of a tree
        // whose linked names were renamed meanwhile; none with --no-inc-recursive in 118, and
        // none for --files-from lists, which do not recurse). Links made since are sent by
        // the Linked runs of their own changes.
        if self.source.links.lock().holds_under(subtree) {
            args.extend(["-H", "--no-inc-recursive"].map(OsString::from));
        }
        if ignore_times {
            args.push("--ignore-times".into());
        }
        for pattern in self.excludes.rsync_patterns() {
            args.push(format!("--exclude={pattern}").into());
        }
        if subtree.as_os_str().is_empty() {
            args.push("./".into());
        } else {
            args.push("--relative".into());
            let mut arg = OsString::from("./");
            arg.push(subtree);
            args.push(arg);
        }
        args.push(self.url.destination().into());
        run(
            &args,
            None,
            &self.source.abs,
            self.stall(),
            self.no_password(),
        )
    }

    /// Deletes, in each of `dirs`, the replica's entries the source no longer has, without
    /// recursing and without creating or updating anything (`--existing --ignore-existing`):
    /// the daemon compares two listings instead of handling one delete argument per entry.
    fn run_sweep(&self, dirs: &[PathBuf]) -> std::io::Result<RunResult> {
        let mut args = self.common_args();
        args.extend(
            [
                "--from0",
                "--files-from=-",
                "--delete",
                "--force",
                "--existing",
                "--ignore-existing",
            ]
            .map(OsString::from),
        );
        // Excluded entries on the replica are the user's: --delete leaves excluded names.
        for pattern in self.excludes.rsync_patterns() {
            args.push(format!("--exclude={pattern}").into());
        }
        args.push(".".into());
        args.push(self.url.destination().into());
        let mut input = Vec::new();
        for dir in dirs {
            input.extend_from_slice(contents_of(dir).as_os_str().as_bytes());
            input.push(0);
        }
        run(
            &args,
            Some(input),
            &self.source.abs,
            self.stall(),
            self.no_password(),
        )
    }

    /// Entries a source directory holds, estimated from its size without reading it.
    fn estimated_entries(&self, dir: &Path) -> Option<u64> {
        let fd = self.source.open_dir(dir).ok()?;
        let meta = std::fs::File::from(fd).metadata().ok()?;
        Some(meta.len() / DIRENT_BYTES)
    }

    /// What settles the missing `path` on the daemon (`rsync_plan::settle_missing`).
    /// `parents` caches the ancestors' checks: a delete storm names each parent many times.
    fn settle_missing(&self, path: PathBuf, parents: &mut HashMap<PathBuf, Ancestor>) -> Settle {
        super::rsync_plan::settle_missing(path, |at| {
            *parents
                .entry(at.to_path_buf())
                .or_insert_with(|| match self.check(at) {
                    Checked::Present(Kind::Dir, _) => Ancestor::Dir,
                    Checked::Present(..) => Ancestor::NotDir,
                    Checked::Missing => Ancestor::Missing,
                    Checked::Skip | Checked::Denied(_) => Ancestor::Unknown,
                })
        })
    }

    /// Deletions as runs: entries below another deleted entry are dropped (`--force` removes
    /// the whole directory); a directory that still exists and lost many of its entries is
    /// swept in one listing (measured: 20,000 files deleted in 100 directories took the
    /// daemon ~100 us per delete argument); the rest are listed one by one.
    fn plan_deletions(&self, missing: Vec<PathBuf>) -> (Vec<PathBuf>, Option<RunPlan>) {
        let gone: HashSet<&Path> = missing.iter().map(PathBuf::as_path).collect();
        let covered = |p: &Path| p.ancestors().skip(1).any(|a| gone.contains(a));
        let mut by_parent: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
        for path in missing.iter().filter(|p| !covered(p)) {
            let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
            by_parent.entry(parent).or_default().push(path.clone());
        }
        let (mut listed, mut swept, mut sweep) = (Vec::new(), Vec::new(), Vec::new());
        for (parent, paths) in by_parent {
            let worth_it = paths.len() >= SWEEP_MIN
                && matches!(self.check(&parent), Checked::Present(Kind::Dir, _))
                && self
                    .estimated_entries(&parent)
                    .is_some_and(|n| paths.len() as u64 * 4 >= n);
            if worth_it {
                sweep.push(parent);
                swept.extend(paths);
            } else {
                listed.extend(paths);
            }
        }
        let plan = (!sweep.is_empty()).then(|| RunPlan::sweep(swept, sweep));
        (listed, plan)
    }

    /// A compare's subtree that is no directory (any more): its name is settled at once, and
    /// compared whole after all if it is a directory again by then. Left to a later batch, a
    /// directory re-created in between went as a bare directory entry, which keeps the
    /// daemon's old entries below it (chaos soak 5, seed 5: `mv current out; mkdir current;
    /// rm -r current; mkdir current` while a compare of `current` was queued).
    fn settle_non_dir(&self, subtree: &Path) -> Result<Found, Trouble> {
        let only_dirty = || Found {
            dirty: vec![subtree.to_path_buf()],
            ..Found::default()
        };
        let listed = match self.check(subtree) {
            Checked::Missing => {
                match self.settle_missing(subtree.to_path_buf(), &mut HashMap::new()) {
                    Settle::Delete(path) | Settle::Send(path) => path,
                }
            }
            Checked::Present(Kind::Dir, _) => {
                return Ok(Found {
                    rescan: vec![subtree.to_path_buf()],
                    ..Found::default()
                });
            }
            // Its other names go with it, and only a batch sends them.
            Checked::Present(Kind::File, Some(meta)) if meta.is_multi_link() => {
                return Ok(only_dirty());
            }
            Checked::Present(..) => subtree.to_path_buf(),
            Checked::Skip => return Ok(only_dirty()),
            Checked::Denied(dir) => {
                return Ok(Found {
                    denied: vec![dir],
                    ..Found::default()
                });
            }
        };
        let result = self
            .run_list(&[listed], ListKind::Changed)
            .map_err(|err| Trouble::Transient(format!("{}: {err}", self.name)))?;
        self.budget.spent(result.files_deleted);
        self.judge(&result)?;
        let again_a_dir = matches!(self.check(subtree), Checked::Present(Kind::Dir, _));
        Ok(Found {
            rescan: again_a_dir
                .then(|| subtree.to_path_buf())
                .into_iter()
                .collect(),
            ..Found::default()
        })
    }

    /// A compare's rsync run as the compare's outcome.
    fn judge(&self, result: &RunResult) -> Result<(), Trouble> {
        match classify(result, &self.name) {
            Ok(()) => Ok(()),
            Err(Failure::Fatal(why)) => Err(Trouble::Fatal(why)),
            Err(Failure::Refused(why)) => Err(Trouble::Refused(self.refusal(&why))),
            Err(Failure::Transient(why) | Failure::Again(why)) => Err(Trouble::Transient(why)),
        }
    }

    /// Runs the plans, `streams` at a time; returns a failure per failed plan.
    fn execute(&self, plans: Vec<RunPlan>, stats: &TargetStats) -> Vec<(RunPlan, Failure)> {
        let failed = Mutex::new(Vec::new());
        let queue = Mutex::new(plans.into_iter());
        let workers = self.options().streams.max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some(plan) = next else { return };
                        let started = Instant::now();
                        if crate::log::enabled(crate::log::TRACE) {
                            crate::trace!(
                                "{}: starting {}: {:?}",
                                self.name,
                                plan.describe(),
                                plan.entries()
                            );
                        }
                        let result = match &plan.subtree {
                            // A renamed directory's new name may hold stale copies of the same
                            // size and mtime (a name used before): compare contents.
                            Some(subtree) => {
                                let in_place = self.options().inplace
                                    && !self.daemon_links().any_under(subtree);
                                self.run_subtree(subtree, true, in_place)
                            }
                            None if !plan.sweep.is_empty() => self.run_sweep(&plan.sweep),
                            None => self.run_list(&plan.entries(), plan.kind),
                        };
                        stats.rsync_runs.fetch_add(1, Relaxed);
                        let verdict = match result {
                            Ok(result) => {
                                crate::debug!(
                                    "{}: {} of {} paths: {} files sent in {:.3} s",
                                    self.name,
                                    plan.describe(),
                                    plan.list.len(),
                                    result.files_transferred,
                                    started.elapsed().as_secs_f64()
                                );
                                stats
                                    .files_sent
                                    .fetch_add(result.files_transferred, Relaxed);
                                stats.bytes_sent.fetch_add(result.bytes_sent, Relaxed);
                                self.budget.spent(result.files_deleted);
                                classify(&result, &self.name)
                            }
                            Err(err) => Err(Failure::Transient(format!("{}: {err}", self.name))),
                        };
                        if let Err(failure) = verdict {
                            stats.failures.fetch_add(1, Relaxed);
                            failed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((plan, failure));
                        }
                    }
                });
            }
        });
        failed.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Directories among the parents of `new` that hold mostly new files: at least
    /// `WHOLE_DIR_MIN` of them and at least half the directory's estimated entries, and no
    /// name the daemon may hold linked (a `dir/.` run writes whatever differs in place).
    fn mostly_new_dirs(&self, new: &[PathBuf]) -> BTreeSet<PathBuf> {
        let daemon = self.daemon_links();
        let mut per_dir: BTreeMap<&Path, u64> = BTreeMap::new();
        for path in new {
            *per_dir
                .entry(path.parent().unwrap_or(Path::new("")))
                .or_default() += 1;
        }
        per_dir
            .into_iter()
            .filter(|&(dir, n)| {
                n >= WHOLE_DIR_MIN as u64
                    && !daemon.any_under(dir)
                    && self
                        .estimated_entries(dir)
                        .is_some_and(|total| n * 2 >= total)
            })
            .map(|(dir, _)| dir.to_path_buf())
            .collect()
    }

    /// Hard links: every name of the batch's multi-link files, and of the linked files below
    /// renamed directories (their `-r` runs send each name on its own), goes to the `Linked`
    /// run; names the daemon may hold linked never go to a run that writes in place. Returns
    /// the `Linked` run's names, already recorded as linked on the daemon (a run cut short may
    /// have linked some).
    fn sort_out_links(
        &self,
        files: &[(PathBuf, Meta)],
        subtrees: &[PathBuf],
        changed: &mut Vec<PathBuf>,
        new: &mut Vec<PathBuf>,
    ) -> Vec<PathBuf> {
        let mut groups = resolve::groups(&self.source, files);
        for subtree in subtrees {
            groups.extend(linked_across(&self.source, subtree));
        }
        let mut linked: BTreeSet<PathBuf> = groups
            .into_iter()
            .filter(|g| g.names.len() > 1)
            .flat_map(|g| g.names)
            .collect();
        let mut daemon = self.daemon_links();
        for name in &linked {
            daemon.insert(name);
        }
        let in_place = self.options().inplace;
        let mut kept_changed = Vec::with_capacity(changed.len());
        for path in changed.drain(..) {
            if linked.contains(&path) {
                continue;
            }
            if in_place && daemon.may_be_linked(&path) {
                linked.insert(path);
            } else {
                kept_changed.push(path);
            }
        }
        let mut kept_new = Vec::with_capacity(new.len());
        for path in new.drain(..) {
            if linked.contains(&path) {
                continue;
            }
            if !daemon.may_be_linked(&path) {
                kept_new.push(path);
            } else if in_place {
                linked.insert(path);
            } else {
                kept_changed.push(path);
            }
        }
        *changed = kept_changed;
        *new = kept_new;
        linked.into_iter().collect()
    }

    /// The other names of linked files whose marked name is gone or another file now (see
    /// `resolve::orphaned`), for the `Siblings` run; recorded as linked on the daemon where
    /// they are several.
    fn orphaned_siblings(
        &self,
        held: &[(PathBuf, crate::links::Ino)],
        files: &[(PathBuf, Meta)],
        linked: &[PathBuf],
    ) -> Vec<PathBuf> {
        if held.is_empty() {
            return Vec::new();
        }
        let handled: HashSet<crate::links::Ino> =
            files.iter().map(|(_, m)| (m.dev, m.ino)).collect();
        let sent: HashSet<&Path> = files
            .iter()
            .map(|(p, _)| p.as_path())
            .chain(linked.iter().map(PathBuf::as_path))
            .collect();
        let mut siblings = Vec::new();
        let mut daemon = self.daemon_links();
        for group in resolve::orphaned(&self.source, held, &handled) {
            if group.names.iter().any(|n| sent.contains(n.as_path())) {
                continue;
            }
            if group.names.len() > 1 {
                for name in &group.names {
                    daemon.insert(name);
                }
            }
            siblings.extend(group.names);
        }
        siblings
    }

    /// Files of one name the runs send through a temporary file and a rename: on the daemon
    /// they are files of their own afterwards.
    fn sent_apart(
        &self,
        files: &[(PathBuf, Meta)],
        first: &[RunPlan],
        second: &[RunPlan],
        last: &[RunPlan],
    ) -> Vec<PathBuf> {
        let renamed_over: HashSet<&Path> = first
            .iter()
            .chain(second)
            .chain(last)
            .filter(|plan| {
                plan.subtree.is_none()
                    && plan.sweep.is_empty()
                    && match plan.kind {
                        ListKind::Changed => !self.options().inplace,
                        ListKind::Linked | ListKind::Siblings => true,
                        ListKind::New => false,
                    }
            })
            .flat_map(|plan| plan.list.iter().map(PathBuf::as_path))
            .collect();
        files
            .iter()
            .filter(|(path, meta)| meta.nlink == 1 && renamed_over.contains(path.as_path()))
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// After the runs: names deleted or sent apart by a run that succeeded no longer share an
    /// inode on the daemon.
    fn note_replaced(
        &self,
        gone: Vec<PathBuf>,
        apart: Vec<PathBuf>,
        failed: &[(RunPlan, Failure)],
    ) {
        let failed: HashSet<&Path> = failed
            .iter()
            .flat_map(|(plan, _)| plan.list.iter().map(PathBuf::as_path))
            .collect();
        let mut daemon = self.daemon_links();
        if daemon.is_empty() {
            return;
        }
        for path in gone.iter().chain(&apart) {
            if !failed.contains(path.as_path()) {
                daemon.replaced(path);
            }
        }
    }

    /// After a run of `subtree`: the names of its linked files that also have names outside it
    /// were sent apart from those, so they all go again, together.
    fn relink_across(&self, subtree: &Path) -> Result<(), Trouble> {
        if subtree.as_os_str().is_empty() {
            return Ok(());
        }
        // The reconcile's own walk of the subtree has just recorded its links.
        let names: Vec<PathBuf> = linked_across(&self.source, subtree)
            .into_iter()
            .flat_map(|g| g.names)
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        {
            let mut daemon = self.daemon_links();
            for name in &names {
                daemon.insert(name);
            }
        }
        let result = self
            .run_list(&names, ListKind::Linked)
            .map_err(|err| Trouble::Transient(format!("{}: {err}", self.name)))?;
        self.budget.spent(result.files_deleted);
        classify(&result, &self.name).map_err(|failure| match failure {
            Failure::Fatal(why) => Trouble::Fatal(why),
            Failure::Refused(why) => Trouble::Refused(self.refusal(&why)),
            Failure::Transient(why) | Failure::Again(why) => Trouble::Transient(why),
        })
    }

    /// After a run of the whole `subtree` with `-H`: the names of its multi-link files are
    /// linked on the daemon as in the source.
    fn note_linked_below(&self, subtree: &Path) {
        let mut by_inode: BTreeMap<crate::links::Ino, Vec<PathBuf>> = BTreeMap::new();
        for (path, ino) in self.source.links.lock().under(subtree) {
            by_inode.entry(ino).or_default().push(path);
        }
        let mut daemon = self.daemon_links();
        for names in by_inode.values().filter(|names| names.len() > 1) {
            for name in names {
                daemon.insert(name);
            }
        }
    }

    /// The old names of renamed directories that are directories in the source after the
    /// runs. Each was planned as a delete or a send of what the source held there when it
    /// was checked (nothing, or a file), which replaces the daemon's copy of the renamed
    /// directory; a directory made there before rsync read the name is sent as a directory
    /// entry instead, and the daemon keeps the old entries under it (`mv d e; echo > d`, then
    /// `rm d; mkdir d`, whose events say only "d changed"). Compared whole, those go. Checked
    /// after the runs, so a directory made later still has its own events to come.
    /// The deleted names (the highest of each deleted subtree) that are directories in the
    /// source again after the runs: re-created between their check and rsync's look, one went
    /// as a bare directory entry (a sweep left it alone), and the daemon kept the old
    /// directory's entries below it (chaos soak 7, seed 49: `rm -r d; mkdir d` while `d`'s
    /// deletion was in flight). Compared whole.
    fn back_as_dirs(&self, gone: &[PathBuf]) -> Vec<PathBuf> {
        let all: HashSet<&Path> = gone.iter().map(PathBuf::as_path).collect();
        gone.iter()
            .filter(|p| !p.ancestors().skip(1).any(|a| all.contains(a)))
            .filter(|p| matches!(self.check(p), Checked::Present(Kind::Dir, _)))
            .cloned()
            .collect()
    }

    fn unsettled(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.unsettled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the names a failed run carried as anything but a directory (deleted, or a
    /// file or symlink that may replace a directory on the daemon), and forgets the batch's
    /// other names, settled now. A failed run is retried by its names only: without this, a
    /// name made again as a directory before the retry went as a bare entry, and the daemon
    /// kept the old directory's entries below it (fault campaign, daemon-restart seeds 7 and
    /// 9: `rm -r current; mkdir current`, or a directory swapped for a file and back, while
    /// the daemon was down).
    fn note_unsettled(
        &self,
        batch_paths: &[PathBuf],
        dirs: &HashSet<PathBuf>,
        failed: &[(RunPlan, Failure)],
        outcome: &mut Outcome,
    ) {
        let failed: HashSet<&Path> = failed
            .iter()
            .flat_map(|(plan, _)| plan.list.iter().map(PathBuf::as_path))
            .collect();
        let mut unsettled = self.unsettled();
        if failed.is_empty() && unsettled.is_empty() {
            return;
        }
        for path in batch_paths {
            if !failed.contains(path.as_path()) {
                unsettled.remove(path);
            }
        }
        unsettled.extend(
            failed
                .iter()
                .filter(|p| !dirs.contains(**p))
                .map(|p| p.to_path_buf()),
        );
        if unsettled.len() > UNSETTLED_MAX {
            crate::warn!(
                "{}: more than {UNSETTLED_MAX} names not applied; comparing the whole tree once the daemon answers",
                self.name
            );
            unsettled.clear();
            outcome.rescan.push(PathBuf::new());
        }
    }

    fn left_behind(&self, old_dir_names: Vec<PathBuf>) -> Vec<PathBuf> {
        old_dir_names
            .into_iter()
            .filter(|name| matches!(self.check(name), Checked::Present(Kind::Dir, _)))
            .collect()
    }

    /// Tracks outages; after a long one, asks for a full reconcile.
    fn note_health(&self, failed: bool, outcome: &mut Outcome) {
        let mut down = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        match (failed, *down) {
            (true, None) => *down = Some(Instant::now()),
            (false, Some(since)) => {
                if since.elapsed() >= LONG_OUTAGE {
                    crate::info!(
                        "{}: back after {:.0} s; reconciling the whole tree",
                        self.name,
                        since.elapsed().as_secs_f64()
                    );
                    outcome.rescan.push(PathBuf::new());
                }
                *down = None;
            }
            _ => {}
        }
    }
}

/// The groups of the linked files the index holds below `subtree` that have names outside it
/// too: a run of the subtree links its own names (`-H`) but sends these apart from the others.
fn linked_across(source: &SourceTree, subtree: &Path) -> Vec<resolve::Group> {
    resolve::groups_under(source, subtree)
        .into_iter()
        .filter(|g| g.names.len() > 1 && g.names.iter().any(|n| !n.starts_with(subtree)))
        .collect()
}

impl Target for RsyncTarget {
    fn name(&self) -> &str {
        &self.name
    }

    /// One `--list-only` run of the destination: its file list counts the top directory too.
    fn holds_entries(&self) -> std::io::Result<bool> {
        let mut args = self.common_args();
        args.push("--list-only".into());
        args.push(self.url.destination().into());
        let result = run(
            &args,
            None,
            &self.source.abs,
            self.stall(),
            self.no_password(),
        )?;
        match classify(&result, &self.name) {
            Ok(()) => Ok(result.files_listed > 1),
            Err(
                Failure::Transient(why)
                | Failure::Again(why)
                | Failure::Fatal(why)
                | Failure::Refused(why),
            ) => Err(std::io::Error::other(why)),
        }
    }

    /// One applier: warm clients already make a run take ~3 ms once its list is known, and
    /// big batches still split into `--streams` parallel runs.
    fn appliers(&self) -> usize {
        1
    }

    fn min_batch_interval(&self) -> Duration {
        self.options().run_interval
    }

    fn reconfigure(&self, options: &TargetOptions) {
        self.budget.set_limit(options.max_delete);
        let rsync = Self::capped(options.rsync.clone(), &self.budget);
        *self.options.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rsync);
        // Warm clients were started with the old arguments (password file, timeout).
        self.warm.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn apply(&self, batch: &Batch, stats: &TargetStats) -> Outcome {
        self.prune_backups();
        let mut outcome = Outcome::default();
        let (mut missing, mut changed, mut other, mut new, mut subtrees) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut settle = Vec::new();
        let mut files = Vec::new();
        // The batch's names that go as directories: never unsettled by a failed run.
        let mut dirs = HashSet::new();
        {
            let mut daemon = self.daemon_links();
            for rename in &batch.renames {
                daemon.rename(&rename.from, &rename.to);
            }
        }
        for rename in &batch.renames {
            // No rename in the rsync protocol: delete the old name, send the new one.
            match self.check(&rename.to) {
                Checked::Present(Kind::Dir, _) if rename.is_dir => subtrees.push(rename.to.clone()),
                _ => {}
            }
            if matches!(self.check(&rename.from), Checked::Present(..)) {
                // The old name exists again: an exchange (RENAME_EXCHANGE comes as a -> b and
                // b -> a, and the second rename re-keys b's mark to a) or a name reused at
                // once. Both names are settled by state, directories compared whole.
                for name in [&rename.from, &rename.to] {
                    match self.check(name) {
                        Checked::Present(Kind::Dir, _) => subtrees.push(name.clone()),
                        Checked::Present(..) => settle.push(name.clone()),
                        _ => {}
                    }
                }
            } else if !batch.paths.contains(&rename.from) {
                missing.push(rename.from.clone());
            }
        }
        // The daemon holds the renamed directory under each old name until a run replaces or
        // deletes it there; checked again after the runs (`left_behind`).
        let old_dir_names: Vec<PathBuf> = batch
            .renames
            .iter()
            .filter(|r| r.is_dir && !subtrees.contains(&r.from))
            .map(|r| r.from.clone())
            .collect();
        settle.retain(|p| !batch.paths.contains(p));
        settle.sort();
        settle.dedup();
        let held = resolve::held(
            &self.source,
            batch.paths.iter().chain(&settle).map(PathBuf::as_path),
        );
        for path in batch.paths.iter().chain(&settle) {
            if self.excludes.covers(path) {
                continue;
            }
            if subtrees.iter().any(|s| path.starts_with(s)) {
                // Sent by its directory's run; a link made in it (`ln x d/g; mv d e`) still
                // needs its other names, which that run does not carry.
                if let Checked::Present(Kind::File, Some(meta)) = self.check(path)
                    && meta.is_multi_link()
                {
                    files.push((path.clone(), meta));
                }
                continue;
            }
            match self.check(path) {
                Checked::Present(Kind::File, meta) => {
                    files.extend(meta.map(|meta| (path.clone(), meta)));
                    if batch.is_new_file(path) {
                        new.push(path.clone());
                    } else {
                        changed.push(path.clone());
                    }
                }
                Checked::Present(Kind::Dir, _) if self.unsettled().remove(path) => {
                    subtrees.push(path.clone());
                }
                Checked::Present(Kind::Dir, _) => {
                    dirs.insert(path.clone());
                    other.push(path.clone());
                }
                Checked::Present(..) => other.push(path.clone()),
                Checked::Missing => {
                    self.source.links.forget(path);
                    missing.push(path.clone());
                }
                Checked::Skip => {}
                Checked::Denied(dir) => outcome.denied.push(dir),
            }
        }
        // A path listed as missing that exists again (re-created) is simply present.
        missing.retain(|m| !matches!(self.check(m), Checked::Present(..)));
        let mut parents = HashMap::new();
        let mut deleted = Vec::with_capacity(missing.len());
        for path in missing {
            match self.settle_missing(path, &mut parents) {
                Settle::Delete(path) => deleted.push(path),
                Settle::Send(ancestor) => {
                    if !other.contains(&ancestor) {
                        other.push(ancestor);
                    }
                }
            }
        }
        let mut missing = deleted;
        missing.sort();
        missing.dedup();
        let linked = self.sort_out_links(&files, &subtrees, &mut changed, &mut new);
        let siblings = self.orphaned_siblings(&held, &files, &linked);
        let gone = missing.clone();
        let (missing, sweep) = self.plan_deletions(missing);
        let Runs {
            first,
            second,
            last,
        } = super::rsync_plan::plan(
            Paths {
                missing,
                changed,
                other,
                new,
                subtrees,
                linked,
                siblings,
            },
            self.options().streams,
            self.options().inplace,
            |new| self.mostly_new_dirs(new),
        );
        let replaced = self.sent_apart(&files, &first, &second, &last);
        // The sweep runs alone: a copy beside it could land after its listing of a directory.
        let mut failed = self.execute(sweep.into_iter().collect(), stats);
        failed.extend(self.execute(first, stats));
        failed.extend(self.execute(second, stats));
        // After the renamed directories' runs, which sent their linked files apart.
        failed.extend(self.execute(last, stats));
        outcome.rescan.extend(self.back_as_dirs(&gone));
        self.note_unsettled(&batch.paths, &dirs, &failed, &mut outcome);
        self.note_replaced(gone, replaced, &failed);
        outcome.rescan.extend(self.left_behind(old_dir_names));
        self.note_health(!failed.is_empty(), &mut outcome);
        for (plan, failure) in failed {
            let (why, backoff) = match failure {
                Failure::Fatal(why) => {
                    outcome.fatal.get_or_insert(why.clone());
                    (why, true)
                }
                Failure::Transient(why) => (why, true),
                Failure::Refused(why) => {
                    outcome.refused.get_or_insert_with(|| self.refusal(&why));
                    (why, false)
                }
                // Vanished or changed files: run the same work again at once.
                Failure::Again(why) => (why, false),
            };
            crate::debug!("{why}");
            outcome.backoff |= backoff;
            outcome.first_error.get_or_insert(why);
            stats.retries.fetch_add(1, Relaxed);
            outcome.retry.extend(plan.list);
            outcome.rescan.extend(plan.subtree);
        }
        outcome
    }

    fn reconcile(
        &self,
        subtree: &Path,
        changed_since_ns: Option<i128>,
        progress: &AtomicU64,
    ) -> Result<Found, Trouble> {
        self.prune_backups();
        if !matches!(self.check(subtree), Checked::Present(Kind::Dir, _)) {
            return self.settle_non_dir(subtree);
        }
        // Without a checkpoint nothing tells which same-size rewrites rsync's quick check
        // would miss: send everything with --ignore-times (the delta algorithm still only
        // moves what differs). The same for a subtree compare without a guard: those come
        // from renamed directories whose run failed.
        let no_checkpoint = changed_since_ns == Some(i128::MIN)
            || (changed_since_ns.is_none() && !subtree.as_os_str().is_empty());
        let started = Instant::now();
        // The source walk first: it records the hard links (so later changes find every
        // name, and a name linked at any moment of the run below is known as such) and, with
        // a guard, the files rsync's quick check could miss.
        let guard = changed_since_ns.filter(|_| !no_checkpoint);
        let dirty = crate::scan::changed_files(&self.source, subtree, guard)
            .map_err(|err| Trouble::Transient(format!("{}: {err}", self.name)))?;
        // Never in place: the daemon may hold names linked by an earlier run (or another
        // syncer process) that the source has broken apart since.
        let result = self
            .run_subtree(subtree, no_checkpoint, false)
            .map_err(|err| Trouble::Transient(format!("{}: {err}", self.name)))?;
        self.budget.spent(result.files_deleted);
        self.judge(&result)?;
        progress.fetch_add(result.files_transferred, Relaxed);
        self.note_linked_below(subtree);
        self.relink_across(subtree)?;
        // The daemon answers: have clients ready for the batches that follow.
        self.refill_warm(ListKind::Changed);
        crate::debug!(
            "{}: full rsync of {subtree:?} in {:.3} s",
            self.name,
            started.elapsed().as_secs_f64()
        );
        Ok(Found {
            dirty,
            ..Found::default()
        })
    }
}
