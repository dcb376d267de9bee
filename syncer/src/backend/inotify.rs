//! The inotify backend: kernel records in, `Change`s out. A dedicated reader thread drains the
//! fd until EAGAIN on every epoll wakeup into one reused buffer, translates records through
//! the watch table, and adds watches to new directories before listing them (watch-then-scan),
//! so files created in a directory before its watch existed are still seen. Watches belong to
//! directory objects (see `watch`): a directory rename is checked against the kernel's own
//! answer, and a directory moved away takes only its own watches with it.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Backend, CaptureReport, Sink};
use crate::backend::watch::WatchTable;
use crate::change::{COMPARE_WHOLE, Change, Mark, Rename};
use crate::entry::{Kind, is_ancestor_gone, list_dir};
use crate::event::inotify::{RawEvent, Records};
use crate::source::SourceTree;
use crate::stats::Stats;
use crate::sys::epoll::Poller;
use crate::sys::errno::ReadOutcome;
use crate::sys::inotify::*;

/// Read buffer size. A full default queue (16,384 events) of short-named records (32 bytes)
/// is 512 KiB; 1 MiB drains it in one read(), and a 1 MiB reader measured
/// ≥ 250k events/s with no overflow at the default queue.
const READ_BUFFER: usize = 1 << 20;
/// Most unreadable directories remembered (see `unreadable`).
const UNREADABLE_MAX: usize = 10_000;

/// How long an IN_MOVED_FROM waits for its IN_MOVED_TO. Both are queued by the same rename(2)
/// but not atomically, so a read can fall between them; 20 ms is far above that gap.
const PAIR_WINDOW: Duration = Duration::from_millis(20);
/// Changes handed to the targets at once while draining a flood.
const PUSH_EVERY: usize = 8192;

struct Unpaired {
    cookie: u32,
    path: PathBuf,
    is_dir: bool,
    /// The moved directory's own watch, looked up when IN_MOVED_FROM was read: by the time
    /// the move is settled another directory may hold the name.
    wd: Option<i32>,
    deadline: Instant,
}

pub struct InotifyBackend {
    source: Arc<SourceTree>,
    inotify: Inotify,
    poller: Poller,
    table: Mutex<WatchTable>,
    stats: Arc<Stats>,
    stopping: AtomicBool,
    limit_hit: AtomicBool,
    unwatched: AtomicU64,
    /// New directories whose watch could not be added because an ancestor was renamed
    /// after their IN_CREATE was queued (the path of the event is already stale): (parent
    /// wd, name), tried again under the parent's current path once the queue is drained.
    missed: Mutex<Vec<(i32, std::ffi::OsString)>>,
    /// Directories this syncer may not read, so could not watch (inotify needs read
    /// permission; only a syncer that is no root meets this): (parent wd, name), tried again
    /// when their parent's attributes or their own change (the chmod that gives the
    /// permission back). At most `UNREADABLE_MAX`.
    unreadable: Mutex<Vec<(i32, std::ffi::OsString)>>,
    /// Barrier cookies read while a move was still unpaired (see `release_barriers`).
    held_barriers: Mutex<Vec<std::ffi::OsString>>,
}

