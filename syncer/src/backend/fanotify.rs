//! The fanotify backend: one filesystem mark in, `Change`s out. A dedicated reader thread
//! drains the group until EAGAIN on every epoll wakeup into one reused buffer and translates
//! each buffer's events (`fanotify_translate`). The mark covers the whole filesystem from the
//! moment `new` returns, so capture is immediate whatever the tree size; the directory-handle
//! map is filled by a background walk and, for directories it has not reached, on demand.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::fanotify_translate::{Resolver, Translator};
use super::{Backend, CaptureReport, Sink};
use crate::change::Change;
use crate::entry::{Kind, list_dir, stat_at};
use crate::event::fanotify::Events;
use crate::source::SourceTree;
use crate::stats::Stats;
use crate::sys::epoll::Poller;
use crate::sys::errno::ReadOutcome;
use crate::sys::fanotify::{
    Capabilities, FAN_Q_OVERFLOW, FAN_RENAME, Fanotify, InitOptions, name_to_handle_at,
};

/// Read buffer size. A full default queue (16,384 events) of DFID_NAME_TARGET events with
/// short names (~80 bytes each) is about 1.3 MiB, so 1 MiB drains most of it per read().
const READ_BUFFER: usize = 1 << 20;
/// Overflow reconciles are spaced at least this far apart, doubling while overflows keep
/// coming, up to OVERFLOW_GAP_MAX. One filesystem-wide queue also carries every unrelated
/// write on the filesystem (and the replica's own, when it lives there), so a small queue can
/// overflow continuously; a ctime-guarded full reconcile per overflow would then re-copy the
/// storm's files over and over and never let the backlog drain. The last overflow is always
/// followed by a reconcile, at most OVERFLOW_GAP_MAX later.
const OVERFLOW_GAP_MIN: Duration = Duration::from_millis(500);
const OVERFLOW_GAP_MAX: Duration = Duration::from_secs(16);

/// When the next overflow reconcile may be requested, and whether one is owed.
#[derive(Debug)]
struct OverflowPacer {
    last: Option<Instant>,
    gap: Duration,
    owed: bool,
}

impl OverflowPacer {
    fn new() -> Self {
        Self {
            last: None,
            gap: OVERFLOW_GAP_MIN,
            owed: false,
        }
    }

    /// An overflow at `now`: true when the reconcile is to be requested now.
    fn overflow(&mut self, now: Instant) -> bool {
        match self.last {
            // Quiet for a while: start over with the shortest gap.
            Some(last) if now.duration_since(last) > self.gap * 4 => self.gap = OVERFLOW_GAP_MIN,
            Some(last) if now.duration_since(last) < self.gap => {
                self.owed = true;
                return false;
            }
            _ => {}
        }
        self.fire(now);
        true
    }

    fn fire(&mut self, now: Instant) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) <= self.gap * 2)
        {
            self.gap = (self.gap * 2).min(OVERFLOW_GAP_MAX);
        }
        self.last = Some(now);
        self.owed = false;
    }

    /// How long the reader may sleep before an owed reconcile is due (None: none owed).
    fn due_in(&self, now: Instant) -> Option<Duration> {
        let last = self.last?;
        self.owed
            .then(|| (last + self.gap).saturating_duration_since(now))
    }

    /// True when an owed reconcile is due now (and records it as requested).
    fn take_due(&mut self, now: Instant) -> bool {
        if self.due_in(now).is_some_and(|d| d.is_zero()) {
            self.fire(now);
            return true;
        }
        false
    }
}

pub struct FanotifyBackend {
    source: Arc<SourceTree>,
    group: Fanotify,
    poller: Poller,
    resolver: Arc<Mutex<Resolver>>,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
    /// The handle-map walk runs once, at the first capture.
    walked: AtomicBool,
    /// FAN_RENAME in the mask (5.17+); else MOVED_FROM/MOVED_TO are paired.
    pub rename_events: bool,
}

fn lock(resolver: &Mutex<Resolver>) -> MutexGuard<'_, Resolver> {
    resolver.lock().unwrap_or_else(|e| e.into_inner())
}

