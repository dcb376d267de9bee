//! The chaos command's settings: `harness chaos` arguments and `scenarios/chaos.toml` in, one
//! validated `ChaosConfig` out (command-line values override the file's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::ChaosError;
use super::fault::{self, Fault, FaultFile};
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
    #[serde(default)]
    fault: Vec<FaultFile>,
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
    /// Faults placed in every case's op log, each with its count (`[[fault]]` tables).
    pub faults: Vec<(Fault, u32)>,
}

impl ChaosConfig {
    pub fn load(args: &ChaosArgs, repo_root: &Path) -> Result<ChaosConfig, ChaosError> {
        let path = args
            .scenario
            .clone()
            .unwrap_or_else(|| repo_root.join("scenarios/chaos.toml"));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if args.scenario.is_none() && e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ChaosError::io("read", &path)(e)),
        };
        Self::from_text(args, text.as_deref(), path)
    }

    /// The settings from the scenario text read from `path` (None: no file, the defaults).
    fn from_text(
        args: &ChaosArgs,
        text: Option<&str>,
        path: PathBuf,
    ) -> Result<ChaosConfig, ChaosError> {
        let file: File = match text {
            Some(text) => toml::from_str(text).map_err(|source| ChaosError::Toml {
                path: path.clone(),
                source,
            })?,
            None => File::default(),
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
        let faults = fault::parse(&file.fault).map_err(|source| ChaosError::Fault {
            path: path.clone(),
            source,
        })?;
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
            faults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(scenario: PathBuf) -> ChaosArgs {
        ChaosArgs {
            scenario: Some(scenario),
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
        }
    }

    #[test]
    fn the_shipped_chaos_scenario_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let args = args(root.join("scenarios/chaos.toml"));
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

    mod prop {
        use proptest::prelude::*;

        use super::*;
        use crate::storm::ops::Rng;

        const VALUES: &[&str] = &[
            "0",
            "1",
            "-1",
            "9223372036854775807",
            "4294967295",
            "1073741824",
            "1e308",
            "nan",
            "inf",
            "-0.0",
            "0.5",
            "1.5",
            "3600",
            "true",
            "\"\"",
            "\"inotify\"",
            "\"rsync\"",
            "\"kqueue\"",
            "[]",
            "[\"local\", \"local\"]",
            "[\"fanotify\"]",
            "{}",
            "\"é\"",
        ];

        const KEYS: &[&str] = &[
            "seeds",
            "ops",
            "setup_ops",
            "converge_s",
            "mean_us",
            "burst_chance",
            "burst_len",
            "backends",
            "targets",
            "create",
            "chown",
            "link",
            "unlink",
            "remove-tree",
            "move-out",
            "swap",
            "frobnicate",
        ];

        /// The shipped chaos.toml with a few lines replaced by a key and a value, or removed,
        /// or a key set to a value (added at the end, in `[mix]`, when the file lacks it).
        fn edited() -> impl Strategy<Value = String> {
            let shipped = include_str!("../../../../scenarios/chaos.toml");
            let edit = (
                any::<usize>(),
                proptest::option::of(proptest::sample::select(KEYS)),
                prop_oneof![
                    proptest::sample::select(VALUES).prop_map(String::from),
                    any::<u32>().prop_map(|n| n.to_string()),
                ],
            );
            proptest::collection::vec(edit, 1..6).prop_map(move |edits| {
                let mut lines: Vec<String> = shipped.lines().map(String::from).collect();
                let mut added = Vec::new();
                for (i, key, value) in edits {
                    let at = i % lines.len();
                    match key {
                        Some(key) if i % 2 == 0 => lines[at] = format!("{key} = {value}"),
                        // A key the file has is set where it stands (twice is a TOML error).
                        Some(key) => match lines.iter().position(|l| {
                            l.strip_prefix(key)
                                .is_some_and(|rest| rest.trim_start().starts_with('='))
                        }) {
                            Some(at) => lines[at] = format!("{key} = {value}"),
                            None => added.push(format!("{key} = {value}")),
                        },
                        None => lines[at].clear(),
                    }
                }
                lines.extend(added);
                lines.join("\n")
            })
        }

        fn check(text: &str) -> Result<(), TestCaseError> {
            let args = args(PathBuf::from("chaos.toml"));
            match ChaosConfig::from_text(&args, Some(text), PathBuf::from("chaos.toml")) {
                // What the storm does with the settings must not panic either.
                Ok(config) => {
                    let mut rng = Rng::new(1);
                    let mut burst = 0;
                    for crowded in [false, true, false, true] {
                        config.mix.pick(&mut rng, crowded);
                        config.mix.pick_setup(&mut rng);
                        config.mix.pause_us(&mut rng, &mut burst);
                    }
                    prop_assert!(config.converge > Duration::ZERO);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(crate::prop::config(256))]

            #[test]
            fn prop_chaos_config_any_text_never_panics(text in any::<String>()) {
                check(&text)?;
            }

            #[test]
            fn prop_chaos_config_edited_file_never_panics(text in edited()) {
                check(&text)?;
            }
        }
    }
}
