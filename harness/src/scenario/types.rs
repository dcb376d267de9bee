//! The scenario's types, as serde reads them from TOML: the tree, the phases, the syncers
//! under test, timeouts, SLO and kernel knobs. Every key is documented in scenarios/README.md.

use serde::Deserialize;

use crate::host::kernel::Knobs;

/// One scenario, validated once at the edge and passed inward read-only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "one")]
    pub repeats: u32,
    #[serde(default)]
    pub target: TargetKind,
    /// Where the replica lives: next to the source, on its own tmpfs (/dev/shm), or on a
    /// loop-mounted ext4 of its own.
    #[serde(default)]
    pub replica_fs: ReplicaFs,
    /// Size of the loop-mounted ext4 image (MiB, sparse) for `replica_fs = "loop-ext4"`.
    #[serde(default = "default_replica_mib")]
    pub replica_mib: u64,
    /// Where each run's folder (source, a `same` replica, the floor copy) lives: in the work
    /// dir, or on a fresh loop-mounted ext4 per run. On ext4 a mass delete slows the inode
    /// allocation of the next minute, so on a shared work dir the syncer that runs second
    /// pays for the first one's cleanup.
    #[serde(default)]
    pub workdir_fs: WorkdirFs,
    /// Size of that image (MiB, sparse; one inode per 4 KiB).
    #[serde(default = "default_workdir_mib")]
    pub workdir_mib: u64,
    /// `f-id` names files `f<id>`; `seq` names them `1`, `2`, ... as the seed's shell loop does.
    #[serde(default)]
    pub file_names: FileNames,
    /// Whether a calibration run (generator writes straight into the replica) runs first.
    #[serde(default = "yes")]
    pub calibrate: bool,
    /// Measure the kernel memory the syncer pins: slab after drop_caches with it running
    /// versus after it stopped (slow on big trees: each reading drops every cache).
    #[serde(default)]
    pub measure_kmem: bool,
    #[serde(default)]
    pub tree: Tree,
    #[serde(default, rename = "phase")]
    pub phases: Vec<Phase>,
    #[serde(default)]
    pub kernel: Knobs,
    #[serde(default)]
    pub slo: Slo,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default, rename = "sut")]
    pub suts: Vec<SutSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    #[default]
    Local,
    RsyncDaemon,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicaFs {
    #[default]
    Same,
    Tmpfs,
    LoopExt4,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkdirFs {
    #[default]
    Shared,
    LoopExt4,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileNames {
    #[default]
    FId,
    Seq,
}

/// The tree that exists before the storm (created before the syncer starts).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    #[serde(default)]
    pub dirs: u32,
    /// Deepest directory level allowed (root is 0), also for `mkdir` in the storm.
    #[serde(default = "default_depth")]
    pub depth: u32,
    /// Subdirectories per directory when the tree is laid out breadth-first.
    #[serde(default = "default_fanout")]
    pub fanout: u32,
    #[serde(default)]
    pub files: u32,
    #[serde(default)]
    pub size: SizeDist,
}

/// File sizes, drawn per written version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeDist {
    #[serde(default)]
    pub min_bytes: u64,
    #[serde(default)]
    pub max_bytes: u64,
    #[serde(default)]
    pub dist: Dist,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dist {
    #[default]
    Uniform,
    LogUniform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    Create,
    Write,
    Append,
    Overwrite,
    Rename,
    Delete,
    Mkdir,
    Rmdir,
    Chmod,
    Symlink,
}

/// How the generator performs operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// Direct syscalls from the generator threads.
    #[default]
    Syscalls,
    /// One `touch NAME` process per create, as the seed's `for a in $(seq 200)` loop.
    TouchProcess,
}

