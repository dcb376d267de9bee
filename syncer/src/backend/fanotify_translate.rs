//! fanotify events (parsed `Event`s with directory handles and names) in, `Change`s out, with
//! the directory-handle table kept current: handle → path through the `HandleMap`, misses
//! resolved by `open_by_handle_at` + `/proc/self/fd`, handles outside SOURCE (or in excluded
//! subtrees) remembered in the bounded `OutsideCache` so foreign traffic on the same filesystem
//! costs two hash lookups.
//!
//! Consistency rule: entries are only *added* from a resolution of the present (the capture
//! walk, `open_by_handle_at`); events may rename or drop entries. A directory rename moves the
//! map's subtree only when the event's own FID (FAN_REPORT_TARGET_FID) confirms the map still
//! had that directory at the old name; otherwise the ambiguous entries are dropped, which is
//! always safe (they are resolved again on their next event).
//!
//! Merged renames: the kernel folds an event into an identical one still queued, so an object
//! renamed back and forth before the reader catches up loses renames from the stream (the
//! `RenameWindow` explains when). When an object is renamed a second time in one window, both
//! ends of that rename are compared again after it, and a directory's map entries are dropped
//! so its next events resolve from the present. Those marks are applied after the read that
//! returned the first rename, which is after any rename merged into it, so they see its effect.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::Sink;
use crate::backend::handles::{HandleMap, OutsideCache, RenameWindow};
use crate::change::{COMPARE_WHOLE, Change, Mark, Rename};
use crate::entry::{Kind, list_dir, stat_at};
use crate::event::fanotify::{Event, InfoKind, InfoRecord};
use crate::source::SourceTree;
use crate::sys::fanotify::{
    FAN_ATTRIB, FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE, FAN_DELETE_SELF, FAN_MODIFY,
    FAN_MOVE_SELF, FAN_MOVED_FROM, FAN_MOVED_TO, FAN_ONDIR, FAN_RENAME, fd_path, is_stale,
    open_by_handle_at,
};

/// Outside handles remembered. A handle key is at most 132 bytes, so this bounds the cache
/// near 10 MiB in the worst case; a busy build tree elsewhere on the filesystem fits easily.
const OUTSIDE_CAPACITY: usize = 65_536;
/// Objects tracked per rename window; past it every rename counts as a possible repeat (one
/// more mark per rename), so a storm of renames costs bounded memory.
const WINDOW_CAPACITY: usize = 65_536;

/// Where a directory handle points.
enum Place {
    /// Inside SOURCE, at this relative path.
    Inside(PathBuf),
    /// Outside SOURCE, or in an excluded subtree.
    Outside,
    /// Already removed (ESTALE, or unlinked since): its parent's event settles it.
    Gone,
}

/// The directory-handle table plus the negative cache.
pub struct Resolver {
    pub map: HandleMap,
    outside: OutsideCache,
    window: RenameWindow,
    /// Unexpected resolution errors are logged once, not per event.
    warned: bool,
}

impl Default for Resolver {
    fn default() -> Self {
        Self {
            map: HandleMap::new(),
            outside: OutsideCache::new(OUTSIDE_CAPACITY),
            window: RenameWindow::new(WINDOW_CAPACITY),
            warned: false,
        }
    }
}

impl Resolver {
    /// After an overflow events were lost, renames among them: forget everything.
    pub fn clear(&mut self) {
        self.map = HandleMap::new();
        self.outside.clear();
        self.window.reset();
    }

    /// The reader found the queue empty: events read from now on were never queued together
    /// with the ones read before, so none of them was merged into an earlier one.
    pub fn queue_empty(&mut self) {
        self.window.reset();
    }

    fn place(&mut self, source: &SourceTree, rec: &InfoRecord<'_>) -> Place {
        if let Some(rel) = self.map.get(rec.handle_type, rec.handle) {
            return Place::Inside(rel.to_path_buf());
        }
        if self.outside.contains(rec.handle_type, rec.handle) {
            return Place::Outside;
        }
        match locate(source, rec.handle_type, rec.handle) {
            Ok(Some(rel)) => {
                self.map.insert(rec.handle_type, rec.handle, rel.clone());
                Place::Inside(rel)
            }
            Ok(None) => {
                self.outside.insert(rec.handle_type, rec.handle);
                Place::Outside
            }
            Err(err) if is_stale(&err) || err.kind() == io::ErrorKind::NotFound => Place::Gone,
            Err(err) => {
                if !self.warned {
                    self.warned = true;
                    crate::warn!(
                        "cannot resolve a directory handle ({err}); its events are dropped until the next reconcile (is CAP_DAC_READ_SEARCH missing?)"
                    );
                }
                Place::Gone
            }
        }
    }
}

/// The present path of a directory handle relative to SOURCE; None when it lies outside SOURCE
/// or in an excluded subtree. The SOURCE root fd serves as the mount fd (same filesystem).
fn locate(source: &SourceTree, handle_type: i32, handle: &[u8]) -> io::Result<Option<PathBuf>> {
    let fd = open_by_handle_at(source.root.as_fd(), handle_type, handle, libc::O_PATH)?;
    let abs = fd_path(fd.as_fd())?;
    let Ok(rel) = abs.strip_prefix(&source.abs) else {
        return Ok(None);
    };
    if source.excludes.covers(rel) {
        return Ok(None);
    }
    Ok(Some(rel.to_path_buf()))
}

