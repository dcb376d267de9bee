//! Chaos results: one `Row` per case in runs.csv (appended as cases finish, read back to
//! resume or merge campaigns), and the campaign's summary.md and one-screen summary.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::campaign::CaseId;
use super::case::CaseOutcome;
use super::config::ChaosConfig;
use super::error::ChaosError;
use super::op::OpLog;
use crate::export::table::Table;

/// One case in runs.csv; units in the names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub seed: u64,
    pub backend: String,
    pub target: String,
    /// Live operations, pauses not counted.
    pub ops: usize,
    pub setup_ops: usize,
    pub pause_mean_us: u32,
    pub passed: bool,
    pub storm_ms: u64,
    /// Empty when it never converged.
    pub converge_ms: Option<u64>,
    pub refused_ops: u64,
    pub missing: u64,
    pub extra: u64,
    pub mismatched: u64,
    /// The first differing paths, or the problem (start-up, exit status).
    pub detail: String,
    /// Faults injected (runs.csv files of campaigns without faults lack the last columns).
    #[serde(default)]
    pub faults: u32,
    /// ms from the end of the last fault to convergence.
    #[serde(default)]
    pub recover_ms: Option<u64>,
    /// The syncer's overflow and reconcile counters, summed over its lives.
    #[serde(default)]
    pub overflows: u64,
    #[serde(default)]
    pub reconciles: u64,
}

impl Row {
    pub fn new(id: CaseId, config: &ChaosConfig, log: &OpLog, outcome: &CaseOutcome) -> Row {
        let diff = &outcome.diff;
        let detail = match &outcome.problem {
            Some(p) => p.clone(),
            None if outcome.passed => String::new(),
            None => diff.describe(),
        };
        Row {
            seed: id.seed,
            backend: id.backend.to_string(),
            target: id.target.to_string(),
            ops: log.live_operations(),
            setup_ops: log.setup,
            pause_mean_us: config.mix.pause.mean_us,
            passed: outcome.passed,
            storm_ms: outcome.storm_ms,
            converge_ms: outcome.converge_ms,
            refused_ops: outcome.op_errors,
            missing: diff.missing,
            extra: diff.extra,
            mismatched: diff.mismatched,
            detail,
            faults: outcome.faults,
            recover_ms: outcome.recover_ms,
            overflows: outcome.overflows,
            reconciles: outcome.reconciles,
        }
    }
}

/// runs.csv opened for appending; the header is written when the file is new.
pub fn open_rows(path: &Path) -> Result<csv::Writer<fs::File>, ChaosError> {
    let fresh = !path.exists();
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(ChaosError::io("open", path))?;
    Ok(csv::WriterBuilder::new()
        .has_headers(fresh)
        .from_writer(file))
}

pub fn append_row(out: &mut csv::Writer<fs::File>, row: &Row) -> Result<(), ChaosError> {
    out.serialize(row)?;
    out.flush().map_err(|e| ChaosError::CsvWrite(e.into()))
}

pub fn read_rows(path: &Path) -> Result<Vec<Row>, ChaosError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut reader = csv::Reader::from_path(path).map_err(|source| ChaosError::CsvFile {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    reader
        .deserialize()
        .collect::<Result<Vec<Row>, _>>()
        .map_err(|source| ChaosError::CsvRow {
            path: path.to_path_buf(),
            source,
        })
}

/// Rows of several campaign folders, the later folder's row winning for the same case.
pub fn merged(folders: &[&Path]) -> Result<Vec<Row>, ChaosError> {
    let mut by_case = BTreeMap::new();
    for folder in folders {
        for row in read_rows(&folder.join("runs.csv"))? {
            by_case.insert((row.seed, row.backend.clone(), row.target.clone()), row);
        }
    }
    Ok(by_case.into_values().collect())
}

#[derive(Default)]
struct Tally {
    cases: u64,
    passed: u64,
    seeds: (u64, u64),
    ops: usize,
    converge_ms: Vec<u64>,
    faults: u64,
    recover_ms: Vec<u64>,
    overflows: u64,
}

fn tallies(rows: &[Row]) -> BTreeMap<(String, String), Tally> {
    let mut out: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for r in rows {
        let t = out
            .entry((r.backend.clone(), r.target.clone()))
            .or_default();
        if t.cases == 0 {
            t.seeds = (r.seed, r.seed);
        }
        t.cases += 1;
        t.passed += u64::from(r.passed);
        t.seeds = (t.seeds.0.min(r.seed), t.seeds.1.max(r.seed));
        t.ops = t.ops.max(r.ops);
        t.converge_ms.extend(r.converge_ms);
        t.faults += u64::from(r.faults);
        t.recover_ms.extend(r.recover_ms);
        t.overflows += r.overflows;
    }
    out
}

fn pct(sorted: &[u64], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].to_string()
}