impl FanotifyBackend {
    /// Creates the group and marks SOURCE's filesystem: from here on every change is queued.
    pub fn new(
        source: Arc<SourceTree>,
        stats: Arc<Stats>,
        caps: Capabilities,
        unlimited_queue: bool,
    ) -> io::Result<Self> {
        let group = Fanotify::init_preferred(InitOptions {
            target_fid: caps.target_fid,
            unlimited_queue,
        })?;
        let mask = group.mark_filesystem_probing_rename(&source.abs)?;
        let poller = Poller::new(group.as_fd())?;
        let mut resolver = Resolver::default();
        let (root, _mount_id) =
            name_to_handle_at(source.root.as_fd(), Path::new(""), libc::AT_EMPTY_PATH)?;
        resolver
            .map
            .insert(root.handle_type, root.bytes(), PathBuf::new());
        Ok(Self {
            source,
            group,
            poller,
            resolver: Arc::new(Mutex::new(resolver)),
            stats,
            stopping: Arc::new(AtomicBool::new(false)),
            walked: AtomicBool::new(false),
            rename_events: mask & FAN_RENAME != 0,
        })
    }

    /// Reads until EAGAIN, translating each buffer and pushing its changes.
    fn drain(
        &self,
        buf: &mut [u8],
        changes: &mut Vec<Change>,
        pacer: &mut OverflowPacer,
        sink: &dyn Sink,
    ) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let n = match self.group.read(buf)? {
                ReadOutcome::Drained => {
                    lock(&self.resolver).queue_empty();
                    return Ok(total);
                }
                ReadOutcome::Filled(0) => continue,
                ReadOutcome::Filled(n) => n,
            };
            self.stats.reads.fetch_add(1, Relaxed);
            self.stats.bytes_read.fetch_add(n as u64, Relaxed);
            let mut count = 0u64;
            {
                let mut resolver = lock(&self.resolver);
                let mut translator = Translator::new(&self.source, &mut resolver, changes, sink);
                let mut events = Events::new(&buf[..n]);
                for ev in events.by_ref() {
                    count += 1;
                    if ev.mask & FAN_Q_OVERFLOW != 0 {
                        translator.flush();
                        self.overflowed(translator.resolver, pacer, sink);
                        continue;
                    }
                    translator.event(&ev);
                }
                translator.flush();
                if events.trailing_bytes() > 0 {
                    self.stats.errors.fetch_add(1, Relaxed);
                    crate::error!(
                        "fanotify read buffer had {} unparsable trailing bytes; reconciling the whole tree",
                        events.trailing_bytes()
                    );
                    sink.rescan(PathBuf::new(), true);
                }
            }
            self.stats.events.fetch_add(count, Relaxed);
            total += count;
            if !changes.is_empty() {
                sink.push(changes);
            }
        }
    }

    fn overflowed(&self, resolver: &mut Resolver, pacer: &mut OverflowPacer, sink: &dyn Sink) {
        let count = self.stats.overflows.fetch_add(1, Relaxed) + 1;
        // Lost events may include directory renames: the map could be stale.
        resolver.clear();
        if pacer.overflow(Instant::now()) && super::overflow_reconciled() {
            crate::warn!(
                "fanotify queue overflowed ({count} so far; raise /proc/sys/fs/fanotify/max_queued_events, or see --fanotify-unlimited-queue); reconciling the whole tree"
            );
            sink.rescan(PathBuf::new(), true);
        }
    }

    /// Fills the handle map from a parallel walk of SOURCE on a background thread, so capture
    /// does not wait for it; directories not reached yet are resolved by open_by_handle_at.
    fn spawn_walk(&self) -> io::Result<()> {
        let walk = Walk {
            source: self.source.clone(),
            resolver: self.resolver.clone(),
            stopping: self.stopping.clone(),
            mapped: AtomicU64::new(0),
        };
        std::thread::Builder::new()
            .name("handle-map".into())
            .spawn(move || {
                let started = Instant::now();
                rayon::scope(|scope| walk.dir(scope, PathBuf::new()));
                crate::info!(
                    "fanotify: {} directories mapped to handles in {:.3} s",
                    walk.mapped.load(Relaxed),
                    started.elapsed().as_secs_f64()
                );
            })
            .map(drop)
    }
}