/// The first half of a move in the MOVED_FROM/MOVED_TO fallback (kernels before 5.17).
struct Held {
    from: Option<PathBuf>,
    is_dir: bool,
}

/// Translates the events of one read buffer.
pub struct Translator<'a> {
    pub source: &'a SourceTree,
    pub resolver: &'a mut Resolver,
    pub changes: &'a mut Vec<Change>,
    pub sink: &'a dyn Sink,
    held: Option<Held>,
}

impl<'a> Translator<'a> {
    pub fn new(
        source: &'a SourceTree,
        resolver: &'a mut Resolver,
        changes: &'a mut Vec<Change>,
        sink: &'a dyn Sink,
    ) -> Self {
        Self {
            source,
            resolver,
            changes,
            sink,
            held: None,
        }
    }

    /// The entry an info record names, relative to SOURCE; None when outside, gone or
    /// excluded.
    fn entry(&mut self, rec: Option<InfoRecord<'_>>) -> Option<PathBuf> {
        let rec = rec?;
        let Place::Inside(dir) = self.resolver.place(self.source, &rec) else {
            return None;
        };
        let path = dir.join(OsStr::from_bytes(rec.name));
        (!self.source.excludes.is_excluded(&path)).then_some(path)
    }

    /// Translates one event (not an overflow: the caller handles those).
    pub fn event(&mut self, ev: &Event<'_>) {
        let is_dir = ev.mask & FAN_ONDIR != 0;
        if ev.mask & FAN_RENAME != 0 {
            self.flush();
            let from = self.entry(ev.record(InfoKind::OldDfidName));
            let to = self.entry(ev.record(InfoKind::NewDfidName));
            self.moved(from, to, is_dir, ev.record(InfoKind::Fid));
            return;
        }
        if ev.mask & FAN_MOVED_TO != 0 {
            // Fallback pairing without a cookie: a MOVED_TO right after a MOVED_FROM is its
            // other half (fsnotify_move queues them back to back); anything else is unpaired.
            let from = self.held.take().filter(|h| h.is_dir == is_dir);
            let to = self.entry(ev.record(InfoKind::DfidName));
            match from {
                Some(held) => self.moved(held.from, to, is_dir, None),
                None => self.moved(None, to, is_dir, None),
            }
            return;
        }
        self.flush();
        if ev.mask & FAN_MOVED_FROM != 0 {
            let from = self.entry(ev.record(InfoKind::DfidName));
            self.held = Some(Held { from, is_dir });
            return;
        }
        let Some(rec) = ev
            .record(InfoKind::DfidName)
            .or_else(|| ev.record(InfoKind::Dfid))
        else {
            return;
        };
        let Place::Inside(dir) = self.resolver.place(self.source, &rec) else {
            return;
        };
        if rec.name.is_empty() || rec.name == b"." {
            self.on_directory_itself(ev.mask, dir, rec.name.is_empty() && !is_dir);
            return;
        }
        let path = dir.join(OsStr::from_bytes(rec.name));
        if self.source.excludes.is_excluded(&path) {
            return;
        }
        if is_dir && ev.mask & FAN_DELETE != 0 {
            // The events of its entries name it by handle: unless the map had it here, they
            // resolved late (ESTALE: dropped) or to another name, so its entries may still be
            // in the replica, under a name a new directory may take at once (`rm -rf d;
            // mkdir d`). Compare it whole then; a mapped directory costs nothing more.
            let mapped_here = ev.record(InfoKind::Fid).is_some_and(|fid| {
                self.resolver.map.get(fid.handle_type, fid.handle) == Some(&path)
            });
            self.resolver.map.remove_prefix(&path);
            if !mapped_here {
                self.changes.push(Change::Mark(path, COMPARE_WHOLE));
                return;
            }
        }
        if ev.mask & FAN_CREATE != 0 && !is_dir {
            // Due at once, as any create here: a write that follows has its own close event.
            let created = Mark::Created {
                wait_for_close: false,
            };
            self.changes.push(Change::Mark(path, created));
        } else if ev.mask & (FAN_CREATE | FAN_CLOSE_WRITE | FAN_ATTRIB | FAN_DELETE) != 0 {
            self.changes.push(Change::Mark(path, Mark::Changed));
        } else if ev.mask & FAN_MODIFY != 0 {
            self.changes.push(Change::Mark(path, Mark::Modified));
        }
    }

    /// An event whose record names a directory and no entry: "." (the directory itself), or
    /// no name at all for an entry the kernel could not name (`unnamed_entry`).
    fn on_directory_itself(&mut self, mask: u64, dir: PathBuf, unnamed_entry: bool) {
        if unnamed_entry {
            // Some entry of `dir` changed but the kernel had no name for it: compare the
            // directory (mtime or size differ after a write, so the quick check finds it).
            self.sink.rescan(dir, false);
        } else if mask & (FAN_DELETE_SELF | FAN_MOVE_SELF) != 0 && dir.as_os_str().is_empty() {
            crate::error!(
                "the source directory {:?} itself was deleted or moved away; restart the syncer on its new location",
                self.source.abs
            );
        } else if mask & FAN_ATTRIB != 0 {
            self.changes.push(Change::Mark(dir, Mark::Changed));
        }
    }

