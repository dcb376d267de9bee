//! Wiring: a validated `Config` in, threads started and joined, an exit code out.
//!
//! Threads: the backend's reader (never waits for replica I/O), one applier per target, the
//! reconciler, the housekeeper (status and checkpoint files every second) and a signal waiter.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use crate::apply::{Applier, halt_for_lost_source};
use crate::backend::{Backend, Sink};
use crate::barrier::registry::Barriers;
use crate::change::{Change, Mark};
use crate::config::{Config, TargetSpec};
use crate::control::Control;
use crate::error::{EXIT_FAILURE, Error};
use crate::exclude::ExcludeSet;
use crate::guard::identity::check_recorded;
use crate::guard::{DeleteBudget, SourceGuard, SourceIdentity, SourceLost};
use crate::notify::{Notifier, Reporter};
use crate::queue::shared::TargetQueue;
use crate::reconcile::{Reconciler, Request};
use crate::reload::{Reloadable, Reloader};
use crate::replica::Target;
use crate::replica::local::LocalTarget;
use crate::replica::rsync::RsyncTarget;
use crate::source::SourceTree;
use crate::state::{CHECKPOINT_MARGIN_NS, Recorded, StateFile};
use crate::stats::Stats;

/// How long a stopping syncer keeps applying what is pending.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// One replica: its target, its queue, its checkpoint file.
struct Replica {
    target: Arc<dyn Target>,
    queue: Arc<TargetQueue>,
    state: StateFile,
    /// What the state file held at start: the checkpoint and which tree SOURCE was then.
    recorded: Option<Recorded>,
    /// The global excludes and the target's own, shared with the target and its queue.
    excludes: Arc<ExcludeSet>,
}

impl Replica {
    /// The checkpoint loaded at start (ns since the epoch).
    fn checkpoint(&self) -> Option<u64> {
        self.recorded.map(|r| r.checkpoint)
    }
}

fn open_replicas(config: &Config, source: &Arc<SourceTree>) -> Result<Vec<Replica>, Error> {
    let mut replicas = Vec::new();
    for target_config in &config.targets {
        let options = &target_config.options;
        let excludes = Arc::new(ExcludeSet::new(target_config.excludes.clone()));
        let budget = Arc::new(DeleteBudget::new(options.max_delete));
        let target: Arc<dyn Target> = match &target_config.spec {
            TargetSpec::Local(path) => Arc::new(
                LocalTarget::open(source.clone(), excludes.clone(), path, options, budget)
                    .map_err(|source| Error::Io {
                        action: "open TARGET",
                        path: path.clone(),
                        source,
                    })?,
            ),
            TargetSpec::Rsync(url) => Arc::new(RsyncTarget::new(
                url.clone(),
                source.clone(),
                excludes.clone(),
                options,
                budget,
            )),
        };
        let state = StateFile::new(
            &config.state_dir,
            &config.source,
            &target_config.spec.name(),
        );
        let recorded = state.load();
        // Patterns beyond the global ones (its own, its backup directory): the queue drops
        // what they cover, which the backend does not know of.
        let own_patterns = target_config.excludes.patterns() != config.excludes.patterns();
        let queue = Arc::new(TargetQueue::new(
            config.timing,
            excludes.clone(),
            own_patterns,
        ));
        queue
            .caught_up_unix_ns
            .store(recorded.map_or(0, |r| r.checkpoint), Relaxed);
        replicas.push(Replica {
            target,
            queue,
            state,
            recorded,
            excludes,
        });
    }
    Ok(replicas)
}

/// Delivers the reader's changes to every target's queue; rescans to the reconciler. Renames
/// re-key the hard-link index on the way, in the order they happened.
struct Fanout {
    source: Arc<SourceTree>,
    queues: Vec<Arc<TargetQueue>>,
    control: Arc<Control>,
    rescans: Mutex<Sender<Request>>,
    barriers: Arc<Barriers>,
}

