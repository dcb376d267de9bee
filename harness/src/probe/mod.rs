//! The probe: watches the replica (a fanotify filesystem mark, else its own inotify instance)
//! and stamps, per expected path, when the replica first showed its final state (`t_seen_ns`,
//! taken when the read() that delivered the event returned). Directories created in the
//! replica are watched and then scanned (watch-then-scan), so nothing created before the watch
//! is missed; entries found only by a scan are flagged.

pub mod fan;

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use syncer::event::inotify::Records;
use syncer::sys::epoll::Poller;
use syncer::sys::errno::ReadOutcome;
use syncer::sys::inotify::{
    IN_ATTRIB, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_IGNORED, IN_ISDIR, IN_MOVED_FROM,
    IN_MOVED_TO, IN_ONLYDIR, IN_Q_OVERFLOW, Inotify,
};

use crate::probe::fan::{FanSource, Hit};
use crate::storm::ops::{Expect, Expected, HEADER_LEN, header, join};
use crate::util::clock::Clock;

const PROBE_MASK: u32 =
    IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | IN_ONLYDIR;

/// Counters the run loop reads while the probe works.
#[derive(Debug, Default)]
pub struct ProbeLive {
    pub remaining: AtomicUsize,
    pub events: AtomicU64,
    pub overflows: AtomicU64,
    pub stop: AtomicBool,
}

/// What the probe saw, per expectation (index as in `Plan::expect`).
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    /// 0 = never seen.
    pub seen_ns: Vec<u64>,
    pub by_scan: Vec<bool>,
    pub events: u64,
    pub overflows: u64,
    pub watch_errors: u64,
}

/// The probe's event source, created before the scenario's knobs apply: a fanotify
/// filesystem mark (probe_fan.rs; root only) or else an inotify instance, whose queue size is
/// fixed at creation (inotify(7)), so a tiny `max_queued_events` for the syncer never shrinks
/// it. `HARNESS_PROBE=inotify` forces inotify.
pub enum ProbeInstance {
    Inotify(Inotify),
    Fanotify(FanSource),
}

impl ProbeInstance {
    pub fn new(replica: &Path) -> std::io::Result<Self> {
        if std::env::var("HARNESS_PROBE").as_deref() != Ok("inotify") {
            match FanSource::new(replica) {
                Ok(f) => return Ok(Self::Fanotify(f)),
                Err(e) => eprintln!(
                    "harness: fanotify probe unavailable ({e}): using inotify (its watches count against max_user_watches)"
                ),
            }
        }
        Inotify::new().map(Self::Inotify)
    }

    /// "fanotify" or "inotify", for the results.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Inotify(_) => "inotify",
            Self::Fanotify(_) => "fanotify",
        }
    }
}

struct State<'a> {
    root: PathBuf,
    src: ProbeInstance,
    wd_path: HashMap<i32, String>,
    index: HashMap<&'a str, usize>,
    expect: &'a [Expect],
    seen: Vec<u64>,
    by_scan: Vec<bool>,
    live: &'a ProbeLive,
    munged_ok: bool,
    moved_dirs: HashMap<u32, String>,
    watch_errors: u64,
    checking: bool,
}

