//! The source tree: its root fd and every read beneath it. Paths are resolved beneath the root
//! without following symlinks (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a directory
//! swapped for a symlink to /etc can never make the syncer read /etc.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::exclude::{ExcludeSet, Excludes};
use crate::links::Links;
use crate::sys::fs::open_dir_beneath;

#[derive(Debug)]
pub struct SourceTree {
    /// Absolute, canonical path (for inotify_add_watch and messages).
    pub abs: PathBuf,
    pub root: OwnedFd,
    /// The global excludes (every target's own come on top, in its queue and walks).
    pub excludes: ExcludeSet,
    /// What is known of the source's hard links (see `links`).
    pub links: Links,
}

impl SourceTree {
    /// `link_cap`: most names of multi-link files the link index holds (`--max-links`).
    pub fn open(abs: PathBuf, excludes: Excludes, link_cap: usize) -> io::Result<Self> {
        let root = nix::fcntl::open(
            &abs,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(crate::sys::errno::to_io)?;
        Ok(Self {
            abs,
            root,
            excludes: ExcludeSet::new(excludes),
            links: Links::new(link_cap),
        })
    }

    /// Opens the directory `rel` (relative to the root) beneath the root.
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        open_dir_beneath(self.root.as_fd(), rel)
    }
}
