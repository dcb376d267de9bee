//! Why `harness report` made no report: an input that is missing, unreadable or not what
//! its writer writes (each error names the file and the command that writes it again), or an
//! output that could not be written or drawn.

use std::io;
use std::path::PathBuf;

use super::hgrm::HgrmError;
use super::inputs::KNOWN;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{} does not exist: pass results folders or {KNOWN} files", .0.display())]
    Missing(PathBuf),
    #[error(
        "no inputs found at or under {}: pass results folders of `harness run`, or {KNOWN} files",
        .0.join(", ")
    )]
    NoInputs(Vec<String>),
    #[error("{} is not a report input: pass results folders or {KNOWN} files", .0.display())]
    NotAnInput(PathBuf),
    #[error("cannot read the folder {} ({source})", path.display())]
    Folder { path: PathBuf, source: io::Error },
    #[error("cannot read {} ({source})", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot read {} ({source})", path.display())]
    ReadCsv { path: PathBuf, source: csv::Error },
    #[error("{} is not a valid {name} ({source}): write it again with `{writer}`", path.display())]
    Json {
        path: PathBuf,
        name: String,
        writer: &'static str,
        source: serde_json::Error,
    },
    /// A bad row of a CSV input; `fix` says who writes it and what to do.
    #[error("{} line {line}: {source}; {fix}", path.display())]
    CsvRow {
        path: PathBuf,
        line: usize,
        source: csv::Error,
        fix: &'static str,
    },
    #[error("{} {source}: it is written by `harness run`: run the scenario again", path.display())]
    Hgrm { path: PathBuf, source: HgrmError },
    #[error(
        "{} is not valid JSON ({source}): it is written by `harness run`: run the scenario again",
        path.display()
    )]
    RunJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} has no `runs` list: is it a run.json of `harness run`?", .0.display())]
    NoRunsList(PathBuf),
    #[error("cannot create the output folder {} ({source}): pass --out DIR", path.display())]
    OutDir { path: PathBuf, source: io::Error },
    #[error("cannot write {} ({source})", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// plotters' errors are generic over the backend: their text is kept.
    #[error("drawing {}: {detail}", path.display())]
    Plot { path: PathBuf, detail: String },
}

impl From<ReportError> for crate::Error {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::OutDir { .. } | ReportError::Write { .. } | ReportError::Plot { .. } => {
                crate::Error::io(e)
            }
            _ => crate::Error::usage(e),
        }
    }
}
