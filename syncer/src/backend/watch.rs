//! The watch table: inotify watch descriptors in, directory paths (relative to SOURCE) out.
//! Pure bookkeeping, kept current by the inotify backend. A watch belongs to a directory
//! object, not to a name: the table is a tree of descriptors (each wd -> parent wd + name, and
//! its children), and a path is computed from the chain. A directory renamed inside the tree
//! moves one node (its subtree follows); one moved away removes its own descriptors, never
//! whatever holds its old name by then. A node whose name is taken by another directory
//! becomes detached: it has no path until it is placed again (a later rename, or the kernel
//! naming it through `inotify_add_watch`) or removed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Default)]
struct Node {
    /// Parent wd and name in it; None for the root and for detached nodes.
    up: Option<(i32, OsString)>,
    children: HashMap<OsString, i32>,
}

#[derive(Debug, Default)]
pub struct WatchTable {
    nodes: HashMap<i32, Node>,
    root: Option<i32>,
    /// The last path computed (wd, path): events come in runs from one directory. Cleared on
    /// every change of the tree.
    cached: Option<(i32, PathBuf)>,
}

impl WatchTable {
    pub fn contains(&self, wd: i32) -> bool {
        self.nodes.contains_key(&wd)
    }

    /// The watch of the entry `name` of directory `parent`, if it is a watched directory.
    pub fn child(&self, parent: i32, name: &OsStr) -> Option<i32> {
        self.nodes.get(&parent)?.children.get(name).copied()
    }

    /// The path of `wd`; None when it is unknown or detached (its events are not SOURCE's).
    pub fn path_of(&self, wd: i32) -> Option<PathBuf> {
        let mut names: Vec<&OsStr> = Vec::new();
        let mut at = wd;
        // A chain longer than the table means a cycle: never loop on a corrupt table.
        for _ in 0..=self.nodes.len() {
            let node = self.nodes.get(&at)?;
            match &node.up {
                Some((parent, name)) => {
                    names.push(name);
                    at = *parent;
                }
                None if Some(at) == self.root => {
                    return Some(names.iter().rev().collect());
                }
                None => return None,
            }
        }
        None
    }

    /// `path_of`, remembered for the next call with the same wd.
    pub fn dir_path(&mut self, wd: i32) -> Option<&Path> {
        if self.cached.as_ref().is_none_or(|(w, _)| *w != wd) {
            let path = self.path_of(wd)?;
            self.cached = Some((wd, path));
        }
        self.cached.as_ref().map(|(_, path)| path.as_path())
    }

    /// The watch of the directory at `path`, following names from the root.
    pub fn wd_of(&self, path: &Path) -> Option<i32> {
        let mut at = self.root?;
        for component in path.components() {
            match component {
                Component::Normal(name) => at = self.child(at, name)?,
                Component::CurDir => {}
                _ => return None,
            }
        }
        Some(at)
    }

    /// True when `wd` is `ancestor` or below it.
    fn is_below(&self, wd: i32, ancestor: i32) -> bool {
        let mut at = wd;
        for _ in 0..=self.nodes.len() {
            if at == ancestor {
                return true;
            }
            match self.nodes.get(&at).and_then(|n| n.up.as_ref()) {
                Some((parent, _)) => at = *parent,
                None => return false,
            }
        }
        false
    }

    /// Takes `wd` out of its parent's children (it keeps its own subtree).
    fn detach(&mut self, wd: i32) {
        let Some(node) = self.nodes.get_mut(&wd) else {
            return;
        };
        if let Some((parent, name)) = node.up.take() {
            if let Some(p) = self.nodes.get_mut(&parent) {
                if p.children.get(&name) == Some(&wd) {
                    p.children.remove(&name);
                }
            }
        }
        self.cached = None;
    }

