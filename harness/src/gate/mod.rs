//! `harness compare A B`: two sets of runs (run.json files, results folders, or folders of
//! results folders) in, every gate metric side by side with B/A, the noise across repeats
//! and a verdict per metric out, as a `Report` (rendered by render.rs).

pub mod history;
pub mod metrics;
pub mod render;
pub mod verdict;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use metrics::METRICS;
use verdict::{Judged, Rule, Verdict};

/// One syncer run read back from a run.json.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub scenario: String,
    pub revision: String,
    pub run: Value,
}

/// Why a set of runs could not be loaded; each says what to pass instead.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("no run.json at or under {}: pass a results folder written by `harness run`", .0.display())]
    NoRuns(PathBuf),
    #[error("cannot read {} ({source})", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid JSON ({source}): rerun `harness run`", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot read {} ({source}): pass a results folder or run.json", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs that cannot be read are the command's arguments gone wrong.
impl From<GateError> for crate::Error {
    fn from(e: GateError) -> Self {
        crate::Error::usage(e)
    }
}

/// Every run.json at or under `path` (a file, or a folder searched recursively), skipped
/// runs left out.
pub fn load(path: &Path) -> Result<Vec<RunRecord>, GateError> {
    let mut files = Vec::new();
    find_run_json(path, &mut files)?;
    if files.is_empty() {
        return Err(GateError::NoRuns(path.to_path_buf()));
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| GateError::Read {
            path: f.clone(),
            source,
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|source| GateError::Json {
            path: f.clone(),
            source,
        })?;
        let scenario = json["scenario"].as_str().unwrap_or("?").to_string();
        let revision = json["git_revision"].as_str().unwrap_or("?").to_string();
        for run in json["runs"].as_array().into_iter().flatten() {
            if run["outcome"] != "skipped" {
                out.push(RunRecord {
                    scenario: scenario.clone(),
                    revision: revision.clone(),
                    run: run.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn find_run_json(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), GateError> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|source| GateError::Folder {
        path: path.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_run_json(&p, out)?;
        } else if p.file_name().is_some_and(|n| n == "run.json") {
            out.push(p);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub metric: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub self_report: bool,
    pub rule: Rule,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    #[serde(flatten)]
    pub judged: Judged,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub a: String,
    pub b: String,
    pub sut: String,
    /// Runs per side and scenario (the smaller side).
    pub repeats: usize,
    pub rows: Vec<Row>,
    /// One line per gating verdict (worse or fail), or scenario missing on a side.
    pub regressions: Vec<String>,
    /// Why candidate runs failed, and other facts a reader needs.
    pub notes: Vec<String>,
    pub passed: bool,
}

fn revisions(runs: &[&RunRecord]) -> String {
    let mut revs: Vec<&str> = runs.iter().map(|r| r.revision.as_str()).collect();
    revs.dedup();
    revs.join(", ")
}

/// Compares the runs of syncer `sut` in `a` (baseline) and `b` (candidate), scenario by
/// scenario in the order A lists them.
pub fn compare(a: &[RunRecord], b: &[RunRecord], sut: &str) -> Report {
    let a: Vec<&RunRecord> = a.iter().filter(|r| r.run["sut"] == sut).collect();
    let b: Vec<&RunRecord> = b.iter().filter(|r| r.run["sut"] == sut).collect();
    let mut scenarios: Vec<&str> = Vec::new();
    for r in a.iter().chain(&b) {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let mut report = Report {
        a: revisions(&a),
        b: revisions(&b),
        sut: sut.to_string(),
        repeats: usize::MAX,
        rows: Vec::new(),
        regressions: Vec::new(),
        notes: Vec::new(),
        passed: true,
    };
    for sc in scenarios {
        let ra: Vec<&Value> = a
            .iter()
            .filter(|r| r.scenario == sc)
            .map(|r| &r.run)
            .collect();
        let rb: Vec<&Value> = b
            .iter()
            .filter(|r| r.scenario == sc)
            .map(|r| &r.run)
            .collect();
        report.repeats = report.repeats.min(ra.len().min(rb.len()));
        if ra.is_empty() || rb.is_empty() {
            let side = if ra.is_empty() { "A" } else { "B" };
            report.regressions.push(format!(
                "{sc}: no `{sut}` runs on side {side}, nothing to compare"
            ));
            continue;
        }
        note_failed_runs(&mut report, sc, &rb);
        judge_metrics(&mut report, sc, &ra, &rb);
    }
    if report.repeats == usize::MAX {
        report.repeats = 0;
        report.regressions.push(format!(
            "no `{sut}` runs on either side: pass --sut with a syncer label"
        ));
    }
    report.passed = report.regressions.is_empty();
    report
}

/// A note per B run that failed outright, with its reasons.
fn note_failed_runs(report: &mut Report, sc: &str, rb: &[&Value]) {
    for run in rb {
        if run["outcome"] == "failed" {
            let why: Vec<&str> = run["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            report.notes.push(format!(
                "{sc}: B run {} failed: {}",
                run["repeat"],
                why.join("; ")
            ));
        }
    }
}

/// Every metric of one scenario judged, A against B: a row each, a regression per gate.
fn judge_metrics(report: &mut Report, sc: &str, ra: &[&Value], rb: &[&Value]) {
    for m in METRICS {
        let va: Vec<f64> = ra.iter().filter_map(|r| (m.get)(r)).collect();
        let vb: Vec<f64> = rb.iter().filter_map(|r| (m.get)(r)).collect();
        if va.is_empty() && vb.is_empty() {
            continue;
        }
        let judged = verdict::judge(&va, &vb, m.rule);
        if judged.verdict.gates() {
            report.regressions.push(format!(
                "{sc}: {} {} ({} → {} {}, B/A {}, noise {:.0}%)",
                m.label,
                if judged.verdict == Verdict::Fail {
                    "not zero"
                } else {
                    "worse"
                },
                render::num(judged.a_median),
                render::num(judged.b_median),
                m.unit,
                render::ratio(judged.ratio),
                judged.noise * 100.0
            ));
        }
        report.rows.push(Row {
            scenario: sc.to_string(),
            metric: m.key,
            label: m.label,
            unit: m.unit,
            self_report: m.self_report,
            rule: m.rule,
            a: va,
            b: vb,
            judged,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(scenario: &str, p99_ms: u64, outcome: &str) -> RunRecord {
        RunRecord {
            scenario: scenario.into(),
            revision: "r".into(),
            run: serde_json::json!({
                "sut": "syncer", "repeat": 1, "outcome": outcome, "reasons": ["x"],
                "storm_ops": 100, "latency": {"p50_ns": 0, "p99_ns": p99_ms * 1_000_000},
                "diff": {"missing": 0, "extra": 0, "mismatched": 0}, "samples_unseen": 0,
                "io": {"wchar": 1000, "syscw": 100, "syscr": 100}
            }),
        }
    }

    #[test]
    fn same_runs_pass_and_a_slower_candidate_fails() {
        let a: Vec<RunRecord> = [100, 102, 98]
            .iter()
            .map(|&x| rec("s", x, "passed"))
            .collect();
        assert!(compare(&a, &a, "syncer").passed);
        let b: Vec<RunRecord> = [600, 610, 590]
            .iter()
            .map(|&x| rec("s", x, "passed"))
            .collect();
        let r = compare(&a, &b, "syncer");
        assert!(!r.passed);
        assert!(
            r.regressions[0].contains("latency p99 worse"),
            "{:?}",
            r.regressions
        );
    }

    #[test]
    fn a_failed_candidate_run_fails_the_gate() {
        let a = vec![rec("s", 100, "passed")];
        let b = vec![rec("s", 100, "failed")];
        let r = compare(&a, &b, "syncer");
        assert!(!r.passed);
        assert!(r.notes[0].contains("failed: x"), "{:?}", r.notes);
    }

    #[test]
    fn a_scenario_missing_on_one_side_is_reported() {
        let a = vec![rec("s", 100, "passed"), rec("t", 100, "passed")];
        let b = vec![rec("s", 100, "passed")];
        let r = compare(&a, &b, "syncer");
        assert!(!r.passed);
        assert!(r.regressions[0].starts_with("t: no"), "{:?}", r.regressions);
        assert!(!compare(&a, &b, "lsyncd").passed);
    }
}
