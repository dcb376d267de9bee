//! The index of multi-link inodes: `(device, inode)` -> the names it has under SOURCE. Pure (no
//! syscalls): stats, walks and events feed it, and `resolve` checks what it says against the
//! source before anything is written, so a stale entry costs a stat, never a wrong replica.
//!
//! Only regular files with more than one name are held. Each inode also keeps how many of its
//! links the last complete count found outside SOURCE (or in excluded subtrees): with it, a
//! set of names is known to be complete when the names verified under SOURCE plus those
//! outside make up the link count, and only otherwise does the source have to be searched.
//! That count does not change when links are made or removed inside SOURCE, so `ln a b` and
//! `rm b` never cost a search; a name moved across SOURCE's boundary does, once.
//!
//! Bounded: past `cap` names nothing more is added (`full`), and the caller falls back to
//! periodic reconciles for the links it could not index (see `Links`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use crate::change::rekey;
use crate::queue::pathkey::PathKey;

/// `(st_dev, st_ino)`: what names of one file share.
pub type Ino = (u64, u64);

/// Estimated heap bytes per indexed name beyond its path: the shared path's header, the
/// path map's node share and the inode's name list slot.
const BYTES_PER_NAME: usize = 112;
/// ... and per inode: its map slot and name list header.
const BYTES_PER_INODE: usize = 80;
/// Names replaced by a rename kept for the applier (see `replaced_by_rename`).
const REPLACED_KEPT: usize = 4096;

#[derive(Debug, Default)]
struct Names {
    names: Vec<PathKey>,
    /// Links the last complete count found outside SOURCE; None: never counted.
    outside: Option<u64>,
}

/// The last rename and the names it displaced at its `to`: RENAME_EXCHANGE arrives as
/// `a -> b` then `b -> a`, and the second half must put back what the first displaced.
#[derive(Debug)]
struct LastRename {
    from: PathBuf,
    to: PathBuf,
    displaced: Vec<(PathKey, Ino)>,
}

#[derive(Debug)]
pub struct LinkIndex {
    by_path: BTreeMap<PathKey, Ino>,
    by_inode: HashMap<Ino, Names>,
    cap: usize,
    path_bytes: usize,
    /// A name was refused because the index held `cap` names.
    full: bool,
    last_rename: Option<LastRename>,
    /// Names a rename replaced, with the inode they were: the change that marked such a name
    /// may have been made through it just before (`chmod c; mv x c`), and only its other
    /// names hold it now. The oldest are dropped past `REPLACED_KEPT`.
    replaced: HashMap<PathKey, Ino>,
    replaced_order: VecDeque<PathKey>,
}

/// Keys equal to `prefix` or below it: one contiguous range (see `PathKey`).
fn keys_under(map: &BTreeMap<PathKey, Ino>, prefix: &Path) -> Vec<(PathKey, Ino)> {
    map.range((Bound::Included(PathKey::from(prefix)), Bound::Unbounded))
        .take_while(|(key, _)| key.path().starts_with(prefix))
        .map(|(key, ino)| (key.clone(), *ino))
        .collect()
}

impl LinkIndex {
    pub fn new(cap: usize) -> Self {
        Self {
            by_path: BTreeMap::new(),
            by_inode: HashMap::new(),
            cap,
            path_bytes: 0,
            full: false,
            last_rename: None,
            replaced: HashMap::new(),
            replaced_order: VecDeque::new(),
        }
    }

    pub fn names_held(&self) -> usize {
        self.by_path.len()
    }

    pub fn inodes_held(&self) -> usize {
        self.by_inode.len()
    }