/// The background walk that fills the handle map.
struct Walk {
    source: Arc<SourceTree>,
    resolver: Arc<Mutex<Resolver>>,
    stopping: Arc<AtomicBool>,
    mapped: AtomicU64,
}

impl Walk {
    fn dir<'s>(&'s self, scope: &rayon::Scope<'s>, rel: PathBuf) {
        if self.stopping.load(Relaxed) {
            return;
        }
        // Opened and encoded under the lock, so the entry describes the present as of the
        // reader's position: events queued before are applied to it under the map's rules.
        let fd = {
            let mut resolver = lock(&self.resolver);
            let Ok(fd) = self.source.open_dir(&rel) else {
                return;
            };
            if let Ok((handle, _)) =
                name_to_handle_at(fd.as_fd(), Path::new(""), libc::AT_EMPTY_PATH)
            {
                resolver
                    .map
                    .insert(handle.handle_type, handle.bytes(), rel.clone());
                self.mapped.fetch_add(1, Relaxed);
            }
            fd
        };
        let Ok(entries) = list_dir(&fd) else { return };
        for (name, kind) in entries {
            let kind = kind.or_else(|| stat_at(fd.as_fd(), &name).ok().flatten().map(|m| m.kind));
            let child = rel.join(&name);
            if kind == Some(Kind::Dir) && !self.source.excludes.is_excluded(&child) {
                scope.spawn(move |scope| self.dir(scope, child));
            }
        }
    }
}

impl Backend for FanotifyBackend {
    fn name(&self) -> &'static str {
        "fanotify"
    }

    /// The filesystem mark has covered everything since `new`: nothing to add. The first call
    /// starts the handle-map walk in the background.
    fn capture(&self, _subtree: &Path) -> io::Result<CaptureReport> {
        if !self.walked.swap(true, Relaxed) {
            self.spawn_walk()?;
        }
        Ok(CaptureReport {
            dirs: 1,
            unwatched: 0,
        })
    }

    fn run(&self, sink: &dyn Sink) -> io::Result<()> {
        let mut buf = vec![0u8; READ_BUFFER];
        let mut changes: Vec<Change> = Vec::with_capacity(4096);
        let mut pacer = OverflowPacer::new();
        loop {
            let wakeup = self.poller.wait(pacer.due_in(Instant::now()))?;
            if self.drain(&mut buf, &mut changes, &mut pacer, sink)? > 0 {
                // Let a burst gather (see backend::COALESCE).
                std::thread::sleep(super::COALESCE);
            }
            if pacer.take_due(Instant::now()) {
                crate::info!("reconciling the whole tree after the last fanotify overflows");
                sink.rescan(PathBuf::new(), true);
            }
            if wakeup.woken && self.stopping.load(Relaxed) {
                return Ok(());
            }
        }
    }

    fn stop(&self) {
        self.stopping.store(true, Relaxed);
        if let Err(err) = self.poller.waker().and_then(|w| w.wake()) {
            crate::error!("cannot wake the fanotify reader: {err}");
        }
    }

    fn degraded(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_reconciles_are_spaced_and_the_last_one_is_never_dropped() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut pacer = OverflowPacer::new();
        assert!(
            pacer.overflow(ms(0)),
            "the first overflow reconciles at once"
        );
        assert_eq!(pacer.due_in(ms(1)), None);
        // A burst: owed, not requested, until the gap has passed.
        assert!(!pacer.overflow(ms(10)));
        assert!(!pacer.overflow(ms(20)));
        assert_eq!(pacer.due_in(ms(100)), Some(Duration::from_millis(400)));
        assert!(!pacer.take_due(ms(499)));
        assert!(pacer.take_due(ms(500)));
        assert_eq!(pacer.due_in(ms(501)), None);
        // Overflows keep coming: the gap doubles.
        assert!(!pacer.overflow(ms(600)));
        assert!(!pacer.take_due(ms(1400)));
        assert!(pacer.take_due(ms(1500)));
        // Quiet for long: the next overflow reconciles at once again, with the short gap.
        assert!(pacer.overflow(ms(60_000)));
        assert!(!pacer.overflow(ms(60_100)));
        assert_eq!(pacer.due_in(ms(60_100)), Some(Duration::from_millis(400)));
    }
}
