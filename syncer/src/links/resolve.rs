//! Link groups: files a target is about to write (each just stat'ed) in, every name under SOURCE
//! of each multi-link inode among them out, each checked against the source as it is now.
//!
//! The index proposes names; each is stat'ed beneath SOURCE and kept only if it still is that
//! inode (and not excluded). The names are complete when they and the links counted outside
//! SOURCE make up the link count. Otherwise the source is searched: first the directories of
//! the names already known (`ln a b` mostly stays in one directory), then the whole tree, by
//! directory listings alone (`d_ino`), stat'ing only entries of a wanted inode number. One
//! search serves all the incomplete inodes of a batch.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::Ino;
use crate::entry::{Kind, Meta, list_inodes, split, stat_at};
use crate::source::SourceTree;

/// Every name under SOURCE of one inode, as found now (sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub ino: Ino,
    pub names: Vec<PathBuf>,
}

#[derive(Debug, Default)]
struct Want {
    nlink: u64,
    names: BTreeSet<PathBuf>,
    outside: Option<u64>,
}

impl Want {
    /// The links outside SOURCE when `names` are all there is inside, if that is known.
    fn complete_outside(&self) -> Option<u64> {
        let inside = self.names.len() as u64;
        if inside >= self.nlink {
            return Some(0);
        }
        // Counted too high (a name missed by a walk, since applied) is corrected here.
        self.outside
            .filter(|o| inside + o >= self.nlink)
            .map(|_| self.nlink - inside)
    }
}

/// The source's entry at `rel` (no symlink followed on the way).
pub fn stat_source(source: &SourceTree, rel: &Path) -> Option<Meta> {
    let (parent, name) = split(rel)?;
    let dir = source.open_dir(parent).ok()?;
    stat_at(dir.as_fd(), name).ok().flatten()
}

fn ino_of(meta: &Meta) -> Ino {
    (meta.dev, meta.ino)
}

