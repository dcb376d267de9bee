//! Results export: the run's `RunResult`s in, the results folder out (README.md, runs.csv,
//! run.json, one .hgrm and one -timeline.csv per run, summary.md). Rewritten after every
//! run, so a crash keeps what was measured.

mod csv_out;
mod markdown;
pub mod table;

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use crate::scenario::Scenario;
use crate::session::result::RunResult;

/// Facts about the run that every file repeats.
pub struct RunInfo {
    pub command: String,
    pub scenario_file: String,
    pub git_revision: String,
    pub kernel: String,
    pub cpu: String,
    pub memory: String,
    pub workdir_fs: String,
    pub replica_fs: String,
    pub sysctls: Vec<(String, String)>,
    pub tools: Vec<(String, String)>,
    pub date: String,
    pub host: String,
    pub storm_ops: u64,
    /// Every directory the tree has at some point, root included: the watches it needs.
    pub tree_dirs: u64,
}

pub struct ResultsDir {
    pub path: PathBuf,
}

impl ResultsDir {
    pub fn create(out: &Path, info: &RunInfo, scenario: &Scenario) -> std::io::Result<Self> {
        let path = out.join(format!("{}-{}-{}", info.date, info.host, scenario.name));
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    pub fn write_hgrm(&self, r: &RunResult, hist: &Histogram<u64>) -> std::io::Result<()> {
        std::fs::write(
            self.path.join(format!("{}-r{}.hgrm", r.sut, r.repeat)),
            crate::measure::latency::hgrm(hist),
        )
    }

    /// `<sut>-r<N>-timeline.csv`: the run's `TimelineBin`s, one row per bin.
    pub fn write_timeline(&self, r: &RunResult) -> std::io::Result<()> {
        let path = self
            .path
            .join(format!("{}-r{}-timeline.csv", r.sut, r.repeat));
        let mut w = csv::Writer::from_path(path).map_err(std::io::Error::other)?;
        for bin in &r.timeline {
            w.serialize(bin).map_err(std::io::Error::other)?;
        }
        w.flush()
    }

    pub fn write_all(
        &self,
        info: &RunInfo,
        scenario: &Scenario,
        calibration: Option<&RunResult>,
        runs: &[RunResult],
    ) -> std::io::Result<()> {
        std::fs::write(
            self.path.join("README.md"),
            markdown::readme(info, scenario),
        )?;
        std::fs::write(
            self.path.join("summary.md"),
            markdown::summary(info, scenario, calibration, runs),
        )?;
        csv_out::write(&self.path.join("runs.csv"), runs)?;
        let json = serde_json::json!({
            "scenario": scenario.name,
            "description": scenario.description,
            "command": info.command,
            "git_revision": info.git_revision,
            "kernel": info.kernel,
            "cpu": info.cpu,
            "workdir_fs": info.workdir_fs,
            "replica_fs": info.replica_fs,
            "sysctls": info.sysctls,
            "storm_ops": info.storm_ops,
            "tree_dirs": info.tree_dirs,
            "calibration": calibration,
            "runs": runs,
        });
        let text = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
        std::fs::write(self.path.join("run.json"), text + "\n")
    }
}
