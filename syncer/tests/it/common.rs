//! Shared test helpers: start/stop the syncer binary, wait with deadlines, compare trees, and
//! a sysctl guard that restores the original value even when a test fails.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Tests that change kernel limits hold this lock for writing; all others for reading, so a
/// tiny `max_queued_events` never leaks into another test's syncer.
static KERNEL_KNOBS: RwLock<()> = RwLock::new(());

pub fn shared_kernel() -> RwLockReadGuard<'static, ()> {
    KERNEL_KNOBS.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive_kernel() -> RwLockWriteGuard<'static, ()> {
    KERNEL_KNOBS.write().unwrap_or_else(|e| e.into_inner())
}

/// Polls `predicate` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if predicate() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch area: `src/`, `dst/`, `state/` and the status file.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub src: PathBuf,
    pub dst: PathBuf,
    pub state: PathBuf,
    pub status: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("syncer-it-")
            .tempdir()
            .expect("tempdir");
        let src = dir.path().join("src");
        let dst = dir.path().join("dst");
        let state = dir.path().join("state");
        fs::create_dir(&src).unwrap();
        Self {
            status: dir.path().join("status.json"),
            src,
            dst,
            state,
            dir,
        }
    }

    pub fn syncer(&self, extra: &[&str]) -> Syncer {
        Syncer::start(&self.src, &self.dst, &self.state, &self.status, extra)
    }
}

/// The backend every syncer of this test run uses unless a test names one:
/// `$SYNCER_TEST_BACKEND`, else inotify (as root `auto` would pick fanotify, and the plain run
/// is the inotify pass; scripts/test.sh runs the suite once more with `fanotify`).
pub fn test_backend() -> Option<String> {
    let chosen = std::env::var("SYNCER_TEST_BACKEND").unwrap_or_default();
    Some(if chosen.is_empty() {
        "inotify".to_string()
    } else {
        chosen
    })
}

/// True when this run's syncers use fanotify.
pub fn testing_fanotify() -> bool {
    test_backend().as_deref() == Some("fanotify")
}

/// Sets the event queue limit of the backend under test (it is read when the syncer creates
/// its inotify instance or fanotify group, so set it before starting the syncer).
pub fn queue_limit(value: u64) -> SysctlGuard {
    if testing_fanotify() {
        SysctlGuard::set("fs.fanotify.max_queued_events", value)
    } else {
        SysctlGuard::set("fs.inotify.max_queued_events", value)
    }
}

/// The syncer binary running as a child; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Syncer {
    pub child: Option<Child>,
    pub status: PathBuf,
    pub stderr: PathBuf,
}

pub fn syncer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_syncer")
}

impl Syncer {
    /// `extra` holds options; anything after a `--` in it is more targets after `dst`.
    pub fn spawn(src: &Path, dst: &Path, state: &Path, status: &Path, extra: &[&str]) -> Self {
        let split = extra.iter().position(|a| *a == "--").unwrap_or(extra.len());
        let (options, more_targets) = (&extra[..split], extra.get(split + 1..).unwrap_or(&[]));
        let mut targets = vec![dst.as_os_str().to_os_string()];
        targets.extend(more_targets.iter().map(OsString::from));
        Self::spawn_to(src, &targets, state, status, options)
    }

    /// Starts the syncer from `src` to `targets` (directories or rsync URLs).
    pub fn spawn_to(
        src: &Path,
        targets: &[OsString],
        state: &Path,
        status: &Path,
        options: &[&str],
    ) -> Self {
        let stderr = status.with_extension(format!("stderr.{}", std::process::id()));
        let _ = fs::remove_file(status);
        let mut command = Command::new(syncer_bin());
        if let Some(backend) = test_backend().filter(|_| !options.contains(&"--backend")) {
            command.arg("--backend").arg(backend);
        }
        command
            .arg("--state-dir")
            .arg(state)
            .arg("--status")
            .arg(status)
            .args(options)
            .arg(src)
            .args(targets);
        Self::spawn_command(command, status, stderr)
    }

