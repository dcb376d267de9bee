//! Helpers every topic module of the integration tests shares: where the workspace is, which
//! syncer binary to run, how to read a run's output, and the lock of the tests that must run
//! alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Taken by every test that changes a machine-wide sysctl, an environment variable or times
/// the CI gate: they run one at a time (the other tests still run beside them).
pub static LOCK: Mutex<()> = Mutex::new(());

/// The serial lock; a test that panicked while holding it left nothing to repair.
pub fn alone() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The inotify sysctls as they are: a test that shrinks or raises one machine-wide takes it
/// for writing (with `alone()`), and every test that starts a syncer takes it for reading, so
/// no syncer under test gets another test's queue (a chaos fixture failed once in CI while
/// the overflow test had the queue at 32 events; the two share one binary now).
static SYSCTLS: RwLock<()> = RwLock::new(());

/// For a test that starts syncers: no sysctl changes beside it.
pub fn sysctls_as_they_are() -> RwLockReadGuard<'static, ()> {
    SYSCTLS.read().unwrap_or_else(|e| e.into_inner())
}

/// For a test that changes an inotify sysctl: no syncer of another test beside it.
pub fn changing_sysctls() -> RwLockWriteGuard<'static, ()> {
    SYSCTLS.write().unwrap_or_else(|e| e.into_inner())
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The debug syncer of this workspace, built when missing.
pub fn debug_syncer() -> PathBuf {
    if let Some(bin) = harness::host::cargo_target::built(&repo(), "debug", "syncer") {
        return bin;
    }
    let ok = Command::new(env!("CARGO"))
        .args(["build", "-p", "syncer"])
        .current_dir(repo())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot build the syncer: run `cargo build -p syncer`");
    harness::host::cargo_target::built(&repo(), "debug", "syncer").expect("cargo built the syncer")
}

/// $HARNESS_SYNCER_BIN, else the debug syncer (found or built once per test binary).
pub fn syncer() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("HARNESS_SYNCER_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => debug_syncer(),
    })
}

/// Points a harness child at the syncer cargo already built for the workspace's tests, if
/// any and unless $HARNESS_SYNCER_BIN says otherwise (it is inherited then).
pub fn reuse_built_syncer(cmd: &mut Command) {
    if std::env::var_os("HARNESS_SYNCER_BIN").is_none()
        && let Some(debug) = harness::host::cargo_target::built(&repo(), "debug", "syncer")
    {
        cmd.env("HARNESS_SYNCER_BIN", debug);
    }
}

/// stdout, a newline, stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The results folder `harness run` wrote for `scenario` under `out`.
pub fn results_dir(out: &Path, scenario: &str) -> PathBuf {
    std::fs::read_dir(out)
        .expect("results root")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&format!("-{scenario}")))
        })
        .expect("a results folder for the scenario")
}