    /// Makes `wd` the entry `name` of `parent`; whatever held that name is detached (replaced).
    /// Refused (false) when `parent` is unknown or lies below `wd`.
    pub fn move_to(&mut self, wd: i32, parent: i32, name: &OsStr) -> bool {
        if !self.nodes.contains_key(&parent) || self.is_below(parent, wd) {
            return false;
        }
        self.detach(wd);
        if let Some(held) = self.child(parent, name).filter(|held| *held != wd) {
            self.detach(held);
        }
        self.nodes.entry(wd).or_default().up = Some((parent, name.to_os_string()));
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.insert(name.to_os_string(), wd);
        }
        self.cached = None;
        true
    }

    /// Detaches whatever directory holds the entry `name` of `parent` (a directory renamed
    /// over it, which the table did not know as a watched directory).
    pub fn detach_child(&mut self, parent: i32, name: &OsStr) {
        if let Some(held) = self.child(parent, name) {
            self.detach(held);
        }
    }

    /// Records that the directory at `path` is watched as `wd` (the kernel's word, from
    /// `inotify_add_watch`: the same inode always gets the same wd, so a known wd found under
    /// a new name moves there). False when it cannot be placed: its parent has no watch.
    pub fn insert(&mut self, wd: i32, path: &Path) -> bool {
        let Some((parent, name)) = parent_and_name(path) else {
            if self.root.is_some_and(|r| r != wd) {
                return false;
            }
            self.detach(wd);
            self.nodes.entry(wd).or_default();
            self.root = Some(wd);
            return true;
        };
        match self.wd_of(parent) {
            Some(parent) => self.move_to(wd, parent, name),
            None => false,
        }
    }

    /// Removes `wd` and every descriptor below it (moved out of the tree, or IN_IGNORED);
    /// returns them all so the caller can `inotify_rm_watch` them.
    pub fn remove_subtree(&mut self, wd: i32) -> Vec<i32> {
        self.detach(wd);
        let mut removed = Vec::new();
        let mut stack = vec![wd];
        while let Some(at) = stack.pop() {
            if let Some(node) = self.nodes.remove(&at) {
                removed.push(at);
                stack.extend(node.children.into_values());
            }
        }
        if self.root == Some(wd) {
            self.root = None;
        }
        self.cached = None;
        removed
    }

    /// Detached nodes (not their descendants): directories whose name another one took.
    pub fn detached(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|(wd, node)| node.up.is_none() && Some(**wd) != self.root)
            .map(|(wd, _)| *wd)
            .collect()
    }

    pub fn is_attached(&self, wd: i32) -> bool {
        self.path_of(wd).is_some()
    }

    /// Watches held, detached ones included (they are still kernel watches).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

