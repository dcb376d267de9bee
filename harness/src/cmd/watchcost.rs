//! `harness watchcost`: a directory count and rounds in, watchcost.json (planning::WatchCost)
//! and a summary out: the slab memory that stays pinned after drop_caches while one inotify
//! instance holds a watch on each of N fresh directories, versus released, and the same for
//! one fanotify filesystem mark covering them. Each round's delta is held minus the mean of
//! the released readings before and after it, which cancels slow drift from other processes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use syncer::sys::errno::ReadOutcome;
use syncer::sys::fanotify::{Fanotify, InitOptions};
use syncer::sys::inotify::{Inotify, WATCH_MASK};

use crate::capacity::facts::machine_facts;
use crate::capacity::records::{MachineFacts, MemoryCost, WatchCost};
use crate::host::kernel::KnobGuard;
use crate::host::kernel::Knobs;
use crate::host::kmem::{self, KmemReading};
use crate::util::fmt::human;
use crate::util::stats::median_spread;

use crate::cli::WatchcostArgs;

/// Why a measurement could not be made or saved; most need root or a limit raised.
#[derive(Debug, thiserror::Error)]
pub enum WatchcostError {
    #[error("--dirs and --rounds must be at least 1")]
    NothingToMeasure,
    #[error("cannot create a directory in {} ({source}); pass --dir", path.display())]
    TreeDir { path: PathBuf, source: io::Error },
    #[error("mkdir: {0}")]
    Mkdir(io::Error),
    #[error("cannot read {key}: {source}")]
    Sysctl {
        key: &'static str,
        source: io::Error,
    },
    /// Raising a sysctl or reading kernel memory (the text says what to do, e.g. run as root).
    #[error("{0}")]
    Kernel(io::Error),
    #[error("inotify_init1: {0}")]
    InotifyInit(io::Error),
    #[error(
        "inotify_add_watch {} (watch {index}): {source}; ENOSPC means max_user_watches",
        path.display()
    )]
    AddWatch {
        path: PathBuf,
        index: usize,
        source: io::Error,
    },
    #[error("fanotify_init: {0} (needs CAP_SYS_ADMIN)")]
    FanotifyInit(io::Error),
    #[error("fanotify_mark on {}: {source}", path.display())]
    FanotifyMark { path: PathBuf, source: io::Error },
    #[error("interrupted")]
    Interrupted,
    #[error("cannot create {} ({source})", path.display())]
    OutDir { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write {file} in {} ({source})", dir.display())]
    Write {
        file: &'static str,
        dir: PathBuf,
        source: io::Error,
    },
}

impl From<WatchcostError> for crate::Error {
    fn from(e: WatchcostError) -> Self {
        use WatchcostError::*;
        match e {
            NothingToMeasure => crate::Error::usage(e),
            OutDir { .. } | Json(_) | Write { .. } => crate::Error::io(e),
            Interrupted => crate::Error::interrupted(e),
            _ => crate::Error::setup(e),
        }
    }
}

fn bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

/// Creates `n` empty directories `d0..` directly under `root` (in parallel).
fn make_dirs(root: &Path, n: u64) -> std::io::Result<Vec<PathBuf>> {
    let dirs: Vec<PathBuf> = (0..n).map(|i| root.join(format!("d{i}"))).collect();
    let progress = bar(n, "mkdir");
    dirs.par_iter().try_for_each(|d| {
        progress.inc(1);
        std::fs::create_dir(d)
    })?;
    progress.finish_and_clear();
    Ok(dirs)
}

/// Raises max_user_watches (through the guard) when `extra` more watches would not fit.
fn room_for_watches(extra: u64) -> Result<KnobGuard, WatchcostError> {
    let key = "fs.inotify.max_user_watches";
    let limit =
        crate::host::kernel::read(key).map_err(|source| WatchcostError::Sysctl { key, source })?;
    let held = crate::host::watches::watches_in_use(nix::unistd::geteuid().as_raw()).watches;
    if held + extra < limit {
        return Ok(KnobGuard::default());
    }
    let want = held + extra + 8192;
    eprintln!("harness: raising {key} from {limit} to {want} for the measurement");
    KnobGuard::apply(&Knobs {
        max_user_watches: Some(want),
        ..Knobs::default()
    })
    .map_err(WatchcostError::Kernel)
}

/// One round of `hold`: released reading before is given; returns (held, released after).
fn round<H>(
    before: &KmemReading,
    hold: impl FnOnce() -> Result<H, WatchcostError>,
) -> Result<(i64, i64, KmemReading), WatchcostError> {
    let held_thing = hold()?;
    let held = kmem::settled().map_err(WatchcostError::Kernel)?;
    drop(held_thing);
    let after = kmem::settled().map_err(WatchcostError::Kernel)?;
    let (slab, slabinfo) = held.delta(&KmemReading::mean(before, &after));
    Ok((slab, slabinfo, after))
}

