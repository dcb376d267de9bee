//! inotify watches from /proc, the one counter: pids (a syncer's tree) or an effective uid
//! (every process of a user) in, the `inotify wd:` lines of their inotify fds' fdinfo out.
//! The readiness check of a run (a syncer holds as many watches as the tree has dirs) and
//! `harness limits`/`report`/`watchcost` (what the user holds already) both count here.

use std::collections::HashSet;
use std::path::Path;

/// The fdinfo texts of the inotify instances that process `pid` holds (its fds whose link is
/// `anon_inode:inotify`); empty for a gone process.
fn inotify_fdinfos(pid: u32) -> Vec<String> {
    let base = Path::new("/proc").join(pid.to_string());
    let Ok(fds) = std::fs::read_dir(base.join("fd")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for fd in fds.flatten() {
        let is_inotify =
            std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:inotify");
        if is_inotify {
            out.push(
                std::fs::read_to_string(base.join("fdinfo").join(fd.file_name()))
                    .unwrap_or_default(),
            );
        }
    }
    out
}

/// Watches held by these processes, all their inotify instances summed.
pub fn held_by(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|&pid| u32::try_from(pid).ok())
        .flat_map(inotify_fdinfos)
        .map(|info| watches_in_fdinfo(&info))
        .sum()
}

/// Watches listed in one inotify fd's /proc/PID/fdinfo/FD text (one `inotify wd:` line each).
pub fn watches_in_fdinfo(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("inotify wd:"))
        .count() as u64
}

/// The effective uid from /proc/PID/status text (`Uid: real effective saved fs`).
pub fn euid_in_status(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1)?.parse().ok())
}

/// inotify watches held by processes with effective uid `euid`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InUse {
    pub watches: u64,
    pub instances: u64,
    /// (pid, command, watches), largest first.
    pub holders: Vec<(u32, String, u64)>,
}

/// Reads /proc/*/fd and fdinfo for inotify instances of processes running as `euid`. The
/// kernel charges watches to the euid that created the instance; a process's current euid is
/// the closest outside view. An instance inherited by a child would be listed twice, so
/// identical watch lists of one command are counted once.
pub fn watches_in_use(euid: u32) -> InUse {
    let mut use_ = InUse::default();
    let mut seen = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return use_;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let base = p.path();
        let status = std::fs::read_to_string(base.join("status")).unwrap_or_default();
        if euid_in_status(&status) != Some(euid) {
            continue;
        }
        let comm = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
        let mut mine = 0;
        for info in inotify_fdinfos(pid) {
            let watches: String = info
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .collect();
            if !watches.is_empty() && !seen.insert((comm.clone(), watches)) {
                continue;
            }
            use_.instances += 1;
            mine += watches_in_fdinfo(&info);
        }
        if mine > 0 {
            use_.watches += mine;
            use_.holders.push((pid, comm.trim().to_string(), mine));
        }
    }
    use_.holders.sort_by_key(|h| std::cmp::Reverse(h.2));
    use_
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_watch_lines_are_counted_and_nothing_else() {
        let text = "pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\n\
inotify wd:2 ino:a0001 sdev:fd00000 mask:fc6 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:01000a0000000000\n\
inotify wd:1 ino:2 sdev:fd00000 mask:fc6 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0200000000000000\n";
        assert_eq!(watches_in_fdinfo(text), 2);
        assert_eq!(watches_in_fdinfo("pos:\t0\nflags:\t02\n"), 0);
    }

    #[test]
    fn effective_uid_is_the_second_uid_field() {
        let status = "Name:\tbash\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(euid_in_status(status), Some(0));
        assert_eq!(euid_in_status("Name:\tx\n"), None);
    }
}