    /// Starts `command` (the syncer binary, its arguments set) with stdin and stdout closed
    /// and stderr appended to `stderr`; `status` is the status file its arguments name.
    pub fn spawn_command(mut command: Command, status: &Path, stderr: PathBuf) -> Self {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr)
            .unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start syncer");
        Self {
            child: Some(child),
            status: status.to_path_buf(),
            stderr,
        }
    }

    /// Waits until the status file says `ready`.
    pub fn wait_ready(mut self) -> Self {
        let ready = wait_until(Duration::from_secs(60), || {
            self.status_json().is_some_and(|s| s["ready"] == true) || self.exited()
        });
        assert!(
            ready && !self.exited(),
            "syncer not ready; stderr:\n{}",
            self.log()
        );
        self
    }

    /// Starts and waits until the status file says `ready`.
    pub fn start(src: &Path, dst: &Path, state: &Path, status: &Path, extra: &[&str]) -> Self {
        let mut syncer = Self::spawn(src, dst, state, status, extra);
        let ready = wait_until(Duration::from_secs(60), || {
            syncer.status_json().is_some_and(|s| s["ready"] == true) || syncer.exited()
        });
        assert!(
            ready && !syncer.exited(),
            "syncer not ready; stderr:\n{}",
            syncer.log()
        );
        syncer
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    pub fn status_json(&self) -> Option<serde_json::Value> {
        let body = fs::read(&self.status).ok()?;
        serde_json::from_slice(&body).ok()
    }

    /// Waits for a fresh status document (written after `after`) and returns it.
    pub fn fresh_status(&self) -> serde_json::Value {
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut doc = None;
        wait_until(Duration::from_secs(5), || {
            doc = self
                .status_json()
                .filter(|s| s["updated_unix_ns"].as_u64().unwrap_or(0) > after);
            doc.is_some()
        });
        doc.expect("status file not refreshed")
    }

    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal syncer");
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("syncer did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (a crash) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if !wait_until(Duration::from_secs(15), || {
                child.try_wait().ok().flatten().is_some()
            }) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = fs::remove_file(&self.stderr);
    }
}

/// File content, shown as escaped text in failure messages.
#[derive(PartialEq, Eq)]
struct Bytes(Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

/// What a tree compare looks at for one entry.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        mtime: (i64, i64),
        content: Bytes,
        /// The other names of its inode in the same tree (hard links), sorted.
        links: Vec<PathBuf>,
    },
    Symlink {
        target: OsString,
    },
    Other,
}

fn snapshot(root: &Path) -> Result<BTreeMap<PathBuf, Node>, String> {
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let path = rel.join(entry.file_name());
            let abs = root.join(&path);
            let meta = match fs::symlink_metadata(&abs) {
                Ok(meta) => meta,
                Err(_) => continue,
            };
            let node = if meta.file_type().is_symlink() {
                Node::Symlink {
                    target: fs::read_link(&abs)
                        .map_err(|e| e.to_string())?
                        .into_os_string(),
                }
            } else if meta.is_dir() {
                stack.push(path.clone());
                Node::Dir {
                    mode: meta.permissions().mode() & 0o7777,
                }
            } else if meta.is_file() {
                let mut content = Vec::new();
                if let Ok(mut f) = fs::File::open(&abs) {
                    let _ = f.read_to_end(&mut content);
                }
                if meta.nlink() > 1 {
                    inodes
                        .entry((meta.dev(), meta.ino()))
                        .or_default()
                        .push(path.clone());
                }
                Node::File {
                    mode: meta.permissions().mode() & 0o7777,
                    mtime: (meta.mtime(), meta.mtime_nsec()),
                    content: Bytes(content),
                    links: Vec::new(),
                }
            } else {
                Node::Other
            };
            nodes.insert(path, node);
        }
    }
    for names in inodes.values() {
        for name in names {
            if let Some(Node::File { links, .. }) = nodes.get_mut(name) {
                *links = names.iter().filter(|n| *n != name).cloned().collect();
                links.sort();
            }
        }
    }
    Ok(nodes)
}

/// Ok when both trees hold the same names, types, contents, modes, file mtimes (ns), symlink
/// targets and hard links (which names share an inode); else a short description of the first
/// differences.
pub fn compare_trees(src: &Path, dst: &Path) -> Result<(), String> {
    compare_snapshots(snapshot(src)?, snapshot(dst)?)
}