fn table(rows: &[Row]) -> String {
    let with_faults = rows.iter().any(|r| r.faults > 0);
    let mut header = vec![
        "backend",
        "target",
        "seeds",
        "live ops per seed",
        "passed",
        "failed",
        "converge ms p50 / p99 / max",
    ];
    if with_faults {
        header.extend([
            "faults",
            "syncer overflows",
            "recover ms p50 / max (after the last fault)",
        ]);
    }
    let mut table = Table::new(header);
    for ((backend, target), mut t) in tallies(rows) {
        t.converge_ms.sort_unstable();
        t.recover_ms.sort_unstable();
        let mut row = vec![
            backend,
            target,
            format!("{}..={} ({})", t.seeds.0, t.seeds.1, t.cases),
            t.ops.to_string(),
            t.passed.to_string(),
            (t.cases - t.passed).to_string(),
            format!(
                "{} / {} / {}",
                pct(&t.converge_ms, 0.5),
                pct(&t.converge_ms, 0.99),
                pct(&t.converge_ms, 1.0)
            ),
        ];
        if with_faults {
            row.extend([
                t.faults.to_string(),
                t.overflows.to_string(),
                format!("{} / {}", pct(&t.recover_ms, 0.5), pct(&t.recover_ms, 1.0)),
            ]);
        }
        table.row(row);
    }
    table.render()
}

/// The one-screen summary printed at the end of a campaign.
pub fn short(rows: &[Row]) -> String {
    let mut text = table(rows);
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.passed).collect();
    if failed.is_empty() {
        text.push_str(&format!("all {} cases converged\n", rows.len()));
    } else {
        text.push_str(&format!(
            "{} of {} cases FAILED:\n",
            failed.len(),
            rows.len()
        ));
        for r in failed.iter().take(20) {
            text.push_str(&format!(
                "  seed {} {}/{}: {}\n",
                r.seed, r.backend, r.target, r.detail
            ));
        }
    }
    text
}

/// summary.md: the settings, the machine, the per-combination table and every failure.
pub fn summary(config: &ChaosConfig, rows: &[Row], scenario: &str, out: &Path) -> String {
    let mut text = String::from("# Random-operation storm (harness chaos)\n\n");
    if !config.description.is_empty() {
        text.push_str(&format!("{}\n\n", config.description));
    }
    text.push_str(&format!(
        "- scenario: `{scenario}`; {} setup ops before the syncer starts, then {} live ops; pauses exponential, mean {} us, bursts of {} with none (chance {} per op); replica must equal SOURCE within {:?} of the last op\n",
        config.setup_ops,
        config.ops,
        config.mix.pause.mean_us,
        config.mix.pause.burst_len,
        config.mix.pause.burst_chance,
        config.converge
    ));
    let mix: Vec<String> = config
        .mix
        .weights()
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|(k, w)| {
            format!(
                "{} {w}",
                serde_json::to_string(k)
                    .unwrap_or_default()
                    .trim_matches('"')
            )
        })
        .collect();
    text.push_str(&format!("- op mix (weights): {}\n", mix.join(", ")));
    if !config.faults.is_empty() {
        let faults: Vec<String> = config
            .faults
            .iter()
            .map(|(fault, count)| format!("{count} x `{fault}`"))
            .collect();
        text.push_str(&format!(
            "- faults per case, at seeded moments of the live storm: {}\n",
            faults.join(", ")
        ));
    }
    text.push_str(&format!(
        "- machine: {}, {}, {}, kernel {}; work dir {}\n\n",
        crate::host::env::hostname(),
        crate::host::env::cpu(),
        crate::host::env::memory(),
        crate::host::env::kernel(),
        out.display()
    ));
    text.push_str(&table(rows));
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.passed).collect();
    if !failed.is_empty() {
        text.push_str("\n## Failures\n\n");
        for r in failed {
            text.push_str(&format!(
                "- seed {} {}/{}: {} (failures/seed-{}-{}-{}/)\n",
                r.seed, r.backend, r.target, r.detail, r.seed, r.backend, r.target
            ));
        }
    }
    text
}
