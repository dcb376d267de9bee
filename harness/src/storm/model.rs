//! The planner's simulated tree: planned ops in, the state they leave behind out. It picks
//! valid targets for each op kind and answers what every touched path must finally be.

use std::collections::HashMap;

use crate::scenario::{FileNames, OpKind, SizeDist, Tree};
use crate::storm::ops::{
    CHMOD_MODE, Expect, Expected, FILE_MODE, HEADER_LEN, Op, ROOT, Rng, file_name, join,
    symlink_target,
};

pub const NO_POS: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct MFile {
    dir: u32,
    generation: u32,
    version: u32,
    size: u64,
    mode: u32,
    link: bool,
    alive: bool,
    group: u32,
}

#[derive(Debug, Clone)]
struct MDir {
    parent: u32,
    depth: u32,
    alive: bool,
    entries: u32,
    group: u32,
    path: String,
}

/// A set of ids with O(1) insert, remove and uniform random pick.
#[derive(Default)]
struct Picker {
    items: Vec<u32>,
    pos: Vec<u32>,
}

impl Picker {
    fn insert(&mut self, id: u32) {
        if self.pos.len() <= id as usize {
            self.pos.resize(id as usize + 1, NO_POS);
        }
        self.pos[id as usize] = self.items.len() as u32;
        self.items.push(id);
    }
    fn remove(&mut self, id: u32) {
        let at = self.pos[id as usize];
        let last = self.items.pop().expect("remove from a non-empty picker");
        if last != id {
            self.items[at as usize] = last;
            self.pos[last as usize] = at;
        }
        self.pos[id as usize] = NO_POS;
    }
    fn pick(&self, rng: &mut Rng) -> Option<u32> {
        (!self.items.is_empty()).then(|| self.items[rng.below(self.items.len() as u64) as usize])
    }
}

pub struct Model {
    max_depth: u32,
    files: Vec<MFile>,
    dirs: Vec<MDir>,
    regular: Picker,
    links: Picker,
    subdirs: Picker,
}

impl Model {
    pub fn new(max_depth: u32) -> Self {
        let root = MDir {
            parent: ROOT,
            depth: 0,
            alive: true,
            entries: 0,
            group: 0,
            path: String::new(),
        };
        Self {
            max_depth,
            files: Vec::new(),
            dirs: vec![root],
            regular: Picker::default(),
            links: Picker::default(),
            subdirs: Picker::default(),
        }
    }

    /// Lays out `tree` breadth-first; returns the setup ops (mkdirs, then files).
    pub fn build_tree(&mut self, tree: &Tree, rng: &mut Rng) -> Vec<Op> {
        let mut ops = Vec::new();
        let mut parent = 0usize;
        while (self.dirs.len() as u32) <= tree.dirs && parent < self.dirs.len() {
            if self.dirs[parent].depth < tree.depth {
                for _ in 0..tree.fanout {
                    if self.dirs.len() as u32 > tree.dirs {
                        break;
                    }
                    ops.push(self.mkdir(parent as u32));
                }
            }
            parent += 1;
        }
        let slots = self.dirs.len() as u32;
        for i in 0..tree.files {
            let size = rng.size(&tree.size);
            ops.push(self.create(i % slots, size, false));
        }
        ops
    }

    pub fn dir_paths(&self) -> Vec<String> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    pub fn random_dir(&self, rng: &mut Rng) -> u32 {
        let n = self.subdirs.items.len() as u64 + 1;
        match rng.below(n) {
            0 => ROOT,
            i => self.subdirs.items[i as usize - 1],
        }
    }

    pub fn alive_subdirs(&self) -> Vec<u32> {
        let mut dirs = self.subdirs.items.clone();
        dirs.sort_unstable();
        dirs
    }

    pub fn regular_files(&self) -> Vec<u32> {
        let mut files = self.regular.items.clone();
        files.sort_unstable();
        files
    }

    pub fn is_alive(&self, file: u32) -> bool {
        self.files[file as usize].alive
    }

    fn op(&self, kind: OpKind, file: u32) -> Op {
        let f = &self.files[file as usize];
        Op {
            kind,
            file,
            dir: f.dir,
            generation: f.generation,
            size: f.size,
            version: f.version,
            mode: f.mode,
            group: f.group,
            at_ns: 0,
        }
    }

    fn mkdir(&mut self, parent: u32) -> Op {
        let id = self.dirs.len() as u32;
        let p = &self.dirs[parent as usize];
        // Top-level directories start their own lane group; deeper ones share their parent's.
        let group = if parent == ROOT { id } else { p.group };
        let dir = MDir {
            parent,
            depth: p.depth + 1,
            alive: true,
            entries: 0,
            group,
            path: join(&p.path, &format!("d{id}")),
        };
        self.dirs[parent as usize].entries += 1;
        self.dirs.push(dir);
        self.subdirs.insert(id);
        Op {
            kind: OpKind::Mkdir,
            file: 0,
            dir: id,
            generation: 0,
            size: 0,
            version: 0,
            mode: 0o755,
            group,
            at_ns: 0,
        }
    }