/// The groups of the multi-link files among `files` (regular files with their fresh stat),
/// one per inode. Every file stat'ed is recorded in the index on the way (a name that now has
/// one link leaves it).
pub fn groups(source: &SourceTree, files: &[(PathBuf, Meta)]) -> Vec<Group> {
    let links = &source.links;
    let mut wanted: BTreeMap<Ino, Want> = BTreeMap::new();
    {
        let mut index = links.lock();
        for (path, meta) in files.iter().filter(|(_, m)| m.kind == Kind::File) {
            index.observe(path, ino_of(meta), meta.nlink);
            if meta.nlink > 1 {
                let want = wanted.entry(ino_of(meta)).or_default();
                want.nlink = want.nlink.max(meta.nlink);
                want.names.insert(path.clone());
            }
        }
        for (ino, want) in &mut wanted {
            want.names.extend(index.names(*ino));
            want.outside = index.outside(*ino);
        }
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    for (ino, want) in &mut wanted {
        let candidates = std::mem::take(&mut want.names);
        for name in candidates {
            if let Some(meta) = verified(source, &name, *ino) {
                want.nlink = meta.nlink;
                want.names.insert(name);
            }
        }
    }
    let mut counted: BTreeSet<Ino> = BTreeSet::new();
    let incomplete = |wanted: &BTreeMap<Ino, Want>| -> HashSet<Ino> {
        wanted
            .iter()
            .filter(|(_, w)| w.complete_outside().is_none())
            .map(|(ino, _)| *ino)
            .collect()
    };
    // A full index cannot keep what a search finds: every change would search again. The
    // periodic reconciles cover those links instead.
    if !links.full() && !incomplete(&wanted).is_empty() {
        let nearby: BTreeSet<PathBuf> = wanted
            .values()
            .filter(|w| w.complete_outside().is_none())
            .flat_map(|w| w.names.iter())
            .filter_map(|name| name.parent().map(Path::to_path_buf))
            .collect();
        for (ino, name) in search_dirs(source, &nearby, &incomplete(&wanted)) {
            if let Some(want) = wanted.get_mut(&ino) {
                want.names.insert(name);
            }
        }
        let still = incomplete(&wanted);
        if !still.is_empty() {
            let started = Instant::now();
            let found = search_tree(source, &still);
            links.searches.fetch_add(1, Relaxed);
            crate::debug!(
                "hard links: searched SOURCE for the other names of {} files in {:.3} s",
                still.len(),
                started.elapsed().as_secs_f64()
            );
            counted.extend(still);
            for (ino, name) in found {
                if let Some(want) = wanted.get_mut(&ino) {
                    want.names.insert(name);
                }
            }
        }
    }
    let mut index = links.lock();
    wanted
        .into_iter()
        .map(|(ino, want)| {
            let outside = if counted.contains(&ino) {
                Some(want.nlink.saturating_sub(want.names.len() as u64))
            } else {
                want.complete_outside()
            };
            let names: Vec<PathBuf> = want.names.into_iter().collect();
            index.settle(ino, &names, outside);
            Group { ino, names }
        })
        .collect()
}

/// The groups of names the index holds at `subtree` or below it (a renamed directory sent
/// whole, whose linked files may have names elsewhere).
pub fn groups_under(source: &SourceTree, subtree: &Path) -> Vec<Group> {
    let held = source.links.lock().under(subtree);
    let files: Vec<(PathBuf, Meta)> = held
        .into_iter()
        .filter_map(|(path, _)| stat_source(source, &path).map(|meta| (path, meta)))
        .filter(|(_, meta)| meta.is_multi_link())
        .collect();
    groups(source, &files)
}

/// The inodes the index holds for `paths`, taken before a batch's stats update it: a name
/// whose inode is gone by the time it is applied (written, then unlinked or replaced) leaves
/// its other names as the only ones holding the change (see `orphaned`).
pub fn held<'p>(source: &SourceTree, paths: impl Iterator<Item = &'p Path>) -> Vec<(PathBuf, Ino)> {
    let index = source.links.lock();
    if index.is_idle() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for path in paths {
        let held = index.inode_of(path).into_iter();
        for ino in held.chain(index.replaced_by_rename(path)) {
            found.push((path.to_path_buf(), ino));
        }
    }
    found
}

/// The other names of the inodes among `held` whose name no longer is that inode: the event
/// that marked the name may stand for a change (a write, a chmod) made through it just
/// before, which the other names now hold alone. One group per such inode, with every name
/// it has under SOURCE now (a single name when it has one link left); inodes in `handled`
/// (written with this batch anyway) are left out.
pub fn orphaned(
    source: &SourceTree,
    held: &[(PathBuf, Ino)],
    handled: &HashSet<Ino>,
) -> Vec<Group> {
    let mut orphans: BTreeMap<Ino, BTreeSet<PathBuf>> = BTreeMap::new();
    for (path, ino) in held {
        if handled.contains(ino) || verified(source, path, *ino).is_some() {
            continue;
        }
        orphans.entry(*ino).or_default().insert(path.clone());
    }
    if orphans.is_empty() {
        return Vec::new();
    }
    let candidates: Vec<(Ino, Vec<PathBuf>)> = {
        let index = source.links.lock();
        orphans
            .iter()
            .map(|(ino, gone)| {
                let names = index.names(*ino);
                (
                    *ino,
                    names.into_iter().filter(|n| !gone.contains(n)).collect(),
                )
            })
            .collect()
    };
    let mut groups_found = Vec::new();
    for (ino, names) in candidates {
        let alive: Vec<(PathBuf, Meta)> = names
            .into_iter()
            .filter_map(|name| verified(source, &name, ino).map(|meta| (name, meta)))
            .collect();
        if alive.iter().any(|(_, meta)| meta.nlink > 1) {
            groups_found.extend(groups(source, &alive).into_iter().filter(|g| g.ino == ino));
        } else if !alive.is_empty() {
            let mut index = source.links.lock();
            for (name, meta) in &alive {
                index.observe(name, ino, meta.nlink);
            }
            groups_found.push(Group {
                ino,
                names: alive.into_iter().map(|(name, _)| name).collect(),
            });
        }
    }
    groups_found
}

