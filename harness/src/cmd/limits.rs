//! `harness limits`: a real tree, an event rate and a stall budget in; a quick, read-only
//! capacity answer out: directories (= inotify watches the tree needs), the watches other
//! processes of this user already hold (/proc/*/fdinfo), the kernel memory they will pin
//! (from a measured watchcost.json), the queue a stall needs, and /etc/sysctl.d/ lines.
//! The walk never follows symlinks and stays on the tree's filesystem.

use crate::host::watches::{InUse, watches_in_use};
use crate::util::fmt::thousands;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rayon::prelude::*;

use crate::capacity::recommend as rec;
use crate::capacity::records::WatchCost;
use crate::cli::LimitsArgs;

/// Why no capacity answer could be given.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The tree could not be walked (the I/O error says why, and what to pass).
    #[error("{}: {source}", tree.display())]
    Tree { tree: PathBuf, source: io::Error },
    #[error("cannot read {key}: {source}")]
    Sysctl {
        key: &'static str,
        source: io::Error,
    },
    #[error("cannot read {} ({source}): pass --cost FILE", path.display())]
    CostFile { path: PathBuf, source: io::Error },
    #[error(
        "{} is not a watchcost.json ({source}): write one with `harness watchcost`",
        path.display()
    )]
    NotACost {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl From<LimitsError> for crate::Error {
    fn from(e: LimitsError) -> Self {
        match e {
            LimitsError::Sysctl { .. } => crate::Error::setup(e),
            _ => crate::Error::usage(e),
        }
    }
}

pub use crate::capacity::recommend::DEFAULT_EVENTS_PER_OP;

/// What the read-only walk found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeCount {
    /// Directories including the root: one inotify watch each.
    pub dirs: u64,
    pub files: u64,
    /// Directories that could not be read (still counted in `dirs`).
    pub unreadable: u64,
    /// Mount points below the root, not entered (another filesystem).
    pub other_fs: u64,
}

/// Walks `root` in parallel (rayon), lstat only, never crossing into another filesystem.
pub fn walk(root: &Path) -> std::io::Result<TreeCount> {
    let meta = std::fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory (symlinks are not followed): pass the tree's root",
            root.display()
        )));
    }
    let counts = [(); 4].map(|()| AtomicU64::new(0));
    walk_dir(root, meta.dev(), &counts);
    let [dirs, files, unreadable, other_fs] = counts.map(AtomicU64::into_inner);
    Ok(TreeCount {
        dirs,
        files,
        unreadable,
        other_fs,
    })
}

fn walk_dir(dir: &Path, dev: u64, counts: &[AtomicU64; 4]) {
    counts[0].fetch_add(1, Relaxed);
    let Ok(entries) = std::fs::read_dir(dir) else {
        counts[2].fetch_add(1, Relaxed);
        return;
    };
    let mut subdirs = Vec::new();
    let mut files = 0;
    for entry in entries.flatten() {
        // d_type from readdir: no stat per file; a symlink is never a dir here.
        match entry.file_type() {
            Ok(t) if t.is_dir() => subdirs.push(entry.path()),
            _ => files += 1,
        }
    }
    counts[1].fetch_add(files, Relaxed);
    subdirs
        .par_iter()
        .for_each(|sub| match sub.symlink_metadata() {
            Ok(m) if m.dev() == dev => walk_dir(sub, dev, counts),
            Ok(_) => {
                counts[3].fetch_add(1, Relaxed);
            }
            Err(_) => {
                counts[0].fetch_add(1, Relaxed);
                counts[2].fetch_add(1, Relaxed);
            }
        });
}

/// `max_queued_events` to configure: the need rounded up to a power of two, never below the
/// current value.
pub fn queue_limit_for(needed: u64, current: u64) -> u64 {
    needed.max(1).next_power_of_two().max(current)
}