fn inotify_hold(dirs: &[PathBuf]) -> Result<Inotify, WatchcostError> {
    let ino = Inotify::new().map_err(WatchcostError::InotifyInit)?;
    let progress = bar(dirs.len() as u64, "watch");
    for (i, d) in dirs.iter().enumerate() {
        ino.add_watch(d, WATCH_MASK)
            .map_err(|source| WatchcostError::AddWatch {
                path: d.clone(),
                index: i,
                source,
            })?;
        if i % 1024 == 0 {
            progress.set_position(i as u64);
        }
    }
    progress.finish_and_clear();
    Ok(ino)
}

/// A fanotify group with one filesystem mark on `root`'s filesystem, its queue drained (the
/// events other processes cause meanwhile are queue memory, not the mark's).
struct FanHold(Fanotify);

impl FanHold {
    fn new(root: &Path) -> Result<Self, WatchcostError> {
        let fan = Fanotify::init_preferred(InitOptions::default())
            .map_err(WatchcostError::FanotifyInit)?;
        fan.mark_filesystem_probing_rename(root).map_err(|source| {
            WatchcostError::FanotifyMark {
                path: root.to_path_buf(),
                source,
            }
        })?;
        Ok(Self(fan))
    }

    fn drain(&self) {
        let mut buf = vec![0u8; 64 * 1024];
        // Filled(0) is EINTR: read again; Drained or an error ends it.
        while let Ok(ReadOutcome::Filled(_)) = self.0.read(&mut buf) {}
    }
}

fn cost(
    objects: u64,
    directories: u64,
    slab: Vec<i64>,
    slabinfo: Vec<i64>,
    method: String,
) -> MemoryCost {
    let (median, _, _) = median_spread(&slab);
    MemoryCost {
        objects,
        directories,
        pinned_bytes: median.max(0) as u64,
        bytes_per_directory: median.max(0) as f64 / directories.max(1) as f64,
        samples_bytes: slab,
        slabinfo_samples_bytes: slabinfo,
        method,
    }
}

/// Measures, writes watchcost.json and README.md into `out`, returns the record.
pub fn watchcost(
    args: &WatchcostArgs,
    out: &Path,
    stop: &AtomicBool,
) -> Result<WatchCost, WatchcostError> {
    if args.dirs == 0 || args.rounds == 0 {
        return Err(WatchcostError::NothingToMeasure);
    }
    let tree = tree_dir(args)?;
    let facts = machine_facts(
        tree.path(),
        &crate::host::env::repo_root(),
        &crate::cli::command_line(),
    );
    eprintln!(
        "harness: {} directories in {} ({})",
        args.dirs,
        tree.path().display(),
        facts.filesystem
    );
    let dirs = make_dirs(tree.path(), args.dirs).map_err(WatchcostError::Mkdir)?;
    let _room = room_for_watches(args.dirs)?;
    let mut before = kmem::settled().map_err(WatchcostError::Kernel)?;
    let (ino_slab, ino_info) = series(
        args,
        stop,
        &mut before,
        || inotify_hold(&dirs),
        |r, slab, info| {
            eprintln!(
                "harness: inotify round {r}/{}: {} pinned by {} watches ({:.0} B each; slabinfo {})",
                args.rounds,
                human(slab),
                args.dirs,
                slab as f64 / args.dirs as f64,
                human(info)
            )
        },
    )?;
    let (fan_slab, fan_info) = series(
        args,
        stop,
        &mut before,
        || {
            let hold = FanHold::new(tree.path())?;
            hold.drain();
            Ok(hold)
        },
        |r, slab, info| {
            eprintln!(
                "harness: fanotify round {r}/{}: {} pinned by one filesystem mark (slabinfo {})",
                args.rounds,
                human(slab),
                human(info)
            )
        },
    )?;
    let record = record(args, facts, (ino_slab, ino_info), (fan_slab, fan_info));
    save(out, &record)?;
    let removing = bar(0, "cleanup");
    removing.set_message(format!("removing {} directories", args.dirs));
    drop(tree);
    removing.finish_and_clear();
    Ok(record)
}

/// The temp folder under --parent that holds the measured directories; removed on drop.
fn tree_dir(args: &WatchcostArgs) -> Result<tempfile::TempDir, WatchcostError> {
    let parent = args.parent();
    tempfile::Builder::new()
        .prefix("harness-watchcost-")
        .tempdir_in(&parent)
        .map_err(|source| WatchcostError::TreeDir {
            path: parent.clone(),
            source,
        })
}

/// The record of both series: (slab, slabinfo) samples of inotify and of fanotify.
fn record(
    args: &WatchcostArgs,
    facts: MachineFacts,
    ino: (Vec<i64>, Vec<i64>),
    fan: (Vec<i64>, Vec<i64>),
) -> WatchCost {
    WatchCost {
        machine: facts,
        inotify: Some(cost(
            args.dirs,
            args.dirs,
            ino.0,
            ino.1,
            method(
                args,
                &format!(
                    "one inotify instance, one watch on each of {} empty directories",
                    args.dirs
                ),
            ),
        )),
        fanotify: Some(cost(
            1,
            args.dirs,
            fan.0,
            fan.1,
            method(
                args,
                &format!(
                    "one fanotify group (FAN_REPORT_DFID_NAME), one FAN_MARK_FILESYSTEM mark on the filesystem holding the {} directories, queue drained before each reading",
                    args.dirs
                ),
            ),
        )),
    }
}