    pub fn is_full(&self) -> bool {
        self.full
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Estimated heap bytes held (reported in the status file).
    pub fn bytes(&self) -> usize {
        self.path_bytes
            + self.by_path.len() * BYTES_PER_NAME
            + self.by_inode.len() * BYTES_PER_INODE
    }

    /// The inode the index holds for `path`, if any.
    pub fn inode_of(&self, path: &Path) -> Option<Ino> {
        self.by_path.get(&PathKey::from(path)).copied()
    }

    /// Nothing held and no name replaced lately: no batch has anything to look up.
    pub fn is_idle(&self) -> bool {
        self.by_path.is_empty() && self.replaced.is_empty()
    }

    /// The inode a rename replaced at `path` lately, if any.
    pub fn replaced_by_rename(&self, path: &Path) -> Option<Ino> {
        if self.replaced.is_empty() {
            return None;
        }
        self.replaced.get(&PathKey::from(path)).copied()
    }

    /// The names held for `ino`.
    pub fn names(&self, ino: Ino) -> Vec<PathBuf> {
        self.by_inode.get(&ino).map_or_else(Vec::new, |n| {
            n.names.iter().map(|k| k.path().to_path_buf()).collect()
        })
    }

    /// Links of `ino` outside SOURCE as last counted (None: never counted).
    pub fn outside(&self, ino: Ino) -> Option<u64> {
        self.by_inode.get(&ino).and_then(|n| n.outside)
    }

    /// Whether any name is held at `prefix` or below it.
    pub fn holds_under(&self, prefix: &Path) -> bool {
        if prefix.as_os_str().is_empty() {
            return !self.by_path.is_empty();
        }
        self.by_path
            .range((Bound::Included(PathKey::from(prefix)), Bound::Unbounded))
            .next()
            .is_some_and(|(key, _)| key.path().starts_with(prefix))
    }

    /// Names held at `prefix` or below it, with their inodes.
    pub fn under(&self, prefix: &Path) -> Vec<(PathBuf, Ino)> {
        keys_under(&self.by_path, prefix)
            .into_iter()
            .map(|(key, ino)| (key.path().to_path_buf(), ino))
            .collect()
    }

    fn unlink_key(&mut self, key: &PathKey) -> Option<Ino> {
        let ino = self.by_path.remove(key)?;
        self.path_bytes -= key.path().as_os_str().len();
        if let Some(names) = self.by_inode.get_mut(&ino) {
            names.names.retain(|k| k != key);
            if names.names.is_empty() {
                self.by_inode.remove(&ino);
            }
        }
        Some(ino)
    }

    fn link_key(&mut self, key: PathKey, ino: Ino) -> bool {
        if self.by_path.get(&key) == Some(&ino) {
            return true;
        }
        self.unlink_key(&key);
        if self.by_path.len() >= self.cap {
            self.full = true;
            return false;
        }
        self.path_bytes += key.path().as_os_str().len();
        self.by_path.insert(key.clone(), ino);
        self.by_inode.entry(ino).or_default().names.push(key);
        true
    }

    /// A stat of `path` found a regular file `ino` with `nlink` names: held when it has more
    /// than one, dropped otherwise. False when the index is full and could not take it.
    pub fn observe(&mut self, path: &Path, ino: Ino, nlink: u64) -> bool {
        if nlink <= 1 {
            // The common case by far, and free while no file has links.
            if !self.by_path.is_empty() {
                self.unlink_key(&PathKey::from(path));
            }
            return true;
        }
        self.link_key(PathKey::from(path), ino)
    }

    /// `path` and everything below it are gone (or are no regular files of many names).
    pub fn forget(&mut self, path: &Path) {
        for (key, _) in keys_under(&self.by_path, path) {
            self.unlink_key(&key);
        }
    }

    /// A rename inside SOURCE: names at `from` and below it move to `to`. What stood at `to`
    /// was replaced, unless the next rename is this one reversed (RENAME_EXCHANGE, or
    /// `mv a b; mv b a`: `resolve` verifies either way).
    pub fn rename(&mut self, from: &Path, to: &Path) {
        let exchange = self
            .last_rename
            .as_ref()
            .is_some_and(|last| last.from == to && last.to == from);
        if exchange {
            let last = self.last_rename.take().unwrap_or_else(|| unreachable!());
            for (key, _) in &last.displaced {
                self.replaced.remove(key);
            }
            for (key, ino) in last.displaced {
                let moved = PathKey::from(rekey(key.path(), &last.to, &last.from));
                self.link_key(moved, ino);
            }
            return;
        }
        let displaced = keys_under(&self.by_path, to);
        for (key, ino) in &displaced {
            self.unlink_key(key);
            while self.replaced_order.len() >= REPLACED_KEPT {
                if let Some(old) = self.replaced_order.pop_front() {
                    self.replaced.remove(&old);
                }
            }
            if self.replaced.insert(key.clone(), *ino).is_none() {
                self.replaced_order.push_back(key.clone());
            }
        }
        for (key, ino) in keys_under(&self.by_path, from) {
            self.unlink_key(&key);
            self.link_key(PathKey::from(rekey(key.path(), from, to)), ino);
        }
        self.last_rename = Some(LastRename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            displaced,
        });
    }