impl Sink for Fanout {
    fn push(&self, changes: &mut Vec<Change>) {
        for change in changes.iter() {
            match change {
                Change::Rename(rename) => self.source.links.rename(&rename.from, &rename.to),
                // Acknowledged as waiting before any queue can pass it.
                Change::Barrier(cookie) => self.barriers.register(cookie),
                Change::Mark(..) => {}
            }
        }
        let now = self.control.now_ns();
        if let Some((last, others)) = self.queues.split_last() {
            for queue in others {
                queue.push(changes.iter().cloned(), now);
            }
            last.push(changes.drain(..), now);
        }
        changes.clear();
    }

    fn rescan(&self, subtree: PathBuf, recapture: bool) {
        send_rescan(
            &self.rescans,
            &self.control,
            Request {
                subtree,
                recapture,
                ctime_guard: recapture,
            },
        );
    }
}

fn send_rescan(sender: &Mutex<Sender<Request>>, control: &Control, request: Request) {
    // Counted before it is queued, so no checkpoint is taken while it waits.
    control.reconciling.fetch_add(1, SeqCst);
    let sent = sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(request);
    if sent.is_err() {
        control.reconciling.fetch_sub(1, SeqCst);
    }
}

fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    // Blocked before any thread starts, so every thread inherits the mask and only the
    // signal thread's sigwait takes them.
    if let Err(err) = set.thread_block() {
        crate::warn!("cannot block signals ({err}); Ctrl-C may stop without a final drain");
    }
    set
}

fn spawn<F: FnOnce() + Send + 'static>(name: &str, body: F) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
}

/// Waits for SIGINT, SIGTERM or SIGHUP. SIGHUP reloads the config file when there is one
/// (`reload`) and is only logged without one: `systemctl reload` must never stop a service.
fn spawn_signal_waiter(
    set: SigSet,
    control: Arc<Control>,
    backend: Option<Arc<dyn Backend>>,
    queues: Vec<Arc<TargetQueue>>,
    notifier: Arc<Notifier>,
    mut reloader: Option<Reloader>,
) -> std::io::Result<()> {
    spawn("signals", move || {
        while let Ok(signal) = set.wait() {
            if signal == Signal::SIGHUP {
                match reloader.as_mut() {
                    Some(reloader) => reloader.reload(),
                    None => crate::warn!(
                        "SIGHUP: nothing to read again (no --config); running on, stop with SIGTERM"
                    ),
                }
                continue;
            }
            notifier.stopping();
            crate::info!(
                "{signal:?}: applying what is pending (at most {} s), then exiting",
                DRAIN_LIMIT.as_secs()
            );
            control.request_stop();
            if let Some(backend) = &backend {
                backend.stop();
            }
            for queue in &queues {
                queue.wake();
            }
            return;
        }
    })
    .map(drop)
}

/// Writes the status file and saves checkpoints once a second until stopped.
fn spawn_housekeeper(
    config: &Config,
    stats: Arc<Stats>,
    control: Arc<Control>,
    states: Vec<(StateFile, Arc<TargetQueue>)>,
    notifier: Arc<Notifier>,
) -> std::io::Result<JoinHandle<()>> {
    let status = config.status.clone();
    let strict = config.strict;
    spawn("housekeeping", move || {
        let mut saved = vec![0u64; states.len()];
        let tick = notifier.tick();
        let mut systemd = Reporter::new(notifier, &stats);
        loop {
            systemd.tick(&stats);
            if let Some(path) = &status {
                if let Err(err) = stats.write_status(path) {
                    crate::warn!("cannot write status file {}: {err}", path.display());
                }
            }
            if !stats.watch_limit_hit.load(Relaxed) {
                save_checkpoints(&states, &mut saved);
            } else if strict {
                crate::error!("--strict: exiting because the watch limit was reached");
                control.fail(EXIT_FAILURE);
            }
            if control.stopping() {
                return;
            }
            // Returns early on a stop, which the loop checks anyway.
            let _ = control_sleep(&control, tick);
        }
    })
}