/// `args.rounds` rounds of `hold`, each logged by `log(round, slab, slabinfo)`: the samples
/// of slab and slabinfo bytes. `before` is the released reading before the first round and
/// is left the one after the last, for the next series.
fn series<H>(
    args: &WatchcostArgs,
    stop: &AtomicBool,
    before: &mut KmemReading,
    mut hold: impl FnMut() -> Result<H, WatchcostError>,
    log: impl Fn(u32, i64, i64),
) -> Result<(Vec<i64>, Vec<i64>), WatchcostError> {
    let (mut slabs, mut infos) = (Vec::new(), Vec::new());
    for r in 1..=args.rounds {
        if stop.load(Ordering::Relaxed) {
            return Err(WatchcostError::Interrupted);
        }
        let (slab, info, after) = round(before, &mut hold)?;
        log(r, slab, info);
        slabs.push(slab);
        infos.push(info);
        *before = after;
    }
    Ok((slabs, infos))
}

/// How a cost was measured: `what` was held, then the common procedure.
fn method(args: &WatchcostArgs, what: &str) -> String {
    format!(
        "{what}; per round: sync + drop_caches (twice, 300 ms apart) + SLUB shrink, then /proc/meminfo Slab \
         (reclaimable + unreclaimable pages) held minus the mean of the released readings before and after; \
         {} rounds, median; slabinfo_samples_bytes: the same from the sum of num_objs x objsize in /proc/slabinfo",
        args.rounds
    )
}

/// Writes watchcost.json and README.md into `out`.
fn save(out: &Path, record: &WatchCost) -> Result<(), WatchcostError> {
    std::fs::create_dir_all(out).map_err(|source| WatchcostError::OutDir {
        path: out.to_path_buf(),
        source,
    })?;
    let write = |file: &'static str, text: String| {
        std::fs::write(out.join(file), text).map_err(|source| WatchcostError::Write {
            file,
            dir: out.to_path_buf(),
            source,
        })
    };
    write(
        "watchcost.json",
        serde_json::to_string_pretty(record)? + "\n",
    )?;
    write("README.md", readme(record))
}

/// The summary: one line per mechanism, with the folklore beside it.
pub fn summary(w: &WatchCost) -> String {
    let mut out = format!(
        "kernel memory pinned after drop_caches ({}, kernel {}):\n",
        w.machine.filesystem, w.machine.kernel
    );
    let row = |name: &str, c: &MemoryCost| {
        let (median, lo, hi) = median_spread(&c.samples_bytes);
        let (info, _, _) = median_spread(&c.slabinfo_samples_bytes);
        format!(
            "  {name:<9} {} object(s) over {} dirs: {} pinned (rounds {}..{}), {:.0} B per directory (slabinfo: {:.0} B)\n",
            c.objects,
            c.directories,
            human(median),
            human(lo),
            human(hi),
            c.bytes_per_directory,
            info as f64 / c.directories.max(1) as f64
        )
    };
    if let Some(c) = &w.inotify {
        out.push_str(&row("inotify", c));
    }
    if let Some(c) = &w.fanotify {
        out.push_str(&row("fanotify", c));
    }
    // The folklore figure and the kernel's own budget (fs/notify/inotify/inotify_user.c,
    // INOTIFY_WATCH_COST since Linux 5.11) are printed beside the measurement.
    out.push_str(
        "  folklore: \"540 bytes (32-bit) or 1 KiB (64-bit) per watch\"; since Linux 5.11 the kernel budgets \
         sizeof(inotify_inode_mark) + 2 x sizeof(struct inode) per watch when it sizes the default \
         max_user_watches (1% of RAM). A watch holds its mark and keeps the directory's inode: on a disk \
         filesystem the inode dominates; on tmpfs only the mark shows\n",
    );
    out
}

fn readme(w: &WatchCost) -> String {
    format!(
        "# Watch cost on {}\n\n- command: `{}`\n- git revision: {}\n- measured (UTC): {}\n- kernel: {}\n\
         - CPU: {}; memory: {}\n- directories on: {}\n\n```\n{}```\n\nSee watchcost.json for every \
         round (`samples_bytes`) and the method. Other processes allocate and free slab meanwhile: \
         the spread of the rounds is that noise.\n",
        w.machine.host,
        w.machine.command,
        w.machine.git_revision,
        w.machine.measured_at,
        w.machine.kernel,
        w.machine.cpu,
        w.machine.memory,
        w.machine.filesystem,
        summary(w)
    )
}
