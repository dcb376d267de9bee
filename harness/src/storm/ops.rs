//! The storm's vocabulary, shared by the planner and its simulated tree: planned operations,
//! what a path must finally look like, file names and contents, and the seeded random source.

use crate::scenario::{FileNames, OpKind, SizeDist};

/// Directory index of the root in `Plan::dirs`.
pub const ROOT: u32 = 0;

/// Bytes of the content header `#h <id:010> <version:010>\n`.
pub const HEADER_LEN: u64 = 25;

pub const FILE_MODE: u32 = 0o644;

pub const CHMOD_MODE: u32 = 0o600;

/// One planned operation. `group` keeps ops that touch the same entries on one lane
/// (`group % threads`), so lanes never race; `at_ns` is the open-loop offset from the
/// phase start (0 without a rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    pub file: u32,
    pub dir: u32,
    /// Name generation after the op (a rename increments it).
    pub generation: u32,
    pub size: u64,
    pub version: u32,
    pub mode: u32,
    pub group: u32,
    pub at_ns: u64,
}

/// What a path must look like in the replica at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    File {
        size: u64,
        header: Option<(u32, u32)>,
        mode: u32,
    },
    Symlink {
        target: String,
    },
    Dir,
    Absent,
}

/// A path touched by the storm, its final state, and the op that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub path: String,
    pub state: Expected,
    pub phase: u32,
    pub op: u32,
}

pub fn file_name(names: FileNames, file: u32, generation: u32) -> String {
    let base = match names {
        FileNames::FId => format!("f{file}"),
        FileNames::Seq => format!("{}", u64::from(file) + 1),
    };
    if generation == 0 {
        base
    } else {
        format!("{base}.r{generation}")
    }
}

pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The content header of a file version (the probe reads it to confirm the final version).
pub fn header(file: u32, version: u32) -> String {
    format!("#h {file:010} {version:010}\n")
}

/// Target of the symlink with this file id (dangling on purpose: only the link is replicated).
pub fn symlink_target(file: u32) -> String {
    format!("../target-of-{file}")
}

/// SplitMix64: tiny, seedable, and identical on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    pub fn size(&mut self, dist: &SizeDist) -> u64 {
        let (lo, hi) = (dist.min_bytes, dist.max_bytes);
        if hi <= lo {
            return lo;
        }
        match dist.dist {
            crate::scenario::Dist::Uniform => lo + self.below(hi - lo + 1),
            crate::scenario::Dist::LogUniform => {
                let (a, b) = (((lo + 1) as f64).ln(), ((hi + 1) as f64).ln());
                let unit = self.below(1 << 53) as f64 / (1u64 << 53) as f64;
                ((a + (b - a) * unit).exp() as u64)
                    .saturating_sub(1)
                    .clamp(lo, hi)
            }
        }
    }
}
