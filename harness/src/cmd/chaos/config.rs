//! The chaos command's settings: `harness chaos` arguments and `scenarios/chaos.toml` in, one
//! validated `ChaosConfig` out (command-line values override the file's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::case::{Backend, Target};
use super::mix::{Kind, Mix, Pause};

/// `harness chaos` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// The storm's settings (op mix, pauses, counts); scenarios/chaos.toml by default.
    pub scenario: Option<PathBuf>,
    /// Seeds 1..=N.
    #[arg(long, conflicts_with = "seed_range")]
    pub seeds: Option<u64>,
    /// Seeds A..B (B excluded), so long campaigns can be split, resumed and merged.
    #[arg(long, value_parser = parse_range)]
    pub seed_range: Option<(u64, u64)>,
    /// Live operations per seed.
    #[arg(long)]
    pub ops: Option<usize>,
    /// Operations that build the tree before the syncer starts.
    #[arg(long)]
    pub setup_ops: Option<usize>,
    /// Mean pause between operations, microseconds (bursts have none).
    #[arg(long)]
    pub pause_us: Option<u32>,
    /// Comma-separated: inotify, fanotify.
    #[arg(long, value_delimiter = ',')]
    pub backend: Vec<Backend>,
    /// Comma-separated: local (a directory), rsync (a real rsync daemon on loopback).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<Target>,
    /// Cases run at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Seconds after the last operation within which the replica must equal SOURCE.
    #[arg(long)]
    pub converge_s: Option<f64>,
    /// Results folder: runs.csv (appended as cases finish), summary.md, chaos.json,
    /// failures/.
    #[arg(long, default_value = "target/chaos")]
    pub out: PathBuf,
    /// Skip the cases runs.csv in --out already holds (resume a campaign).
    #[arg(long)]
    pub resume: bool,
    /// Where trees live while cases run (default /dev/shm, else the temp dir).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Shrink each failing case to a short op log (delta debugging) in failures/.
    #[arg(long)]
    pub shrink: bool,
    /// Most cases run while shrinking one failure.
    #[arg(long, default_value_t = 120)]
    pub shrink_trials: u32,
    /// Runs of each shrink candidate (it fails if any run fails): >1 for flaky failures.
    #[arg(long, default_value_t = 1)]
    pub shrink_tries: u32,
    /// Replay this op log (e.g. failures/*/minimal.ops) instead of generating seeds.
    #[arg(long, conflicts_with_all = ["seeds", "seed_range"])]
    pub replay: Option<PathBuf>,
    /// Print the op log of --seeds/--seed-range's first seed and exit (nothing is run).
    #[arg(long)]
    pub print_ops: bool,
    /// Extra arguments for the syncer, e.g. "--batch-delay 50".
    #[arg(long, allow_hyphen_values = true)]
    pub syncer_args: Option<String>,
    /// Only regenerate summary.md from the runs.csv of these folders (merge campaigns).
    #[arg(long, num_args = 1..)]
    pub merge: Vec<PathBuf>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?}: write the range as A..B, e.g. 1..201"))?;
    let a: u64 = a.parse().map_err(|_| format!("bad range start {a:?}"))?;
    let b: u64 = b.parse().map_err(|_| format!("bad range end {b:?}"))?;
    if b <= a {
        return Err(format!(
            "empty range {s:?}: the end must be above the start"
        ));
    }
    Ok((a, b))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    description: String,
    #[serde(default)]
    storm: StormFile,
    #[serde(default)]
    pause: Option<Pause>,
    #[serde(default)]
    mix: BTreeMap<Kind, u32>,
    #[serde(default)]
    matrix: MatrixFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StormFile {
    seeds: u64,
    ops: usize,
    setup_ops: usize,
    converge_s: f64,
}

