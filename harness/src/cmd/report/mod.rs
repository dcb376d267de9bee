//! `harness report RESULTS_DIR...`: results folders, tune.json, sweep.json, watchcost.json
//! and history.csv in; a capacity planning report out: report.md (recommendations, tables,
//! sysctl lines) and its SVG plots, every number naming the file it came from.

pub mod charts;
pub mod error;
pub mod hgrm;
pub mod inputs;
pub mod plots;
mod recommendations;
pub mod render;

use std::path::{Component, Path, PathBuf};

use crate::cli::ReportArgs;
pub use error::ReportError;

/// Facts of the machine the report is made on, read when it is made (not from a run).
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub host: String,
    pub date: String,
    pub watches_in_use: u64,
    pub watch_holders: u64,
    pub max_user_watches: Option<u64>,
    pub max_queued_events: Option<u64>,
}

impl Machine {
    pub fn now() -> Self {
        let (watches_in_use, watch_holders) = inputs::watches_in_use();
        Self {
            host: crate::host::env::hostname(),
            date: crate::util::fmt::today(),
            watches_in_use,
            watch_holders,
            max_user_watches: crate::host::kernel::read("fs.inotify.max_user_watches").ok(),
            max_queued_events: crate::host::kernel::read("fs.inotify.max_queued_events").ok(),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(p)
    })
}

/// `to` relative to the folder `from` (so links in report.md resolve where it lies).
pub fn relative(from: &Path, to: &Path) -> String {
    let (from, to) = (absolute(from), absolute(to));
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c.as_os_str());
    }
    out.display().to_string()
}

/// Writes report.md and the plots into `args.out`; returns the report's path.
pub fn report(args: &ReportArgs) -> Result<PathBuf, ReportError> {
    let inputs = inputs::load(&args.inputs)?;
    std::fs::create_dir_all(&args.out).map_err(|source| ReportError::OutDir {
        path: args.out.clone(),
        source,
    })?;
    let machine = Machine::now();
    let out = absolute(&args.out);
    let rel = |p: &Path| relative(&out, p);
    let rendered = render::render(&inputs, args, &crate::cli::command_line(), &machine, &rel);
    for (name, chart) in &rendered.charts {
        plots::draw(&out.join(name), chart)?;
    }
    let path = out.join("report.md");
    std::fs::write(&path, &rendered.markdown).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_and_descend() {
        assert_eq!(
            relative(Path::new("/a/b/out"), Path::new("/a/c/run.json")),
            "../../c/run.json"
        );
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b/x.svg")),
            "x.svg"
        );
    }
}