/// The same for a replica written by an rsync daemon with `use chroot = no`, which prefixes
/// symlink targets with "/rsyncd-munged/" (rsyncd.conf(5), munge symlinks).
pub fn compare_daemon_replica(src: &Path, dst: &Path) -> Result<(), String> {
    let mut replica = snapshot(dst)?;
    for node in replica.values_mut() {
        if let Node::Symlink { target } = node {
            if let Some(rest) = target.as_encoded_bytes().strip_prefix(b"/rsyncd-munged/") {
                *target = OsString::from(String::from_utf8_lossy(rest).into_owned());
            }
        }
    }
    compare_snapshots(snapshot(src)?, replica)
}

fn compare_snapshots(a: BTreeMap<PathBuf, Node>, b: BTreeMap<PathBuf, Node>) -> Result<(), String> {
    if a == b {
        return Ok(());
    }
    let mut diffs = Vec::new();
    for (path, node) in &a {
        match b.get(path) {
            None => diffs.push(format!("missing {path:?}")),
            Some(other) if other != node => {
                diffs.push(format!("differs {path:?}: {node:?} vs {other:?}"))
            }
            _ => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("extra {path:?}"));
    }
    let total = diffs.len();
    diffs.truncate(5);
    for d in &mut diffs {
        d.truncate(300);
    }
    Err(format!("{total} differences, e.g. {}", diffs.join("; ")))
}

/// Waits until the replica equals the source; panics with the differences and the log.
pub fn assert_converges(src: &Path, dst: &Path, timeout: Duration, syncer: &Syncer) {
    assert_converges_by(compare_trees, src, dst, timeout, syncer);
}

/// `assert_converges` with another comparison (e.g. `compare_daemon_replica`).
pub fn assert_converges_by(
    compare: fn(&Path, &Path) -> Result<(), String>,
    src: &Path,
    dst: &Path,
    timeout: Duration,
    syncer: &Syncer,
) {
    let mut last = String::new();
    let ok = wait_until(timeout, || match compare(src, dst) {
        Ok(()) => true,
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(
        ok,
        "replica did not converge within {timeout:?}: {last}\nsyncer stderr:\n{}",
        syncer.log()
    );
}

/// Files left under a temp name anywhere in `root`.
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    snapshot(root)
        .unwrap_or_default()
        .into_keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".syncer~"))
        })
        .collect()
}

/// Sets a sysctl for the guard's lifetime. The original value is also written to
/// `$SYNCER_SYSCTL_SAVE_DIR/<key>` first, so scripts/test.sh restores it even if this process
/// is killed before Drop runs.
pub struct SysctlGuard {
    key: &'static str,
    original: String,
    saved_copy: Option<PathBuf>,
    /// Held until after the restore in Drop (fields drop after `drop` runs).
    _lock: nix::fcntl::Flock<fs::File>,
}

fn proc_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Machine-wide lock file: sysctls are shared by every process, so test runs in other
/// checkouts (or a harness run) must not read each other's temporary value as the original.
/// The harness takes the same lock (`flock` on this path).
pub const SYSCTL_LOCK: &str = "/tmp/syncer-sysctl.lock";

impl SysctlGuard {
    pub fn set(key: &'static str, value: u64) -> Self {
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(SYSCTL_LOCK)
            .expect("open the sysctl lock file");
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, err)| err)
            .expect("lock the sysctl lock file");
        let original = fs::read_to_string(proc_path(key))
            .expect("read sysctl")
            .trim()
            .to_string();
        let saved_copy = std::env::var_os("SYNCER_SYSCTL_SAVE_DIR").map(|dir| {
            let path = Path::new(&dir).join(key);
            if !path.exists() {
                let _ = fs::create_dir_all(&dir);
                fs::write(&path, &original).expect("save sysctl");
            }
            path
        });
        fs::write(proc_path(key), value.to_string()).expect("set sysctl (needs root)");
        Self {
            key,
            original,
            saved_copy,
            _lock: lock,
        }
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        fs::write(proc_path(self.key), &self.original).expect("restore sysctl");
        if let Some(path) = &self.saved_copy {
            let _ = fs::remove_file(path);
        }
    }
}

/// Writes `content` to `path` (create or truncate).
pub fn write(path: &Path, content: &[u8]) {
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `len` bytes neither compression nor a clone can shortcut (xorshift), for tests that time
/// or interrupt a transfer.
pub fn incompressible(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
