//! Process-tree accounting from /proc: a root pid in, CPU (user+sys, including children the
//! tree already waited for), peak RSS and the pids seen out. The harness is a child
//! subreaper, so orphans of a syncer's tree stay visible (as our children) until we reap them.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// One process's counters from /proc/PID/stat and status.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStat {
    ppid: i32,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
    hwm_kib: u64,
}

fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14), see proc(5).
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let ticks = (num(11) + num(12) + num(13) + num(14)).max(0) as u64;
    let hwm_kib = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    Some(ProcStat {
        ppid: num(1) as i32,
        ticks,
        hwm_kib,
    })
}

fn all_parents() -> HashMap<i32, i32> {
    let mut map = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(st) = read_stat(pid).map(|s| s.ppid) {
            map.insert(pid, st);
        }
    }
    map
}

/// Tracks one process tree across samples.
#[derive(Debug, Default)]
pub struct TreeTracker {
    root: i32,
    pub seen: BTreeSet<i32>,
    /// Last ticks per pid (kept after a pid exits: its parent's cutime then counts it too,
    /// so only live pids are summed; see `sample`).
    pub peak_rss_kib: u64,
    pub root_rss_kib: u64,
}

/// A sample of the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSample {
    pub cpu_ns: u64,
    pub live: u32,
    pub seen: u32,
}

pub fn tick_ns() -> u64 {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u64;
    1_000_000_000 / hz
}

impl TreeTracker {
    pub fn new(root: u32) -> Self {
        Self {
            root: root as i32,
            ..Self::default()
        }
    }

    /// Sums the live tree (descendants of the root, plus pids seen before that were
    /// reparented to us). A live process's cutime/cstime cover its waited children, so
    /// nothing is counted twice.
    pub fn sample(&mut self) -> TreeSample {
        let parents = all_parents();
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for (&pid, &ppid) in &parents {
            children.entry(ppid).or_default().push(pid);
        }
        let mut stack: Vec<i32> = vec![self.root];
        stack.extend(
            self.seen
                .iter()
                .copied()
                .filter(|p| parents.contains_key(p)),
        );
        let mut tree = BTreeSet::new();
        while let Some(pid) = stack.pop() {
            if !parents.contains_key(&pid) || !tree.insert(pid) {
                continue;
            }
            if let Some(kids) = children.get(&pid) {
                stack.extend(kids);
            }
        }
        let mut cpu_ticks = 0;
        for &pid in &tree {
            if let Some(st) = read_stat(pid) {
                cpu_ticks += st.ticks;
                self.peak_rss_kib = self.peak_rss_kib.max(st.hwm_kib);
                if pid == self.root {
                    self.root_rss_kib = self.root_rss_kib.max(st.hwm_kib);
                }
            }
        }
        self.seen.extend(tree.iter().copied());
        TreeSample {
            cpu_ns: cpu_ticks * tick_ns(),
            live: tree.len() as u32,
            seen: self.seen.len() as u32,
        }
    }

    /// Live pids of the tree, deepest-first is not needed: callers signal all of them.
    pub fn live_pids(&mut self) -> Vec<i32> {
        let parents = all_parents();
        let mut out: Vec<i32> = self
            .seen
            .iter()
            .copied()
            .filter(|p| parents.contains_key(p))
            .collect();
        if parents.contains_key(&self.root) && !out.contains(&self.root) {
            out.push(self.root);
        }
        out
    }

    /// Reaps tree members that were reparented to the harness (subreaper) and have exited.
    /// Waits up to 2 s for killed ones to die, so no zombie outlives the run.
    pub fn reap_orphans(&self) {
        let me = std::process::id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let ours: Vec<i32> = self
                .seen
                .iter()
                .copied()
                .filter(|&p| p != self.root && read_stat(p).is_some_and(|s| s.ppid == me))
                .collect();
            if ours.is_empty() || std::time::Instant::now() > deadline {
                return;
            }
            for pid in ours {
                // ECHILD or "still running" are both fine here: we only collect zombies.
                let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Makes the harness the reaper of orphaned descendants (prctl PR_SET_CHILD_SUBREAPER), so
/// a syncer's grandchildren cannot escape accounting or cleanup by being reparented to init.
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!(
            "harness: could not become a child subreaper ({e}): orphaned grandchildren are not accounted"
        );
    }
}

/// SIGTERM one child by PID, SIGKILL after `grace`, reap.
pub fn stop_child(mut child: Child, grace: Duration) {
    // Fails only when the child is gone already (ESRCH): the wait below then reaps it.
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Already gone is fine; then wait reaps it.
    let _ = child.kill();
    let _ = child.wait();
}