impl Default for StormFile {
    fn default() -> Self {
        StormFile {
            seeds: 20,
            ops: 300,
            setup_ops: 40,
            converge_s: 10.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MatrixFile {
    backends: Vec<String>,
    targets: Vec<String>,
}

impl Default for MatrixFile {
    fn default() -> Self {
        MatrixFile {
            backends: vec!["inotify".into(), "fanotify".into()],
            targets: vec!["local".into()],
        }
    }
}

/// One `[matrix]` list: the command line's values, else the file's, parsed.
fn matrix<T: Clone + std::str::FromStr<Err = String>>(
    given: &[T],
    in_file: &[String],
    what: &str,
    path: &Path,
) -> Result<Vec<T>, String> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    if in_file.is_empty() {
        return Err(format!("{}: [matrix] {what} is empty", path.display()));
    }
    in_file
        .iter()
        .map(|name| name.parse().map_err(|e| format!("{}: {e}", path.display())))
        .collect()
}

/// Validated settings of one chaos command.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub description: String,
    pub seeds: (u64, u64),
    pub ops: usize,
    pub setup_ops: usize,
    pub mix: Mix,
    pub backends: Vec<Backend>,
    pub targets: Vec<Target>,
    pub converge: Duration,
    pub jobs: usize,
    pub syncer_args: Vec<String>,
}

impl ChaosConfig {
    pub fn load(args: &ChaosArgs, repo_root: &Path) -> Result<ChaosConfig, String> {
        let path = args
            .scenario
            .clone()
            .unwrap_or_else(|| repo_root.join("scenarios/chaos.toml"));
        let file: File = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if args.scenario.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
                File::default()
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut pause = file.pause.unwrap_or_default();
        if let Some(us) = args.pause_us {
            pause.mean_us = us;
        }
        if !(0.0..=1.0).contains(&pause.burst_chance) {
            return Err(format!(
                "{}: [pause] burst_chance must be within 0..1",
                path.display()
            ));
        }
        let weights: Vec<(Kind, u32)> = file.mix.into_iter().collect();
        let mix =
            Mix::with_weights(&weights, pause).map_err(|e| format!("{}: {e}", path.display()))?;
        let backends = matrix(&args.backend, &file.matrix.backends, "backends", &path)?;
        let targets = matrix(&args.target, &file.matrix.targets, "targets", &path)?;
        let seeds = match (args.seed_range, args.seeds) {
            (Some(range), _) => range,
            (None, Some(n)) => (1, n + 1),
            (None, None) => (1, file.storm.seeds + 1),
        };
        let converge_s = args.converge_s.unwrap_or(file.storm.converge_s);
        if !(converge_s > 0.0 && converge_s < 3600.0) {
            return Err(format!(
                "convergence limit {converge_s} s: give a number of seconds above 0"
            ));
        }
        if args.jobs == 0 {
            return Err("--jobs 0: give at least 1".into());
        }
        Ok(ChaosConfig {
            description: file.description,
            seeds,
            ops: args.ops.unwrap_or(file.storm.ops),
            setup_ops: args.setup_ops.unwrap_or(file.storm.setup_ops),
            mix,
            backends,
            targets,
            converge: Duration::from_secs_f64(converge_s),
            jobs: args.jobs,
            syncer_args: args
                .syncer_args
                .as_deref()
                .map(|s| s.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bad_ones_say_how() {
        assert_eq!(parse_range("1..201"), Ok((1, 201)));
        assert!(parse_range("5").unwrap_err().contains("A..B"));
        assert!(parse_range("9..3").unwrap_err().contains("empty"));
    }

    #[test]
    fn the_shipped_chaos_scenario_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let args = ChaosArgs {
            scenario: Some(root.join("scenarios/chaos.toml")),
            seeds: None,
            seed_range: None,
            ops: None,
            setup_ops: None,
            pause_us: None,
            backend: vec![],
            target: vec![],
            jobs: 4,
            converge_s: None,
            out: PathBuf::from("x"),
            resume: false,
            workdir: None,
            shrink: false,
            shrink_trials: 1,
            shrink_tries: 1,
            replay: None,
            print_ops: false,
            syncer_args: None,
            merge: vec![],
        };
        let config = ChaosConfig::load(&args, root).expect("chaos.toml is valid");
        assert!(config.ops > 0 && config.seeds.1 > config.seeds.0);
        let bad = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(bad.path(), "[mix]\nfrobnicate = 3\n").unwrap();
        let args = ChaosArgs {
            scenario: Some(bad.path().to_path_buf()),
            ..args
        };
        let err = ChaosConfig::load(&args, root).unwrap_err();
        assert!(err.contains("frobnicate"), "{err}");
    }
}