/// Sleeps up to `duration`, returning early when a stop is requested.
fn control_sleep(control: &Control, duration: Duration) -> bool {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if control.stopping() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn save_checkpoints(states: &[(StateFile, Arc<TargetQueue>)], saved: &mut [u64]) {
    for ((state, queue), last) in states.iter().zip(saved.iter_mut()) {
        let now = queue.caught_up_unix_ns.load(Relaxed);
        if now > *last {
            match state.save(now) {
                Ok(()) => *last = now,
                Err(err) => crate::warn!("cannot save checkpoint {}: {err}", state.path.display()),
            }
        }
    }
}

/// Runs the syncer; returns the process exit code.
pub fn run(config: Config) -> Result<i32, Error> {
    crate::log::set_level(config.log_level);
    let signals = block_signals();
    // Walks (capture, reconcile) run on rayon's global pool: below the reader's priority.
    if let Err(err) = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("walk-{i}"))
        .start_handler(|_| crate::sys::sched::become_worker())
        .build_global()
    {
        crate::debug!("rayon's global pool was already set up: {err}");
    }
    let source = Arc::new(
        SourceTree::open(
            config.source.clone(),
            config.excludes.clone(),
            config.max_links,
        )
        .map_err(|source| Error::Io {
            action: "open SOURCE",
            path: config.source.clone(),
            source,
        })?,
    );
    // Before anything touches a replica: an address in use stops the start here.
    let metrics = config
        .metrics
        .as_deref()
        .map(crate::metrics::bind)
        .transpose()?;
    let stats = Arc::new(Stats::new(config.target_names()));
    let notifier = Arc::new(Notifier::from_env());
    stats.attach_source(source.clone());
    let control = Arc::new(Control::new(DRAIN_LIMIT));
    let mut replicas = open_replicas(&config, &source)?;
    guard_start(&config, &source, &mut replicas)?;
    let guard = Arc::new(
        SourceGuard::new(source.clone()).map_err(|source| Error::Io {
            action: "stat SOURCE",
            path: config.source.clone(),
            source,
        })?,
    );
    let queues: Vec<Arc<TargetQueue>> = replicas.iter().map(|r| r.queue.clone()).collect();
    if let Some(endpoint) = metrics {
        endpoint
            .serve(stats.clone(), queues.clone())
            .map_err(|e| Error::thread("metrics", e))?;
    }
    let (rescan_tx, rescan_rx) = channel::<Request>();

    let backend: Option<Arc<dyn Backend>> = if config.once {
        None
    } else {
        Some(crate::backend::open(config.backend, &source, &stats)?)
    };
    let reloader = config.file.is_some().then(|| Reloader {
        running: config.clone(),
        source: source.clone(),
        backend: backend.clone(),
        targets: replicas
            .iter()
            .map(|r| Reloadable {
                target: r.target.clone(),
                queue: r.queue.clone(),
                excludes: r.excludes.clone(),
            })
            .collect(),
        control: control.clone(),
    });
    spawn_signal_waiter(
        signals,
        control.clone(),
        backend.clone(),
        queues.clone(),
        notifier.clone(),
        reloader,
    )
    .map_err(|e| Error::thread("signal", e))?;

    let barriers = Arc::new(Barriers::new(
        config.state_dir.clone(),
        config.source.clone(),
        config.target_names(),
    ));
    let mut appliers = Vec::new();
    for (index, replica) in replicas.iter().enumerate() {
        for lane in 0..replica.target.appliers().max(1) {
            let applier = Applier {
                queue: replica.queue.clone(),
                target: replica.target.clone(),
                control: control.clone(),
                stats_index: index,
                stats: stats.clone(),
                guard: guard.clone(),
                barriers: barriers.clone(),
            };
            let name = format!("applier-{index}.{lane}");
            appliers
                .push(spawn(&name, move || applier.run()).map_err(|e| Error::thread(&name, e))?);
        }
    }
    let states = replicas
        .iter()
        .map(|r| (r.state.clone(), r.queue.clone()))
        .collect();
    let housekeeper = spawn_housekeeper(
        &config,
        stats.clone(),
        control.clone(),
        states,
        notifier.clone(),
    )
    .map_err(|e| Error::thread("housekeeper", e))?;

    if !config.once {
        let halt_control = control.clone();
        crate::guard::mounts::spawn_watch(guard.clone(), control.clone(), move |lost| {
            halt_for_lost_source(&halt_control, &lost);
        })
        .map_err(|e| Error::thread("source guard", e))?;
    }

    let mut reader = None;
    if let Some(backend) = &backend {
        let fanout = Fanout {
            source: source.clone(),
            queues: queues.clone(),
            control: control.clone(),
            rescans: Mutex::new(rescan_tx.clone()),
            barriers: barriers.clone(),
        };
        reader = Some(spawn_reader(backend.clone(), fanout, control.clone())?);
        capture(
            backend.as_ref(),
            &config.source,
            &stats,
            &control,
            config.strict,
        )?;
    }
    let reconciler = Reconciler {
        source: source.clone(),
        requests: rescan_rx,
        backend: backend.clone(),
        queues: queues.clone(),
        control: control.clone(),
        rescan_interval: config.rescan_interval,
    };
    let reconciler = spawn("reconciler", move || reconciler.run())
        .map_err(|e| Error::thread("reconciler", e))?;

    initial_sync(&replicas, &control, &stats);
    if stats.ready_ns.load(Relaxed) > 0 {
        notifier.ready("idle: the initial sync is applied");
    }
    if config.once {
        control.request_stop();
    }
    control.wait_stop();

    // Shutdown: stop reading, let the appliers drain (bounded), then the last files.
    if let Some(backend) = &backend {
        backend.stop();
    }
    if let Some(reader) = reader {
        join(reader, "reader");
    }
    for queue in &queues {
        queue.wake();
    }
    for applier in appliers {
        join(applier, "applier");
    }
    drop(rescan_tx);
    join(housekeeper, "housekeeping");
    join(reconciler, "reconciler");
    // After a halt nothing pending was applied: the checkpoints stay where they were.
    if !stats.watch_limit_hit.load(Relaxed) && !control.halted() {
        let states: Vec<_> = replicas
            .iter()
            .map(|r| (r.state.clone(), r.queue.clone()))
            .collect();
        let mut saved: Vec<u64> = replicas
            .iter()
            .map(|r| r.checkpoint().unwrap_or(0))
            .collect();
        save_checkpoints(&states, &mut saved);
    }
    if let Some(path) = &config.status {
        if let Err(err) = stats.write_status(path) {
            crate::warn!("cannot write status file {}: {err}", path.display());
        }
    }
    let left: u64 = stats
        .targets
        .iter()
        .map(|t| t.backlog.load(Relaxed) + t.in_flight.load(Relaxed))
        .sum();
    if left > 0 {
        crate::warn!("exiting with {left} paths not applied; the next start reconciles them");
    }
    Ok(control.exit_code.load(SeqCst))
}

