//! The report's inputs: paths on the command line in, everything they hold loaded out:
//! results folders of `harness run` (run.json, .hgrm, -timeline.csv), tune.json, sweep.json,
//! watchcost.json and history.csv. Folders are searched recursively, except inside a results
//! folder and beside a tune.json or sweep.json (their per-cell runs are rows of those files).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ReportError;
use super::hgrm::{self, HgrmPoint};
use crate::capacity::records::{SweepReport, TimelineBin, TuneReport, WatchCost};

/// One input file and what it held.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub path: PathBuf,
    pub data: T,
}

/// One syncer run (or the calibration run) of a results folder.
#[derive(Debug, Clone, Default)]
pub struct RunEntry {
    pub sut: String,
    pub repeat: u64,
    pub outcome: String,
    pub storm_ns: u64,
    pub storm_ops: u64,
    pub ops_per_s: f64,
    pub probe_events: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub lost: u64,
    pub floor_ratio: Option<f64>,
    pub hgrm: Option<Loaded<Vec<HgrmPoint>>>,
    pub timeline: Option<Loaded<Vec<TimelineBin>>>,
}

impl RunEntry {
    pub fn label(&self) -> String {
        format!("{} r{}", self.sut, self.repeat)
    }
}

/// How many directories the measured tree had, and where that number comes from.
#[derive(Debug, Clone)]
pub struct TreeDirs {
    pub count: u64,
    pub source: String,
}

/// A results folder written by `harness run`.
#[derive(Debug, Clone)]
pub struct RunFolder {
    pub dir: PathBuf,
    pub run_json: PathBuf,
    pub scenario: String,
    pub host: String,
    pub cpu: String,
    pub kernel: String,
    pub tree_dirs: Option<TreeDirs>,
    pub calibration: Option<RunEntry>,
    pub runs: Vec<RunEntry>,
}

/// One row of results/history.csv (columns the report uses; others are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryRow {
    pub date: String,
    pub scenario: String,
    pub sut: String,
    pub side: String,
    pub revision: String,
    pub floor_ratio: Option<f64>,
    pub p99_ns: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Inputs {
    pub runs: Vec<RunFolder>,
    pub tunes: Vec<Loaded<TuneReport>>,
    pub sweeps: Vec<Loaded<SweepReport>>,
    pub watchcosts: Vec<Loaded<WatchCost>>,
    pub histories: Vec<Loaded<Vec<HistoryRow>>>,
}

impl Inputs {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.tunes.is_empty()
            && self.sweeps.is_empty()
            && self.watchcosts.is_empty()
            && self.histories.is_empty()
    }
}

pub(super) const KNOWN: &str = "run.json, tune.json, sweep.json, watchcost.json or history.csv";

/// Loads every input at or under `paths`; the first unreadable file is the error.
pub fn load(paths: &[PathBuf]) -> Result<Inputs, ReportError> {
    let mut inputs = Inputs::default();
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        if !p.exists() {
            return Err(ReportError::Missing(p.clone()));
        }
        visit(p, &mut inputs, &mut seen)?;
    }
    if inputs.is_empty() {
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ReportError::NoInputs(list));
    }
    inputs.runs.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(inputs)
}

