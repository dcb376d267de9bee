//! Directory file handles (handle_type + bytes) in, directory paths relative to SOURCE out:
//! the fanotify backend's table, plus a bounded negative cache of handles known to lie
//! outside SOURCE, and the window of recently renamed objects (any handle) that finds renames
//! the kernel may have merged away. Pure: no syscalls; the backend fills it from `name_to_handle_at` during the
//! initial scan and from `open_by_handle_at` on a miss, and keeps it current from events.
//!
//! A handle survives renames (it names the inode), so a directory rename only rewrites the
//! paths of that directory and its descendants. Those form one contiguous range of a
//! `BTreeMap<PathBuf, _>`, because `Path` orders component by component ("a/b" < "a/b/c" <
//! "a/b-c"), so a rename or removal costs O(k log n) for k affected directories.
//!
//! Keys are `handle_type` (4 bytes, native order) followed by the handle bytes. Lookups build
//! the key on the stack (handles are at most MAX_HANDLE_SZ = 128 bytes,
//! include/linux/exportfs.h), so the hot path does not allocate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// MAX_HANDLE_SZ (include/linux/exportfs.h).
pub const MAX_HANDLE_BYTES: usize = 128;

/// A lookup key built without allocating for handles up to MAX_HANDLE_BYTES.
struct StackKey {
    buf: [u8; 4 + MAX_HANDLE_BYTES],
    len: usize,
}