impl InotifyBackend {
    pub fn new(source: Arc<SourceTree>, stats: Arc<Stats>) -> io::Result<Self> {
        let inotify = Inotify::new()?;
        // The queue size is fixed when the instance is created: say what this one got.
        if let Ok(queue) = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events") {
            let queue = queue.trim();
            crate::info!("inotify queue holds {queue} events (fs.inotify.max_queued_events)");
            if queue.parse::<u64>().is_ok_and(|q| q < 16_384) {
                crate::warn!(
                    "fs.inotify.max_queued_events={queue} is small: bursts will overflow and cost full reconciles; raise it (sysctl -w fs.inotify.max_queued_events=16384) and restart"
                );
            }
        }
        let poller = Poller::new(std::os::fd::AsFd::as_fd(&inotify))?;
        Ok(Self {
            source,
            inotify,
            poller,
            table: Mutex::new(WatchTable::default()),
            stats,
            stopping: AtomicBool::new(false),
            limit_hit: AtomicBool::new(false),
            unwatched: AtomicU64::new(0),
            missed: Mutex::new(Vec::new()),
            unreadable: Mutex::new(Vec::new()),
            held_barriers: Mutex::new(Vec::new()),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, WatchTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the watch for directory `rel`. Ok(false) when the directory is gone or the
    /// watch limit is reached (reported, and covered by periodic reconciles).
    fn watch(&self, rel: &Path, table: &mut WatchTable) -> io::Result<bool> {
        let abs = if rel.as_os_str().is_empty() {
            self.source.abs.clone()
        } else {
            self.source.abs.join(rel)
        };
        match self.inotify.add_watch(&abs, WATCH_MASK) {
            Ok(wd) => {
                let known = table.contains(wd);
                let placed = table.insert(wd, rel);
                if !placed && !known {
                    // Its parent has no watch (it moved or vanished since this path was
                    // read): the parent's own events cover it, an unplaced watch would leak.
                    self.forget_watch(wd);
                }
                self.stats.dirs_watched.store(table.len() as u64, Relaxed);
                Ok(placed)
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => {
                self.unwatched.fetch_add(1, Relaxed);
                if !self.limit_hit.swap(true, Relaxed) {
                    self.stats.watch_limit_hit.store(true, Relaxed);
                    crate::error!("{}", watch_limit_message(table.len()));
                }
                Ok(false)
            }
            Err(err) if is_ancestor_gone(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Watch-then-scan of a directory that appeared at run time: watch each directory, then
    /// list it and mark every entry, recursively.
    fn watch_then_scan(&self, rel: PathBuf, table: &mut WatchTable, changes: &mut Vec<Change>) {
        let mut stack = vec![rel];
        while let Some(dir) = stack.pop() {
            match self.watch(&dir, table) {
                Ok(true) => {}
                // Not there any more under this path (the watch limit leaves it there).
                Ok(false) if self.source.open_dir(&dir).is_err() => self.note_missed(&dir, table),
                Ok(false) => {}
                Err(err) => {
                    crate::warn!("cannot watch {:?}: {err}", self.source.abs.join(&dir));
                    if err.raw_os_error() == Some(libc::EACCES) {
                        self.note_unreadable(&dir, table);
                    }
                }
            }
            let Ok(fd) = self.source.open_dir(&dir) else {
                continue;
            };
            let Ok(entries) = list_dir(&fd) else { continue };
            for (name, kind) in entries {
                let child = dir.join(&name);
                if self.source.excludes.is_excluded(&child) {
                    continue;
                }
                let kind = kind.or_else(|| {
                    crate::entry::stat_at(std::os::fd::AsFd::as_fd(&fd), &name)
                        .ok()
                        .flatten()
                        .map(|m| m.kind)
                });
                if kind == Some(Kind::Dir) {
                    stack.push(child.clone());
                }
                changes.push(Change::Mark(child, Mark::Changed));
            }
        }
    }

    /// Remembers a directory left unwatched although its parent is watched: it may only
    /// have moved with an ancestor (the rename's events are queued behind its IN_CREATE).
    fn note_missed(&self, dir: &Path, table: &WatchTable) {
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            return;
        };
        if let Some(wd) = table.wd_of(parent) {
            let mut missed = self.missed.lock().unwrap_or_else(|e| e.into_inner());
            missed.push((wd, name.to_os_string()));
        }
    }

    /// Remembers a directory whose watch the permissions refused, by its parent's watch (which
    /// a rename of an ancestor leaves as it is).
    fn note_unreadable(&self, dir: &Path, table: &WatchTable) {
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            return;
        };
        let Some(wd) = table.wd_of(parent) else {
            return;
        };
        let mut unreadable = self.unreadable.lock().unwrap_or_else(|e| e.into_inner());
        if unreadable.len() < UNREADABLE_MAX
            && !unreadable.iter().any(|(w, n)| *w == wd && n == name)
        {
            unreadable.push((wd, name.to_os_string()));
        }
    }

    /// Tries again the unreadable directories in the directory watched by `parent` (only
    /// `name`, if given): watched and scanned now, and compared whole, since what happened
    /// inside them went unseen. One still refused is noted again.
    fn retry_unreadable(
        &self,
        parent: i32,
        name: Option<&OsStr>,
        table: &mut WatchTable,
        changes: &mut Vec<Change>,
    ) {
        let due: Vec<std::ffi::OsString> = {
            let mut unreadable = self.unreadable.lock().unwrap_or_else(|e| e.into_inner());
            let mut due = Vec::new();
            unreadable.retain(|(w, n)| {
                let hit = *w == parent && name.is_none_or(|name| name == n);
                if hit {
                    due.push(n.clone());
                }
                !hit
            });
            due
        };
        let Some(dir) = table.dir_path(parent).map(Path::to_path_buf) else {
            return;
        };
        for name in due {
            if table.child(parent, &name).is_some() {
                continue;
            }
            let path = dir.join(&name);
            self.watch_then_scan(path.clone(), table, changes);
            changes.push(Change::Mark(path, COMPARE_WHOLE));
        }
    }

    /// Once the queue is drained (every rename that made a watch fail has been read), the
    /// missed directories are watched and scanned under their parents' current paths. A
    /// directory gone for good is dropped: its own events settle it.
    fn retry_missed(&self, table: &mut WatchTable, changes: &mut Vec<Change>) {
        let missed = std::mem::take(&mut *self.missed.lock().unwrap_or_else(|e| e.into_inner()));
        for (parent, name) in missed {
            let Some(dir) = table.dir_path(parent).map(Path::to_path_buf) else {
                continue;
            };
            if table.child(parent, &name).is_some() {
                continue;
            }
            let path = dir.join(&name);
            if self.source.open_dir(&path).is_ok() {
                self.watch_then_scan(path.clone(), table, changes);
                changes.push(Change::Mark(path, Mark::Changed));
            }
        }
    }

    fn forget_watch(&self, wd: i32) {
        // EINVAL: the kernel already dropped it (IN_IGNORED is on its way or was read).
        let _ = self.inotify.rm_watch(wd);
    }

    /// Removes the watches of one directory object and everything below it in the table.
    fn unwatch_subtree(&self, wd: i32, table: &mut WatchTable) {
        for wd in table.remove_subtree(wd) {
            self.forget_watch(wd);
        }
        self.stats.dirs_watched.store(table.len() as u64, Relaxed);
    }

    /// Asks the kernel which watched directory `rel` is now (`inotify_add_watch` returns the
    /// existing wd of an inode already watched) and places it there. None when `rel` is no
    /// directory now.
    fn present_wd(&self, rel: &Path, table: &mut WatchTable) -> Option<i32> {
        self.present_watch(rel, table).map(|(wd, _)| wd)
    }

    /// [`Self::present_wd`], and whether the watch is new (the directory was not watched).
    fn present_watch(&self, rel: &Path, table: &mut WatchTable) -> Option<(i32, bool)> {
        let wd = self
            .inotify
            .add_watch(&self.source.abs.join(rel), WATCH_MASK)
            .ok()?;
        let known = table.contains(wd);
        if !table.insert(wd, rel) && !known {
            self.forget_watch(wd);
            return None;
        }
        Some((wd, !known))
    }

    /// A directory renamed inside the tree, `from` paired with the entry `name` of `parent`
    /// (`to`). The table follows the stream, then both ends are checked against the kernel:
    /// RENAME_EXCHANGE reports two moves naming the same entries, which the stream alone
    /// would pin on the wrong directory. A mismatch compares both ends whole. A directory
    /// that was detached meanwhile (a new one took its old name) is reattached, and both ends
    /// are compared instead of renamed: marks already made under `from` belong to the new
    /// directory, and a rename would re-key them to `to`.
    fn dir_renamed(
        &self,
        from: Unpaired,
        parent: i32,
        name: &OsStr,
        to: PathBuf,
        table: &mut WatchTable,
        changes: &mut Vec<Change>,
    ) {
        // A wd the kernel dropped meanwhile (IN_IGNORED) is no directory of ours any more.
        let Some(moved) = from.wd.filter(|wd| table.contains(*wd)) else {
            // Not watched: the watch limit, or a directory renamed before its IN_CREATE was
            // read (its watch-then-scan found nothing at the old name). Watch it now under
            // its new name, or nothing made in it later is ever seen, and compare it whole.
            table.detach_child(parent, name);
            changes.push(Change::Rename(Rename {
                from: from.path,
                to: to.clone(),
                is_dir: true,
            }));
            self.watch_then_scan(to.clone(), table, changes);
            changes.push(Change::Mark(to, COMPARE_WHOLE));
            return;
        };
        let detached = !table.is_attached(moved);
        table.move_to(moved, parent, name);
        let at_to = self.present_wd(&to, table);
        if at_to.is_none() {
            // Nothing the kernel knows at `to` now: an ancestor moved on since (its rename is
            // queued behind), or `to` is gone. Looked at again under the parent's path once
            // the queue is drained, so a directory that moved with the ancestor (the other
            // half of an exchange, never watched) gets its watch.
            let mut missed = self.missed.lock().unwrap_or_else(|e| e.into_inner());
            missed.push((parent, name.to_os_string()));
        }
        let at_from = self.present_wd(&from.path, table);
        let certain = !detached && at_to.is_none_or(|wd| wd == moved) && at_from != Some(moved);
        self.stats.dirs_watched.store(table.len() as u64, Relaxed);
        if !detached {
            changes.push(Change::Rename(Rename {
                from: from.path.clone(),
                to: to.clone(),
                is_dir: true,
            }));
        }
        if !certain {
            // The kernel holds another directory at `to` than the stream said: watch all of
            // it (its subdirectories may have no watch yet), then compare both ends.
            if at_to.is_some_and(|wd| wd != moved) {
                self.watch_then_scan(to.clone(), table, changes);
            }
            changes.push(Change::Mark(from.path, COMPARE_WHOLE));
            changes.push(Change::Mark(to, COMPARE_WHOLE));
        }
    }

    /// After an overflow: detached watches no pending move can claim any more are leaks.
    fn drop_orphans(&self, table: &mut WatchTable, unpaired: &[Unpaired]) {
        for wd in table.detached() {
            if !unpaired.iter().any(|u| u.wd == Some(wd)) {
                self.unwatch_subtree(wd, table);
            }
        }
    }

    /// Translates one record.
    fn translate(
        &self,
        ev: RawEvent<'_>,
        table: &mut WatchTable,
        unpaired: &mut Vec<Unpaired>,
        changes: &mut Vec<Change>,
        sink: &dyn Sink,
    ) {
        if ev.mask & IN_Q_OVERFLOW != 0 {
            self.stats.overflows.fetch_add(1, Relaxed);
            crate::warn!(
                "inotify queue overflowed (fs.inotify.max_queued_events); reconciling the whole tree"
            );
            self.drop_orphans(table, unpaired);
            if super::overflow_reconciled() {
                sink.rescan(PathBuf::new(), true);
            }
            return;
        }
        if ev.mask & IN_IGNORED != 0 {
            // The kernel dropped this watch; anything the table still has below it is stale.
            for wd in table.remove_subtree(ev.wd) {
                if wd != ev.wd {
                    self.forget_watch(wd);
                }
            }
            self.stats.dirs_watched.store(table.len() as u64, Relaxed);
            return;
        }
        let Some(dir) = table.dir_path(ev.wd) else {
            return;
        };
        if ev.name.is_empty() {
            if ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF) != 0 && dir.as_os_str().is_empty() {
                crate::error!(
                    "the source directory {:?} itself was deleted or moved away; restart the syncer on its new location",
                    self.source.abs
                );
            } else if ev.mask & IN_ATTRIB != 0 {
                changes.push(Change::Mark(dir.to_path_buf(), Mark::Changed));
                self.retry_unreadable(ev.wd, None, table, changes);
            }
            return;
        }
        let name = OsStr::from_bytes(ev.name);
        let path = dir.join(name);
        let excluded = self.source.excludes.is_excluded(&path);
        let is_dir = ev.mask & IN_ISDIR != 0;
        if excluded && crate::barrier::is_cookie(&path) {
            if ev.mask & IN_CREATE != 0 {
                self.held_barriers().push(name.to_os_string());
                self.release_barriers(unpaired, changes);
            }
            return;
        }
        if ev.mask & IN_MOVED_FROM != 0 {
            if !excluded {
                unpaired.push(Unpaired {
                    cookie: ev.cookie,
                    path,
                    is_dir,
                    // A wd an earlier pending move already claims left under this name
                    // before: this is another directory, one never watched (created and
                    // moved before its IN_CREATE was read).
                    wd: is_dir
                        .then(|| table.child(ev.wd, name))
                        .flatten()
                        .filter(|wd| !unpaired.iter().any(|u| u.wd == Some(*wd))),
                    deadline: Instant::now() + PAIR_WINDOW,
                });
            }
        } else if ev.mask & IN_MOVED_TO != 0 {
            let from = unpaired
                .iter()
                .position(|u| u.cookie == ev.cookie)
                .map(|i| unpaired.swap_remove(i));
            if let (Some(from), false) = (&from, excluded) {
                rekey_unpaired(unpaired, &from.path, &path);
            }
            match (from, excluded) {
                (Some(from), false) if is_dir => {
                    self.dir_renamed(from, ev.wd, name, path, table, changes);
                }
                (Some(from), false) => {
                    changes.push(Change::Rename(Rename {
                        from: from.path,
                        to: path,
                        is_dir,
                    }));
                }
                (Some(from), true) => self.moved_away(from, table, changes),
                (None, false) if is_dir => {
                    // Moved in, maybe over a directory the replica still has: compare whole.
                    table.detach_child(ev.wd, name);
                    self.watch_then_scan(path.clone(), table, changes);
                    // Back from outside (`mv d /out; mv /out/d d2` read before the first
                    // move's pairing window ended): the kernel kept its watch, which now sits
                    // here; the pending move-out must not take it away when it expires.
                    if let Some(wd) = table.wd_of(&path) {
                        for u in unpaired.iter_mut().filter(|u| u.wd == Some(wd)) {
                            u.wd = None;
                        }
                    }
                    changes.push(Change::Mark(path, COMPARE_WHOLE));
                }
                (None, false) => changes.push(Change::Mark(path, Mark::Changed)),
                (None, true) => {}
            }
        } else if excluded {
            // Names under an exclude are not replicated: only a move into one (above, as a
            // move away) changes what the replica holds.
        } else if ev.mask & IN_CREATE != 0 && is_dir {
            self.watch_then_scan(path.clone(), table, changes);
            changes.push(Change::Mark(path, Mark::Changed));
        } else if ev.mask & IN_ATTRIB != 0 && is_dir && table.child(ev.wd, name).is_none() {
            // A directory without a watch whose permissions may have just come back: an
            // unprivileged syncer cannot watch a directory it may not read, and what happened
            // inside meanwhile went unseen. Watched and scanned now, and compared whole.
            self.retry_unreadable(ev.wd, Some(name), table, changes);
            if table.child(ev.wd, name).is_none() {
                self.watch_then_scan(path.clone(), table, changes);
                changes.push(Change::Mark(path, COMPARE_WHOLE));
            }
        } else if ev.mask & (IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE) != 0 {
            changes.push(Change::Mark(path, Mark::Changed));
        } else if ev.mask & IN_CREATE != 0 {
            // A created file is about to be written: wait for its close (or a quiet period,
            // for symlinks and hard links that never close), so it is not copied twice.
            changes.push(Change::Mark(
                path,
                Mark::Created {
                    wait_for_close: true,
                },
            ));
        } else if ev.mask & IN_MODIFY != 0 {
            changes.push(Change::Mark(path, Mark::Modified));
        }
    }

    fn held_barriers(&self) -> std::sync::MutexGuard<'_, Vec<std::ffi::OsString>> {
        self.held_barriers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Passes on the barriers seen (`syncer wait`'s cookies) once no move read before them
    /// is still waiting for its other half: an unpaired IN_MOVED_FROM becomes a delete only
    /// when its window ends, and that change was made before the cookie.
    fn release_barriers(&self, unpaired: &[Unpaired], changes: &mut Vec<Change>) {
        if unpaired.is_empty() {
            changes.extend(self.held_barriers().drain(..).map(Change::Barrier));
        }
    }

    /// A move whose other half never came (moved out of the tree): a delete. A directory
    /// takes its own watches along (by wd: its old name may hold a new directory by now), and
    /// its name is compared whole, as another directory may already stand there.
    fn moved_away(&self, from: Unpaired, table: &mut WatchTable, changes: &mut Vec<Change>) {
        if !from.is_dir {
            changes.push(Change::Mark(from.path, Mark::Changed));
            return;
        }
        if let Some(wd) = from.wd {
            // The wd is what the table held under that name when the move was read. When
            // the kernel still finds that very directory in the tree, its watch was added to
            // a successor (`mkdir d; mv d /out; mkdir d`, all before the first IN_CREATE was
            // read): the directory that left was never watched, and this one stays.
            let here = table.dir_path(wd).map(Path::to_path_buf);
            let present = here
                .as_ref()
                .and_then(|path| self.present_watch(path, table));
            if present.is_none_or(|(present, _)| present != wd) {
                self.unwatch_subtree(wd, table);
                if let (Some(path), Some((_, true))) = (here, present) {
                    // Another directory stands under the name, just watched by
                    // present_watch and never scanned: its IN_CREATE found its parent's path
                    // gone (a rename was queued behind it), so subdirectories made in it
                    // since have no watch yet. One watched already (`mv e d`) was scanned
                    // when it was watched, and its own events follow it.
                    self.watch_then_scan(path, table, changes);
                }
            }
        }
        changes.push(Change::Mark(from.path, COMPARE_WHOLE));
    }

    /// Reads until EAGAIN; returns false when the fd is gone for good.
    fn drain(
        &self,
        buf: &mut [u8],
        unpaired: &mut Vec<Unpaired>,
        changes: &mut Vec<Change>,
        sink: &dyn Sink,
    ) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let n = match self.inotify.read(buf)? {
                ReadOutcome::Drained => {
                    self.retry_missed(&mut self.table(), changes);
                    self.release_barriers(unpaired, changes);
                    if !changes.is_empty() {
                        sink.push(changes);
                    }
                    return Ok(total);
                }
                ReadOutcome::Filled(0) => continue,
                ReadOutcome::Filled(n) => n,
            };
            self.stats.reads.fetch_add(1, Relaxed);
            self.stats.bytes_read.fetch_add(n as u64, Relaxed);
            let mut records = 0u64;
            let trailing = {
                let mut table = self.table();
                let mut parsed = Records::new(&buf[..n]);
                for ev in parsed.by_ref() {
                    records += 1;
                    self.translate(ev, &mut table, unpaired, changes, sink);
                }
                parsed.trailing_bytes()
            };
            if trailing > 0 {
                // The kernel returns whole records only: a torn one means a lost event.
                self.stats.errors.fetch_add(1, Relaxed);
                crate::error!(
                    "inotify read buffer had {trailing} unparsable trailing bytes; reconciling the whole tree"
                );
                sink.rescan(PathBuf::new(), true);
            }
            self.stats.events.fetch_add(records, Relaxed);
            total += records;
            // One push (one lock per target) per drain, or per PUSH_EVERY changes in a flood.
            if changes.len() >= PUSH_EVERY {
                sink.push(changes);
            }
        }
    }

    fn capture_dir<'s>(
        &'s self,
        scope: &rayon::Scope<'s>,
        rel: PathBuf,
        report: &'s Mutex<(CaptureReport, Option<io::Error>)>,
    ) {
        let watched = self.watch(&rel, &mut self.table());
        let mut slot = report.lock().unwrap_or_else(|e| e.into_inner());
        slot.0.dirs += 1;
        match watched {
            Ok(true) => {}
            Ok(false) => slot.0.unwatched += 1,
            Err(err) => {
                slot.1.get_or_insert(err);
            }
        }
        drop(slot);
        let Ok(fd) = self.source.open_dir(&rel) else {
            return;
        };
        let Ok(entries) = list_dir(&fd) else { return };
        for (name, kind) in entries {
            let kind = kind.or_else(|| {
                crate::entry::stat_at(std::os::fd::AsFd::as_fd(&fd), &name)
                    .ok()
                    .flatten()
                    .map(|m| m.kind)
            });
            let child = rel.join(&name);
            if kind == Some(Kind::Dir) && !self.source.excludes.is_excluded(&child) {
                scope.spawn(move |scope| self.capture_dir(scope, child, report));
            }
        }
    }
}

impl Backend for InotifyBackend {
    fn name(&self) -> &'static str {
        "inotify"
    }