/// The file to drop into /etc/sysctl.d/ (then `sysctl --system`).
pub fn sysctl_lines(watches: u64, queue: u64) -> String {
    format!(
        "# /etc/sysctl.d/60-syncer.conf (apply with: sysctl --system)\n\
         fs.inotify.max_user_watches = {watches}\n\
         fs.inotify.max_queued_events = {queue}\n"
    )
}

/// The newest committed reference: results/<date>-<host>-watchcost/watchcost.json, by folder
/// name (variants such as `-watchcost-tmpfs` are not the default: a tree on disk is).
pub fn default_cost_file(repo_root: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo_root.join("results"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("-watchcost"))
        .map(|e| e.path().join("watchcost.json"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

pub fn load_cost(path: &Path) -> Result<WatchCost, LimitsError> {
    let text = std::fs::read_to_string(path).map_err(|source| LimitsError::CostFile {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LimitsError::NotACost {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs the checks and returns the report text.
pub fn limits(args: &LimitsArgs, repo_root: &Path) -> Result<String, LimitsError> {
    let started = std::time::Instant::now();
    let count = walk(&args.tree).map_err(|source| LimitsError::Tree {
        tree: args.tree.clone(),
        source,
    })?;
    let walk_s = started.elapsed().as_secs_f64();
    let euid = nix::unistd::geteuid().as_raw();
    let in_use = watches_in_use(euid);
    let read = |key: &'static str| {
        crate::host::kernel::read(key).map_err(|source| LimitsError::Sysctl { key, source })
    };
    let max_watches = read("fs.inotify.max_user_watches")?;
    let max_queue = read("fs.inotify.max_queued_events")?;
    let needed = count.dirs + in_use.watches;
    let mut out = String::new();
    line(
        &mut out,
        format!(
            "tree {}: {} directories, {} other entries (walked in {walk_s:.2} s; {} unreadable, {} mount points not entered)",
            args.tree.display(),
            thousands(count.dirs),
            thousands(count.files),
            count.unreadable,
            count.other_fs
        ),
    );
    watch_lines(&mut out, &count, &in_use, euid, max_watches);
    memory_lines(&mut out, args, &count, repo_root)?;
    let queue = rec::queue_needed(args.rate * args.events_per_op, args.stall_ms as f64);
    queue_lines(&mut out, args, queue, max_queue);
    line(&mut out, fanotify_line(&args.tree));
    line(&mut out, String::new());
    line(
        &mut out,
        sysctl_lines(
            rec::max_user_watches(needed, max_watches),
            queue_limit_for(queue, max_queue),
        ),
    );
    Ok(out)
}

/// `s` and a newline.
fn line(out: &mut String, s: String) {
    out.push_str(&s);
    out.push('\n');
}

/// Watches needed against max_user_watches, and the biggest holders.
fn watch_lines(out: &mut String, count: &TreeCount, in_use: &InUse, euid: u32, max_watches: u64) {
    let needed = count.dirs + in_use.watches;
    line(
        out,
        format!(
            "inotify watches needed: {} for the tree + {} already held by {} instance(s) of uid {euid} = {} of max_user_watches {} -> {}",
            thousands(count.dirs),
            thousands(in_use.watches),
            in_use.instances,
            thousands(needed),
            thousands(max_watches),
            if needed <= max_watches {
                "fits".to_string()
            } else {
                format!("SHORT by {}", thousands(needed - max_watches))
            }
        ),
    );
    for (pid, comm, n) in in_use.holders.iter().take(5) {
        line(
            out,
            format!("  held: pid {pid} ({comm}): {} watches", thousands(*n)),
        );
    }
}

/// The kernel memory of the tree's watches (and of a fanotify mark), from watchcost.json.
fn memory_lines(
    out: &mut String,
    args: &LimitsArgs,
    count: &TreeCount,
    repo_root: &Path,
) -> Result<(), LimitsError> {
    let Some(path) = args.cost.clone().or_else(|| default_cost_file(repo_root)) else {
        line(
            out,
            "kernel memory: no watchcost.json found under results/ (run `harness watchcost`, or pass --cost FILE)".into(),
        );
        return Ok(());
    };
    let cost = load_cost(&path)?;
    match &cost.inotify {
        Some(ino) => line(
            out,
            format!(
                "kernel memory for the tree's watches: {} x {:.0} B = {} (measured {} bytes per watched directory on {} ({}), {}; from {})",
                thousands(count.dirs),
                ino.bytes_per_directory,
                crate::util::fmt::human((count.dirs as f64 * ino.bytes_per_directory) as i64),
                ino.bytes_per_directory.round(),
                cost.machine.filesystem,
                cost.machine.kernel,
                cost.machine.measured_at,
                path.display()
            ),
        ),
        None => line(
            out,
            format!("{} has no inotify measurement", path.display()),
        ),
    }
    if let Some(fan) = &cost.fanotify {
        let (median, lo, hi) = crate::util::stats::median_spread(&fan.samples_bytes);
        line(
            out,
            format!(
                "  fanotify instead: one filesystem mark over {} directories pinned {} (rounds {}..{}: the machine's slab noise)",
                thousands(fan.directories),
                crate::util::fmt::human(median),
                crate::util::fmt::human(lo),
                crate::util::fmt::human(hi)
            ),
        );
    }
    Ok(())
}

/// The queue a stall at the given rate needs against max_queued_events, and the assumption.
fn queue_lines(out: &mut String, args: &LimitsArgs, queue: u64, max_queue: u64) {
    line(
        out,
        format!(
            "queue for {} ops/s and a {} ms stall: {} ops/s x {} events/op x {} s = {} events (max_queued_events now {}) -> {}",
            args.rate,
            args.stall_ms,
            args.rate,
            args.events_per_op,
            args.stall_ms as f64 / 1000.0,
            thousands(queue),
            thousands(max_queue),
            if queue <= max_queue {
                "fits"
            } else {
                "raise it"
            }
        ),
    );
    line(
        out,
        format!(
            "  assumption: {} queued events per op (create + modify + close-write of a written file; measured 2.0-2.5 in results/; pass --events-per-op to change)",
            args.events_per_op
        ),
    );
}

/// Whether fanotify can replace the watches on `tree`'s filesystem.
fn fanotify_line(tree: &Path) -> String {
    match syncer::sys::fanotify::probe(tree) {
        Ok(_) => "fanotify: usable here: one filesystem mark covers the tree, no inotify watches, no max_user_watches setting, no per-directory memory (syncer --backend fanotify or auto)".into(),
        Err(why) => format!(
            "fanotify: not usable here ({}), so inotify's watch count applies",
            why.reason
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_rate_times_events_times_stall() {
        let queue_needed = |rate: f64, per_op: f64, stall_ms: u64| {
            rec::queue_needed(rate * per_op, stall_ms as f64)
        };
        assert_eq!(queue_needed(10_000.0, 3.0, 1000), 30_000);
        assert_eq!(queue_needed(1000.0, 3.0, 250), 750);
        assert_eq!(queue_needed(333.0, 3.0, 1), 1);
        assert_eq!(queue_needed(0.0, 3.0, 1000), 0);
    }

    #[test]
    fn limits_round_up_with_headroom_and_never_lower_the_current_value() {
        assert_eq!(rec::max_user_watches(100_001, 8192), 125_952);
        assert_eq!(rec::max_user_watches(10, 192_536), 192_536);
        assert_eq!(queue_limit_for(30_000, 16_384), 32_768);
        assert_eq!(queue_limit_for(100, 16_384), 16_384);
        assert_eq!(queue_limit_for(0, 1), 1);
    }

    #[test]
    fn sysctl_lines_are_ready_to_paste() {
        let text = sysctl_lines(125_952, 32_768);
        assert!(
            text.contains("\nfs.inotify.max_user_watches = 125952\n"),
            "{text}"
        );
        assert!(
            text.ends_with("fs.inotify.max_queued_events = 32768\n"),
            "{text}"
        );
        assert!(text.starts_with("# /etc/sysctl.d/"));
    }
}