/// Watches `root` until `live.stop` is set, then returns what it saw. `munged_ok` accepts
/// link targets prefixed `/rsyncd-munged/` (rsync daemon `munge symlinks`, see rsyncd.conf(5)).
pub fn run(
    instance: ProbeInstance,
    root: &Path,
    expect: &[Expect],
    clock: Clock,
    live: Arc<ProbeLive>,
    munged_ok: bool,
    ready: std::sync::mpsc::Sender<()>,
) -> std::io::Result<ProbeReport> {
    let mut st = State {
        root: root.to_path_buf(),
        src: instance,
        wd_path: HashMap::new(),
        index: expect
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.as_str(), i))
            .collect(),
        expect,
        seen: vec![0; expect.len()],
        by_scan: vec![false; expect.len()],
        live: &live,
        munged_ok,
        moved_dirs: HashMap::new(),
        watch_errors: 0,
        checking: true,
    };
    live.remaining.store(expect.len(), Ordering::Release);
    // Initial view: watches only. What the replica holds before the storm is not a sample.
    st.checking = false;
    st.watch_and_scan("", clock.now_ns(), false);
    st.checking = true;
    // The probe's view is in place: the storm may start. A closed receiver is not an error.
    let _ = ready.send(());
    let poller = Poller::new(match &st.src {
        ProbeInstance::Inotify(ino) => ino.as_fd(),
        ProbeInstance::Fanotify(f) => f.fan.as_fd(),
    })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut hits = Vec::new();
    while !live.stop.load(Ordering::Acquire) {
        if !poller.wait(Some(Duration::from_millis(20)))?.readable {
            continue;
        }
        loop {
            let read = match &st.src {
                ProbeInstance::Inotify(ino) => ino.read(&mut buf)?,
                ProbeInstance::Fanotify(f) => f.fan.read(&mut buf)?,
            };
            let n = match read {
                ReadOutcome::Drained => break,
                ReadOutcome::Filled(n) => n,
            };
            let t = clock.now_ns();
            if let ProbeInstance::Fanotify(f) = &mut st.src {
                hits.clear();
                let events = f.parse(&buf[..n], &st.root, &mut hits);
                st.live.events.fetch_add(events, Ordering::Relaxed);
                st.apply(&hits, t);
            } else {
                st.handle(&buf[..n], t);
            }
        }
    }
    // A last full scan catches what arrived without an event the probe saw; flagged.
    st.watch_and_scan("", clock.now_ns(), true);
    Ok(ProbeReport {
        seen_ns: st.seen,
        by_scan: st.by_scan,
        events: live.events.load(Ordering::Relaxed),
        overflows: live.overflows.load(Ordering::Relaxed),
        watch_errors: st.watch_errors,
    })
}