fn visit(
    p: &Path,
    inputs: &mut Inputs,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<(), ReportError> {
    let key = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    if !seen.insert(key) {
        return Ok(());
    }
    if p.is_file() {
        return load_file(p, inputs);
    }
    if p.join("run.json").is_file() {
        inputs.runs.push(run_folder(p)?);
        return Ok(());
    }
    let mut holds_grid = false;
    for name in ["tune.json", "sweep.json", "watchcost.json", "history.csv"] {
        let f = p.join(name);
        if f.is_file() && seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())) {
            load_file(&f, inputs)?;
            holds_grid |= name == "tune.json" || name == "sweep.json";
        }
    }
    if holds_grid {
        return Ok(());
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(p)
        .map_err(|source| ReportError::Folder {
            path: p.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|x| x.is_dir())
        .collect();
    subdirs.sort();
    for d in subdirs {
        visit(&d, inputs, seen)?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn json<T: DeserializeOwned>(path: &Path, writer: &'static str) -> Result<Loaded<T>, ReportError> {
    let data = serde_json::from_str(&read(path)?).map_err(|source| ReportError::Json {
        path: path.to_path_buf(),
        name: path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        writer,
        source,
    })?;
    Ok(Loaded {
        path: path.to_path_buf(),
        data,
    })
}

fn load_file(p: &Path, inputs: &mut Inputs) -> Result<(), ReportError> {
    let name = p
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    match name.as_str() {
        "run.json" => inputs
            .runs
            .push(run_folder(p.parent().unwrap_or(Path::new(".")))?),
        "tune.json" => inputs.tunes.push(json(p, "harness tune SCENARIO")?),
        "sweep.json" => inputs.sweeps.push(json(p, "harness sweep SCENARIO")?),
        "watchcost.json" => inputs.watchcosts.push(json(p, "harness watchcost")?),
        "history.csv" => inputs.histories.push(history(p)?),
        _ => {
            return Err(ReportError::NotAnInput(p.to_path_buf()));
        }
    }
    Ok(())
}

/// A CSV input opened for reading.
fn csv_reader(path: &Path) -> Result<csv::Reader<std::fs::File>, ReportError> {
    csv::Reader::from_path(path).map_err(|source| ReportError::ReadCsv {
        path: path.to_path_buf(),
        source,
    })
}

fn history(path: &Path) -> Result<Loaded<Vec<HistoryRow>>, ReportError> {
    let mut rd = csv_reader(path)?;
    let mut rows = Vec::new();
    for (i, row) in rd.deserialize().enumerate() {
        rows.push(row.map_err(|source| ReportError::CsvRow {
            path: path.to_path_buf(),
            line: i + 2,
            source,
            fix: "it is appended by `harness ci --record`: fix or remove that line",
        })?);
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        data: rows,
    })
}

fn timeline(path: &Path) -> Result<Loaded<Vec<TimelineBin>>, ReportError> {
    let mut rd = csv_reader(path)?;
    let mut bins = Vec::new();
    for (i, row) in rd.deserialize().enumerate() {
        bins.push(row.map_err(|source| ReportError::CsvRow {
            path: path.to_path_buf(),
            line: i + 2,
            source,
            fix: "it is written by `harness run`: run the scenario again",
        })?);
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        data: bins,
    })
}

fn entry(dir: &Path, v: &Value) -> Result<RunEntry, ReportError> {
    let u = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let sut = v["sut"].as_str().unwrap_or("?").to_string();
    let repeat = u("/repeat");
    let stem = format!("{sut}-r{repeat}");
    let hgrm_path = dir.join(format!("{stem}.hgrm"));
    let hgrm = if hgrm_path.is_file() {
        let points = hgrm::parse(&read(&hgrm_path)?).map_err(|source| ReportError::Hgrm {
            path: hgrm_path.clone(),
            source,
        })?;
        Some(Loaded {
            path: hgrm_path,
            data: points,
        })
    } else {
        None
    };
    let tl_path = dir.join(format!("{stem}-timeline.csv"));
    let timeline = if tl_path.is_file() {
        Some(timeline(&tl_path)?)
    } else {
        None
    };
    Ok(RunEntry {
        sut,
        repeat,
        outcome: v["outcome"].as_str().unwrap_or("?").to_string(),
        storm_ns: u("/storm_ns"),
        storm_ops: u("/storm_ops"),
        ops_per_s: v["ops_per_s"].as_f64().unwrap_or(0.0),
        probe_events: u("/probe_events"),
        p50_ns: u("/latency/p50_ns"),
        p99_ns: u("/latency/p99_ns"),
        max_ns: u("/latency/max_ns"),
        lost: u("/diff/missing") + u("/diff/extra") + u("/diff/mismatched"),
        floor_ratio: v["floor_ratio"].as_f64(),
        hgrm,
        timeline,
    })
}

fn run_folder(dir: &Path) -> Result<RunFolder, ReportError> {
    let run_json = dir.join("run.json");
    let v: Value =
        serde_json::from_str(&read(&run_json)?).map_err(|source| ReportError::RunJson {
            path: run_json.clone(),
            source,
        })?;
    let Some(list) = v["runs"].as_array() else {
        return Err(ReportError::NoRunsList(run_json));
    };
    let mut runs = Vec::new();
    for r in list.iter().filter(|r| r["outcome"] != "skipped") {
        runs.push(entry(dir, r)?);
    }
    let calibration = match &v["calibration"] {
        Value::Null => None,
        c => Some(entry(dir, c)?),
    };
    let tree_dirs = match v["tree_dirs"].as_u64() {
        Some(n) => Some(TreeDirs {
            count: n,
            source: "tree_dirs in run.json".into(),
        }),
        None => planned_dirs(dir),
    };
    let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    Ok(RunFolder {
        dir: dir.to_path_buf(),
        run_json,
        scenario: s("scenario"),
        host: readme_fact(dir, "host: ").unwrap_or_else(|| "?".into()),
        cpu: s("cpu"),
        kernel: s("kernel"),
        tree_dirs,
        calibration,
        runs,
    })
}

/// A `- key: value` fact of the folder's README.md (the value up to the next comma).
fn readme_fact(dir: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("README.md")).ok()?;
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    let end = rest.find([',', '\n']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

/// Folders written before run.json had `tree_dirs`: plan the scenario file their README.md
/// names, if it is still here with the same seed (plans are deterministic per seed).
fn planned_dirs(dir: &Path) -> Option<TreeDirs> {
    let text = std::fs::read_to_string(dir.join("README.md")).ok()?;
    let line = text.lines().find(|l| l.contains("scenario file: `"))?;
    let file = line.split('`').nth(1)?;
    let seed: u64 = line
        .split("(seed ")
        .nth(1)?
        .split(',')
        .next()?
        .parse()
        .ok()?;
    let path = [
        PathBuf::from(file),
        crate::host::env::repo_root().join(file),
    ]
    .into_iter()
    .find(|p| p.is_file())?;
    let scenario = crate::scenario::load(&path).ok()?;
    if scenario.seed != seed {
        return None;
    }
    let plan = crate::storm::plan::plan(&scenario);
    Some(TreeDirs {
        count: plan.dirs.len() as u64,
        source: format!(
            "planned from {file} (seed {seed}; this folder predates tree_dirs in run.json)"
        ),
    })
}

/// Inotify watches held now by this user's processes, and how many processes hold them
/// (from /proc/*/fdinfo: `max_user_watches` counts per user).
pub fn watches_in_use() -> (u64, u64) {
    let in_use = crate::host::watches::watches_in_use(nix::unistd::geteuid().as_raw());
    (in_use.watches, in_use.holders.len() as u64)
}
