//! One random-storm case: an op log, a backend and a target kind in, a `CaseOutcome` out.
//! Builds the setup tree, starts the real syncer (against a local directory or a real rsync
//! daemon), waits until it is ready, runs the live operations, then requires the replica to
//! equal SOURCE exactly (names, types, content, mode, mtime, owner as root, link targets)
//! within the convergence limit. The syncer must also exit 0 on SIGTERM.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::ChaosError;
use super::inject::Injector;
use super::op::{Op, OpLog, Roots};
use crate::host::tmpfs::{self, TmpfsMount};
use crate::measure::verify::{self, CompareOptions, TreeDiff};
use crate::sut::daemon::{MODULE, PASSWORD, RsyncDaemon};

pub use crate::cli::{Backend, Target};

/// How one case runs.
#[derive(Debug, Clone)]
pub struct CaseSpec {
    pub syncer: PathBuf,
    pub backend: Backend,
    pub target: Target,
    /// A fresh folder for this case (created; removed afterwards unless kept).
    pub dir: PathBuf,
    /// How long after the last operation the replica may take to equal SOURCE.
    pub converge: Duration,
    /// Extra syncer arguments.
    pub syncer_args: Vec<String>,
}

/// What one case found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CaseOutcome {
    pub passed: bool,
    /// ms from the last operation to the first equal compare.
    pub converge_ms: Option<u64>,
    /// Operations the tree refused (expected only in shrunk or hand-written logs).
    pub op_errors: u64,
    /// The last compare's differences (empty when it converged).
    pub diff: TreeDiff,
    /// Why the case failed other than a differing replica (start-up, exit status).
    pub problem: Option<String>,
    /// The syncer was started, so a `problem` is about its exit, not its start-up.
    pub syncer_started: bool,
    pub storm_ms: u64,
    /// Faults injected (fault entries of the op log carried out).
    pub faults: u32,
    /// ms from the end of the last fault (the syncer or daemon running again) to the first
    /// equal compare.
    pub recover_ms: Option<u64>,
    /// The syncer's overflow and reconcile counters, summed over its lives.
    pub overflows: u64,
    pub reconciles: u64,
}

/// The replica's own filesystem for disk faults: ten times what a 400-op storm's tree holds
/// at most (a few MiB), small enough that filling it takes milliseconds.
const REPLICA_FS_MIB: u64 = 64;

/// Who runs the syncer in cases whose faults need one that file modes bind (`source-perm`):
/// a user every system has.
const UNPRIVILEGED_USER: &str = "nobody";

const READY_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(25);
const STOP_GRACE: Duration = Duration::from_secs(20);

/// The syncer under test, with the command that started it (a fault restarts it the same way).
pub struct Running {
    child: Child,
    command: Command,
    status: PathBuf,
}

impl Running {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// A crash: SIGKILL by PID, and reap. Its rsync clients live on in their own process
    /// groups, as after a real crash; the restarted syncer must deal with them.
    pub fn kill9(&mut self) {
        // Fails only when it exited already; wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the syncer again with the same arguments; its status file is removed first, so
    /// `ready` is the new process's.
    pub fn respawn(&mut self) -> Result<(), ChaosError> {
        // Gone already is fine: the old process is dead.
        let _ = fs::remove_file(&self.status);
        self.child = spawn(&mut self.command).map_err(ChaosError::io(
            "restart",
            Path::new(self.command.get_program()),
        ))?;
        Ok(())
    }

    /// The status file's numbers, when it can be read (0 for a missing one).
    pub fn counter(&self, key: &str) -> u64 {
        fs::read_to_string(&self.status)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v[key].as_u64())
            .unwrap_or(0)
    }

    /// SIGTERM, then the exit status; SIGKILL after the grace period.
    fn stop(mut self) -> Result<(), ChaosError> {
        // ESRCH: it already exited; try_wait below reports how.
        let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return if status.success() {
                    Ok(())
                } else {
                    Err(ChaosError::BadExit(status))
                };
            }
            std::thread::sleep(POLL);
        }
        // Already gone is fine; wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(ChaosError::NoExit(STOP_GRACE))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Only on an early return: kill our own child by PID, then reap it.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes a case's folder, unmounting first what a killed earlier run left mounted below it
/// (a removal must never walk into a live filesystem). Best effort: a leftover tree in the
/// work dir is not worth failing over.
pub fn remove_case_dir(dir: &Path) {
    if dir.exists() {
        if let Err(e) = tmpfs::sweep_below(dir) {
            eprintln!("harness chaos: {e}");
        }
        let _ = fs::remove_dir_all(dir);
    }
}

