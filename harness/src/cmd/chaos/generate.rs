//! The seeded storm generator: a seed, an op count and a mix in, an `OpLog` out. Each
//! operation is chosen against the tree the earlier ones produced, which the generator
//! builds for real in a scratch folder (so renames over existing files, exchanges and moves
//! out and back in are always well-formed). Replaying the log on a fresh tree gives the same
//! tree, so the same seed always gives the same storm.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::mix::{Kind, Mix};
use super::op::{Op, OpLog, Rel, Roots};
use crate::storm::ops::Rng;

/// Deepest directory level the storm creates (SOURCE's own entries are depth 1).
const MAX_DEPTH: usize = 4;
/// Above this many entries the storm prefers removals, keeping trees small and fast.
const SOFT_MAX_ENTRIES: usize = 160;

/// Names to pick from: few enough to collide (renames over files, recreated names), with
/// the awkward ones users have (spaces, newlines, invalid UTF-8, leading dots, non-ASCII).
const NAMES: &[&[u8]] = &[
    b"f0",
    b"f1",
    b"f2",
    b"f3",
    b"f4",
    b"f5",
    b"d0",
    b"d1",
    b"d2",
    b"d3",
    b"current",
    b"a b",
    b"new\nline",
    b"\xff\xfe-invalid",
    b".hidden",
    b"caf\xc3\xa9",
    b" lead",
    b"x.tmp",
];

/// Symlink targets: relative, absolute, dangling, and out of SOURCE.
const LINK_TARGETS: &[&[u8]] = &[
    b"f0",
    b"../f1",
    b"d0/f2",
    b"/etc/hostname",
    b"/",
    b"nowhere/at/all",
    b"../../outside/x",
    b"a b",
];

const MODES: &[u32] = &[0o644, 0o600, 0o640, 0o664, 0o444, 0o755, 0o700, 0o750];
const OWNERS: &[u32] = &[0, 1, 65534];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    File,
    Dir,
    Link,
}

#[derive(Debug, Clone)]
struct Entry {
    rel: Rel,
    kind: EntryKind,
    depth: usize,
}

/// What the tree holds now, for choosing operands.
#[derive(Default)]
struct View {
    src: Vec<Entry>,
    outside: Vec<Entry>,
}

fn walk(root: &Path, outside_only_top: bool) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), Vec::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(read) = fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<_> = read.flatten().map(|e| e.file_name()).collect();
        // Sorted: the same tree always gives the same choices.
        names.sort();
        for name in names {
            let Ok(meta) = fs::symlink_metadata(dir.join(&name)) else {
                continue;
            };
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            let kind = if meta.file_type().is_symlink() {
                EntryKind::Link
            } else if meta.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            if kind == EntryKind::Dir && !outside_only_top {
                stack.push((dir.join(&name), child.clone(), depth + 1));
            }
            out.push(Entry {
                rel: child,
                kind,
                depth: depth + 1,
            });
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.below(items.len() as u64) as usize])
}

fn size(rng: &mut Rng) -> u32 {
    match rng.below(10) {
        0..=3 => rng.below(101) as u32,
        4..=7 => 100 + rng.below(3997) as u32,
        _ => 4096 + rng.below(61_441) as u32,
    }
}

fn is_under(path: &[u8], dir: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

struct Generator<'a> {
    rng: Rng,
    view: View,
    roots: Roots<'a>,
    root_user: bool,
    slots: u32,
}

