//! `harness compare A B`: two sets of runs in (gate/ loads and compares them), the report on
//! stdout and as JSON on request, whether the candidate passed out (main exits 1 when not).

use std::path::PathBuf;

use crate::cli::CompareArgs;
use crate::gate::{self, GateError};

/// Why no comparison was made or saved.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error("cannot write {} ({source})", path.display())]
    Json {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<CompareError> for crate::Error {
    fn from(e: CompareError) -> Self {
        match e {
            CompareError::Gate(e) => e.into(),
            CompareError::Json { .. } => crate::Error::io(e),
        }
    }
}

/// `harness compare`: the report on stdout, JSON on request; false on a regression.
pub fn compare(args: &CompareArgs) -> Result<bool, CompareError> {
    let ra = gate::load(&args.a)?;
    let rb = gate::load(&args.b)?;
    let report = gate::compare(&ra, &rb, &args.sut);
    print!("{}", gate::render::markdown(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, gate::render::json(&report)).map_err(|source| CompareError::Json {
            path: path.clone(),
            source,
        })?;
    }
    Ok(report.passed)
}