/// The start-up half of the delete guard: refuses a SOURCE that is not the tree a replica
/// was made from (the filesystem not mounted, another one mounted there, the directory made
/// anew), or that is empty while a replica an earlier sync filled is not. Either would make
/// the initial sync delete the replica's files.
fn guard_start(
    config: &Config,
    source: &SourceTree,
    replicas: &mut [Replica],
) -> Result<(), Error> {
    let stat_error = |source| Error::Io {
        action: "stat SOURCE",
        path: config.source.clone(),
        source,
    };
    let now = SourceIdentity::of(source.root.as_fd()).map_err(stat_error)?;
    let empty = !crate::sys::fs::has_entries(source.root.as_fd()).map_err(stat_error)?;
    for replica in replicas.iter_mut() {
        replica.state.set_identity(now);
        if config.allow_source_change {
            continue;
        }
        check_recorded(&source.abs, replica.recorded.and_then(|r| r.identity), now)?;
        if empty && replica.checkpoint().is_some() {
            let holds = replica.target.holds_entries();
            if let Err(err) = &holds {
                crate::warn!(
                    "{}: cannot tell whether it holds anything ({err}); taken as holding files",
                    replica.target.name()
                );
            }
            if !matches!(holds, Ok(false)) {
                return Err(SourceLost::Emptied {
                    path: source.abs.clone(),
                    target: replica.target.name().to_string(),
                }
                .into());
            }
        }
    }
    if config.allow_source_change {
        crate::warn!(
            "--allow-source-change: SOURCE {} is replicated as it is now, deletes included",
            source.abs.display()
        );
    }
    Ok(())
}