    fn capture(&self, subtree: &Path) -> io::Result<CaptureReport> {
        let report = Mutex::new((CaptureReport::default(), None));
        rayon::scope(|scope| self.capture_dir(scope, subtree.to_path_buf(), &report));
        let (report, err) = report.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(err) = err {
            return Err(err);
        }
        if report.unwatched > 0 {
            crate::error!(
                "{} of {} directories are not watched: {}",
                report.unwatched,
                report.dirs,
                watch_limit_message(report.dirs as usize)
            );
        } else if subtree.as_os_str().is_empty() {
            // A full capture that got every directory ends a degraded period.
            self.limit_hit.store(false, Relaxed);
            self.stats.watch_limit_hit.store(false, Relaxed);
        }
        self.unwatched.store(report.unwatched, Relaxed);
        Ok(report)
    }

    fn run(&self, sink: &dyn Sink) -> io::Result<()> {
        let mut buf = vec![0u8; READ_BUFFER];
        let mut unpaired: Vec<Unpaired> = Vec::new();
        let mut changes: Vec<Change> = Vec::with_capacity(4096);
        loop {
            let timeout = unpaired
                .iter()
                .map(|u| u.deadline.saturating_duration_since(Instant::now()))
                .min();
            let wakeup = self.poller.wait(timeout)?;
            if self.drain(&mut buf, &mut unpaired, &mut changes, sink)? > 0 {
                // Events came: let the next ones gather for a moment, so a storm is read in
                // large batches instead of one or two events per wakeup (the first event of a
                // quiet period is still read at once).
                std::thread::sleep(super::COALESCE);
            }
            let now = Instant::now();
            if unpaired.iter().any(|u| u.deadline <= now) {
                let mut table = self.table();
                let (expired, kept): (Vec<_>, Vec<_>) =
                    unpaired.drain(..).partition(|u| u.deadline <= now);
                unpaired = kept;
                for from in expired {
                    self.moved_away(from, &mut table, &mut changes);
                }
                drop(table);
                self.release_barriers(&unpaired, &mut changes);
                sink.push(&mut changes);
            }
            if wakeup.woken && self.stopping.load(Relaxed) {
                return Ok(());
            }
        }
    }