    /// A rename, seen as where it came from and where it went (None: outside SOURCE or
    /// excluded). `fid` is the moved object's own handle when the group reports it.
    fn moved(
        &mut self,
        from: Option<PathBuf>,
        to: Option<PathBuf>,
        is_dir: bool,
        fid: Option<InfoRecord<'_>>,
    ) {
        let repeat = (from.is_some() || to.is_some())
            && self
                .resolver
                .window
                .renamed(fid.as_ref().map(|f| (f.handle_type, f.handle)));
        let ends = repeat.then(|| (from.clone(), to.clone()));
        match (from, to) {
            (Some(from), Some(to)) => {
                if is_dir {
                    self.rename_in_map(&from, &to, fid.as_ref());
                }
                self.changes
                    .push(Change::Rename(Rename { from, to, is_dir }));
            }
            (Some(from), None) => {
                // Moved out (or into an excluded name): a delete. A directory's name is
                // compared whole: a new directory may stand there already, and the replica's
                // copy still holds the old one's entries.
                if is_dir {
                    self.resolver.map.remove_prefix(&from);
                    self.changes.push(Change::Mark(from, COMPARE_WHOLE));
                } else {
                    self.changes.push(Change::Mark(from, Mark::Changed));
                }
            }
            (None, Some(to)) => {
                // Moved in: its handles (and its descendants') may be cached as outside. A
                // directory is compared whole: it may replace one the replica still has.
                if is_dir {
                    self.resolver.outside.clear();
                    self.resolver.map.remove_prefix(&to);
                    mark_subtree(self.source, &to, self.changes);
                    self.changes.push(Change::Mark(to, COMPARE_WHOLE));
                } else {
                    self.changes.push(Change::Mark(to, Mark::Changed));
                }
            }
            (None, None) => {}
        }
        if let Some((from, to)) = ends {
            self.after_repeated_rename(from, to, is_dir, fid.as_ref());
        }
    }

    /// An object renamed a second time in one window: a rename identical to an earlier one
    /// (a move within SOURCE, in or out) may have been merged away, so the stream's idea of
    /// where it is cannot be trusted. Compares both ends again (whole subtrees for a
    /// directory; the pending set already marks `to`) and forgets what the map and the
    /// outside cache knew of the directory, so its next events resolve from the present.
    fn after_repeated_rename(
        &mut self,
        from: Option<PathBuf>,
        to: Option<PathBuf>,
        is_dir: bool,
        fid: Option<&InfoRecord<'_>>,
    ) {
        if !is_dir {
            if let Some(from) = from {
                self.changes.push(Change::Mark(from, Mark::Changed));
            }
            return;
        }
        // A lost move back in would leave its handles cached as outside.
        self.resolver.outside.clear();
        let map = &mut self.resolver.map;
        if let Some(to) = &to {
            map.remove_prefix(to);
        }
        if let Some(fid) = fid {
            map.remove(fid.handle_type, fid.handle);
        }
        for end in [from, to].into_iter().flatten() {
            self.changes.push(Change::Mark(end, COMPARE_WHOLE));
        }
    }

    fn rename_in_map(&mut self, from: &Path, to: &Path, fid: Option<&InfoRecord<'_>>) {
        let map = &mut self.resolver.map;
        let confirmed = match fid {
            None => true,
            Some(fid) => map.get(fid.handle_type, fid.handle) == Some(from),
        };
        if confirmed {
            map.rename_prefix(from, to);
        } else {
            map.remove_prefix(from);
            map.remove_prefix(to);
            if let Some(fid) = fid {
                map.remove(fid.handle_type, fid.handle);
            }
        }
    }

    /// Settles a MOVED_FROM whose MOVED_TO did not follow: moved out of SOURCE.
    pub fn flush(&mut self) {
        if let Some(held) = self.held.take() {
            self.moved(held.from, None, held.is_dir, None);
        }
    }
}

/// Marks every entry below the directory `rel` (moved in from outside SOURCE), skipping
/// excluded paths. Entries created meanwhile have their own events, so a race only marks twice.
fn mark_subtree(source: &SourceTree, rel: &Path, changes: &mut Vec<Change>) {
    let mut stack = vec![rel.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(fd) = source.open_dir(&dir) else {
            continue;
        };
        let Ok(entries) = list_dir(&fd) else { continue };
        for (name, kind) in entries {
            let child = dir.join(&name);
            if source.excludes.is_excluded(&child) {
                continue;
            }
            let kind = kind.or_else(|| stat_at(fd.as_fd(), &name).ok().flatten().map(|m| m.kind));
            if kind == Some(Kind::Dir) {
                stack.push(child.clone());
            }
            changes.push(Change::Mark(child, Mark::Changed));
        }
    }
}