/// One storm phase: either a weighted `mix` of `ops` operations, or a fixed `sequence`
/// applied to `files` files for `rounds` rounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ops: u64,
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub mix: std::collections::BTreeMap<OpKind, u32>,
    #[serde(default)]
    pub sequence: Vec<OpKind>,
    #[serde(default)]
    pub files: u32,
    #[serde(default = "one")]
    pub rounds: u32,
    #[serde(default)]
    pub round_gap_ms: u64,
    /// Operations per second (open loop); 0 means as fast as possible.
    #[serde(default)]
    pub rate: f64,
    #[serde(default = "one")]
    pub threads: u32,
    #[serde(default)]
    pub size: Option<SizeDist>,
    #[serde(default)]
    pub via: Via,
    /// SIGSTOP the syncer under test for this phase (SIGCONT after it), so its queue fills.
    #[serde(default)]
    pub pause_sut: bool,
    /// Pause before the phase starts.
    #[serde(default)]
    pub gap_ms: u64,
    /// Where a `create` sequence puts its new files.
    #[serde(default)]
    pub create_in: CreateIn,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreateIn {
    /// Round-robin over the tree's directories (the root when there are none).
    #[default]
    Spread,
    /// All in the directory created last (the deepest, last of the breadth-first layout):
    /// a syncer's start-up walk reaches it last.
    LastDir,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub p99_ms: Option<f64>,
    pub converge_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default = "t_ready")]
    pub ready_s: f64,
    #[serde(default = "t_storm")]
    pub storm_s: f64,
    #[serde(default = "t_converge")]
    pub converge_s: f64,
    #[serde(default = "t_idle")]
    pub idle_s: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            ready_s: t_ready(),
            storm_s: t_storm(),
            converge_s: t_converge(),
            idle_s: t_idle(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SutKind {
    Syncer,
    SeedScript,
    Lsyncd,
    Command,
}

/// One syncer under test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SutSpec {
    pub kind: SutKind,
    /// Label in results; defaults to the kind (plus the delay for lsyncd).
    #[serde(default)]
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Extra arguments for `syncer`.
    #[serde(default)]
    pub args: Vec<String>,
    /// lsyncd's `delay` in seconds (lsyncd ships with 15).
    #[serde(default = "default_lsyncd_delay")]
    pub delay_s: f64,
    /// Command template for `command`: {src} {dst} {url} {password_file}.
    #[serde(default)]
    pub command: String,
    /// Overrides timeouts.converge_s for this syncer.
    pub converge_timeout_s: Option<f64>,
    /// A baseline known to fail this scenario (e.g. rsync's quick check on same-size
    /// rewrites): its failure is still reported in full but does not fail the exit code.
    #[serde(default)]
    pub expect_fail: bool,
}

impl SutSpec {
    pub fn label(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        match self.kind {
            SutKind::Syncer => "syncer".into(),
            SutKind::SeedScript => "seed-script".into(),
            SutKind::Lsyncd => format!("lsyncd-delay{}", self.delay_s),
            SutKind::Command => "command".into(),
        }
    }
}

fn default_seed() -> u64 {
    1
}
fn one<T: From<u8>>() -> T {
    T::from(1)
}
fn yes() -> bool {
    true
}
fn default_replica_mib() -> u64 {
    2048
}
fn default_workdir_mib() -> u64 {
    16_384
}
fn default_depth() -> u32 {
    4
}
fn default_fanout() -> u32 {
    8
}
fn default_lsyncd_delay() -> f64 {
    15.0
}
fn t_ready() -> f64 {
    60.0
}
fn t_storm() -> f64 {
    600.0
}
fn t_converge() -> f64 {
    60.0
}
fn t_idle() -> f64 {
    30.0
}

/// Which syncers run: `--sut NAME` selects by label or kind (even ones off by default);
/// without it, every enabled one.
pub fn selected<'a>(all: &'a [SutSpec], wanted: &[String]) -> Result<Vec<&'a SutSpec>, UnknownSut> {
    if wanted.is_empty() {
        return Ok(all.iter().filter(|s| s.enabled).collect());
    }
    let mut out = Vec::new();
    for w in wanted {
        let hits: Vec<&SutSpec> = all
            .iter()
            .filter(|s| {
                s.label() == *w || format!("{:?}", s.kind).to_lowercase() == w.replace('-', "")
            })
            .collect();
        if hits.is_empty() {
            return Err(UnknownSut {
                wanted: w.clone(),
                has: all.iter().map(SutSpec::label).collect(),
            });
        }
        out.extend(hits);
    }
    Ok(out)
}

/// `--sut NAME` names no syncer of the scenario.
#[derive(Debug, thiserror::Error)]
#[error("no syncer `{wanted}` in this scenario; it has: {}", has.join(", "))]
pub struct UnknownSut {
    pub wanted: String,
    pub has: Vec<String>,
}

impl From<UnknownSut> for crate::Error {
    fn from(e: UnknownSut) -> Self {
        crate::Error::usage(e)
    }
}