/// `name`'s stat when it still is the regular file `ino` and is not excluded.
fn verified(source: &SourceTree, name: &Path, ino: Ino) -> Option<Meta> {
    if source.excludes.covers(name) {
        return None;
    }
    stat_source(source, name).filter(|m| m.kind == Kind::File && ino_of(m) == ino)
}

/// What a search looks for: the inodes, and their inode numbers alone for `d_ino`.
struct Wanted {
    inodes: HashSet<Ino>,
    numbers: HashSet<u64>,
}

impl Wanted {
    fn new(inodes: &HashSet<Ino>) -> Self {
        Self {
            inodes: inodes.clone(),
            numbers: inodes.iter().map(|ino| ino.1).collect(),
        }
    }
}

/// Entries of one directory that are wanted inodes (by `d_ino`, confirmed by a stat).
fn matches_in(
    source: &SourceTree,
    rel: &Path,
    wanted: &Wanted,
    subdirs: Option<&mut Vec<PathBuf>>,
) -> Vec<(Ino, PathBuf)> {
    let Ok(dir) = source.open_dir(rel) else {
        return Vec::new();
    };
    let Ok(entries) = list_inodes(&dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut subdirs = subdirs;
    for (name, kind, d_ino) in entries {
        let child = rel.join(&name);
        if source.excludes.is_excluded(&child) {
            continue;
        }
        let kind = match kind {
            Some(kind) => Some(kind),
            None => stat_at(dir.as_fd(), &name).ok().flatten().map(|m| m.kind),
        };
        if kind == Some(Kind::Dir) {
            if let Some(subdirs) = subdirs.as_deref_mut() {
                subdirs.push(child);
            }
            continue;
        }
        if kind != Some(Kind::File) || !wanted.numbers.contains(&d_ino) {
            continue;
        }
        if let Ok(Some(meta)) = stat_at(dir.as_fd(), &name)
            && meta.kind == Kind::File
            && wanted.inodes.contains(&ino_of(&meta))
        {
            found.push((ino_of(&meta), child));
        }
    }
    found
}

/// The wanted inodes' names in `dirs` (not below them).
fn search_dirs(
    source: &SourceTree,
    dirs: &BTreeSet<PathBuf>,
    wanted: &HashSet<Ino>,
) -> Vec<(Ino, PathBuf)> {
    let wanted = Wanted::new(wanted);
    dirs.iter()
        .flat_map(|dir| matches_in(source, dir, &wanted, None))
        .collect()
}

/// The wanted inodes' names anywhere under SOURCE (excluded subtrees skipped): a parallel walk
/// of directory listings.
fn search_tree(source: &SourceTree, wanted: &HashSet<Ino>) -> Vec<(Ino, PathBuf)> {
    let wanted = Wanted::new(wanted);
    let found = Mutex::new(Vec::new());
    rayon::scope(|scope| walk(scope, source, PathBuf::new(), &wanted, &found));
    found.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn walk<'s>(
    scope: &rayon::Scope<'s>,
    source: &'s SourceTree,
    rel: PathBuf,
    wanted: &'s Wanted,
    found: &'s Mutex<Vec<(Ino, PathBuf)>>,
) {
    let mut subdirs = Vec::new();
    let here = matches_in(source, &rel, wanted, Some(&mut subdirs));
    if !here.is_empty() {
        found.lock().unwrap_or_else(|e| e.into_inner()).extend(here);
    }
    for dir in subdirs {
        scope.spawn(move |scope| walk(scope, source, dir, wanted, found));
    }
}