impl Generator<'_> {
    fn refresh(&mut self) {
        self.view.src = walk(self.roots.src, false);
        self.view.outside = walk(self.roots.outside, true);
    }

    fn seed(&mut self) -> u32 {
        self.rng.next_u64() as u32
    }

    fn of_kind(&self, kinds: &[EntryKind]) -> Vec<Entry> {
        self.view
            .src
            .iter()
            .filter(|e| kinds.contains(&e.kind))
            .cloned()
            .collect()
    }

    /// A new name in a random directory (SOURCE itself or a directory above MAX_DEPTH):
    /// free, or one that exists as well (`taken_ok`: any entry, or `files_only`).
    fn new_path(&mut self, taken_ok: bool) -> Option<Rel> {
        self.name_in_dir(taken_ok, false)
    }

    fn name_in_dir(&mut self, taken_ok: bool, files_only: bool) -> Option<Rel> {
        let dirs: Vec<Entry> = self
            .of_kind(&[EntryKind::Dir])
            .into_iter()
            .filter(|d| d.depth < MAX_DEPTH)
            .collect();
        for _ in 0..8 {
            let parent: Rel = match self.rng.below(3) {
                0 => Vec::new(),
                _ => pick(&mut self.rng, &dirs).map_or(Vec::new(), |d| d.rel.clone()),
            };
            let name = pick(&mut self.rng, NAMES).copied().unwrap_or(b"f0");
            let mut path = parent;
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            let taken = self.view.src.iter().find(|e| e.rel == path);
            let fits = match taken {
                None => true,
                Some(e) => taken_ok && !(files_only && e.kind == EntryKind::Dir),
            };
            if fits {
                return Some(path);
            }
        }
        None
    }

    fn slot(&mut self) -> Rel {
        self.slots += 1;
        format!("o{}", self.slots).into_bytes()
    }

    fn any_entry(&mut self) -> Option<Entry> {
        let all = self.view.src.clone();
        pick(&mut self.rng, &all).cloned()
    }

    fn one(&mut self, kinds: &[EntryKind]) -> Option<Entry> {
        let all = self.of_kind(kinds);
        pick(&mut self.rng, &all).cloned()
    }

    /// One operation of `kind`, or None when the tree offers no operand for it.
    fn op(&mut self, kind: Kind) -> Option<Op> {
        use EntryKind::*;
        let op = match kind {
            Kind::Create => Op::Create {
                path: self.name_in_dir(true, true)?,
                size: size(&mut self.rng),
                seed: self.seed(),
            },
            Kind::Rewrite => Op::Rewrite {
                path: self.one(&[File])?.rel,
                seed: self.seed(),
                back_s: 1 + self.rng.below(3) as u32,
            },
            Kind::Append => Op::Append {
                path: self.one(&[File])?.rel,
                size: 1 + self.rng.below(2048) as u32,
                seed: self.seed(),
            },
            Kind::Truncate => Op::Truncate {
                path: self.one(&[File])?.rel,
                size: self.rng.below(64) as u32,
            },
            Kind::Unlink => Op::Unlink {
                path: self.one(&[File, Link])?.rel,
            },
            Kind::Mkdir => Op::Mkdir {
                path: self.new_path(false)?,
            },
            Kind::RemoveTree => Op::RemoveTree {
                path: self.one(&[Dir])?.rel,
            },
            Kind::Rename => {
                let from = self.any_entry()?;
                let to = self.new_path(true)?;
                let target = self.view.src.iter().find(|e| e.rel == to).cloned();
                let fits = match target {
                    None => true,
                    // rename(2) replaces a file by a non-directory, an empty dir by a dir.
                    Some(t) if from.kind == Dir => {
                        t.kind == Dir && !self.view.src.iter().any(|e| is_under(&e.rel, &t.rel))
                    }
                    Some(t) => t.kind != Dir,
                };
                if !fits || from.rel == to || is_under(&to, &from.rel) {
                    return None;
                }
                Op::Rename { from: from.rel, to }
            }
            Kind::Exchange => {
                let a = self.any_entry()?;
                let b = self.any_entry()?;
                if a.rel == b.rel || is_under(&a.rel, &b.rel) || is_under(&b.rel, &a.rel) {
                    return None;
                }
                Op::Exchange { a: a.rel, b: b.rel }
            }
            Kind::MoveOut => Op::MoveOut {
                path: self.any_entry()?.rel,
                slot: self.slot(),
            },
            Kind::MoveIn => {
                let outside = self.view.outside.clone();
                let slot = pick(&mut self.rng, &outside)?.rel.clone();
                Op::MoveIn {
                    slot,
                    path: self.new_path(false)?,
                }
            }
            Kind::MoveOutRecreate => Op::MoveOutRecreate {
                path: self.one(&[Dir, File])?.rel,
                slot: self.slot(),
                seed: self.seed(),
            },
            Kind::Swap => Op::Swap {
                path: self.one(&[Dir, File])?.rel,
                seed: self.seed(),
            },
            Kind::Symlink => Op::Symlink {
                path: self.new_path(false)?,
                target: pick(&mut self.rng, LINK_TARGETS)?.to_vec(),
            },
            Kind::Chmod => Op::Chmod {
                path: self.one(&[File, Dir])?.rel,
                mode: *pick(&mut self.rng, MODES)?,
            },
            Kind::Chown => {
                if !self.root_user {
                    return None;
                }
                Op::Chown {
                    path: self.any_entry()?.rel,
                    uid: *pick(&mut self.rng, OWNERS)?,
                    gid: *pick(&mut self.rng, OWNERS)?,
                }
            }
            Kind::Touch => Op::Touch {
                path: self.one(&[File, Dir])?.rel,
                // Somewhere in 2001-2020, at any nanosecond.
                secs: 1_000_000_000 + self.rng.below(600_000_000) as i64,
                nsec: self.rng.below(1_000_000_000) as u32,
            },
            Kind::TmpfileLink => Op::TmpfileLink {
                path: self.new_path(false)?,
                size: size(&mut self.rng),
                seed: self.seed(),
            },
            // A free name in any directory: often another one than the file's.
            Kind::Link => Op::Link {
                from: self.one(&[File])?.rel,
                to: self.new_path(false)?,
            },
        };
        Some(op)
    }
}

