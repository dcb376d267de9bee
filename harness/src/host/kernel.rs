//! Kernel knobs: the scenario's inotify sysctls in, a guard out that restores the original
//! values when dropped (also on error and panic; Ctrl-C ends the run through the same path).
//! Originals are also saved to `$SYNCER_SYSCTL_SAVE_DIR/KEY` so scripts/restore-sysctls.sh can
//! restore them if this process is killed outright.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// inotify sysctls for the run, restored afterwards. Unset keys are left as they are.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knobs {
    pub max_user_watches: Option<u64>,
    pub max_queued_events: Option<u64>,
    pub max_user_instances: Option<u64>,
}

/// The sysctls this module may change (inotify(7)).
pub const KEYS: [&str; 3] = [
    "fs.inotify.max_user_watches",
    "fs.inotify.max_queued_events",
    "fs.inotify.max_user_instances",
];

pub fn proc_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

pub fn read(key: &str) -> std::io::Result<u64> {
    let text = fs::read_to_string(proc_path(key))?;
    text.trim()
        .parse()
        .map_err(|e| std::io::Error::other(format!("{key}: {e}")))
}

fn write(key: &str, value: u64) -> std::io::Result<()> {
    fs::write(proc_path(key), format!("{value}\n")).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot set {key}={value} ({e}): run as root, or drop [kernel] from the scenario"
            ),
        )
    })
}

/// Machine-wide lock taken while knobs are changed: sysctls are shared by every process, so
/// a test run or another harness must not read our temporary value as its "original". The
/// syncer's tests take the same lock (`flock` on this path).
pub const SYSCTL_LOCK: &str = "/tmp/syncer-sysctl.lock";

/// Restores the changed sysctls on drop.
#[derive(Debug, Default)]
pub struct KnobGuard {
    saved: Vec<(String, u64, Option<PathBuf>)>,
    /// Held from before the originals are read until after they are restored.
    lock: Option<nix::fcntl::Flock<fs::File>>,
}

impl KnobGuard {
    /// Applies the knobs that are set and differ from the current value.
    pub fn apply(knobs: &Knobs) -> std::io::Result<Self> {
        let mut guard = Self::default();
        let wants_change = [
            knobs.max_user_watches,
            knobs.max_queued_events,
            knobs.max_user_instances,
        ]
        .iter()
        .any(Option::is_some);
        if wants_change {
            let file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(SYSCTL_LOCK)?;
            let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, err)| std::io::Error::from_raw_os_error(err as i32))?;
            guard.lock = Some(lock);
        }
        let wanted = [
            knobs.max_user_watches,
            knobs.max_queued_events,
            knobs.max_user_instances,
        ];
        for (key, want) in KEYS.iter().zip(wanted) {
            let Some(want) = want else { continue };
            let original = read(key)?;
            if original == want {
                continue;
            }
            let save_file = save_original(key, original)?;
            // Record before writing: if the write half-fails, Drop still restores.
            guard.saved.push((key.to_string(), original, save_file));
            write(key, want)?;
        }
        Ok(guard)
    }

    /// The (key, original value) pairs of the sysctls changed, for the results.
    pub fn changed(&self) -> Vec<(String, u64)> {
        self.saved.iter().map(|(k, v, _)| (k.clone(), *v)).collect()
    }
}

/// Writes the original to the save dir unless an earlier run already saved the true original.
fn save_original(key: &str, original: u64) -> std::io::Result<Option<PathBuf>> {
    let Some(dir) = std::env::var_os("SYNCER_SYSCTL_SAVE_DIR") else {
        return Ok(None);
    };
    let file = Path::new(&dir).join(key);
    if file.exists() {
        return Ok(None);
    }
    fs::create_dir_all(&dir)?;
    fs::write(&file, format!("{original}\n"))?;
    Ok(Some(file))
}

impl Drop for KnobGuard {
    fn drop(&mut self) {
        for (key, original, save_file) in self.saved.drain(..).rev() {
            match write(&key, original) {
                Ok(()) => {
                    if let Some(file) = save_file {
                        // Removing the save file only means restore-sysctls.sh has nothing to do.
                        let _ = fs::remove_file(file);
                    }
                }
                Err(e) => eprintln!(
                    "harness: could not restore {key}={original}: {e} (run: sysctl -w {key}={original})"
                ),
            }
        }
        // The lock is released only now, after every original is back.
        self.lock.take();
    }
}

/// Current values of all inotify knobs, for the results README.
pub fn snapshot() -> Vec<(String, String)> {
    KEYS.iter()
        .map(|k| {
            (
                k.to_string(),
                read(k).map_or_else(|e| format!("unreadable: {e}"), |v| v.to_string()),
            )
        })
        .collect()
}

/// Watches the inotify sysctls while a run goes on (every 100 ms until `stop`): the knobs are
/// machine-wide, so another user's test that shrinks them (e.g. `max_user_watches` = 11)
/// disturbs the syncer under test. Returns each change seen, so the results say so.
pub fn watch_drift(
    expected: &[(String, String)],
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    loop {
        let done = stop.load(std::sync::atomic::Ordering::Acquire);
        for ((key, want), (_, got)) in expected.iter().zip(snapshot()) {
            let note = format!("{key} was {got} (not {want})");
            if got != *want && !seen.contains(&note) {
                seen.push(note);
            }
        }
        if done {
            return seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