fn parent_and_name(path: &Path) -> Option<(&Path, &OsStr)> {
    let name = path.file_name()?;
    Some((path.parent().unwrap_or(Path::new("")), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    fn n(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn table(entries: &[(i32, &str)]) -> WatchTable {
        let mut table = WatchTable::default();
        for (wd, path) in entries {
            assert!(table.insert(*wd, p(path)), "insert {wd} {path}");
        }
        table
    }

    #[test]
    fn paths_come_from_the_chain_of_parents() {
        let mut t = table(&[(1, ""), (2, "a"), (3, "a/b"), (4, "a b")]);
        assert_eq!(t.path_of(3).as_deref(), Some(p("a/b")));
        assert_eq!(t.dir_path(1), Some(p("")));
        assert_eq!(t.wd_of(p("a/b")), Some(3));
        assert_eq!(t.child(2, n("b")), Some(3));
        assert!(!t.insert(9, p("missing/x")), "no parent: not placed");
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn a_rename_moves_a_whole_subtree_and_nothing_else() {
        let mut t = table(&[(1, ""), (2, "a"), (3, "a/b"), (4, "a b"), (5, "z")]);
        assert_eq!(t.dir_path(3), Some(p("a/b")));
        assert!(t.move_to(2, 5, n("a")));
        assert_eq!(t.dir_path(3), Some(p("z/a/b")), "the cache follows");
        assert_eq!(t.path_of(2).as_deref(), Some(p("z/a")));
        assert_eq!(t.path_of(4).as_deref(), Some(p("a b")));
        assert_eq!(t.wd_of(p("a")), None);
        assert!(!t.move_to(5, 3, n("loop")), "never below itself");
    }

    /// `mv S/cache /elsewhere && mkdir S/cache`: the new directory takes the name, the old one
    /// is detached, and its expiry removes the old subtree only.
    #[test]
    fn a_name_taken_by_a_new_directory_detaches_the_old_one() {
        let mut t = table(&[(1, ""), (2, "cache"), (3, "cache/sub")]);
        assert_eq!(t.child(1, n("cache")), Some(2), "recorded at MOVED_FROM");
        assert!(t.insert(4, p("cache")));
        assert!(t.insert(5, p("cache/sub")));
        assert_eq!(t.path_of(2), None);
        assert_eq!(t.path_of(3), None, "below a detached node: no SOURCE path");
        assert_eq!(t.detached(), vec![2]);
        let mut removed = t.remove_subtree(2);
        removed.sort();
        assert_eq!(removed, vec![2, 3]);
        assert_eq!(t.wd_of(p("cache/sub")), Some(5));
        assert_eq!(t.len(), 3);
    }

    /// Paired later (moved within the tree after all): reattached at the destination.
    #[test]
    fn a_detached_directory_is_reattached_by_its_rename() {
        let mut t = table(&[(1, ""), (2, "cache"), (3, "cache/sub")]);
        assert!(t.insert(4, p("cache")));
        assert!(!t.is_attached(2));
        assert!(t.move_to(2, 1, n("old")));
        assert_eq!(t.path_of(3).as_deref(), Some(p("old/sub")));
        assert_eq!(t.wd_of(p("cache")), Some(4));
        assert!(t.detached().is_empty());
    }

    /// A rename over an existing directory replaces it; the kernel's IN_IGNORED for the
    /// replaced one then removes it, and never the one that took its name.
    #[test]
    fn a_rename_over_a_directory_drops_the_replaced_one() {
        let mut t = table(&[(1, ""), (2, "a"), (3, "b")]);
        assert!(t.move_to(2, 1, n("b")));
        assert_eq!(t.wd_of(p("b")), Some(2));
        assert_eq!(t.detached(), vec![3]);
        assert_eq!(t.remove_subtree(3), vec![3]);
        assert_eq!(t.path_of(2).as_deref(), Some(p("b")));
        assert_eq!(t.len(), 2);
    }

    /// RENAME_EXCHANGE as inotify reports it: a -> b, then b -> a naming the same entries;
    /// the kernel's answers (`insert` from add_watch) put each wd where it is.
    #[test]
    fn an_exchange_is_settled_by_the_kernels_answers() {
        let mut t = table(&[(1, ""), (2, "a"), (3, "b")]);
        // First half: a -> b, checked: b is 2, a is 3.
        assert!(t.move_to(2, 1, n("b")));
        assert!(t.insert(2, p("b")) && t.insert(3, p("a")));
        // Second half names b -> a, whose holder the table thinks is 2.
        assert_eq!(t.child(1, n("b")), Some(2));
        assert!(t.move_to(2, 1, n("a")));
        assert!(t.insert(3, p("a")) && t.insert(2, p("b")));
        assert_eq!(t.path_of(2).as_deref(), Some(p("b")));
        assert_eq!(t.path_of(3).as_deref(), Some(p("a")));
        assert!(t.detached().is_empty());
    }

    #[test]
    fn ignored_removes_the_node_and_what_was_below_it() {
        let mut t = table(&[(1, ""), (2, "d"), (3, "d/e"), (4, "dx")]);
        let mut removed = t.remove_subtree(2);
        removed.sort();
        assert_eq!(removed, vec![2, 3]);
        assert_eq!(t.len(), 2);
        assert!(t.remove_subtree(2).is_empty(), "twice is harmless");
    }
}
