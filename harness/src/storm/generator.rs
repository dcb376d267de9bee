//! The generator: planned ops in, files on disk and a monotonic completion stamp per op out.
//! Ops run on rayon threads, one lane per `group % threads`, so ops on the same entries keep
//! their order. With a rate, each op waits for its scheduled time (open loop, as wrk2 does):
//! a generator that falls behind reports its lag instead of slowing the schedule.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::scenario::{OpKind, Via};
use crate::storm::ops::{Op, header, symlink_target};
use crate::storm::plan::Plan;
use crate::util::clock::Clock;

/// What one phase's execution produced.
#[derive(Debug, Clone, Default)]
pub struct PhaseRun {
    pub start_ns: u64,
    pub end_ns: u64,
    /// Completion stamp of each op (index as in the phase's op list).
    pub done_ns: Vec<u64>,
    /// Planned time of each op (start + at_ns); equals start without a rate.
    pub lag_max_ns: u64,
    pub lag_sum_ns: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Byte `i` of the content stream of a file version: the header, then a filler letter.
/// Appends continue the same stream, so the header always starts the file.
pub fn content(file: u32, version: u32, from: u64, to: u64) -> Vec<u8> {
    let head = header(file, version).into_bytes();
    let fill = b'a' + ((file as u64 + version as u64) % 26) as u8;
    (from..to)
        .map(|i| {
            head.get(i as usize)
                .copied()
                .unwrap_or(if i % 64 == 63 { b'\n' } else { fill })
        })
        .collect()
}

/// Runs `ops` under `root`. `progress` counts finished ops; `stop` aborts early (Ctrl-C).
#[allow(clippy::too_many_arguments)] // each argument is a distinct input of the phase
pub fn run_phase(
    root: &Path,
    plan: &Plan,
    ops: &[Op],
    threads: u32,
    via: Via,
    clock: &Clock,
    progress: &AtomicU64,
    stop: &AtomicBool,
) -> PhaseRun {
    let threads = threads.max(1) as usize;
    let mut lanes: Vec<Vec<u32>> = vec![Vec::new(); threads];
    for (i, op) in ops.iter().enumerate() {
        lanes[op.group as usize % threads].push(i as u32);
    }
    let done: Vec<AtomicU64> = (0..ops.len()).map(|_| AtomicU64::new(0)).collect();
    let errors = AtomicU64::new(0);
    let lag_max = AtomicU64::new(0);
    let lag_sum = AtomicU64::new(0);
    let first_error = std::sync::Mutex::new(None::<String>);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("gen-{i}"))
        .build()
        .expect("rayon pool for the generator (out of threads?)");
    let rated = ops.iter().any(|op| op.at_ns > 0);
    let start_ns = clock.now_ns();
    pool.scope(|scope| {
        for lane in &lanes {
            let (done, errors, lag_max, lag_sum, first_error) =
                (&done, &errors, &lag_max, &lag_sum, &first_error);
            scope.spawn(move |_| {
                for &i in lane {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let op = &ops[i as usize];
                    let planned = start_ns + op.at_ns;
                    // Lag only means something against a schedule (a rate).
                    let lag = if op.at_ns > 0 || rated {
                        clock.sleep_until_ns(planned);
                        clock.now_ns().saturating_sub(planned)
                    } else {
                        0
                    };
                    lag_max.fetch_max(lag, Ordering::Relaxed);
                    lag_sum.fetch_add(lag, Ordering::Relaxed);
                    if let Err(e) = apply(root, plan, op, via) {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert_with(|| {
                            format!("{:?} on file {} dir {}: {e}", op.kind, op.file, op.dir)
                        });
                    }
                    done[i as usize].store(clock.now_ns(), Ordering::Release);
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    PhaseRun {
        start_ns,
        end_ns: clock.now_ns(),
        done_ns: done.into_iter().map(AtomicU64::into_inner).collect(),
        lag_max_ns: lag_max.into_inner(),
        lag_sum_ns: lag_sum.into_inner(),
        errors: errors.into_inner(),
        first_error: first_error.into_inner().unwrap_or_else(|p| p.into_inner()),
    }
}

/// Performs one op on the real filesystem.
pub fn apply(root: &Path, plan: &Plan, op: &Op, via: Via) -> std::io::Result<()> {
    let dir = root.join(&plan.dirs[op.dir as usize]);
    let path = || dir.join(plan.file_name(op.file, op.generation));
    match op.kind {
        OpKind::Mkdir => fs::create_dir(&dir),
        OpKind::Rmdir => fs::remove_dir(&dir),
        OpKind::Create if via == Via::TouchProcess => {
            let status = Command::new("touch")
                .arg(plan.file_name(op.file, op.generation))
                .current_dir(&dir)
                .status()?;
            if status.success() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("touch exited with {status}")))
            }
        }
        OpKind::Create | OpKind::Write => {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(op.mode)
                .open(path())?;
            f.write_all(&content(op.file, op.version, 0, op.size))
        }
        OpKind::Overwrite => {
            let f = OpenOptions::new().write(true).open(path())?;
            f.write_all_at(&content(op.file, op.version, 0, op.size), 0)
        }
        OpKind::Append => {
            let mut f = OpenOptions::new().append(true).open(path())?;
            let old = f.metadata()?.len();
            f.write_all(&content(op.file, op.version, old, op.size))
        }
        OpKind::Chmod => fs::set_permissions(path(), fs::Permissions::from_mode(op.mode)),
        OpKind::Rename => fs::rename(dir.join(plan.file_name(op.file, op.generation - 1)), path()),
        OpKind::Delete => fs::remove_file(path()),
        OpKind::Symlink => std::os::unix::fs::symlink(symlink_target(op.file), path()),
    }
}

/// Creates the initial tree (setup ops) with all cores, before any syncer starts.
pub fn build_tree(root: &Path, plan: &Plan, threads: u32, clock: &Clock) -> std::io::Result<()> {
    let progress = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let run = run_phase(
        root,
        plan,
        &plan.setup,
        threads,
        Via::Syscalls,
        clock,
        &progress,
        &stop,
    );
    match run.first_error {
        None => Ok(()),
        Some(e) => Err(std::io::Error::other(format!(
            "building the initial tree in {}: {e}",
            root.display()
        ))),
    }
}