    /// Allocates a file that a later `commit_create` creates (sequence phases).
    pub fn create_pending(&mut self, dir: u32, size: u64) -> u32 {
        let id = self.files.len() as u32;
        // Files in the root get a group of their own so root creates spread over all lanes.
        let group = if dir == ROOT {
            id
        } else {
            self.dirs[dir as usize].group
        };
        self.files.push(MFile {
            dir,
            generation: 0,
            version: 1,
            size,
            mode: FILE_MODE,
            link: false,
            alive: false,
            group,
        });
        id
    }

    pub fn commit_create(&mut self, file: u32) -> Op {
        let f = &mut self.files[file as usize];
        f.alive = true;
        let (dir, link) = (f.dir, f.link);
        self.dirs[dir as usize].entries += 1;
        if link {
            self.links.insert(file)
        } else {
            self.regular.insert(file)
        }
        self.op(
            if link {
                OpKind::Symlink
            } else {
                OpKind::Create
            },
            file,
        )
    }

    pub fn create(&mut self, dir: u32, size: u64, link: bool) -> Op {
        let id = self.create_pending(dir, if link { 0 } else { size });
        self.files[id as usize].link = link;
        self.commit_create(id)
    }

    /// An op of `kind` on a random valid target, or None when there is none.
    pub fn random_op(&mut self, kind: OpKind, rng: &mut Rng, size: &SizeDist) -> Option<Op> {
        match kind {
            OpKind::Create => Some(self.create(self.random_dir(rng), rng.size(size), false)),
            OpKind::Symlink => Some(self.create(self.random_dir(rng), 0, true)),
            OpKind::Mkdir => {
                // Half the time extend the newest directory, so deep chains grow.
                let newest = self.subdirs.items.last().copied();
                let parent = match newest {
                    Some(d) if rng.below(2) == 0 => d,
                    _ => self.random_dir(rng),
                };
                (self.dirs[parent as usize].depth < self.max_depth).then(|| self.mkdir(parent))
            }
            OpKind::Rmdir => {
                let dir = (0..8)
                    .filter_map(|_| self.subdirs.pick(rng))
                    .find(|&d| self.dirs[d as usize].entries == 0)?;
                let parent = self.dirs[dir as usize].parent;
                self.dirs[parent as usize].entries -= 1;
                self.dirs[dir as usize].alive = false;
                self.subdirs.remove(dir);
                let d = &self.dirs[dir as usize];
                Some(Op {
                    kind,
                    file: 0,
                    dir,
                    generation: 0,
                    size: 0,
                    version: 0,
                    mode: 0,
                    group: d.group,
                    at_ns: 0,
                })
            }
            OpKind::Rename | OpKind::Delete
                if rng.below(4) == 0 && !self.links.items.is_empty() =>
            {
                let file = self.links.pick(rng)?;
                self.file_op(kind, file, rng, size)
            }
            _ => {
                let file = self.regular.pick(rng)?;
                self.file_op(kind, file, rng, size)
            }
        }
    }

    /// Applies a file op to `file` (alive); None for ops that do not apply to a symlink.
    pub fn file_op(
        &mut self,
        kind: OpKind,
        file: u32,
        rng: &mut Rng,
        size: &SizeDist,
    ) -> Option<Op> {
        let link = self.files[file as usize].link;
        if link && !matches!(kind, OpKind::Rename | OpKind::Delete) {
            return None;
        }
        let f = &mut self.files[file as usize];
        match kind {
            OpKind::Write => {
                f.version += 1;
                f.size = rng.size(size);
            }
            OpKind::Overwrite => f.version += 1,
            OpKind::Append => f.size += 1 + rng.size(size) / 4,
            OpKind::Chmod => {
                f.mode = if f.mode == FILE_MODE {
                    CHMOD_MODE
                } else {
                    FILE_MODE
                }
            }
            OpKind::Rename => f.generation += 1,
            OpKind::Delete => {
                f.alive = false;
                let dir = f.dir;
                self.dirs[dir as usize].entries -= 1;
                if link {
                    self.links.remove(file)
                } else {
                    self.regular.remove(file)
                }
            }
            OpKind::Create | OpKind::Symlink | OpKind::Mkdir | OpKind::Rmdir => return None,
        }
        Some(self.op(kind, file))
    }

    /// Final state of every path the storm touched, sorted by path.
    pub fn expectations(
        &self,
        touched: HashMap<(bool, u32, u32), (u32, u32)>,
        names: FileNames,
    ) -> Vec<Expect> {
        let mut out: Vec<Expect> = touched
            .into_iter()
            .map(|((is_dir, id, generation), (phase, op))| {
                if is_dir {
                    let d = &self.dirs[id as usize];
                    let state = if d.alive {
                        Expected::Dir
                    } else {
                        Expected::Absent
                    };
                    return Expect {
                        path: d.path.clone(),
                        state,
                        phase,
                        op,
                    };
                }
                let f = &self.files[id as usize];
                let path = join(
                    &self.dirs[f.dir as usize].path,
                    &file_name(names, id, generation),
                );
                let state = if !f.alive || f.generation != generation {
                    Expected::Absent
                } else if f.link {
                    Expected::Symlink {
                        target: symlink_target(id),
                    }
                } else {
                    let header = (f.size >= HEADER_LEN).then_some((id, f.version));
                    Expected::File {
                        size: f.size,
                        header,
                        mode: f.mode,
                    }
                };
                Expect {
                    path,
                    state,
                    phase,
                    op,
                }
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}