impl State<'_> {
    /// Acts on the fanotify source's hits: checks, then scans of new dirs, then a rescan.
    fn apply(&mut self, hits: &[Hit], t: u64) {
        let mut rescan = false;
        for hit in hits {
            match hit {
                Hit::Check(path) => self.check(path, t, false),
                Hit::Overflow => {
                    self.live.overflows.fetch_add(1, Ordering::Relaxed);
                    rescan = true;
                }
                Hit::NewDir(_) => {}
            }
        }
        for hit in hits {
            if let Hit::NewDir(dir) = hit {
                self.watch_and_scan(dir, t, true);
            }
        }
        if rescan {
            self.watch_and_scan("", t, true);
        }
    }

    /// Watches one replica dir (inotify watch or fanotify handle); false when it is gone.
    fn watch(&mut self, abs: &Path, rel: &str) -> bool {
        match &mut self.src {
            ProbeInstance::Inotify(ino) => match ino.add_watch(abs, PROBE_MASK) {
                Ok(wd) => {
                    self.wd_path.insert(wd, rel.to_string());
                    true
                }
                Err(_) => false,
            },
            ProbeInstance::Fanotify(f) => f.add_dir(abs, rel),
        }
    }

    fn handle(&mut self, bytes: &[u8], t: u64) {
        let mut records = 0u64;
        let mut rescan = false;
        let mut new_dirs = Vec::new();
        for ev in Records::new(bytes) {
            records += 1;
            if ev.mask & IN_Q_OVERFLOW != 0 {
                self.live.overflows.fetch_add(1, Ordering::Relaxed);
                rescan = true;
                continue;
            }
            if ev.mask & IN_IGNORED != 0 {
                self.wd_path.remove(&ev.wd);
                continue;
            }
            let Some(dir) = self.wd_path.get(&ev.wd) else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(ev.name) else {
                continue;
            };
            let path = join(dir, name);
            if ev.mask & IN_ISDIR != 0 {
                if ev.mask & IN_MOVED_FROM != 0 {
                    self.moved_dirs.insert(ev.cookie, path.clone());
                }
                if ev.mask & (IN_CREATE | IN_MOVED_TO) != 0 {
                    if let Some(old) = self.moved_dirs.remove(&ev.cookie) {
                        self.rekey(&old, &path);
                    }
                    new_dirs.push(path.clone());
                }
            }
            self.check(&path, t, false);
        }
        self.live.events.fetch_add(records, Ordering::Relaxed);
        for dir in new_dirs {
            self.watch_and_scan(&dir, t, true);
        }
        if rescan {
            self.watch_and_scan("", t, true);
        }
    }

    /// A watched directory was renamed: its descendants' paths change with it.
    fn rekey(&mut self, old: &str, new: &str) {
        let prefix = format!("{old}/");
        for path in self.wd_path.values_mut() {
            if path == old {
                *path = new.to_string();
            } else if let Some(rest) = path.strip_prefix(&prefix) {
                *path = join(new, rest);
            }
        }
    }

    /// Watch-then-scan of `rel` and everything below it (iterative: trees may be deep).
    fn watch_and_scan(&mut self, rel: &str, t: u64, flag: bool) {
        let mut stack = vec![rel.to_string()];
        while let Some(dir) = stack.pop() {
            let abs = if dir.is_empty() {
                self.root.clone()
            } else {
                self.root.join(&dir)
            };
            if !self.watch(&abs, &dir) {
                // Gone already (deleted or renamed): its events come from its parent.
                self.watch_errors += 1;
                continue;
            }
            self.check(&dir, t, flag);
            let Ok(entries) = std::fs::read_dir(&abs) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(name) =
                    std::str::from_utf8(entry.file_name().as_bytes()).map(str::to_string)
                else {
                    continue;
                };
                let path = join(&dir, &name);
                if entry.file_type().is_ok_and(|ft| ft.is_dir()) {
                    stack.push(path);
                } else {
                    self.check(&path, t, flag);
                }
            }
        }
        // A scan also confirms deletions it cannot get events for any more.
        if flag && rel.is_empty() {
            for i in 0..self.expect.len() {
                if self.seen[i] == 0 && self.expect[i].state == Expected::Absent {
                    let path = self.expect[i].path.clone();
                    self.check(&path, t, true);
                }
            }
        }
    }

    /// Stamps `path` if it is expected, not yet seen, and now in its final state.
    fn check(&mut self, path: &str, t: u64, by_scan: bool) {
        if !self.checking {
            return;
        }
        let Some(&i) = self.index.get(path) else {
            return;
        };
        if self.seen[i] != 0
            || !matches(&self.root.join(path), &self.expect[i].state, self.munged_ok)
        {
            return;
        }
        self.seen[i] = t.max(1);
        self.by_scan[i] = by_scan;
        self.live.remaining.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether the replica entry at `abs` is in the expected final state.
pub fn matches(abs: &Path, want: &Expected, munged_ok: bool) -> bool {
    let meta = std::fs::symlink_metadata(abs);
    match want {
        Expected::Absent => meta.is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound),
        Expected::Dir => meta.is_ok_and(|m| m.is_dir()),
        Expected::Symlink { target } => {
            let Ok(link) = std::fs::read_link(abs) else {
                return false;
            };
            let link = link.to_string_lossy();
            link == target.as_str()
                || (munged_ok && link.strip_prefix("/rsyncd-munged/") == Some(target))
        }
        Expected::File {
            size,
            header: head,
            mode,
        } => {
            let Ok(m) = meta else { return false };
            if !m.is_file() || m.size() != *size || m.permissions().mode() & 0o7777 != *mode {
                return false;
            }
            match head {
                None => true,
                Some((file, version)) => {
                    let mut got = [0u8; HEADER_LEN as usize];
                    std::fs::File::open(abs)
                        .and_then(|mut f| f.read_exact(&mut got))
                        .is_ok()
                        && got == header(*file, *version).as_bytes()
                }
            }
        }
    }
}
