//! `harness compare A B`: two sets of runs in (gate/ loads and compares them), the report on
//! stdout and as JSON on request, exit 1 on a regression.

use std::path::Path;

use crate::gate;

/// `harness compare`: the report on stdout, JSON on request; 1 on a regression.
pub fn compare(a: &Path, b: &Path, sut: &str, json: Option<&Path>) -> i32 {
    let loaded = gate::load(a).and_then(|ra| Ok((ra, gate::load(b)?)));
    let (ra, rb) = match loaded {
        Ok(x) => x,
        Err(e) => {
            eprintln!("harness compare: {e}");
            return 2;
        }
    };
    let report = gate::compare(&ra, &rb, sut);
    print!("{}", gate::render::markdown(&report));
    if let Some(path) = json
        && let Err(e) = std::fs::write(path, gate::render::json(&report))
    {
        eprintln!("harness compare: cannot write {} ({e})", path.display());
        return 2;
    }
    i32::from(!report.passed)
}
