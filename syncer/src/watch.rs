//! The watch table: watch descriptor ↔ directory path (relative to SOURCE). Pure bookkeeping,
//! kept current by the inotify backend: directory renames move a whole prefix, IN_IGNORED and
//! moves out of the tree drop entries.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct WatchTable {
    by_wd: HashMap<i32, PathBuf>,
    by_path: BTreeMap<PathBuf, i32>,
}

impl WatchTable {
    /// Records that `path` is watched as `wd`. inotify returns the same wd for the same inode,
    /// so a directory reached under a new name simply moves to that name.
    pub fn insert(&mut self, wd: i32, path: PathBuf) {
        if let Some(old_path) = self.by_wd.insert(wd, path.clone()) {
            if old_path != path && self.by_path.get(&old_path) == Some(&wd) {
                self.by_path.remove(&old_path);
            }
        }
        if let Some(old_wd) = self.by_path.insert(path, wd) {
            if old_wd != wd {
                self.by_wd.remove(&old_wd);
            }
        }
    }

    pub fn path_of(&self, wd: i32) -> Option<&Path> {
        self.by_wd.get(&wd).map(PathBuf::as_path)
    }

    pub fn wd_of(&self, path: &Path) -> Option<i32> {
        self.by_path.get(path).copied()
    }

    /// Forgets `wd` (after IN_IGNORED).
    pub fn remove_wd(&mut self, wd: i32) {
        if let Some(path) = self.by_wd.remove(&wd) {
            if self.by_path.get(&path) == Some(&wd) {
                self.by_path.remove(&path);
            }
        }
    }

    fn paths_under(&self, prefix: &Path) -> Vec<PathBuf> {
        self.by_path
            .range::<Path, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(path, _)| path.starts_with(prefix))
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// A directory moved inside the tree keeps its watches: only the names change.
    pub fn rename_prefix(&mut self, from: &Path, to: &Path) {
        // Whatever was watched at the destination is gone (replaced by the move).
        for stale in self.paths_under(to) {
            if let Some(wd) = self.by_path.remove(&stale) {
                self.by_wd.remove(&wd);
            }
        }
        for old in self.paths_under(from) {
            if let Some(wd) = self.by_path.remove(&old) {
                let rest = old.strip_prefix(from).unwrap_or(Path::new(""));
                let new = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
                self.by_wd.insert(wd, new.clone());
                self.by_path.insert(new, wd);
            }
        }
    }

    /// Drops `prefix` and everything below it (moved out of the tree); returns their wds so the
    /// caller can `inotify_rm_watch` them.
    pub fn remove_prefix(&mut self, prefix: &Path) -> Vec<i32> {
        let mut wds = Vec::new();
        for path in self.paths_under(prefix) {
            if let Some(wd) = self.by_path.remove(&path) {
                self.by_wd.remove(&wd);
                wds.push(wd);
            }
        }
        wds
    }

    pub fn len(&self) -> usize {
        self.by_wd.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_wd.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn rename_moves_a_whole_prefix_and_nothing_else() {
        let mut table = WatchTable::default();
        table.insert(1, p(""));
        table.insert(2, p("a"));
        table.insert(3, p("a/b"));
        table.insert(4, p("a b"));
        table.rename_prefix(Path::new("a"), Path::new("z/a"));
        assert_eq!(table.path_of(2), Some(Path::new("z/a")));
        assert_eq!(table.path_of(3), Some(Path::new("z/a/b")));
        assert_eq!(table.path_of(4), Some(Path::new("a b")));
        assert_eq!(table.wd_of(Path::new("a")), None);
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn remove_prefix_returns_the_wds_below() {
        let mut table = WatchTable::default();
        table.insert(1, p("d"));
        table.insert(2, p("d/e"));
        table.insert(3, p("dx"));
        let mut wds = table.remove_prefix(Path::new("d"));
        wds.sort();
        assert_eq!(wds, vec![1, 2]);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn same_wd_under_a_new_name_replaces_the_old_name() {
        let mut table = WatchTable::default();
        table.insert(7, p("old"));
        table.insert(7, p("new"));
        assert_eq!(table.wd_of(Path::new("old")), None);
        assert_eq!(table.path_of(7), Some(Path::new("new")));
        table.remove_wd(7);
        assert!(table.is_empty());
    }
}