fn join(handle: JoinHandle<()>, what: &str) {
    if handle.join().is_err() {
        crate::error!("the {what} thread panicked");
    }
}

fn spawn_reader(
    backend: Arc<dyn Backend>,
    fanout: Fanout,
    control: Arc<Control>,
) -> Result<JoinHandle<()>, Error> {
    spawn("reader", move || {
        if let Err(err) = backend.run(&fanout) {
            crate::error!(
                "the event reader failed: {err}; exiting so a supervisor can restart the syncer (the restart reconciles)"
            );
            control.fail(EXIT_FAILURE);
        }
    })
    .map_err(|e| Error::thread("reader", e))
}

/// Starts capturing changes for the whole tree and reports it.
fn capture(
    backend: &dyn Backend,
    root: &Path,
    stats: &Stats,
    control: &Control,
    strict: bool,
) -> Result<(), Error> {
    let started = Instant::now();
    let report = backend
        .capture(std::path::Path::new(""))
        .map_err(|source| Error::Io {
            action: "watch SOURCE",
            path: root.to_path_buf(),
            source,
        })?;
    stats.capture_ns.store(stats.elapsed_ns(), Relaxed);
    let how = if backend.name() == "inotify" {
        format!("{} directories watched", report.dirs - report.unwatched)
    } else {
        format!("one {} mark on the filesystem", backend.name())
    };
    crate::info!(
        "capturing changes: {how} in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    if report.unwatched > 0 && strict {
        control.fail(EXIT_FAILURE);
    }
    Ok(())
}

/// Compares everything, re-copying files changed since each replica's checkpoint, and waits
/// until every replica has applied it: then the syncer is ready.
fn initial_sync(replicas: &[Replica], control: &Control, stats: &Stats) {
    let started = Instant::now();
    for replica in replicas {
        if replica.checkpoint().is_none() {
            crate::info!(
                "{}: no checkpoint in {}: every file is compared and re-copied",
                replica.target.name(),
                replica.state.path.display()
            );
        }
        let changed_since_ns = Some(
            replica
                .checkpoint()
                .map_or(i128::MIN, |c| i128::from(c) - CHECKPOINT_MARGIN_NS),
        );
        let mark = Mark::Rescan { changed_since_ns };
        replica.queue.mark(PathBuf::new(), mark, control.now_ns());
    }
    control.reconciling.fetch_sub(1, SeqCst);
    for replica in replicas {
        replica.queue.wait_idle(control);
    }
    if control.stopping() {
        return;
    }
    stats.ready_ns.store(stats.elapsed_ns(), Relaxed);
    let copied: u64 = stats.targets.iter().map(|t| t.ops.copy.load(Relaxed)).sum();
    crate::info!(
        "ready in {:.3} s: {} files copied (initial compare and copy {:.3} s)",
        stats.ready_ns.load(Relaxed) as f64 / 1e9,
        copied,
        started.elapsed().as_secs_f64()
    );
}