    fn stop(&self) {
        self.stopping.store(true, Relaxed);
        if let Err(err) = self.poller.waker().and_then(|w| w.wake()) {
            crate::error!("cannot wake the inotify reader: {err}");
        }
    }

    fn degraded(&self) -> bool {
        self.limit_hit.load(Relaxed)
    }
}

/// A paired rename re-keys the moves still waiting for their other half below its old
/// name: they happened before it, and the replica's copy of what they left behind moves
/// with the rename (`mv a/x /elsewhere; mv a b` must delete the replica's `b/x`). That
/// includes a directory moved away whose name was reused and then renamed (`mv d0 /out;
/// mkdir d0; mv d0 f5`): the replica's `d0` still held the old entries, now in `f5`, which
/// the moved-away compare then cleans.
fn rekey_unpaired(unpaired: &mut [Unpaired], from: &Path, to: &Path) {
    for u in unpaired.iter_mut().filter(|u| u.path.starts_with(from)) {
        u.path = crate::change::rekey(&u.path, from, to);
    }
}

/// The watch-limit message: what happened, the numbers, and the exact command to fix it.
pub fn watch_limit_message(dirs: usize) -> String {
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let suggested = (dirs as u64 * 2).max(524_288);
    format!(
        "inotify watch limit reached: the source needs at least {dirs} watches (one per directory) \
         and fs.inotify.max_user_watches is {limit}, shared by all processes of this user. \
         Raise it with: sysctl -w fs.inotify.max_user_watches={suggested} \
         (persist: echo fs.inotify.max_user_watches={suggested} > /etc/sysctl.d/90-syncer.conf). \
         Until then unwatched directories are covered by periodic reconciles (--rescan-interval)."
    )
}