impl StackKey {
    /// `None` for a handle longer than any the kernel produces: it cannot be in a table.
    fn new(handle_type: i32, handle: &[u8]) -> Option<Self> {
        if handle.len() > MAX_HANDLE_BYTES {
            return None;
        }
        let mut buf = [0u8; 4 + MAX_HANDLE_BYTES];
        buf[..4].copy_from_slice(&handle_type.to_ne_bytes());
        buf[4..4 + handle.len()].copy_from_slice(handle);
        Some(Self {
            buf,
            len: 4 + handle.len(),
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn owned_key(handle_type: i32, handle: &[u8]) -> Box<[u8]> {
    let mut key = Vec::with_capacity(4 + handle.len());
    key.extend_from_slice(&handle_type.to_ne_bytes());
    key.extend_from_slice(handle);
    key.into_boxed_slice()
}

/// Directory handle → path relative to SOURCE ("" is SOURCE itself), and back.
#[derive(Debug, Default)]
pub struct HandleMap {
    by_handle: HashMap<Box<[u8]>, PathBuf>,
    by_path: BTreeMap<PathBuf, Box<[u8]>>,
}

impl HandleMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_handle.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_handle.is_empty()
    }

    /// Records that the directory with this handle is at `rel`. Replaces an older entry for
    /// the same handle (moved) or for the same path (the old directory was replaced).
    pub fn insert(&mut self, handle_type: i32, handle: &[u8], rel: PathBuf) {
        let key = owned_key(handle_type, handle);
        if let Some(old_key) = self.by_path.remove(&rel) {
            self.by_handle.remove(&old_key);
        }
        if let Some(old_path) = self.by_handle.insert(key.clone(), rel.clone()) {
            self.by_path.remove(&old_path);
        }
        self.by_path.insert(rel, key);
    }

    /// The path of the directory with this handle, if known. Does not allocate.
    pub fn get(&self, handle_type: i32, handle: &[u8]) -> Option<&Path> {
        let key = StackKey::new(handle_type, handle)?;
        self.by_handle.get(key.as_bytes()).map(PathBuf::as_path)
    }

    /// The handle (type, bytes) recorded for `rel`, if any.
    pub fn handle_of(&self, rel: &Path) -> Option<(i32, &[u8])> {
        let key = self.by_path.get(rel)?;
        let handle_type = i32::from_ne_bytes([key[0], key[1], key[2], key[3]]);
        Some((handle_type, &key[4..]))
    }

    /// Forgets one directory by handle; returns its path. Descendants are kept (use
    /// [`remove_prefix`](Self::remove_prefix) for a subtree).
    pub fn remove(&mut self, handle_type: i32, handle: &[u8]) -> Option<PathBuf> {
        let key = StackKey::new(handle_type, handle)?;
        let path = self.by_handle.remove(key.as_bytes())?;
        self.by_path.remove(&path);
        Some(path)
    }

    /// The paths equal to `prefix` or beneath it, in order.
    fn subtree(&self, prefix: &Path) -> Vec<PathBuf> {
        self.by_path
            .range::<Path, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(path, _)| path.starts_with(prefix))
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Forgets `prefix` and every directory beneath it (deleted, or moved out of SOURCE).
    /// Returns how many entries were removed.
    pub fn remove_prefix(&mut self, prefix: &Path) -> usize {
        let doomed = self.subtree(prefix);
        for path in &doomed {
            if let Some(key) = self.by_path.remove(path) {
                self.by_handle.remove(&key);
            }
        }
        doomed.len()
    }

    /// A directory moved from `from` to `to`: rewrites its path and every descendant's. A
    /// directory previously at `to` was replaced (rename(2) over an empty directory) and is
    /// forgotten. Returns how many entries moved.
    pub fn rename_prefix(&mut self, from: &Path, to: &Path) -> usize {
        if from == to {
            return 0;
        }
        let moving = self.subtree(from);
        if moving.is_empty() {
            return 0;
        }
        // rename(2) refuses to move a directory beneath itself (EINVAL), so `to` is not inside
        // `from` and removing the replaced subtree cannot touch a moving entry.
        self.remove_prefix(to);
        for old in &moving {
            let Some(key) = self.by_path.remove(old) else {
                continue;
            };
            let new = match old.strip_prefix(from) {
                Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
                Ok(rest) => to.join(rest),
                Err(_) => continue,
            };
            self.by_handle.insert(key.clone(), new.clone());
            self.by_path.insert(new, key);
        }
        moving.len()
    }
}

/// A bounded set of file handles: the directories known to lie outside SOURCE (or in an
/// excluded subtree), so unrelated traffic on the same filesystem is dropped without
/// `open_by_handle_at`, and the files written lately (see `Resolver::written`).
///
/// Two generations: inserts go to `current`; when it holds half the capacity, it becomes
/// `previous` and the old `previous` is dropped. A hit in `previous` is promoted, so handles in
/// steady use stay. Memory is bounded by `capacity` entries.
///
/// A handle outside can come inside: a directory moved into SOURCE from elsewhere on the same
/// filesystem keeps its handle and its descendants' handles. The backend must call
/// [`clear`](Self::clear) on its outside set when a rename's old parent is not in the
/// [`HandleMap`].
#[derive(Debug)]
pub struct HandleSet {
    half: usize,
    current: HashSet<Box<[u8]>>,
    previous: HashSet<Box<[u8]>>,
}

impl HandleSet {
    /// A set holding at most `capacity` handles (at least 2).
    pub fn new(capacity: usize) -> Self {
        Self {
            half: (capacity / 2).max(1),
            current: HashSet::new(),
            previous: HashSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the set holds the handle. Allocates only to promote an older hit.
    pub fn contains(&mut self, handle_type: i32, handle: &[u8]) -> bool {
        let Some(key) = StackKey::new(handle_type, handle) else {
            return false;
        };
        if self.current.contains(key.as_bytes()) {
            return true;
        }
        match self.previous.take(key.as_bytes()) {
            Some(owned) => {
                self.insert_key(owned);
                true
            }
            None => false,
        }
    }

    /// Adds the handle (an oversized one is ignored: no kernel handle is).
    /// Allocates only for a handle the set does not hold yet.
    pub fn insert(&mut self, handle_type: i32, handle: &[u8]) {
        if StackKey::new(handle_type, handle).is_none() || self.contains(handle_type, handle) {
            return;
        }
        self.insert_key(owned_key(handle_type, handle));
    }

    fn insert_key(&mut self, key: Box<[u8]>) {
        if self.current.len() >= self.half {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key);
    }

    /// Forgets one handle; true when the set held it.
    pub fn remove(&mut self, handle_type: i32, handle: &[u8]) -> bool {
        let Some(key) = StackKey::new(handle_type, handle) else {
            return false;
        };
        let current = self.current.remove(key.as_bytes());
        self.previous.remove(key.as_bytes()) || current
    }

    /// Forgets everything (outside: a directory moved in may have cached descendants).
    pub fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }
}

/// The objects (by their own file handle) renamed since the event queue was last found empty.
///
/// fanotify merges a new event into an identical one still queued, FAN_RENAME included: an
/// object renamed a→b, b→a, a→b before the reader has read the first rename shows up as
/// a→b, b→a only, and the replica ends at `a` while the source has `b`. Such a merge needs
/// the object renamed at least twice while its first rename sat in the queue; events that sat
/// in the queue together are read between two moments it was empty, so an object renamed a
/// second time in that window is the only case where a rename may be missing.
#[derive(Debug)]
pub struct RenameWindow {
    capacity: usize,
    seen: HashSet<Box<[u8]>>,
    /// More objects than `capacity` renamed in this window: every rename counts as a repeat.
    saturated: bool,
}

impl RenameWindow {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashSet::new(),
            saturated: false,
        }
    }

    /// Records a rename of the object with this handle (None: the group does not report it).
    /// True when an identical rename of it may have been merged away: it was renamed before in
    /// this window, its handle is unknown, or the window is full.
    pub fn renamed(&mut self, handle: Option<(i32, &[u8])>) -> bool {
        let Some((handle_type, handle)) = handle else {
            return true;
        };
        if self.saturated {
            return true;
        }
        let Some(key) = StackKey::new(handle_type, handle) else {
            return true;
        };
        if self.seen.contains(key.as_bytes()) {
            return true;
        }
        if self.seen.len() >= self.capacity {
            self.saturated = true;
            return true;
        }
        self.seen.insert(owned_key(handle_type, handle));
        false
    }

    /// The queue was found empty: no later event can merge into one read before.
    pub fn reset(&mut self) {
        self.seen.clear();
        self.saturated = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> [u8; 8] {
        [n, 0, 0, 0, n, n, 0, 1]
    }

    fn map_of(paths: &[(u8, &str)]) -> HandleMap {
        let mut map = HandleMap::new();
        for &(n, path) in paths {
            map.insert(1, &h(n), PathBuf::from(path));
        }
        map
    }

    fn path_of(map: &HandleMap, n: u8) -> Option<&str> {
        map.get(1, &h(n)).map(|p| p.to_str().unwrap())
    }

    #[test]
    fn insert_get_and_handle_type_matters() {
        let map = map_of(&[(0, ""), (1, "a"), (2, "a/b")]);
        assert_eq!(path_of(&map, 0), Some(""));
        assert_eq!(path_of(&map, 2), Some("a/b"));
        assert_eq!(map.get(2, &h(2)), None);
        assert_eq!(map.handle_of(Path::new("a/b")), Some((1, &h(2)[..])));
        assert_eq!(map.get(1, &[0u8; 200]), None);
    }

    #[test]
    fn reinsert_replaces_by_handle_and_by_path() {
        let mut map = map_of(&[(1, "a"), (2, "b")]);
        map.insert(1, &h(1), PathBuf::from("c")); // same handle, new place
        assert_eq!(map.handle_of(Path::new("a")), None);
        map.insert(3, &h(3), PathBuf::from("b")); // new directory at an old path
        assert_eq!(path_of(&map, 2), None);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn rename_moves_exactly_the_subtree() {
        let mut map = map_of(&[
            (1, "a"),
            (2, "a/b"),
            (3, "a/b/c"),
            (4, "a/b c"),
            (5, "a/b-c"),
            (6, "a/b.c"),
            (7, "a/b0"),
            (8, "a/b/c/d"),
            (9, "z"),
        ]);
        assert_eq!(map.rename_prefix(Path::new("a/b"), Path::new("z/y")), 3);
        assert_eq!(path_of(&map, 2), Some("z/y"));
        assert_eq!(path_of(&map, 3), Some("z/y/c"));
        assert_eq!(path_of(&map, 8), Some("z/y/c/d"));
        for (n, same) in [
            (1, "a"),
            (4, "a/b c"),
            (5, "a/b-c"),
            (6, "a/b.c"),
            (7, "a/b0"),
        ] {
            assert_eq!(path_of(&map, n), Some(same));
        }
        assert_eq!(map.handle_of(Path::new("a/b/c")), None);
        assert_eq!(map.handle_of(Path::new("z/y/c")), Some((1, &h(3)[..])));
        assert_eq!(map.len(), 9);
    }

    #[test]
    fn rename_over_an_empty_directory_forgets_it() {
        let mut map = map_of(&[(1, "a"), (2, "a/x"), (3, "b")]);
        assert_eq!(map.rename_prefix(Path::new("a"), Path::new("b")), 2);
        assert_eq!(path_of(&map, 1), Some("b"));
        assert_eq!(path_of(&map, 2), Some("b/x"));
        assert_eq!(path_of(&map, 3), None);
        assert_eq!(map.len(), 2);
        assert_eq!(map.rename_prefix(Path::new("missing"), Path::new("q")), 0);
    }

    #[test]
    fn remove_prefix_and_remove() {
        let mut map = map_of(&[(1, "a"), (2, "a/b"), (3, "ab"), (4, "a/b/c")]);
        assert_eq!(map.remove_prefix(Path::new("a/b")), 2);
        assert_eq!(path_of(&map, 1), Some("a"));
        assert_eq!(path_of(&map, 3), Some("ab"));
        assert_eq!(map.remove(1, &h(1)), Some(PathBuf::from("a")));
        assert_eq!(map.remove(1, &h(1)), None);
        assert_eq!(map.len(), 1);
        assert_eq!(map.remove_prefix(Path::new("")), 1);
        assert!(map.is_empty());
    }

    #[test]
    fn rename_window_reports_second_renames_until_reset() {
        let mut window = RenameWindow::new(2);
        assert!(!window.renamed(Some((1, &h(1)))));
        assert!(
            window.renamed(Some((1, &h(1)))),
            "renamed twice in the window"
        );
        assert!(
            !window.renamed(Some((2, &h(1)))),
            "handle type is part of the key"
        );
        assert!(window.renamed(None), "no handle: always a possible repeat");
        window.reset();
        assert!(!window.renamed(Some((1, &h(1)))));
        assert!(!window.renamed(Some((1, &h(2)))));
        assert!(
            window.renamed(Some((1, &h(3)))),
            "full: every rename counts as a repeat"
        );
        assert!(window.renamed(Some((1, &h(4)))));
        window.reset();
        assert!(!window.renamed(Some((1, &h(3)))));
    }

    #[test]
    fn handle_set_is_bounded_and_keeps_hot_entries() {
        let mut cache = HandleSet::new(4);
        cache.insert(1, &h(1));
        cache.insert(1, &h(2));
        assert!(cache.contains(1, &h(1)));
        assert!(!cache.contains(2, &h(1)));
        for n in 3..50 {
            cache.insert(1, &h(n));
            // h(1) is looked up all the time: it keeps being promoted.
            assert!(cache.contains(1, &h(1)), "lost hot entry at {n}");
            assert!(cache.len() <= 4);
        }
        assert!(!cache.contains(1, &h(3)));
        assert!(cache.remove(1, &h(1)));
        assert!(!cache.contains(1, &h(1)));
        assert!(!cache.remove(1, &h(1)), "removed already");
        cache.clear();
        assert!(cache.is_empty());
    }
}
