//! The storm planner: a validated `Scenario` in, a `Plan` out (the initial tree, every storm
//! operation in order, and the final state the replica must reach). A pure function of the
//! scenario and its seed: no clock, no filesystem, so the same seed gives the same plan.

use std::collections::HashMap;

use crate::scenario::{CreateIn, FileNames, OpKind, Phase, Scenario, SizeDist, Via};
use crate::storm::model::Model;
use crate::storm::ops::{Expect, Op, ROOT, Rng, file_name, join};

#[derive(Debug, Clone, PartialEq)]
pub struct PhasePlan {
    pub name: String,
    pub ops: Vec<Op>,
    pub rate: f64,
    pub threads: u32,
    pub via: Via,
    pub pause_sut: bool,
    pub gap_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub names: FileNames,
    /// Relative path of every directory that ever exists; index 0 is the root ("").
    pub dirs: Vec<String>,
    pub setup: Vec<Op>,
    pub phases: Vec<PhasePlan>,
    pub expect: Vec<Expect>,
}

impl Plan {
    pub fn file_name(&self, file: u32, generation: u32) -> String {
        file_name(self.names, file, generation)
    }

    /// Relative path of a file under its directory.
    pub fn file_path(&self, dir: u32, file: u32, generation: u32) -> String {
        join(&self.dirs[dir as usize], &self.file_name(file, generation))
    }

    pub fn storm_ops(&self) -> u64 {
        self.phases.iter().map(|p| p.ops.len() as u64).sum()
    }
}

/// Builds the plan. Pure: same scenario, same plan.
pub fn plan(s: &Scenario) -> Plan {
    let mut rng = Rng::new(s.seed);
    let mut m = Model::new(s.tree.depth);
    let setup = m.build_tree(&s.tree, &mut rng);
    let mut touched: HashMap<(bool, u32, u32), (u32, u32)> = HashMap::new();
    let mut phases = Vec::new();
    for phase in &s.phases {
        let size = phase.size.unwrap_or(s.tree.size);
        if phase.sequence.is_empty() {
            let ops = mix_phase(&mut m, &mut rng, phase, &size);
            push_phase(
                &mut phases,
                &mut touched,
                phase,
                phase.name.clone(),
                phase.gap_ms,
                ops,
            );
        } else {
            for (round, ops) in sequence_rounds(&mut m, &mut rng, phase, &size)
                .into_iter()
                .enumerate()
            {
                let (name, gap) = if round == 0 {
                    (phase.name.clone(), phase.gap_ms)
                } else {
                    (format!("{}#r{}", phase.name, round + 1), phase.round_gap_ms)
                };
                push_phase(&mut phases, &mut touched, phase, name, gap, ops);
            }
        }
    }
    let expect = m.expectations(touched, s.file_names);
    Plan {
        names: s.file_names,
        dirs: m.dir_paths(),
        setup,
        phases,
        expect,
    }
}

fn push_phase(
    phases: &mut Vec<PhasePlan>,
    touched: &mut HashMap<(bool, u32, u32), (u32, u32)>,
    phase: &Phase,
    name: String,
    gap_ms: u64,
    mut ops: Vec<Op>,
) {
    let index = phases.len() as u32;
    for (i, op) in ops.iter_mut().enumerate() {
        if phase.rate > 0.0 {
            op.at_ns = (i as f64 * 1e9 / phase.rate) as u64;
        }
        for key in touched_keys(op) {
            touched.insert(key, (index, i as u32));
        }
    }
    let name = if name.is_empty() {
        format!("phase{}", index + 1)
    } else {
        name
    };
    phases.push(PhasePlan {
        name,
        ops,
        rate: phase.rate,
        threads: phase.threads,
        via: phase.via,
        pause_sut: phase.pause_sut,
        gap_ms,
    });
}

/// Paths an op changes: (is_dir, id, generation).
fn touched_keys(op: &Op) -> Vec<(bool, u32, u32)> {
    match op.kind {
        OpKind::Mkdir | OpKind::Rmdir => vec![(true, op.dir, 0)],
        OpKind::Rename => vec![
            (false, op.file, op.generation - 1),
            (false, op.file, op.generation),
        ],
        _ => vec![(false, op.file, op.generation)],
    }
}

fn mix_phase(m: &mut Model, rng: &mut Rng, p: &Phase, size: &SizeDist) -> Vec<Op> {
    let count = if p.ops > 0 {
        p.ops
    } else {
        (p.rate * p.duration_ms as f64 / 1000.0) as u64
    };
    let weights: Vec<(OpKind, u64)> = p.mix.iter().map(|(&k, &w)| (k, u64::from(w))).collect();
    let total: u64 = weights.iter().map(|(_, w)| w).sum();
    let mut ops = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut pick = rng.below(total);
        let mut kind = weights[0].0;
        for &(k, w) in &weights {
            if pick < w {
                kind = k;
                break;
            }
            pick -= w;
        }
        let op = m
            .random_op(kind, rng, size)
            .unwrap_or_else(|| m.create(m.random_dir(rng), rng.size(size), false));
        ops.push(op);
    }
    ops
}

