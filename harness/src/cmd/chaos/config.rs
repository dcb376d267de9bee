//! The chaos command's settings: `harness chaos` arguments and `scenarios/chaos.toml` in, one
//! validated `ChaosConfig` out (command-line values override the file's).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::error::ChaosError;
use super::mix::{Kind, Mix, Pause};
use crate::cli::chaos::UnknownName;
use crate::cli::{Backend, ChaosArgs, Target};

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
fn matrix<T: Clone + std::str::FromStr<Err = UnknownName>>(
    given: &[T],
    in_file: &[String],
    what: &'static str,
    path: &Path,
) -> Result<Vec<T>, ChaosError> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    if in_file.is_empty() {
        return Err(ChaosError::EmptyMatrix {
            path: path.to_path_buf(),
            what,
        });
    }
    in_file
        .iter()
        .map(|name| {
            name.parse().map_err(|source| ChaosError::Matrix {
                path: path.to_path_buf(),
                source,
            })
        })
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
    pub fn load(args: &ChaosArgs, repo_root: &Path) -> Result<ChaosConfig, ChaosError> {
        let path = args
            .scenario
            .clone()
            .unwrap_or_else(|| repo_root.join("scenarios/chaos.toml"));
        let file: File = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|source| ChaosError::Toml {
                path: path.clone(),
                source,
            })?,
            Err(e) if args.scenario.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
                File::default()
            }
            Err(e) => return Err(ChaosError::io("read", &path)(e)),
        };
        let mut pause = file.pause.unwrap_or_default();
        if let Some(us) = args.pause_us {
            pause.mean_us = us;
        }
        if !(0.0..=1.0).contains(&pause.burst_chance) {
            return Err(ChaosError::BurstChance { path });
        }
        let weights: Vec<(Kind, u32)> = file.mix.into_iter().collect();
        let mix = Mix::with_weights(&weights, pause).map_err(|source| ChaosError::Mix {
            path: path.clone(),
            source,
        })?;
        let backends = matrix(&args.backend, &file.matrix.backends, "backends", &path)?;
        let targets = matrix(&args.target, &file.matrix.targets, "targets", &path)?;
        let seeds = match (args.seed_range, args.seeds) {
            (Some(range), _) => range,
            (None, Some(n)) => (1, n + 1),
            (None, None) => (1, file.storm.seeds + 1),
        };
        let converge_s = args.converge_s.unwrap_or(file.storm.converge_s);
        if !(converge_s > 0.0 && converge_s < 3600.0) {
            return Err(ChaosError::Converge(converge_s));
        }
        if args.jobs == 0 {
            return Err(ChaosError::NoJobs);
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
    use std::path::PathBuf;

    use super::*;

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
        assert!(err.to_string().contains("frobnicate"), "{err}");
    }
}