fn ready(status: &Path) -> bool {
    fs::read_to_string(status)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["ready"] == true)
}

/// Starts `cmd`. A syncer copied into its case folder a moment ago can be busy (ETXTBSY):
/// a process another case forked meanwhile holds the copy's write descriptor until it execs,
/// so that is tried again for a while.
fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match cmd.spawn() {
            Err(err)
                if err.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// The user an unprivileged syncer runs as.
fn unprivileged_user() -> Result<nix::unistd::User, ChaosError> {
    nix::unistd::User::from_name(UNPRIVILEGED_USER)
        .ok()
        .flatten()
        .ok_or(ChaosError::NoUser(UNPRIVILEGED_USER))
}

/// Lets `user` reach and write what the syncer writes: the case folder (its status file), its
/// state folder and a local replica. Every ancestor must let others enter.
fn open_case_to(
    user: &nix::unistd::User,
    dir: &Path,
    writable: &[&Path],
) -> Result<(), ChaosError> {
    use std::os::unix::fs::PermissionsExt;
    for ancestor in dir.ancestors().skip(1) {
        let mode = fs::metadata(ancestor)
            .map_err(ChaosError::io("stat", ancestor))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(ChaosError::Unreachable {
                user: UNPRIVILEGED_USER,
                dir: ancestor.to_path_buf(),
            });
        }
    }
    for path in std::iter::once(dir).chain(writable.iter().copied()) {
        nix::unistd::chown(path, Some(user.uid), Some(user.gid))
            .map_err(|e| ChaosError::io("chown", path)(std::io::Error::from(e)))?;
    }
    Ok(())
}

