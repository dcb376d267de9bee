//! Hard links: the index of multi-link inodes (`index`, pure) shared by everything that learns
//! about the source's names, and its checks against the source (`resolve`). The backends'
//! renames re-key it, walks and the appliers' stats fill it, and the targets ask it for every
//! name of a file they are about to write, so a change through one name reaches them all.
//! Counted in the status file (`links`) and bounded by `--max-links`.

pub mod index;
pub mod resolve;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

pub use index::{Ino, LinkIndex};

/// Default `--max-links`: names of multi-link files held, about 30 MiB at most.
pub const DEFAULT_CAP: usize = 250_000;

#[derive(Debug)]
pub struct Links {
    index: Mutex<LinkIndex>,
    /// Mirrors the index's `full` for readers that must not wait for its lock.
    full: AtomicBool,
    /// Walks of SOURCE that looked for names the index could not account for.
    pub searches: AtomicU64,
    cap: usize,
}

impl Links {
    pub fn new(cap: usize) -> Self {
        Self {
            index: Mutex::new(LinkIndex::new(cap)),
            full: AtomicBool::new(false),
            searches: AtomicU64::new(0),
            cap,
        }
    }

    /// Most names the index holds.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The index, locked. Callers hold it briefly and never across I/O.
    pub fn lock(&self) -> LinkGuard<'_> {
        LinkGuard {
            links: self,
            index: self.index.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// True once a name was refused: links past the cap are copied as separate files, and
    /// the reconciler covers their other names with periodic reconciles.
    pub fn full(&self) -> bool {
        self.full.load(Relaxed)
    }

    /// A rename inside SOURCE (from the event stream).
    pub fn rename(&self, from: &Path, to: &Path) {
        self.lock().rename(from, to);
    }

    /// `path` and everything below it are gone from the source.
    pub fn forget(&self, path: &Path) {
        let mut index = self.lock();
        if !index.is_empty() {
            index.forget(path);
        }
    }

    /// The status file's `links` object.
    pub fn snapshot(&self) -> Value {
        let index = self.lock();
        json!({
            "inodes": index.inodes_held(),
            "names": index.names_held(),
            "bytes": index.bytes(),
            "max_names": self.cap,
            "full": index.is_full(),
            "searches": self.searches.load(Relaxed),
        })
    }
}

/// The locked index; on release, a newly full index is reported once.
pub struct LinkGuard<'a> {
    links: &'a Links,
    index: MutexGuard<'a, LinkIndex>,
}

impl std::ops::Deref for LinkGuard<'_> {
    type Target = LinkIndex;
    fn deref(&self) -> &LinkIndex {
        &self.index
    }
}

impl std::ops::DerefMut for LinkGuard<'_> {
    fn deref_mut(&mut self) -> &mut LinkIndex {
        &mut self.index
    }
}

impl Drop for LinkGuard<'_> {
    fn drop(&mut self) {
        if self.index.is_full() && !self.links.full.swap(true, Relaxed) {
            crate::warn!(
                "hard links: the index holds its maximum of {} names of multi-link files (--max-links); further links are replicated as separate files, and a change through one of their names reaches the others by a full reconcile every --rescan-interval seconds",
                self.links.cap
            );
        }
    }
}
