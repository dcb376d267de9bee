//! `harness list`: a folder in, each scenario file in it with the first line of its
//! description out (an invalid one with its error).

use std::path::{Path, PathBuf};

use crate::scenario;

/// `harness list`: each scenario file in `dir` with its description.
pub fn list(dir: &Path) -> Result<String, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            format!(
                "cannot read {} ({e}): pass the scenarios folder",
                dir.display()
            )
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        match scenario::load(&f) {
            Ok(s) => out.push_str(&format!(
                "{:<16} {}\n",
                s.name,
                s.description.lines().next().unwrap_or("")
            )),
            Err(e) => out.push_str(&format!(
                "{:<16} INVALID: {e}\n",
                f.file_stem()
                    .map_or(String::new(), |x| x.to_string_lossy().into_owned())
            )),
        }
    }
    Ok(out)
}
