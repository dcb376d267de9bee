//! rsync clients a killed syncer left running. A run started before a crash (SIGKILL, OOM)
//! goes on without its parent: it still holds its file list and data as read back then, and
//! if it finishes after the restarted syncer has compared, it writes that older content
//! over the newer copy. Every client runs in its own process group, so at start the syncer
//! finds the orphans of the same SOURCE and target and stops each whole group before it
//! compares anything.
//!
//! An orphan is identified by what only the syncer's own runs share: the program is rsync,
//! its working directory is SOURCE, its command line names this target's destination, and
//! its parent is not a syncer (it was reparented to init or a subreaper). A client of a
//! syncer still running (another instance, a `verify --repair` beside the service) has that
//! syncer as its parent and is left alone.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How long a stopped group gets to exit on SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// One process as /proc shows it.
struct Process {
    pid: i32,
    pgid: i32,
    ppid: i32,
}

/// Reads /proc/PID/stat's parent and process group (fields 4 and 5, after the name in
/// parentheses, which may itself hold spaces or parentheses).
fn parent_and_group(pid: i32) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some((ppid, pgid))
}

fn is_orphan_of(pid: i32, source: &Path, destination: &str, own_exe: &Path) -> Option<Process> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim_end() != "rsync" {
        return None;
    }
    if std::fs::read_link(format!("/proc/{pid}/cwd")).ok()? != source {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let names_target = cmdline
        .split(|b| *b == 0)
        .any(|arg| OsStr::from_bytes(arg) == OsStr::new(destination));
    if !names_target {
        return None;
    }
    let (ppid, pgid) = parent_and_group(pid)?;
    let parent_exe = std::fs::read_link(format!("/proc/{ppid}/exe")).ok();
    if parent_exe.as_deref() == Some(own_exe) {
        return None;
    }
    // Only a group of its own: never signal a group the rsync merely belongs to.
    (pgid == pid).then_some(Process { pid, pgid, ppid })
}

/// Stops the orphaned rsync clients of `source` to `destination`; returns how many.
pub fn stop_leftovers(source: &Path, destination: &str, target: &str) -> usize {
    let Ok(own_exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let found: Vec<Process> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| is_orphan_of(pid, source, destination, &own_exe))
        .collect();
    for process in &found {
        crate::warn!(
            "{target}: an rsync run of an earlier syncer is still running (pid {}, parent {}): \
             stopping it before the start-up compare, so it cannot write older content later",
            process.pid,
            process.ppid
        );
        // ESRCH: it ended on its own meanwhile, which is what we want; the wait below checks.
        let _ = killpg(Pid::from_raw(process.pgid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    for process in &found {
        while Path::new(&format!("/proc/{}", process.pid)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if Path::new(&format!("/proc/{}", process.pid)).exists() {
            // Ignored for the same reason: a group gone already needs no signal.
            let _ = killpg(Pid::from_raw(process.pgid), Signal::SIGKILL);
        }
    }
    found.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_name() {
        let me = std::process::id() as i32;
        let (ppid, _) = parent_and_group(me).unwrap();
        assert_eq!(ppid, nix::unistd::getppid().as_raw());
    }
}