/// One op list per round; `create` runs in the first round only.
fn sequence_rounds(m: &mut Model, rng: &mut Rng, p: &Phase, size: &SizeDist) -> Vec<Vec<Op>> {
    let creates = p.sequence[0] == OpKind::Create;
    let targets: Vec<u32> = if creates {
        let mut dirs = m.alive_subdirs();
        if p.create_in == CreateIn::LastDir {
            dirs = dirs.pop().into_iter().collect();
        }
        (0..p.files)
            .map(|i| {
                let dir = if dirs.is_empty() {
                    ROOT
                } else {
                    dirs[i as usize % dirs.len()]
                };
                let bytes = if p.via == Via::TouchProcess {
                    0
                } else {
                    rng.size(size)
                };
                m.create_pending(dir, bytes)
            })
            .collect()
    } else {
        m.regular_files()
            .into_iter()
            .take(p.files as usize)
            .collect()
    };
    (0..p.rounds)
        .map(|round| {
            let mut ops = Vec::new();
            for &file in &targets {
                for &kind in &p.sequence {
                    if kind == OpKind::Create {
                        if round == 0 {
                            ops.push(m.commit_create(file));
                        }
                    } else if m.is_alive(file)
                        && let Some(op) = m.file_op(kind, file, rng, size)
                    {
                        ops.push(op);
                    }
                }
            }
            ops
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse;
    use crate::storm::ops::Expected;

    const MIXED: &str = r#"
name = "t"
seed = 42
[tree]
dirs = 5
depth = 2
fanout = 3
files = 20
size = { min_bytes = 0, max_bytes = 100 }
[[phase]]
ops = 500
threads = 2
mix = { create = 5, write = 2, append = 1, overwrite = 1, rename = 2, delete = 2, mkdir = 1, rmdir = 1, chmod = 1, symlink = 1 }
[[sut]]
kind = "syncer"
"#;

    fn plan_of(text: &str) -> Plan {
        plan(&parse(text, "t.toml").expect("valid scenario"))
    }

    #[test]
    fn same_seed_same_plan() {
        assert_eq!(plan_of(MIXED), plan_of(MIXED));
    }

    #[test]
    fn other_seed_other_plan() {
        let other = MIXED.replace("seed = 42", "seed = 43");
        assert_ne!(plan_of(MIXED).phases, plan_of(&other).phases);
    }

    #[test]
    fn mixed_plan_uses_every_op_kind_and_expects_final_states() {
        let p = plan_of(MIXED);
        let kinds: std::collections::BTreeSet<OpKind> =
            p.phases[0].ops.iter().map(|o| o.kind).collect();
        assert_eq!(kinds.len(), 10, "{kinds:?}");
        assert!(p.expect.iter().any(|e| e.state == Expected::Absent));
        assert!(p.expect.iter().any(|e| matches!(
            e.state,
            Expected::File {
                header: Some(_),
                ..
            }
        )));
        let paths: std::collections::BTreeSet<&str> =
            p.expect.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths.len(), p.expect.len(), "one expectation per path");
    }

    #[test]
    fn sequence_rounds_become_phases_and_seq_names_match_the_shell_loop() {
        let text = r#"
name = "s"
file_names = "seq"
[[phase]]
name = "touch"
sequence = ["create"]
files = 200
via = "touch-process"
[[phase]]
name = "rewrite"
sequence = ["overwrite"]
files = 200
rounds = 2
round_gap_ms = 400
[[sut]]
kind = "seed-script"
"#;
        let p = plan_of(text);
        assert_eq!(p.phases.len(), 3);
        assert_eq!(p.phases[2].name, "rewrite#r2");
        assert_eq!(p.phases[2].gap_ms, 400);
        assert_eq!(
            p.file_path(p.phases[0].ops[0].dir, p.phases[0].ops[0].file, 0),
            "1"
        );
        assert_eq!(p.file_path(ROOT, 199, 0), "200");
        assert!(p.phases[0].ops.iter().all(|o| o.size == 0));
    }

    #[test]
    fn create_in_last_dir_puts_every_new_file_in_the_directory_created_last() {
        let text = r#"
name = "s"
[tree]
dirs = 30
depth = 2
fanout = 6
files = 100
[[phase]]
sequence = ["create", "write"]
files = 3
create_in = "last-dir"
[[sut]]
kind = "syncer"
"#;
        let p = plan_of(text);
        let last = (p.dirs.len() - 1) as u32;
        assert_eq!(
            p.dirs[last as usize].matches('/').count(),
            1,
            "a level-2 dir"
        );
        let ops = &p.phases[0].ops;
        assert_eq!(ops.len(), 6);
        assert!(ops.iter().all(|o| o.dir == last), "{ops:?}");
    }

    #[test]
    fn rate_schedules_ops_open_loop() {
        let text = MIXED.replace("threads = 2", "threads = 2\nrate = 1000.0");
        let p = plan_of(&text);
        assert_eq!(p.phases[0].ops[0].at_ns, 0);
        assert_eq!(p.phases[0].ops[10].at_ns, 10_000_000);
    }
}