    /// What a check against the source found for `ino`: exactly these names under SOURCE
    /// (stale ones are dropped), and `outside` links elsewhere when it was counted.
    pub fn settle(&mut self, ino: Ino, verified: &[PathBuf], outside: Option<u64>) {
        let stale: Vec<PathKey> = self
            .by_inode
            .get(&ino)
            .map(|n| {
                n.names
                    .iter()
                    .filter(|k| !verified.iter().any(|v| v.as_path() == k.path()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for key in stale {
            self.unlink_key(&key);
        }
        if verified.len() < 2 && outside.is_none_or(|o| o == 0) {
            // One name and nothing counted elsewhere: a plain file now.
            for path in verified {
                self.unlink_key(&PathKey::from(path.as_path()));
            }
            return;
        }
        for path in verified {
            self.link_key(PathKey::from(path.as_path()), ino);
        }
        if let Some(names) = self.by_inode.get_mut(&ino) {
            if outside.is_some() {
                names.outside = outside;
            }
        }
    }

    /// A walk of `subtree` saw these names of multi-link inodes (with the highest link count
    /// seen for each). A walk of the whole tree counted every name under SOURCE, so the rest
    /// of each link count lies outside; names already held and not seen are kept (a name
    /// linked while the walk ran may have been applied before it ended), which can only
    /// undercount `outside`: `resolve` then searches, never trusts a short list.
    pub fn record_walk(&mut self, seen: HashMap<Ino, (u64, Vec<PathBuf>)>, whole_tree: bool) {
        for (ino, (nlink, names)) in seen {
            for name in &names {
                self.link_key(PathKey::from(name.as_path()), ino);
            }
            if whole_tree && let Some(held) = self.by_inode.get_mut(&ino) {
                held.outside = Some(nlink.saturating_sub(held.names.len() as u64));
            }
        }
    }

    /// Forgets everything (a reconcile of the whole tree refills it).
    pub fn clear(&mut self) {
        self.by_path.clear();
        self.by_inode.clear();
        self.path_bytes = 0;
        self.full = false;
        self.last_rename = None;
        self.replaced.clear();
        self.replaced_order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn sorted(mut v: Vec<PathBuf>) -> Vec<PathBuf> {
        v.sort();
        v
    }

    const X: Ino = (1, 10);
    const Y: Ino = (1, 20);

    #[test]
    fn observed_names_group_by_inode_and_single_names_drop_out() {
        let mut index = LinkIndex::new(100);
        assert!(index.observe(&p("a"), X, 2));
        assert!(index.observe(&p("d/b"), X, 2));
        assert!(index.observe(&p("c"), Y, 1));
        assert_eq!(sorted(index.names(X)), vec![p("a"), p("d/b")]);
        assert!(index.names(Y).is_empty());
        // `a` now holds another file of one name: it leaves X.
        index.observe(&p("a"), Y, 1);
        assert_eq!(index.names(X), vec![p("d/b")]);
        assert_eq!(index.names_held(), 1);
    }

    #[test]
    fn a_directory_rename_rekeys_every_name_below_it() {
        let mut index = LinkIndex::new(100);
        index.observe(&p("d/a"), X, 2);
        index.observe(&p("d/sub/b"), X, 2);
        index.observe(&p("d b"), Y, 2);
        index.rename(&p("d"), &p("e"));
        assert_eq!(sorted(index.names(X)), vec![p("e/a"), p("e/sub/b")]);
        assert_eq!(index.names(Y), vec![p("d b")]);
        assert_eq!(index.inode_of(&p("e/a")), Some(X));
        assert_eq!(index.inode_of(&p("d/a")), None);
        assert!(index.holds_under(&p("e/sub")) && index.holds_under(&p("")));
        assert!(!index.holds_under(&p("d")) && !index.holds_under(&p("e/s")));
    }

    #[test]
    fn a_rename_over_a_name_replaces_it_and_an_exchange_swaps_both() {
        let mut index = LinkIndex::new(100);
        index.observe(&p("a"), X, 2);
        index.observe(&p("b"), Y, 2);
        index.rename(&p("a"), &p("b"));
        assert_eq!(index.names(X), vec![p("b")]);
        assert!(index.names(Y).is_empty());
        assert_eq!(index.replaced_by_rename(&p("b")), Some(Y));
        // The same pair reversed at once: RENAME_EXCHANGE.
        index.rename(&p("b"), &p("a"));
        assert_eq!(index.names(X), vec![p("b")]);
        assert_eq!(index.names(Y), vec![p("a")]);
        assert_eq!(index.replaced_by_rename(&p("b")), None);
    }

    #[test]
    fn forget_drops_a_subtree_and_settle_keeps_what_was_verified() {
        let mut index = LinkIndex::new(100);
        index.observe(&p("d/a"), X, 3);
        index.observe(&p("d/e/b"), X, 3);
        index.observe(&p("c"), X, 3);
        index.forget(&p("d/e"));
        assert_eq!(sorted(index.names(X)), vec![p("c"), p("d/a")]);
        index.settle(X, &[p("c"), p("z")], Some(1));
        assert_eq!(sorted(index.names(X)), vec![p("c"), p("z")]);
        assert_eq!(index.outside(X), Some(1));
        // One name left and nothing outside: a plain file, no longer held.
        index.settle(X, &[p("c")], Some(0));
        assert!(index.is_empty());
        assert_eq!(index.bytes(), 0);
    }

    #[test]
    fn a_whole_tree_walk_counts_the_links_outside() {
        let mut index = LinkIndex::new(100);
        let mut seen = HashMap::new();
        seen.insert(X, (3, vec![p("a"), p("b")]));
        seen.insert(Y, (2, vec![p("only")]));
        index.record_walk(seen, true);
        assert_eq!(index.outside(X), Some(1));
        assert_eq!(index.outside(Y), Some(1));
        let mut partial = HashMap::new();
        partial.insert(X, (3, vec![p("c")]));
        index.record_walk(partial, false);
        assert_eq!(index.outside(X), Some(1), "a subtree walk counts nothing");
        assert_eq!(index.names(X).len(), 3);
    }

    #[test]
    fn the_cap_refuses_new_names_and_says_so() {
        let mut index = LinkIndex::new(2);
        assert!(index.observe(&p("a"), X, 2));
        assert!(index.observe(&p("b"), X, 2));
        assert!(!index.is_full());
        assert!(!index.observe(&p("c"), X, 3));
        assert!(index.is_full());
        assert_eq!(index.names_held(), 2);
        // Names already held still update.
        assert!(index.observe(&p("a"), X, 3));
        assert!(index.bytes() > 0);
    }
}
