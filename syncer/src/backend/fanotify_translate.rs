//! fanotify events (parsed `Event`s with directory handles and names) in, `Change`s out, with
//! the directory-handle table kept current: handle → path through the `HandleMap`, misses
//! resolved by `open_by_handle_at` + `/proc/self/fd`, handles outside SOURCE (or in excluded
//! subtrees) remembered in the bounded `HandleSet` so foreign traffic on the same filesystem
//! costs two hash lookups.
//!
//! Consistency rule: entries are only *added* from a resolution of the present (the capture
//! walk, `open_by_handle_at`); events may rename or drop entries. A directory rename moves the
//! map's subtree only when the event's own FID (FAN_REPORT_TARGET_FID) confirms the map still
//! had that directory at the old name; otherwise the ambiguous entries are dropped, which is
//! always safe (they are resolved again on their next event).
//!
//! Names a write was not reported under: the kernel reports a write under the name it was made
//! through, and the link index marks a file's other names only once it has seen them. A name
//! made, written through and removed before the syncer looks (`ln a b; echo x >> b; rm b`)
//! leaves `a` changed and unmarked. The handles of files written lately are kept in a bounded
//! set; when one of them loses a name, its own handle (FAN_REPORT_TARGET_FID) still opens while
//! the file lives on, and says which names are left. The same handle serves a write or chmod
//! through a name outside SOURCE or excluded (or moved out before its event was read, so the
//! event resolves outside): the file's names the link index holds are marked.
//!
//! Merged renames: the kernel folds an event into an identical one still queued, so an object
//! renamed back and forth before the reader catches up loses renames from the stream (the
//! `RenameWindow` explains when). When an object is renamed a second time in one window, both
//! ends of that rename are compared again after it, and a directory's map entries are dropped
//! so its next events resolve from the present. Those marks are applied after the read that
//! returned the first rename, which is after any rename merged into it, so they see its effect.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Sink;
use crate::backend::handles::{HandleMap, HandleSet, RenameWindow};
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
/// Files written lately, by handle (see the module comment): past it the oldest are dropped,
/// and a name of one of those removed at once is the only case left unmarked.
const WRITTEN_CAPACITY: usize = 65_536;
/// Files outside SOURCE found with a single link, by handle: their writes cost nothing more.
const SINGLE_CAPACITY: usize = 16_384;
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
    outside: HandleSet,
    /// Non-directories written (or chmodded) lately through some name.
    written: HandleSet,
    /// Files changed outside SOURCE that had one link when looked at: no name inside. A link
    /// made or moved into SOURCE clears it (see `gained_a_name`).
    single: HandleSet,
    window: RenameWindow,
    /// Unexpected resolution errors are logged once, not per event.
    warned: bool,
}