fn start_syncer(
    spec: &CaseSpec,
    src: &Path,
    replica: &Path,
    daemon: Option<&RsyncDaemon>,
    user: Option<&nix::unistd::User>,
) -> Result<Running, ChaosError> {
    use std::os::unix::process::CommandExt;
    let status = spec.dir.join("status.json");
    let state = spec.dir.join("state");
    fs::create_dir_all(&state).map_err(ChaosError::io("create", &state))?;
    if let Some(user) = user {
        let mut writable = vec![state.as_path()];
        if daemon.is_none() {
            writable.push(replica);
        }
        open_case_to(user, &spec.dir, &writable)?;
    }
    let log = fs::File::create(spec.dir.join("syncer.log"))
        .map_err(ChaosError::file("create the syncer log"))?;
    // An unprivileged syncer runs from a copy in its case folder: the build's own folder may
    // lie where other users cannot reach it (below a home directory, say).
    let program = match user {
        Some(_) => {
            let copy = spec.dir.join("syncer");
            fs::copy(&spec.syncer, &copy).map_err(ChaosError::io("copy", &spec.syncer))?;
            copy
        }
        None => spec.syncer.clone(),
    };
    let mut cmd = Command::new(&program);
    cmd.arg("--backend")
        .arg(spec.backend.to_string())
        .arg("--status")
        .arg(&status)
        .arg("--state-dir")
        .arg(&state)
        .args(&spec.syncer_args)
        .arg(src);
    match daemon {
        Some(d) => cmd.arg(d.url(MODULE)).env("RSYNC_PASSWORD", PASSWORD),
        None => cmd.arg(replica),
    };
    if let Some(user) = user {
        // std drops the supplementary groups too when it changes the uid as root.
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    let child = spawn(&mut cmd).map_err(ChaosError::io("start", &program))?;
    let mut running = Running {
        child,
        command: cmd,
        status: status.clone(),
    };
    let deadline = Instant::now() + READY_LIMIT;
    while !ready(&status) {
        if let Ok(Some(exit)) = running.child.try_wait() {
            return Err(ChaosError::ExitedEarly(exit));
        }
        if Instant::now() >= deadline {
            return Err(ChaosError::NotReady(READY_LIMIT));
        }
        std::thread::sleep(POLL);
    }
    Ok(running)
}

/// Runs one case. Never panics on I/O: every failure is in the outcome.
pub fn run(log: &OpLog, spec: &CaseSpec) -> CaseOutcome {
    let mut outcome = CaseOutcome::default();
    if let Err(problem) = run_into(log, spec, &mut outcome) {
        outcome.problem = Some(problem.to_string());
    }
    // The harness's own cleanup is part of the verdict: a mount it left behind would outlive
    // the campaign.
    if let Ok(left) = tmpfs::mounts_below(&spec.dir)
        && let Some(point) = left.first()
    {
        outcome.problem.get_or_insert(format!(
            "the harness left {} mounted after the case",
            point.display()
        ));
    }
    outcome.passed = outcome.problem.is_none() && outcome.converge_ms.is_some();
    outcome
}

fn run_into(log: &OpLog, spec: &CaseSpec, outcome: &mut CaseOutcome) -> Result<(), ChaosError> {
    let (src, outside) = (spec.dir.join("src"), spec.dir.join("outside"));
    // Faults that fill the replica's filesystem or make it read-only get it a small one of
    // its own, with room for the ballast beside the replica. Declared before the syncer and
    // the daemon, so it is unmounted after they are stopped.
    let replica_fs = if log
        .ops
        .iter()
        .any(|op| matches!(op, Op::Fault(f) if f.needs_replica_fs()))
    {
        let dir = spec.dir.join("replica-fs");
        Some(TmpfsMount::create(&dir, REPLICA_FS_MIB).map_err(ChaosError::io("mount", &dir))?)
    } else {
        None
    };
    // Faults on the source's permissions need a syncer they bind: root reads any file.
    let user = if log
        .ops
        .iter()
        .any(|op| matches!(op, Op::Fault(f) if f.needs_unprivileged_syncer()))
    {
        if spec.backend == Backend::Fanotify {
            return Err(ChaosError::UnprivilegedFanotify);
        }
        Some(unprivileged_user()?)
    } else {
        None
    };
    let replica = match &replica_fs {
        Some(mount) => mount.dir.join("replica"),
        None => spec.dir.join("replica"),
    };
    for dir in [&src, &outside, &replica] {
        fs::create_dir_all(dir).map_err(ChaosError::io("create", dir))?;
    }
    let roots = Roots {
        src: &src,
        outside: &outside,
    };
    for op in &log.ops[..log.setup] {
        outcome.op_errors += u64::from(op.apply(roots).is_err());
    }
    let mut daemon = match spec.target {
        Target::Local => None,
        Target::Rsync => Some(
            RsyncDaemon::start(&spec.dir.join("daemon"), &replica, &spec.dir.join("floor"))
                .map_err(ChaosError::Daemon)?,
        ),
    };
    let mut syncer = start_syncer(spec, &src, &replica, daemon.as_ref(), user.as_ref())?;
    outcome.syncer_started = true;
    let started = Instant::now();
    let mut faults = Injector::new(&src, &replica, replica_fs.as_ref());
    for op in log.live() {
        faults.tick(&mut syncer, daemon.as_mut())?;
        match op {
            Op::Fault(fault) => faults.inject(*fault, &mut syncer, daemon.as_mut())?,
            op => outcome.op_errors += u64::from(op.apply(roots).is_err()),
        }
    }
    faults.finish(&mut syncer, daemon.as_mut())?;
    let storm_end = Instant::now();
    outcome.storm_ms = (storm_end - started).as_millis() as u64;
    // Hard links are compared on both target kinds: local replicas must keep them, and the
    // syncer sends every name of a linked file to the daemon in one `-H` run.
    let opts = CompareOptions {
        munged_links_ok: daemon.is_some(),
        // An unprivileged syncer cannot give its copies the source's owners.
        owners: nix::unistd::geteuid().is_root() && user.is_none(),
        ignore_links: false,
    };
    let deadline = storm_end + spec.converge;
    loop {
        let diff = verify::compare(&src, &replica, opts);
        if diff.is_equal() {
            outcome.converge_ms = Some(storm_end.elapsed().as_millis() as u64);
            outcome.recover_ms = faults
                .done
                .last_end
                .map(|end| end.elapsed().as_millis() as u64);
            outcome.diff = diff;
            break;
        }
        outcome.diff = diff;
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    faults.count_lives(&syncer);
    let done = faults.done;
    if let Some(torn) = &done.torn {
        outcome.problem = Some(format!(
            "the replica held a torn copy, two versions of a file mixed: {torn}"
        ));
    }
    (outcome.faults, outcome.overflows, outcome.reconciles) =
        (done.faults, done.overflows, done.reconciles);
    let stopped = syncer.stop();
    drop(daemon);
    stopped?;
    if let Ok(text) = fs::read_to_string(spec.dir.join("syncer.log"))
        && let Some(line) = text.lines().find(|l| l.contains("panicked"))
    {
        return Err(ChaosError::Panicked(line.to_string()));
    }
    Ok(())
}