/// Generates `setup` operations that build the tree before the syncer starts, then `live`
/// operations (with pauses) to run under it. `scratch` must be an empty folder; the
/// generator leaves its final tree there.
pub fn generate(
    seed: u64,
    setup: usize,
    live: usize,
    mix: &Mix,
    scratch: &Path,
) -> io::Result<OpLog> {
    let (src, outside) = (scratch.join("src"), scratch.join("outside"));
    fs::create_dir_all(&src)?;
    fs::create_dir_all(&outside)?;
    let mut g = Generator {
        rng: Rng::new(seed),
        view: View::default(),
        roots: Roots {
            src: &src,
            outside: &outside,
        },
        root_user: nix::unistd::geteuid().is_root(),
        slots: 0,
    };
    let mut log = OpLog::default();
    let mut burst = 0u32;
    // Pauses are log entries too, but not operations: count the operations.
    let mut made = 0;
    while made < setup + live {
        let in_setup = made < setup;
        let crowded = g.view.src.len() > SOFT_MAX_ENTRIES;
        let kind = if in_setup {
            mix.pick_setup(&mut g.rng)
        } else {
            mix.pick(&mut g.rng, crowded)
        };
        let Some(op) = g.op(kind) else { continue };
        // Logged even when the tree refuses it (it then fails the same way on replay), so a
        // replay always retraces the generator's tree.
        let _refused = op.apply(g.roots).is_err();
        g.refresh();
        log.ops.push(op);
        made += 1;
        if in_setup {
            log.setup = log.ops.len();
            continue;
        }
        if burst > 0 {
            burst -= 1;
        } else if let Some(us) = mix.pause_us(&mut g.rng, &mut burst) {
            log.ops.push(Op::Sleep { us });
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_storm_and_the_replay_the_same_tree() {
        let mix = Mix::default();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = generate(42, 20, 200, &mix, a.path()).expect("generate");
        let two = generate(42, 20, 200, &mix, b.path()).expect("generate");
        assert_eq!(one, two);
        assert_eq!(
            (one.setup, one.live_operations()),
            (20, 200),
            "pauses not counted"
        );
        assert_ne!(
            one,
            generate(43, 20, 200, &mix, &b.path().join("x")).unwrap()
        );
        let verbs: std::collections::BTreeSet<_> = one.ops.iter().map(Op::verb).collect();
        assert!(verbs.len() >= 12, "a varied mix: {verbs:?}");

        let replay = tempfile::tempdir().unwrap();
        let (src, outside) = (replay.path().join("src"), replay.path().join("outside"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let roots = Roots {
            src: &src,
            outside: &outside,
        };
        let failed = one.ops.iter().filter(|op| op.apply(roots).is_err()).count();
        assert!(
            failed * 10 < one.ops.len(),
            "most ops apply: {failed} failed"
        );
        let shape = |root: &Path| -> Vec<(Rel, EntryKind, Vec<u8>)> {
            walk(root, false)
                .into_iter()
                .map(|e| {
                    let body = match e.kind {
                        EntryKind::File => {
                            fs::read(root.join(std::ffi::OsStr::from_bytes(&e.rel))).unwrap()
                        }
                        _ => Vec::new(),
                    };
                    (e.rel, e.kind, body)
                })
                .collect()
        };
        assert_eq!(
            shape(&a.path().join("src")),
            shape(&src),
            "replay retraces the tree"
        );
    }
}