impl Default for Resolver {
    fn default() -> Self {
        Self {
            map: HandleMap::new(),
            outside: HandleSet::new(OUTSIDE_CAPACITY),
            written: HandleSet::new(WRITTEN_CAPACITY),
            single: HandleSet::new(SINGLE_CAPACITY),
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
        self.written.clear();
        self.single.clear();
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
            if !is_dir {
                self.changed_elsewhere(ev.mask, ev.record(InfoKind::Fid));
            }
            return;
        };
        if rec.name.is_empty() || rec.name == b"." {
            self.on_directory_itself(ev.mask, dir, rec.name.is_empty() && !is_dir);
            return;
        }
        let path = dir.join(OsStr::from_bytes(rec.name));
        if crate::barrier::is_cookie(&path) {
            if ev.mask & FAN_CREATE != 0 {
                let cookie = OsStr::from_bytes(rec.name).to_os_string();
                self.changes.push(Change::Barrier(cookie));
            }
            return;
        }
        if self.source.excludes.is_excluded(&path) {
            if !is_dir {
                self.changed_elsewhere(ev.mask, ev.record(InfoKind::Fid));
            }
            return;
        }
        if !is_dir && let Some(fid) = ev.record(InfoKind::Fid) {
            self.note_written_or_removed(ev.mask, &path, &fid);
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
            self.gained_a_name();
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

    /// Keeps the handles of written files; when one of them loses the name `path`, marks the
    /// names it is left with. One event can carry both (the kernel merges identical events).
    fn note_written_or_removed(&mut self, mask: u64, path: &Path, fid: &InfoRecord<'_>) {
        let wrote = mask & (FAN_CLOSE_WRITE | FAN_MODIFY | FAN_ATTRIB) != 0;
        let written = &mut self.resolver.written;
        if mask & FAN_DELETE == 0 {
            if wrote {
                written.insert(fid.handle_type, fid.handle);
            }
            return;
        }
        if written.remove(fid.handle_type, fid.handle) || wrote {
            self.mark_names_left(path, fid);
        }
    }

    /// A written file lost the name `path`: if it lives on, its other names changed too. With
    /// no name known for it, the whole tree is compared.
    fn mark_names_left(&mut self, path: &Path, fid: &InfoRecord<'_>) {
        let Some(names) = self.live_names(fid, 1, Some(path)) else {
            return;
        };
        if names.is_empty() {
            crate::debug!(
                "{path:?} was removed from a file written through it that lives on under names not known: comparing the whole tree"
            );
            self.sink.rescan(PathBuf::new(), false);
        }
        self.mark_changed(names);
    }

    /// A file was written or chmodded through a name outside SOURCE or excluded (or one
    /// moved out since: its event resolves outside): its names under SOURCE changed too.
    /// Only while the link index holds names, so foreign traffic costs nothing more.
    fn changed_elsewhere(&mut self, mask: u64, fid: Option<InfoRecord<'_>>) {
        if mask & (FAN_CLOSE_WRITE | FAN_ATTRIB) == 0 || self.source.links.lock().is_empty() {
            return;
        }
        let Some(fid) = fid else { return };
        if self.resolver.single.contains(fid.handle_type, fid.handle) {
            return;
        }
        let root = self.source.root.as_fd();
        let links = open_by_handle_at(root, fid.handle_type, fid.handle, libc::O_PATH)
            .and_then(|fd| File::from(fd).metadata());
        if links.is_ok_and(|meta| meta.nlink() < 2) {
            self.resolver.single.insert(fid.handle_type, fid.handle);
            return;
        }
        if let Some(names) = self.live_names(&fid, 2, None) {
            self.mark_changed(names);
        }
    }

    /// A file may have gained a name inside SOURCE (a link made, a file or directory moved
    /// in): files known to have one link may have more now.
    fn gained_a_name(&mut self) {
        if !self.resolver.single.is_empty() {
            self.resolver.single.clear();
        }
    }

    /// The names under SOURCE (but `except`) of the regular file behind `fid` when it lives
    /// on with at least `min_links` links: those the link index holds, plus the name the
    /// kernel has cached for it when that lies inside. Its handle opens while it has a name
    /// (ESTALE once the last one is gone: None). `Some(empty)`: no name is known at all.
    fn live_names(
        &self,
        fid: &InfoRecord<'_>,
        min_links: u64,
        except: Option<&Path>,
    ) -> Option<Vec<PathBuf>> {
        let root = self.source.root.as_fd();
        let fd = open_by_handle_at(root, fid.handle_type, fid.handle, libc::O_PATH).ok()?;
        let file = File::from(fd);
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.nlink() < min_links {
            return None;
        }
        let mut names = self.source.links.lock().names((meta.dev(), meta.ino()));
        // A disconnected handle reads back as a path that is not the file's.
        let alias = fd_path(file.as_fd()).ok().filter(|abs| {
            std::fs::symlink_metadata(abs)
                .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
        });
        if let Some(rel) = alias
            .as_deref()
            .and_then(|a| a.strip_prefix(&self.source.abs).ok())
            && !self.source.excludes.covers(rel)
        {
            names.push(rel.to_path_buf());
        }
        names.retain(|name| Some(name.as_path()) != except);
        names.sort();
        names.dedup();
        // Known but outside: no name inside to mark, and none unknown to look for.
        if names.is_empty() && alias.is_some() {
            return None;
        }
        Some(names)
    }

    fn mark_changed(&mut self, names: Vec<PathBuf>) {
        for name in names {
            self.changes.push(Change::Mark(name, Mark::Changed));
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
                self.gained_a_name();
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
        self.gained_a_name();
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
