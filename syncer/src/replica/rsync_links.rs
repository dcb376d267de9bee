//! Names the daemon may hold as names of one inode: hard links sent together with `-H`, and the
//! names of a linked file the source has since broken apart. Pure (no syscalls): the rsync
//! target adds the names it sends linked and removes names it replaced or deleted.
//!
//! An in-place write (`--inplace`, and the runs of new files) into such an inode would change
//! every other name of it on the daemon, so those names only go through rsync's temporary
//! file and rename. The set errs on the side of holding a name: a name held that is not
//! linked costs a temporary file, a name missed could corrupt another.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::Path;

use crate::change::rekey;
use crate::queue::pathkey::PathKey;

#[derive(Debug)]
pub struct DaemonLinks {
    names: BTreeSet<PathKey>,
    cap: usize,
    /// More names than `cap` were to be held: every name then counts as possibly linked.
    overflowed: bool,
}

impl DaemonLinks {
    pub fn new(cap: usize) -> Self {
        Self {
            names: BTreeSet::new(),
            cap,
            overflowed: false,
        }
    }

    fn under(&self, prefix: &Path) -> Vec<PathKey> {
        self.names
            .range((Bound::Included(PathKey::from(prefix)), Bound::Unbounded))
            .take_while(|key| key.path().starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The daemon may hold `path` linked with another name.
    pub fn may_be_linked(&self, path: &Path) -> bool {
        self.overflowed || (!self.names.is_empty() && self.names.contains(&PathKey::from(path)))
    }

    /// Some name at `dir` or below it may be linked (a run that writes that subtree in place,
    /// or lists a directory whole, could write into it).
    pub fn any_under(&self, dir: &Path) -> bool {
        if self.overflowed {
            return true;
        }
        if dir.as_os_str().is_empty() {
            return !self.names.is_empty();
        }
        self.names
            .range((Bound::Included(PathKey::from(dir)), Bound::Unbounded))
            .next()
            .is_some_and(|key| key.path().starts_with(dir))
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && !self.overflowed
    }

    /// `path` was sent as one name of a multi-link file.
    pub fn insert(&mut self, path: &Path) {
        if self.names.len() >= self.cap {
            self.overflowed = true;
            return;
        }
        self.names.insert(PathKey::from(path));
    }

    /// `path` went to the daemon as a file of its own (temporary file and rename) or was
    /// deleted there, with everything below it.
    pub fn replaced(&mut self, path: &Path) {
        for key in self.under(path) {
            self.names.remove(&key);
        }
    }

    /// A rename the daemon sees as a delete of `from` and a send of `to`: what the daemon will
    /// hold at `to` may be the old linked inodes (sent again later by name), so the names move
    /// with it and `to`'s own stay.
    pub fn rename(&mut self, from: &Path, to: &Path) {
        for key in self.under(from) {
            self.names.remove(&key);
            self.insert(&rekey(key.path(), from, to));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn names_sent_linked_are_held_until_replaced_and_follow_renames() {
        let mut links = DaemonLinks::new(10);
        assert!(links.is_empty() && !links.any_under(&p("")));
        links.insert(&p("d/a"));
        links.insert(&p("b"));
        assert!(links.may_be_linked(&p("d/a")));
        assert!(links.any_under(&p("d")) && links.any_under(&p("")));
        assert!(!links.any_under(&p("d b")));
        links.rename(&p("d"), &p("e"));
        assert!(!links.may_be_linked(&p("d/a")));
        assert!(links.may_be_linked(&p("e/a")));
        links.replaced(&p("e"));
        links.replaced(&p("b"));
        assert!(links.is_empty());
    }

    #[test]
    fn past_the_cap_every_name_may_be_linked() {
        let mut links = DaemonLinks::new(1);
        links.insert(&p("a"));
        links.insert(&p("b"));
        assert!(links.may_be_linked(&p("anything")));
        assert!(links.any_under(&p("x")));
    }
}
